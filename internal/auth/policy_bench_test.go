package auth

import (
	"encoding/json"
	"testing"

	"github.com/vigil-sec/vigil/internal/event"
)

// The policy runs on every delivery: the unmasked path must stay a few
// nanoseconds; the masked path costs a copy and a re-encode of data.
func benchEvent() *event.Event {
	return &event.Event{ID: "e1", Seq: 7, Type: "audit.query", Category: event.CategoryAudit, Tenant: "acme",
		User: "alice@example.com", SrcIP: "203.0.113.77", Message: "login from 198.51.100.23",
		Data: json.RawMessage(`{"query":"SELECT * FROM accounts WHERE owner='alice@example.com'","rows":12}`)}
}

func BenchmarkPolicyVisibleUnmasked(b *testing.B) {
	pol, e := NewPolicy(nil), benchEvent()
	p := &Principal{ID: "a", Role: RoleAnalyst, Tenant: "acme"}
	pol.SetRevocationCheck(func(*Principal) bool { return false })
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := pol.Visible(p, e); !ok {
			b.Fatal("refused")
		}
	}
}

func BenchmarkPolicyVisibleMasked(b *testing.B) {
	pol := NewPolicy(nil)
	p := &Principal{ID: "v", Role: RoleViewer, Tenant: "acme"}
	b.ReportAllocs()
	for b.Loop() {
		v, ok := pol.Visible(p, benchEvent()) // a new event each time: no sharing
		if !ok {
			b.Fatal("refused")
		}
		_ = v.JSON()
	}
}

// BenchmarkPolicyFanOutMasked: one event offered to 100 viewers in turn, as
// the hub does; the masked copy is made once and shared.
func BenchmarkPolicyFanOutMasked(b *testing.B) {
	pol := NewPolicy(nil)
	p := &Principal{ID: "v", Role: RoleViewer, Tenant: "acme"}
	b.ReportAllocs()
	for b.Loop() {
		e := benchEvent()
		for range 100 {
			if _, ok := pol.Visible(p, e); !ok {
				b.Fatal("refused")
			}
		}
	}
}
