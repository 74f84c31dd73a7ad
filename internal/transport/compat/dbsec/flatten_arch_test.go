package dbsec

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/event"
)

// flattenBefore is Flatten as it was before the dialects shared
// event.FlattenInto (issue 14), kept to prove the output unchanged.
func flattenBefore(e *event.Event) map[string]any {
	m := map[string]any{
		"event_type": EventType(e.Category), "action": strings.ToLower(e.Action),
		"id": e.ID, "event_id": e.ID, "seq": e.Seq, "type": e.Type,
		"category": string(e.Category), "severity": AuditSeverity(e.Severity),
		"vigil_severity": e.Severity.String(), "tenant": e.Tenant,
		"timestamp": e.Time.UTC().Format(time.RFC3339Nano),
	}
	put := func(k, v string) {
		if v != "" {
			m[k] = v
		}
	}
	put("username", e.User)
	put("user_id", e.UserID)
	put("source_ip", e.SrcIP)
	put("resource", e.Resource)
	put("source", e.Source)
	put("message", e.Message)
	put("outcome", e.Outcome)
	switch e.Outcome {
	case "success":
		m["success"] = true
	case "failure":
		m["success"] = false
	}
	if e.Confidence != nil {
		m["confidence"] = *e.Confidence
	}
	if e.RiskScore != nil {
		m["risk_score"] = *e.RiskScore
	}
	if len(e.MitreTactics) > 0 {
		m["mitre_tactics"] = e.MitreTactics
	}
	if len(e.MitreTechniques) > 0 {
		m["mitre_techniques"] = e.MitreTechniques
	}
	for k, v := range e.DataMap() {
		if _, taken := m[k]; !taken && !reserved[k] {
			m[k] = v
		}
	}
	return m
}

// TestFlattenUnchanged: Flatten over the shared event.FlattenInto gives
// exactly what the dialect's own copy gave, for events with every field,
// none, and data keys that collide with field and reserved names.
func TestFlattenUnchanged(t *testing.T) {
	conf, risk := 0.7, 42.0
	full := &event.Event{ID: "e1", Seq: 9, Time: time.Date(2026, 11, 30, 1, 2, 3, 0, time.UTC), Type: "auth.login.failure",
		Category: event.CategoryAuthentication, Severity: event.SeverityHigh, Source: "idp", Tenant: "acme", Message: "m",
		User: "alice", UserID: "u1", SrcIP: "203.0.113.7", Resource: "db", Action: "Login", Outcome: "failure",
		Confidence: &conf, RiskScore: &risk, MitreTactics: []string{"TA0006"}, MitreTechniques: []string{"T1110"}, Tags: []string{"t"},
		Data: json.RawMessage(`{"user":"mallory","username":"eve","action":"x","severity":"low","extra":{"k":[1,2]},"source_ip":"10.0.0.1","tags":["d"],"success":true}`)}
	cases := []*event.Event{
		full,
		{ID: "e2", Type: "system.heartbeat", Category: event.CategorySystem},
		{ID: "e3", Type: "audit.query", Category: event.CategoryAudit, Outcome: "success", Data: json.RawMessage(`{"query":"SELECT 1","id":"spoof","seq":1}`)},
	}
	for _, e := range cases {
		got, _ := json.Marshal(Flatten(e))
		want, _ := json.Marshal(flattenBefore(e))
		if string(got) != string(want) {
			t.Errorf("%s:\n got %s\nwant %s", e.ID, got, want)
		}
	}
	_ = strings.ToLower
}
