package client

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/filter"
)

// sameWireShape checks that two struct types have the same exported
// fields in the same order with the same JSON tags.
func sameWireShape(t *testing.T, ours, server reflect.Type) {
	t.Helper()
	var a, b []string
	for i := 0; i < ours.NumField(); i++ {
		a = append(a, ours.Field(i).Name+" "+ours.Field(i).Tag.Get("json"))
	}
	for i := 0; i < server.NumField(); i++ {
		if f := server.Field(i); f.IsExported() {
			b = append(b, f.Name+" "+f.Tag.Get("json"))
		}
	}
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("%s and the server's %s differ on the wire:\n ours   %q\n server %q", ours, server, a, b)
	}
}

// TestWireMatchesServer: the client's own types carry exactly the fields
// and JSON names of the server's (the wire format is the contract), and an
// event the server encodes decodes into client.Event and encodes back to
// the same bytes.
func TestWireMatchesServer(t *testing.T) {
	sameWireShape(t, reflect.TypeOf(Event{}), reflect.TypeOf(event.Event{}))
	sameWireShape(t, reflect.TypeOf(Filter{}), reflect.TypeOf(filter.Filter{}))
	sameWireShape(t, reflect.TypeOf(Problem{}), reflect.TypeOf(event.Problem{}))

	conf := 0.8
	se := &event.Event{ID: "e1", Seq: 7, Time: time.Date(2026, 11, 30, 1, 2, 3, 4, time.UTC), ReceivedAt: time.Date(2026, 11, 30, 1, 2, 4, 0, time.UTC),
		Type: "auth.login", Category: event.CategoryAuthentication, Severity: event.SeverityCritical, Source: "idp", Tenant: "acme",
		User: "alice", SrcIP: "203.0.113.7", Confidence: &conf, MitreTactics: []string{"TA0006"}, Tags: []string{"x"},
		Data: json.RawMessage(`{"a":1}`), Chain: "n1", PrevHash: "p", Hash: "h"}
	wire := se.JSON() // what a subscriber receives
	var ce Event
	if err := json.Unmarshal(wire, &ce); err != nil {
		t.Fatal(err)
	}
	if ce.Severity != SeverityCritical || ce.Category != "authentication" || *ce.Confidence != 0.8 || ce.Seq != 7 {
		t.Fatalf("decoded %+v", ce)
	}
	again, err := json.Marshal(&ce)
	if err != nil {
		t.Fatal(err)
	}
	var a, b map[string]any
	_ = json.Unmarshal(wire, &a)
	_ = json.Unmarshal(again, &b)
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("re-encoded differently:\n server %s\n client %s", wire, again)
	}
}

func TestSeverityNames(t *testing.T) {
	for s := SeverityInfo; s <= SeverityCritical; s++ {
		if s.String() != event.Severity(s).String() {
			t.Fatalf("severity %d: %s, server says %s", s, s, event.Severity(s))
		}
		b, _ := json.Marshal(s)
		var back Severity
		if err := json.Unmarshal(b, &back); err != nil || back != s {
			t.Fatalf("round trip of %s: %v %v", s, back, err)
		}
	}
	var s Severity
	if err := json.Unmarshal([]byte(`"urgent"`), &s); err == nil {
		t.Fatal("unknown severity accepted")
	}
	if _, err := json.Marshal(Severity(9)); err == nil {
		t.Fatal("out-of-range severity encoded")
	}
}
