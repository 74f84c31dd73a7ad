package sigma

import (
	"testing"

	"github.com/vigil-sec/vigil/internal/event"
)

// stringField reads the event's string fields without event.Field's
// boxing; it must say exactly what event.Field says, for set and empty
// fields, and leave every other name to event.Field.
func TestStringFieldAgreesWithField(t *testing.T) {
	full := &event.Event{
		Type: "auth.login", Category: "auth", Severity: 3, Source: "web-1", Tenant: "t1",
		Message: "hello", User: "alice", UserID: "u1", SrcIP: "10.0.0.1",
		Resource: "/x", Action: "login", Outcome: "failure",
	}
	names := []string{"id", "seq", "time", "received_at", "type", "category", "severity",
		"source", "tenant", "message", "user", "user_id", "src_ip", "resource", "action",
		"outcome", "confidence", "risk_score", "mitre_tactics", "mitre_techniques", "tags",
		"data", "data.x", "nosuch"}
	for _, e := range []*event.Event{full, {}} {
		for _, name := range names {
			s, ok, known := stringField(e, name)
			v, wok := e.Field(name)
			ws, isStr := v.(string)
			if known != isStr {
				t.Errorf("%s: stringField known %v, event.Field returns %T", name, known, v)
				continue
			}
			if known && (s != ws || ok != wok) {
				t.Errorf("%s: stringField (%q, %v), event.Field (%q, %v)", name, s, ok, ws, wok)
			}
		}
	}
}
