package dbsec_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/transport/compat/dbsec"
)

func mux(e *env) http.Handler {
	m := http.NewServeMux()
	dbsec.Register(m, e.Deps)
	return m
}

func ev(typ, user, action, outcome string, sev event.Severity, data string) *event.Event {
	e := &event.Event{Type: typ, User: user, Action: action, Outcome: outcome, Severity: sev}
	if data != "" {
		e.Data = json.RawMessage(data)
	}
	return e
}

// sync waits until the connection has run Open (and so subscribed): the
// pong is answered after it.
func syncConn(c *wsClient) {
	c.T.Helper()
	c.Send(`{"type":"ping"}`)
	expectType(c.T, c.Read(), "pong")
}

func expectType(t testing.TB, m map[string]any, typ string) {
	t.Helper()
	if m["type"] != typ {
		t.Fatalf("want type %q, got %v", typ, m)
	}
}

func TestAuthenticationEndpoint(t *testing.T) {
	e := newEnv(t)
	srv := e.Serve(mux(e))
	c := dial(t, srv, "/api/v1/ws/security/authentication?token="+testToken)
	syncConn(c)

	// Connect, receive: only the endpoint's category, flattened.
	e.Publish(
		ev("audit.query", "alice@example.com", "select", "success", event.SeverityInfo, ""),
		ev("authentication.login", "alice@example.com", "login", "failure", event.SeverityMedium, `{"mfa_method":"totp"}`),
	)
	m := c.Read()
	if m["event_type"] != "Authentication" || m["action"] != "login" || m["username"] != "alice@example.com" ||
		m["success"] != false || m["timestamp"] == nil || m["severity"] != "warning" || m["mfa_method"] != "totp" {
		t.Fatalf("unexpected message %v", m)
	}

	// Filter: configuration replaces the previous one.
	c.Send(`{"username_filter":"bob","event_types":["LOGIN"]}`)
	syncConn(c) // the configuration is in force once the pong arrives
	e.Publish(
		ev("authentication.login", "alice@example.com", "login", "success", event.SeverityInfo, ""),
		ev("authentication.logout", "bob", "logout", "success", event.SeverityInfo, ""),
		ev("authentication.login", "bob", "login", "success", event.SeverityInfo, ""),
	)
	m = c.Read()
	if m["username"] != "bob" || m["action"] != "login" || m["success"] != true {
		t.Fatalf("filter let through %v", m)
	}
	c.Send(`{"severity_filter":"critical"}`)
	syncConn(c) // the configuration is in force once the pong arrives
	e.Publish(
		ev("authentication.login", "bob", "login", "failure", event.SeverityHigh, ""),
		ev("authentication.login", "carol", "login", "failure", event.SeverityCritical, ""),
	)
	if m = c.Read(); m["username"] != "carol" || m["severity"] != "critical" {
		t.Fatalf("severity_filter let through %v", m)
	}

	// Bad messages: an error each, and the connection stays usable.
	for _, bad := range []string{`not json`, `{"bogus_filter":1}`, `{"severity_filter":"loud"}`, `{"source_ip_filter":"300.1.1.1"}`, `{"type":"subscribe"}`, `{"min_threat_level":"extreme"}`} {
		c.Send(bad)
		m := c.Read()
		expectType(t, m, "error")
		if s, _ := m["message"].(string); s == "" {
			t.Fatalf("error without message for %s: %v", bad, m)
		}
	}
	c.Send(`{"type":"ping"}`)
	expectType(t, c.Read(), "pong")
	e.Publish(ev("authentication.login", "dave", "login", "failure", event.SeverityCritical, ""))
	if m = c.Read(); m["username"] != "dave" {
		t.Fatalf("after errors the previous configuration must still apply, got %v", m)
	}
}

func TestEventsEndpointFilters(t *testing.T) {
	e := newEnv(t)
	srv := e.Serve(mux(e))
	c := dial(t, srv, "/api/v1/ws/security/events?token="+testToken)
	syncConn(c)

	// All eight categories, with their PascalCase names; others are not sent.
	e.Publish(
		&event.Event{Type: "security.fraud.alert", Severity: event.SeverityHigh},
		&event.Event{Type: "authorization.grant", User: "u", Action: "grant", Resource: "table:payments"},
		&event.Event{Type: "memory.buffer_overflow", Action: "buffer_overflow"},
	)
	if m := c.Read(); m["event_type"] != "Authorization" || m["resource"] != "table:payments" {
		t.Fatalf("got %v", m)
	}
	if m := c.Read(); m["event_type"] != "MemoryHardening" {
		t.Fatalf("got %v", m)
	}

	cases := []struct {
		name, config string
		skip, want   *event.Event
	}{
		{"blocked_only", `{"blocked_only":true}`,
			&event.Event{Type: "rate_limit.exceeded", SrcIP: "198.51.100.1", Data: json.RawMessage(`{"blocked":false}`)},
			&event.Event{Type: "rate_limit.exceeded", SrcIP: "198.51.100.2", Data: json.RawMessage(`{"blocked":true}`)}},
		{"source_ip_filter", `{"source_ip_filter":"203.0.113.0/24"}`,
			&event.Event{Type: "rate_limit.exceeded", SrcIP: "198.51.100.1"},
			&event.Event{Type: "rate_limit.exceeded", SrcIP: "203.0.113.9"}},
		{"min_threat_level", `{"min_threat_level":"high"}`,
			&event.Event{Type: "insider_threat.alert", UserID: "u1", Severity: event.SeverityCritical, Data: json.RawMessage(`{"threat_level":"medium"}`)},
			&event.Event{Type: "insider_threat.alert", UserID: "u2", Data: json.RawMessage(`{"threat_level":"HIGH"}`)}},
		{"user_id_filter", `{"user_id_filter":"u-42"}`,
			&event.Event{Type: "insider_threat.alert", UserID: "u-41"},
			&event.Event{Type: "insider_threat.alert", UserID: "u-42"}},
		{"key_id_filter", `{"key_id_filter":"k1"}`,
			&event.Event{Type: "encryption.key_rotation_started", Action: "key_rotation_started", Data: json.RawMessage(`{"key_id":"k2"}`)},
			&event.Event{Type: "encryption.key_rotation_started", Action: "key_rotation_started", Data: json.RawMessage(`{"key_id":"k1"}`)}},
		{"circuit_id_filter", `{"circuit_id_filter":"db-primary"}`,
			&event.Event{Type: "circuit_breaker.state_change", Data: json.RawMessage(`{"circuit_id":"cache","state":"open"}`)},
			&event.Event{Type: "circuit_breaker.state_change", Resource: "db-primary", Data: json.RawMessage(`{"state":"open"}`)}},
		{"resource_filter", `{"resource_filter":"table:users"}`,
			&event.Event{Type: "audit.query", Resource: "table:orders"},
			&event.Event{Type: "audit.query", Resource: "table:users"}},
		{"severity_filter_info", `{"severity_filter":"info"}`,
			&event.Event{Type: "audit.query", Severity: event.SeverityMedium},
			&event.Event{Type: "audit.query", Severity: event.SeverityLow, Message: "low is audit info"}},
	}
	for _, tc := range cases {
		c.Send(tc.config)
		syncConn(c) // an error instead of the pong fails here: the configuration was refused
		e.Publish(tc.skip, tc.want)
		m := c.Read()
		if m["id"] != tc.want.ID {
			t.Fatalf("%s: want event %s, got %v", tc.name, tc.want.ID, m)
		}
	}
}

func TestEndpointCategories(t *testing.T) {
	e := newEnv(t)
	srv := e.Serve(mux(e))
	for _, ep := range dbsec.Endpoints() {
		if len(ep.Categories) == 0 || !strings.HasPrefix(ep.Path, "/api/v1/ws/security/") {
			t.Fatalf("bad endpoint %+v", ep)
		}
	}
	paths := map[string]string{
		"/api/v1/ws/security/audit": "audit.query", "/api/v1/ws/security/threats": "insider_threat.alert",
		"/api/v1/ws/security/encryption": "encryption.key_generated", "/api/v1/ws/security/rate-limits": "rate_limit.exceeded",
	}
	names := map[string]string{"audit.query": "AuditLog", "insider_threat.alert": "InsiderThreat",
		"encryption.key_generated": "Encryption", "rate_limit.exceeded": "RateLimit"}
	clients := map[string]*wsClient{}
	for p := range paths {
		clients[p] = dial(t, srv, p+"?token="+testToken)
	}
	// Make sure every connection is subscribed before publishing.
	for _, c := range clients {
		c.Send(`{"type":"ping"}`)
		expectType(t, c.Read(), "pong")
	}
	var evs []*event.Event
	for _, typ := range []string{"audit.query", "insider_threat.alert", "encryption.key_generated", "rate_limit.exceeded"} {
		evs = append(evs, &event.Event{Type: typ})
	}
	e.Publish(evs...)
	for p, c := range clients {
		m := c.Read()
		if m["type"] != paths[p] || m["event_type"] != names[paths[p]] {
			t.Fatalf("%s got %v", p, m)
		}
	}
}

func TestUnauthorized(t *testing.T) {
	e := newEnv(t)
	srv := e.Serve(mux(e))
	resp, err := http.Get(srv.URL + "/api/v1/ws/security/events")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("want 401, got %d", resp.StatusCode)
	}
}
