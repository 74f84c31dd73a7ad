package phase8_test

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/stats"
	"github.com/vigil-sec/vigil/internal/transport/compat/phase8"
)

func setup(t *testing.T) (*env, *wsClient, string) {
	e := newEnv(t)
	st := stats.New(nil)
	go func() { _ = st.Run(e.Ctx, e.Hub) }()
	// Wait for the stats client's subscription so no event precedes it.
	for deadline := time.Now().Add(5 * time.Second); e.Hub.Stats().Subscriptions < 1; time.Sleep(2 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("stats did not subscribe")
		}
	}
	rep := &stats.Reporter{Stats: st, Hub: e.Hub}
	m := http.NewServeMux()
	m.Handle("GET /ws/phase8/security", phase8.Handler(phase8.Deps{WS: e.Deps, Status: rep.Status}))
	m.Handle("GET /api/v1/schema", auth.Require(e.Deps.Auth, phase8.SchemaHandler()))
	m.Handle("GET /api/v1/status", auth.Require(e.Deps.Auth, rep))
	srv := e.Serve(m)
	c := dial(t, srv, "/ws/phase8/security?token="+testToken)
	return e, c, srv.URL
}

func typed(typ string, sev event.Severity, data string) *event.Event {
	e := &event.Event{Type: typ, Severity: sev, Source: "phase8-engine"}
	if data != "" {
		e.Data = json.RawMessage(data)
	}
	return e
}

func want(t *testing.T, m map[string]any, typ string) map[string]any {
	t.Helper()
	if m["type"] != typ {
		t.Fatalf("want %q, got %v", typ, m)
	}
	return m
}

func TestPhase8Session(t *testing.T) {
	e, c, _ := setup(t)

	// Connect: connection_established with the five types.
	m := want(t, c.Read(), "connection_established")
	if m["client_id"] == "" || len(m["available_event_types"].([]any)) != 5 || m["timestamp"] == nil {
		t.Fatalf("bad greeting %v", m)
	}

	// Before subscribing: all five types, nothing else; data flattened.
	e.Publish(typed("authentication.login", event.SeverityInfo, ""))
	var evs []*event.Event
	for _, typ := range phase8.EventTypes() {
		evs = append(evs, typed(typ, event.SeverityHigh, ""))
	}
	evs[2].Data = json.RawMessage(`{"fraud_details":{"transaction_id":"tx-1","fraud_score":0.97}}`)
	e.Publish(evs...)
	for i, typ := range phase8.EventTypes() {
		m := want(t, c.Read(), "security_event")
		data := m["data"].(map[string]any)
		if data["event_type"] != typ || data["event_id"] != evs[i].ID {
			t.Fatalf("want %s, got %v", typ, m)
		}
		if typ == phase8.TypeFraudAlert {
			fd, _ := data["fraud_details"].(map[string]any)
			if fd["transaction_id"] != "tx-1" {
				t.Fatalf("fraud_details not flattened in: %v", data)
			}
		}
	}

	// Subscribe narrows to the listed types.
	c.Send(`{"action":"subscribe","event_types":["security.fraud.alert"]}`)
	m = want(t, c.Read(), "subscription_confirmed")
	if got := m["subscribed_event_types"].([]any); len(got) != 1 || got[0] != "security.fraud.alert" {
		t.Fatalf("subscribed %v", m)
	}
	e.Publish(typed(phase8.TypeThreatDetected, event.SeverityHigh, ""), typed(phase8.TypeFraudAlert, event.SeverityLow, ""))
	if m = want(t, c.Read(), "security_event"); m["data"].(map[string]any)["event_type"] != phase8.TypeFraudAlert {
		t.Fatalf("got %v", m)
	}
	c.Send(`{"action":"subscribe","event_types":["security.response.executed"]}`)
	want(t, c.Read(), "subscription_confirmed")

	// filter_events narrows by severity and confidence.
	c.Send(`{"action":"filter_events","filter_criteria":{"min_severity":"medium","min_confidence":0.8}}`)
	want(t, c.Read(), "filter_applied")
	low := typed(phase8.TypeFraudAlert, event.SeverityLow, "")
	low.Confidence = f64(0.9)
	unsure := typed(phase8.TypeFraudAlert, event.SeverityHigh, "")
	unsure.Confidence = f64(0.5)
	good := typed(phase8.TypeResponseExecuted, event.SeverityHigh, `{"response_details":{"response_id":"r1","status":"success"}}`)
	good.Confidence = f64(0.95)
	e.Publish(low, unsure, good)
	m = want(t, c.Read(), "security_event")
	if d := m["data"].(map[string]any); d["event_id"] != good.ID || d["response_details"] == nil {
		t.Fatalf("filter let through %v", m)
	}

	// Unsubscribe.
	c.Send(`{"action":"unsubscribe","event_types":["security.response.executed"]}`)
	m = want(t, c.Read(), "unsubscription_confirmed")
	if got := m["subscribed_event_types"].([]any); len(got) != 1 {
		t.Fatalf("after unsubscribe %v", m)
	}

	// Bad messages get errors; the connection stays usable.
	for _, bad := range []string{`{`, `{"action":"dance"}`, `{"action":"subscribe","event_types":["security.nope"]}`,
		`{"action":"filter_events","filter_criteria":{"min_severity":"hgih"}}`, `{"nope":1}`} {
		c.Send(bad)
		want(t, c.Read(), "error")
	}
	c.Send(`{"action":"ping"}`)
	want(t, c.Read(), "pong")

	// Schema and status.
	c.Send(`{"action":"get_event_schema"}`)
	m = want(t, c.Read(), "event_schema")
	if len(m["data"].(map[string]any)) != 5 {
		t.Fatalf("schema %v", m)
	}
	c.Send(`{"action":"get_security_status"}`)
	m = want(t, c.Read(), "security_status")
	d := m["data"].(map[string]any)
	if _, ok := d["events_per_type"]; !ok || d["components"] == nil {
		t.Fatalf("status %v", m)
	}
}

func TestPhase8Dedup(t *testing.T) {
	e, c, _ := setup(t)
	want(t, c.Read(), "connection_established")
	// Switching subscriptions overlaps two hub subscriptions; a producer
	// retry of the same id is acknowledged but not stored twice. Either
	// way one connection sees an event once.
	c.Send(`{"action":"subscribe","event_types":["security.fraud.alert"]}`)
	want(t, c.Read(), "subscription_confirmed")
	first := typed(phase8.TypeFraudAlert, event.SeverityHigh, "")
	first.ID = "fraud-1"
	e.Publish(first)
	again := typed(phase8.TypeFraudAlert, event.SeverityHigh, "")
	again.ID = "fraud-1"
	e.Publish(again)
	marker := typed(phase8.TypeFraudAlert, event.SeverityHigh, "")
	e.Publish(marker)
	if m := want(t, c.Read(), "security_event"); m["data"].(map[string]any)["event_id"] != "fraud-1" {
		t.Fatalf("got %v", m)
	}
	if m := want(t, c.Read(), "security_event"); m["data"].(map[string]any)["event_id"] != marker.ID {
		t.Fatalf("duplicate delivered: %v", m)
	}
}

func TestRESTStatusAndSchema(t *testing.T) {
	e, c, url := setup(t)
	want(t, c.Read(), "connection_established")
	e.Publish(typed(phase8.TypeFraudAlert, event.SeverityHigh, ""))
	want(t, c.Read(), "security_event")
	get := func(path string) map[string]any {
		req, _ := http.NewRequest("GET", url+path, nil)
		req.Header.Set("Authorization", "Bearer "+testToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s: status %d", path, resp.StatusCode)
		}
		var m map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	schema := get("/api/v1/schema")
	if len(schema["schemas"].(map[string]any)) != 5 {
		t.Fatalf("schema %v", schema)
	}
	// The stats client sees the event asynchronously: poll briefly.
	deadline := time.Now().Add(5 * time.Second)
	for {
		st := get("/api/v1/status")
		per := st["events_per_type"].(map[string]any)
		if w, ok := per[phase8.TypeFraudAlert].(map[string]any); ok && w["last_minute"].(float64) == 1 && w["last_hour"].(float64) == 1 {
			if st["connected_clients"].(float64) < 1 {
				t.Fatalf("status %v", st)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status never counted the event: %v", st)
		}
		time.Sleep(20 * time.Millisecond)
	}
	resp, err := http.Get(url + "/api/v1/status")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("status without token: %d", resp.StatusCode)
	}
}
