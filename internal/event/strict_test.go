package event_test

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/vigil-sec/vigil/internal/event"
)

// decodeProblem decodes body as JSON and returns the first problem, or
// fails the test if the body is accepted.
func decodeProblem(t *testing.T, body, contentType string) event.Problem {
	t.Helper()
	evs, err := event.Decode([]byte(body), contentType, event.DefaultLimits())
	if err == nil {
		t.Fatalf("accepted %q as %+v", body, evs[0])
	}
	var be *event.BatchError
	if !errors.As(err, &be) || len(be.Problems) == 0 {
		t.Fatalf("error without problems: %v", err)
	}
	return be.Problems[0]
}

// TestStrictRejects: what two parsers could read differently is refused,
// naming the field (issue 8, item 11).
func TestStrictRejects(t *testing.T) {
	many := func(dupAt int) string { // an object of 40 keys, k<dupAt> twice
		var b strings.Builder
		for i := 0; i < 40; i++ {
			fmt.Fprintf(&b, `"k%d":%d,`, i, i)
		}
		fmt.Fprintf(&b, `"k%d":0`, dupAt)
		return `{"type":"audit.x","data":{` + b.String() + `}}`
	}
	for _, c := range []struct {
		name, body, field, reason string
	}{
		{"duplicate type", `{"type":"audit.x","type":"authentication.login"}`, "type", `duplicate key "type"`},
		{"duplicate by escape", `{"type":"audit.x","\u0074ype":"authentication.login"}`, "type", `duplicate key "type"`},
		{"duplicate in data", `{"type":"audit.x","data":{"a":{"b":1,"b":2}}}`, "data.a.b", `duplicate key "b"`},
		{"duplicate in an array", `{"type":"audit.x","data":{"l":[{"x":1},{"x":1,"x":2}]}}`, "data.l[1].x", `duplicate key "x"`},
		{"duplicate among many keys", many(7), "data.k7", `duplicate key "k7"`},
		{"duplicate data", `{"type":"audit.x","data":{"a":1},"data":{"a":2}}`, "data", `duplicate key "data"`},
		{"field in another case", `{"type":"audit.x","Type":"authentication.login"}`, "Type", "case-sensitive"},
		{"invalid UTF-8 at top level", "{\"type\":\"audit.x\",\"user\":\"al\xffce\"}", "user", "not valid UTF-8"},
		{"invalid UTF-8 in data", "{\"type\":\"audit.x\",\"data\":{\"n\":{\"note\":\"\xc3\x28\"}}}", "data.n.note", "not valid UTF-8"},
		{"invalid UTF-8 in a data key", "{\"type\":\"audit.x\",\"data\":{\"k\xfe\":1}}", "data", "object key: not valid UTF-8"},
		{"UTF-8 encoded surrogate", "{\"type\":\"audit.x\",\"message\":\"\xed\xa0\x80\"}", "message", "not valid UTF-8"},
		{"lone high surrogate", `{"type":"audit.x","message":"a\ud800b"}`, "message", "unpaired UTF-16 surrogate"},
		{"lone low surrogate", `{"type":"audit.x","data":{"x":["\udc00"]}}`, "data.x[0]", "unpaired UTF-16 surrogate"},
		{"absurd nesting", `{"type":"audit.x","data":` + strings.Repeat(`[`, 600) + strings.Repeat(`]`, 600) + `}`, "data", "nested deeper than 512"},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := decodeProblem(t, c.body, "application/json")
			if p.Field != c.field || !strings.Contains(p.Reason, c.reason) {
				t.Errorf("problem %+v, want field %q and a reason with %q", p, c.field, c.reason)
			}
		})
	}
}

// TestStrictAccepts: strictness costs nothing to well-formed events.
func TestStrictAccepts(t *testing.T) {
	var wide strings.Builder
	for i := 0; i < 100; i++ {
		fmt.Fprintf(&wide, `"k%d":%d,`, i, i)
	}
	for _, body := range []string{
		`{"type":"audit.x","data":{"a":{"x":1},"b":{"x":2},"x":3,"l":[{"x":1},{"x":1}]}}`,
		`{"type":"audit.x","user":"héllo 日本 🙂","data":{"emoji":"\ud83d\ude00","esc":"\n\"\\\/"}}`,
		`{"type":"audit.x","data":{` + wide.String() + `"last":true}}`,
		` { "type" : "audit.x" , "data" : { } , "tags" : [ ] } `,
		`{"type":"audit.x","confidence":0.5,"risk_score":1e1,"data":{"n":-1.5E-3,"t":true,"f":false,"z":null}}`,
	} {
		evs, err := event.Decode([]byte(body), "application/json", event.DefaultLimits())
		if err != nil || len(evs) != 1 {
			t.Errorf("refused %s: %v", body, err)
		}
	}
	// The same key in separate events of a batch is fine; a duplicate in
	// one of them names that event.
	if _, err := event.Decode([]byte("{\"type\":\"a.b\"}\n{\"type\":\"a.b\"}"), "application/x-ndjson", event.DefaultLimits()); err != nil {
		t.Errorf("NDJSON batch refused: %v", err)
	}
	p := decodeProblem(t, `[{"type":"a.b"},{"type":"a.b","data":{"x":1,"x":1}}]`, "")
	if p.Index != 1 || p.Field != "data.x" {
		t.Errorf("problem %+v, want event 1 field data.x", p)
	}
}

// TestIngestContentType: JSON and NDJSON (or no type) are decoded; any
// other type is refused, saying which are accepted.
func TestIngestContentType(t *testing.T) {
	body := []byte(`{"type":"audit.x"}`)
	for _, ct := range []string{"", "application/json", "application/json; charset=utf-8", "Application/JSON; Charset=UTF-8",
		"application/x-ndjson", "application/ndjson", "application/jsonl"} {
		if _, err := event.Decode(body, ct, event.DefaultLimits()); err != nil {
			t.Errorf("Content-Type %q refused: %v", ct, err)
		}
	}
	for _, ct := range []string{"text/plain", "application/x-www-form-urlencoded", "application/xml", "multipart/form-data; boundary=x",
		"application/json; charset=latin1", "application/json; foo=bar", "json", ";;"} {
		_, err := event.Decode(body, ct, event.DefaultLimits())
		var be *event.BatchError
		if !errors.As(err, &be) || !be.Unsupported || !strings.Contains(err.Error(), "Content-Type") {
			t.Errorf("Content-Type %q: %v, want an unsupported-type error", ct, err)
			continue
		}
		if !strings.Contains(err.Error(), "charset") && !strings.Contains(err.Error(), "not a media type") && !strings.Contains(err.Error(), "application/x-ndjson") {
			t.Errorf("Content-Type %q: %v does not list the accepted types", ct, err)
		}
	}
}

// TestEventFieldBits: the strict scanner knows every event field by its
// exact name, each with its own bit, and nothing else.
func TestEventFieldBits(t *testing.T) {
	seen := uint64(0)
	typ := reflect.TypeOf(event.Event{})
	n := 0
	for i := 0; i < typ.NumField(); i++ {
		name, _, _ := strings.Cut(typ.Field(i).Tag.Get("json"), ",")
		if name == "" || name == "-" {
			continue
		}
		n++
		bit := event.EventFieldBit([]byte(name))
		if bit == 0 || seen&bit != 0 {
			t.Errorf("field %q: bit %x (seen %x)", name, bit, seen)
		}
		seen |= bit
		if event.EventFieldBit([]byte(strings.ToUpper(name))) != 0 {
			t.Errorf("field %q known in upper case", name)
		}
	}
	if n < 20 {
		t.Fatalf("only %d event fields found", n)
	}
	for _, k := range []string{"", "x", "data.x", "typ", "types"} {
		if event.EventFieldBit([]byte(k)) != 0 {
			t.Errorf("%q is known as an event field", k)
		}
	}
}
