package event_test

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
	"time"

	gojson "github.com/goccy/go-json"

	"github.com/vigil-sec/vigil/internal/demo"
	"github.com/vigil-sec/vigil/internal/event"
)

func f64(v float64) *float64 { return &v }

// codecCases are events whose encoding exercises every delegated path.
func codecCases(t testing.TB) []*event.Event {
	now := time.Date(2026, 11, 23, 3, 19, 32, 123456789, time.UTC)
	cases := []*event.Event{
		{ID: "a", Time: now, ReceivedAt: now, Type: "audit.query", Category: event.CategoryAudit, Tenant: "default"},
		{ID: "b", Time: now.Truncate(time.Second), ReceivedAt: now.Add(time.Millisecond), Type: "authentication.login",
			Category: event.CategoryAuthentication, Severity: event.SeverityCritical, Tenant: "t1",
			Message: `he said "hi" <script>&amp; \ back`, User: "élodie@example.com", UserID: "u\u2028x",
			SrcIP: "2001:db8::1", Resource: "tab\tle\n", Action: "a\x01b", Outcome: "failure",
			Confidence: f64(0), RiskScore: f64(100), MitreTactics: []string{"TA0006"}, MitreTechniques: []string{"T1110.001", "<x>"},
			Tags: []string{}, Data: json.RawMessage(`{"a": 1, "b" : ["x", "y<z>"], "c":{"d":"\u00e9\n"}}`),
			Chain: "node-1", PrevHash: "00ff", Hash: "abcd"},
		{ID: "c", Time: now, ReceivedAt: now, Type: "fraud.alert", Category: event.CategoryFraud, Tenant: "default",
			Confidence: f64(1e-7), RiskScore: f64(12.5), Data: json.RawMessage(`{"k":"v","n":[1,2.5e3,-0.1,true,null],"s":"a\"b\\c"}`)},
		{ID: "d", Time: now.In(time.FixedZone("x", 3600)), ReceivedAt: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), Type: "x.y",
			Category: event.CategorySystem, Tenant: "default", Data: json.RawMessage(`{"bad":"\xff\xfe","ls":"\u2028"}`),
			Confidence: f64(3e21), RiskScore: f64(-0)},
		{ID: "e", Seq: 42, Time: now, ReceivedAt: now, Type: "x.y", Category: event.CategorySystem, Tenant: "default",
			Data: json.RawMessage(`["a",{"b":"c d"}]`), Message: "\xff invalid", Tags: []string{"", "é"}},
		{ID: "f", Time: now, ReceivedAt: now, Type: "x.y", Category: event.CategorySystem, Tenant: "default",
			Data: json.RawMessage(" {\"a\":1}\n")},
	}
	g := demo.New(7)
	for i := 0; i < 2000; i++ {
		e := g.Next()
		if _, err := event.Normalize(e, "default", now, event.DefaultLimits()); err != nil {
			t.Fatal(err)
		}
		e.Chain, e.PrevHash, e.Hash = "node-1", "0123456789abcdef", "fedcba9876543210"
		cases = append(cases, e)
	}
	return cases
}

// TestAppendJSONMatchesGoccy: the hand-written encoder writes exactly what
// goccy's Marshal writes, so hashes of events stored before it verify.
func TestAppendJSONMatchesGoccy(t *testing.T) {
	for i, e := range codecCases(t) {
		want, werr := gojson.Marshal(e)
		got, gerr := e.AppendJSON(nil)
		if (werr != nil) != (gerr != nil) {
			t.Fatalf("case %d: errors differ: goccy %v, AppendJSON %v", i, werr, gerr)
		}
		if werr == nil && !bytes.Equal(got, want) {
			t.Fatalf("case %d:\n got %s\nwant %s", i, got, want)
		}
	}
}

// TestDecodeStoredMatchesGoccy: the fast decoder gives what goccy's
// Unmarshal gives, on stored bytes and on variations of them.
func TestDecodeStoredMatchesGoccy(t *testing.T) {
	for i, e := range codecCases(t) {
		enc, err := gojson.Marshal(e)
		if err != nil {
			continue
		}
		checkDecode(t, i, enc)
	}
	for i, s := range []string{
		`{}`, ` { "id" : "x" , "type":"a.b" } `, `{"ID":"x"}`, `{"id":null}`, `{"id":"x","extra":1}`,
		`{"category":"nope"}`, `{"category":""}`, `{"severity":"bad"}`, `{"severity":""}`, `{"severity":"high"}`,
		`{"time":"2026-02-30T00:00:00Z"}`, `{"time":"2026-11-23T03:19:32.1234567891Z"}`, `{"time":"2026-11-23T03:19:32+01:00"}`,
		`{"time":"2024-02-29T23:59:59.5Z"}`, `{"seq":-1}`, `{"seq":12}`, `{"confidence":"1"}`, `{"confidence":1e400}`,
		`{"confidence":.5}`, `{"tags":[]}`, `{"tags":["a", "b\"c"]}`, `{"tags":"x"}`, `{"data":"str"}`, `{"data":{"a":[1,{"b":"}"}]}}`,
		`{"data":{"a":1}`, `{"id":"x"} trailing`, `{"id":"x",}`, `{"id":"\u0041\ud83d\ude00"}`, `{"message":"\x01"}`,
	} {
		checkDecode(t, 10000+i, []byte(s))
	}
}

func checkDecode(t *testing.T, i int, b []byte) {
	t.Helper()
	var want event.Event
	werr := gojson.Unmarshal(b, &want)
	got, gerr := event.DecodeStored(append([]byte(nil), b...))
	if (werr != nil) != (gerr != nil) {
		t.Fatalf("case %d %s: errors differ: goccy %v, DecodeStored %v", i, b, werr, gerr)
	}
	if werr != nil {
		return
	}
	if !reflect.DeepEqual(got.Clone(), want.Clone()) {
		t.Fatalf("case %d %s:\n got %+v\nwant %+v", i, b, got.Clone(), want.Clone())
	}
	owned, err := event.DecodeStoredOwned(append([]byte(nil), b...))
	if err != nil || !reflect.DeepEqual(owned.Clone(), want.Clone()) {
		t.Fatalf("case %d %s: DecodeStoredOwned gave %+v, %v; want %+v", i, b, owned, err, want.Clone())
	}
}

// TestDecodeStoredListsAreSeparate: the string lists of one event share one
// backing array, so each must be capped: appending to one list must not
// overwrite the next.
func TestDecodeStoredListsAreSeparate(t *testing.T) {
	b := []byte(`{"mitre_tactics":["TA0001"],"mitre_techniques":["T1110"],"tags":["a","b"]}`)
	for name, decode := range map[string]func([]byte) (*event.Event, error){"DecodeStored": event.DecodeStored, "DecodeStoredOwned": event.DecodeStoredOwned} {
		e, err := decode(append([]byte(nil), b...))
		if err != nil {
			t.Fatal(err)
		}
		_ = append(e.MitreTactics, "overwritten")
		_ = append(e.MitreTechniques, "overwritten")
		if e.MitreTechniques[0] != "T1110" || e.Tags[0] != "a" {
			t.Fatalf("%s: an append to one list changed another: techniques %v, tags %v", name, e.MitreTechniques, e.Tags)
		}
	}
}

func FuzzDecodeStored(f *testing.F) {
	for _, e := range codecCases(f)[:8] {
		enc, _ := e.AppendJSON(nil)
		f.Add(enc)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		checkDecode(t, 0, b)
	})
}
