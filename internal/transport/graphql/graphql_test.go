package graphql_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/transport/graphql"
)

var tokenParams = map[string]any{"Authorization": "Bearer " + testToken}

func TestQueriesAndMutation(t *testing.T) {
	g := newGQL(t)

	data, errs := g.post(t, `mutation($in: EventInput!) { publishEvent(input: $in) { id seq duplicate } }`,
		map[string]any{"in": map[string]any{"type": "authentication.login", "user": "alice@example.com", "action": "login",
			"outcome": "failure", "severity": "high", "data": map[string]any{"mfa_method": "totp"}}})
	if errs != nil {
		t.Fatalf("publishEvent: %v", errs)
	}
	pub := data["publishEvent"].(map[string]any)
	id := pub["id"].(string)
	if pub["seq"].(float64) < 1 {
		t.Fatalf("publish %v", pub)
	}
	g.Publish(&event.Event{Type: "audit.query", User: "bob"}, &event.Event{Type: "audit.query", User: "carol"})

	// events(filter, limit, after)
	data, errs = g.post(t, `{ events(filter: {categories: ["audit"]}, limit: 10) { events { seq user category } next } }`, nil)
	if errs != nil {
		t.Fatal(errs)
	}
	evs := data["events"].(map[string]any)["events"].([]any)
	if len(evs) != 2 || evs[0].(map[string]any)["user"] != "carol" {
		t.Fatalf("newest-first audit events: %v", evs)
	}
	data, errs = g.post(t, `{ events(limit: 1, after: 0) { events { seq type } next } }`, nil)
	if errs != nil {
		t.Fatal(errs)
	}
	page := data["events"].(map[string]any)
	if len(page["events"].([]any)) != 1 || page["next"] == nil {
		t.Fatalf("ascending page: %v", page)
	}
	after := int(page["next"].(float64))
	data, _ = g.post(t, `query($a: Int) { events(limit: 10, after: $a) { events { seq } } }`, map[string]any{"a": after})
	if got := len(data["events"].(map[string]any)["events"].([]any)); got != 2 {
		t.Fatalf("page after %d has %d events, want 2", after, got)
	}

	// event(id)
	data, _ = g.post(t, `query($id: ID!) { event(id: $id) { id user data severity } }`, map[string]any{"id": id})
	if ev := data["event"].(map[string]any); ev["user"] != "alice@example.com" || ev["data"].(map[string]any)["mfa_method"] != "totp" {
		t.Fatalf("event: %v", ev)
	}
	data, _ = g.post(t, `{ event(id: "nope") { id } }`, nil)
	if data["event"] != nil {
		t.Fatalf("unknown id: %v", data)
	}

	// A bad filter names the field; a bad input names the field.
	_, errs = g.post(t, `{ events(filter: {minSeverity: "hgih"}) { events { id } } }`, nil)
	if errs == nil || !strings.Contains(fmt.Sprint(errs), "min_severity") {
		t.Fatalf("want a min_severity error, got %v", errs)
	}
	_, errs = g.post(t, `mutation { publishEvent(input: {type: "x.y", category: "nope"}) { id } }`, nil)
	if errs == nil || !strings.Contains(fmt.Sprint(errs), "category") {
		t.Fatalf("want a category error, got %v", errs)
	}

	// status: real counts from the stream (the stats client is asynchronous).
	deadline := time.Now().Add(5 * time.Second)
	for {
		data, errs = g.post(t, `{ status { status logHead eventsLastMinute eventsPerType { key lastMinute lastHour } components { name status } openDetections { severity count } } }`, nil)
		if errs != nil {
			t.Fatal(errs)
		}
		st := data["status"].(map[string]any)
		if st["eventsLastMinute"].(float64) == 3 {
			if st["logHead"].(float64) != 3 || len(st["components"].([]any)) < 2 {
				t.Fatalf("status %v", st)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status never counted 3 events: %v", st)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// No detection engine wired: a clear error, not a crash.
	_, errs = g.post(t, `{ rules { id } }`, nil)
	if errs == nil || !strings.Contains(fmt.Sprint(errs), "not available") {
		t.Fatalf("rules without engine: %v", errs)
	}
}

func TestAuthRequired(t *testing.T) {
	g := newGQL(t)
	resp, err := http.Post(g.srv.URL+"/graphql", "application/json", strings.NewReader(`{"query":"{ status { status } }"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("no token: %d", resp.StatusCode)
	}
	if _, err := dialGQL(t, g.srv.URL+"/graphql", protoTransportWS, nil); err == nil {
		t.Fatal("subscription connection without a token was accepted")
	}
	if _, err := dialGQL(t, g.srv.URL+"/graphql", protoTransportWS, map[string]any{"token": "wrong"}); err == nil {
		t.Fatal("subscription connection with a bad token was accepted")
	}
	// ?token= works for browsers, as does connectionParams.
	if _, err := dialGQL(t, g.srv.URL+"/graphql?token="+testToken, protoTransportWS, nil); err != nil {
		t.Fatalf("?token=: %v", err)
	}
	resp, err = http.Get(g.srv.URL + "/graphql/schema.graphql")
	if err != nil {
		t.Fatal(err)
	}
	sdl, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(sdl), "authenticationEvents(filterUsername: String, filterActions: [AuthAction!]): AuthenticationEvent!") ||
		string(sdl) != graphql.Schema {
		t.Fatal("SDL not served")
	}
}

// namedCase subscribes with arguments, publishes an event that the
// arguments exclude and then one they admit: the first result must be the
// admitted one.
type namedCase struct {
	id, query, field string
	skip, want       *event.Event
	check            func(t *testing.T, got map[string]any)
}

func raw(s string) json.RawMessage { return json.RawMessage(s) }

func TestNamedSubscriptionsFilterPerArgument(t *testing.T) {
	g := newGQL(t)
	c, err := dialGQL(t, g.srv.URL+"/graphql", protoTransportWS, tokenParams)
	if err != nil {
		t.Fatal(err)
	}
	cases := []namedCase{
		{"auth-user", `subscription { authenticationEvents(filterUsername: "bob") { username action actionName success } }`, "authenticationEvents",
			&event.Event{Type: "authentication.login", User: "alice", Action: "login", Outcome: "success"},
			&event.Event{Type: "authentication.login", User: "bob", Action: "login", Outcome: "failure"},
			func(t *testing.T, got map[string]any) {
				if got["action"] != "LOGIN_FAILED" || got["success"] != false {
					t.Fatalf("got %v", got)
				}
			}},
		{"auth-actions", `subscription { authenticationEvents(filterActions: [LOGOUT, MFA_VERIFIED]) { action } }`, "authenticationEvents",
			&event.Event{Type: "authentication.login", User: "x", Action: "login", Outcome: "success"},
			&event.Event{Type: "authentication.mfa", User: "x", Action: "mfa_verified"}, nil},
		{"authz-user", `subscription { authorizationEvents(filterUsername: "dan") { username resource action } }`, "authorizationEvents",
			&event.Event{Type: "authorization.grant", User: "eve", Action: "access_granted"},
			&event.Event{Type: "authorization.grant", User: "dan", Action: "access_denied", Resource: "t"}, nil},
		{"authz-resource", `subscription { authorizationEvents(filterResource: "table:payments") { resource granted } }`, "authorizationEvents",
			&event.Event{Type: "authorization.check", Resource: "table:users"},
			&event.Event{Type: "authorization.check", Resource: "table:payments", Outcome: "failure"},
			func(t *testing.T, got map[string]any) {
				if got["granted"] != false {
					t.Fatalf("got %v", got)
				}
			}},
		{"audit-user", `subscription { auditLogStream(filterUsername: "frank") { username severity } }`, "auditLogStream",
			&event.Event{Type: "audit.query", User: "gina"}, &event.Event{Type: "audit.query", User: "frank"}, nil},
		{"audit-severity", `subscription { auditLogStream(filterSeverity: ERROR) { severity } }`, "auditLogStream",
			&event.Event{Type: "audit.query", Severity: event.SeverityCritical}, &event.Event{Type: "audit.query", Severity: event.SeverityHigh},
			func(t *testing.T, got map[string]any) {
				if got["severity"] != "ERROR" {
					t.Fatalf("got %v", got)
				}
			}},
		{"audit-actions", `subscription { auditLogStream(filterActions: ["drop_table"]) { action query } }`, "auditLogStream",
			&event.Event{Type: "audit.query", Action: "select"},
			&event.Event{Type: "audit.query", Action: "drop_table", Data: raw(`{"query":"DROP TABLE t"}`)}, nil},
		{"encryption", `subscription { encryptionEvents(filterActions: [KEY_ROTATION_FAILED]) { action keyId } }`, "encryptionEvents",
			&event.Event{Type: "encryption.key", Action: "key_rotation_started", Data: raw(`{"key_id":"k1"}`)},
			&event.Event{Type: "encryption.key", Action: "key_rotation_failed", Data: raw(`{"key_id":"k1"}`)},
			func(t *testing.T, got map[string]any) {
				if got["keyId"] != "k1" {
					t.Fatalf("got %v", got)
				}
			}},
		{"ratelimit-ip", `subscription { rateLimitEvents(filterSourceIp: "203.0.113.7") { sourceIp blocked } }`, "rateLimitEvents",
			&event.Event{Type: "rate_limit.exceeded", SrcIP: "198.51.100.1"}, &event.Event{Type: "rate_limit.exceeded", SrcIP: "203.0.113.7"}, nil},
		{"ratelimit-blocked", `subscription { rateLimitEvents(onlyBlocked: true) { blocked requestCount } }`, "rateLimitEvents",
			&event.Event{Type: "rate_limit.exceeded", Data: raw(`{"blocked":false}`)},
			&event.Event{Type: "rate_limit.exceeded", Data: raw(`{"blocked":true,"request_count":500}`)},
			func(t *testing.T, got map[string]any) {
				if got["blocked"] != true || got["requestCount"].(float64) != 500 {
					t.Fatalf("got %v", got)
				}
			}},
		{"insider-level", `subscription { insiderThreatAlerts(minThreatLevel: HIGH) { threatLevel threatType } }`, "insiderThreatAlerts",
			&event.Event{Type: "insider_threat.alert", Data: raw(`{"threat_level":"medium"}`)},
			&event.Event{Type: "insider_threat.alert", Data: raw(`{"threat_level":"critical","threat_type":"data_exfiltration"}`)},
			func(t *testing.T, got map[string]any) {
				if got["threatLevel"] != "CRITICAL" || got["threatType"] != "DATA_EXFILTRATION" {
					t.Fatalf("got %v", got)
				}
			}},
		{"insider-user", `subscription { insiderThreatAlerts(filterUserId: "u-42") { userId } }`, "insiderThreatAlerts",
			&event.Event{Type: "insider_threat.alert", UserID: "u-1"}, &event.Event{Type: "insider_threat.alert", UserID: "u-42"}, nil},
		{"memory", `subscription { memoryHardeningEvents(filterEventTypes: [USE_AFTER_FREE]) { eventType } }`, "memoryHardeningEvents",
			&event.Event{Type: "memory.violation", Action: "buffer_overflow_detected"}, &event.Event{Type: "memory.violation", Action: "use_after_free_prevented"},
			func(t *testing.T, got map[string]any) {
				if got["eventType"] != "USE_AFTER_FREE" {
					t.Fatalf("got %v", got)
				}
			}},
		{"circuit", `subscription { circuitBreakerEvents(filterCircuitId: "db-primary") { circuitId state previousState } }`, "circuitBreakerEvents",
			&event.Event{Type: "circuit_breaker.state_change", Data: raw(`{"circuit_id":"cache","state":"open"}`)},
			&event.Event{Type: "circuit_breaker.state_change", Data: raw(`{"circuit_id":"db-primary","state":"half_open","previous_state":"open"}`)},
			func(t *testing.T, got map[string]any) {
				if got["state"] != "HALF_OPEN" || got["previousState"] != "OPEN" {
					t.Fatalf("got %v", got)
				}
			}},
		{"events", `subscription { events(filter: {categories: ["fraud"], minSeverity: "high"}) { id type severity } }`, "events",
			&event.Event{Type: "security.fraud.alert", Severity: event.SeverityLow}, &event.Event{Type: "security.fraud.alert", Severity: event.SeverityCritical}, nil},
	}
	for _, tc := range cases {
		c.subscribe(tc.id, tc.query, nil)
	}
	g.waitSubs(t, len(cases)+1) // +1: the stats client
	for _, tc := range cases {
		g.Publish(tc.skip, tc.want)
	}
	for _, tc := range cases {
		got := c.data(tc.id, tc.field)
		if id, ok := got["id"]; ok && id != tc.want.ID {
			t.Fatalf("%s: got event %v, want %s", tc.id, id, tc.want.ID)
		}
		if ev, ok := got["event"].(map[string]any); ok && ev["id"] != tc.want.ID {
			t.Fatalf("%s: got %v", tc.id, got)
		}
		if tc.check != nil {
			tc.check(t, got)
		}
	}
	// Every case's first result is checked above; a second marker event per
	// stream proves the skipped event did not arrive in between either.
	c.subscribe("marker-check", `subscription { events(filter: {types: ["system.marker"]}) { id } }`, nil)
	g.waitSubs(t, len(cases)+2)
	g.Publish(&event.Event{Type: "system.marker"})
	c.data("marker-check", "events")

	// A bad argument is an error on that subscription only.
	c.subscribe("bad", `subscription { events(filter: {srcIps: ["not-an-ip"]}) { id } }`, nil)
	if m := c.next("bad"); !isError(m) || !strings.Contains(fmt.Sprint(m["payload"]), "src_ips") {
		t.Fatalf("bad filter: %v", m)
	}
	c.stop("events")
}

// isError reports a failed subscription: an "error" message, or (gqlgen's
// answer to a resolver error) a result carrying errors.
func isError(m map[string]any) bool {
	if m["type"] == "error" {
		return true
	}
	p, _ := m["payload"].(map[string]any)
	errs, _ := p["errors"].([]any)
	return len(errs) > 0
}

func TestNamedSubscriptionsWithIDs(t *testing.T) {
	// The typed payloads carry the event id so clients can correlate.
	g := newGQL(t)
	c, err := dialGQL(t, g.srv.URL+"/graphql", protoTransportWS, tokenParams)
	if err != nil {
		t.Fatal(err)
	}
	c.subscribe("a", `subscription { authenticationEvents { id seq timestamp actionName event { id category } } }`, nil)
	g.waitSubs(t, 2)
	e := &event.Event{Type: "authentication.login", User: "z", Action: "session_created"}
	g.Publish(e)
	got := c.data("a", "authenticationEvents")
	if got["id"] != e.ID || got["event"].(map[string]any)["category"] != "authentication" {
		t.Fatalf("got %v", got)
	}
}

func TestEventsFromSeqReplays(t *testing.T) {
	g := newGQL(t)
	first := &event.Event{Type: "audit.query", User: "old"}
	g.Publish(first, &event.Event{Type: "authentication.login", User: "old2"})
	c, err := dialGQL(t, g.srv.URL+"/graphql", protoTransportWS, tokenParams)
	if err != nil {
		t.Fatal(err)
	}
	c.subscribe("r", `subscription($s: Int) { events(filter: {categories: ["audit"]}, fromSeq: $s) { id seq user } }`, map[string]any{"s": 1})
	if got := c.data("r", "events"); got["id"] != first.ID {
		t.Fatalf("replay: %v", got)
	}
	g.waitSubs(t, 2)
	live := &event.Event{Type: "audit.query", User: "new"}
	g.Publish(live)
	if got := c.data("r", "events"); got["id"] != live.ID {
		t.Fatalf("live after replay: %v", got)
	}
}

func TestDetectionsSubscription(t *testing.T) {
	g := newGQL(t)
	c, err := dialGQL(t, g.srv.URL+"/graphql", protoTransportWS, tokenParams)
	if err != nil {
		t.Fatal(err)
	}
	c.subscribe("d", `subscription { detections(filter: {statuses: [ACTIVE], mitreTactics: ["TA0006"]}) { type detection { id ruleId status severity count mitreTactics } event { seq } } }`, nil)
	g.waitSubs(t, 2)
	det := func(id, status string, tactics string) *event.Event {
		return &event.Event{Type: "detection.created", Severity: event.SeverityHigh, MitreTactics: strings.Split(tactics, ","),
			Data: raw(fmt.Sprintf(`{"id":%q,"rule_id":"SEC-AUTH-002","title":"Brute Force","severity":"high","status":%q,"mitre_tactics":[%q],"count":3}`, id, status, tactics))}
	}
	g.Publish(det("d-1", "resolved", "TA0006"), det("d-2", "active", "TA0001"), det("d-3", "active", "TA0006"))
	got := c.data("d", "detections")
	d := got["detection"].(map[string]any)
	if got["type"] != "detection.created" || d["id"] != "d-3" || d["status"] != "ACTIVE" || d["count"].(float64) != 3 {
		t.Fatalf("got %v", got)
	}
}

func TestSecurityMetricsAndPosture(t *testing.T) {
	g := newGQL(t)
	var evs []*event.Event
	for i := range 12 {
		outcome := "success"
		if i%2 == 0 {
			outcome = "failure"
		}
		evs = append(evs, &event.Event{Type: "authentication.login", User: "u", Action: "login", Outcome: outcome})
	}
	evs = append(evs, &event.Event{Type: "memory.violation", Action: "buffer_overflow", Severity: event.SeverityCritical},
		&event.Event{Type: "rate_limit.exceeded", Data: raw(`{"blocked":true}`)})
	g.Publish(evs...)
	// Wait for the stats client to see them all.
	deadline := time.Now().Add(5 * time.Second)
	for g.stats.Snapshot(nil).Events.LastMinute < 14 {
		if time.Now().After(deadline) {
			t.Fatal("stats did not count the events")
		}
		time.Sleep(10 * time.Millisecond)
	}
	c, err := dialGQL(t, g.srv.URL+"/graphql", protoTransportWS, tokenParams)
	if err != nil {
		t.Fatal(err)
	}
	c.subscribe("m", `subscription { securityMetrics(intervalSeconds: 1) { intervalSeconds eventsLastMinute totalEvents eventsInInterval authFailures authFailureRate blockedRequests memoryViolations byCategory { category lastMinute } } }`, nil)
	m := c.data("m", "securityMetrics")
	if m["eventsLastMinute"].(float64) != 14 || m["authFailures"].(float64) != 6 || m["authFailureRate"].(float64) != 0.5 ||
		m["blockedRequests"].(float64) != 1 || m["memoryViolations"].(float64) != 1 || m["intervalSeconds"].(float64) != 1 {
		t.Fatalf("metrics %v", m)
	}
	g.Publish(&event.Event{Type: "audit.query"}, &event.Event{Type: "audit.query"})
	// The next tick counts exactly the events of its interval.
	for {
		m = c.data("m", "securityMetrics")
		if m["totalEvents"].(float64) == 16 {
			if m["eventsInInterval"].(float64) < 1 {
				t.Fatalf("interval count %v", m)
			}
			break
		}
		if time.Now().After(deadline.Add(5 * time.Second)) {
			t.Fatalf("metrics never saw the new events: %v", m)
		}
	}

	c.subscribe("p", `subscription { securityPosture(intervalSeconds: 60) { score level factors { name value penalty maxPenalty } } }`, nil)
	p := c.data("p", "securityPosture")
	// 100 - 15 (auth failure rate 0.5 × 30) - 5 (one memory violation) - 0.1 (one blocked request) = 79.9 → 80
	if p["score"].(float64) != 80 || p["level"] != "fair" || len(p["factors"].([]any)) != 7 {
		t.Fatalf("posture %v", p)
	}
	c.subscribe("bad", `subscription { securityMetrics(intervalSeconds: 0) { totalEvents } }`, nil)
	if msg := c.next("bad"); !isError(msg) || !strings.Contains(fmt.Sprint(msg["payload"]), "intervalSeconds") {
		t.Fatalf("bad interval: %v", msg)
	}
}

func TestLegacyGraphQLWS(t *testing.T) {
	g := newGQL(t)
	c, err := dialGQL(t, g.srv.URL+"/graphql", protoLegacyWS, tokenParams)
	if err != nil {
		t.Fatal(err)
	}
	c.subscribe("1", `subscription { rateLimitEvents(onlyBlocked: true) { sourceIp blocked } }`, nil)
	g.waitSubs(t, 2)
	g.Publish(&event.Event{Type: "rate_limit.exceeded", SrcIP: "192.0.2.1"},
		&event.Event{Type: "rate_limit.exceeded", SrcIP: "192.0.2.2", Action: "blocked"})
	got := c.data("1", "rateLimitEvents")
	if got["sourceIp"] != "192.0.2.2" || got["blocked"] != true {
		t.Fatalf("got %v", got)
	}
	c.stop("1")
	if m := c.next("1"); m["type"] != "complete" {
		t.Fatalf("stop: %v", m)
	}
}

func TestConnectionLimits(t *testing.T) {
	metrics := auth.NewMetrics(nil)
	g := newGQLWith(t, func(_ *env, d *graphql.Deps) {
		d.Guard = auth.NewLimiter(auth.LimitConfig{MaxConnsPerToken: 1, MaxSubscriptions: 2, AllowedOrigins: []string{"https://soc.example.com"}}, metrics)
	})
	c, err := dialGQL(t, g.srv.URL+"/graphql?token="+testToken, protoTransportWS, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The token's one connection is in use.
	if _, err := dialGQL(t, g.srv.URL+"/graphql?token="+testToken, protoTransportWS, nil); err == nil {
		t.Fatal("second connection for a token capped at one was accepted")
	}
	// A browser origin outside the allow-list is refused.
	d := ws.Dialer{Protocols: []string{protoTransportWS}, Header: ws.HandshakeHeaderHTTP(http.Header{"Origin": {"https://evil.example.net"}})}
	if conn, _, _, err := d.Dial(context.Background(), "ws"+strings.TrimPrefix(g.srv.URL, "http")+"/graphql"); err == nil {
		conn.Close()
		t.Fatal("foreign origin accepted")
	}
	// At most two subscriptions on one connection. gqlgen runs each
	// operation's resolver on a goroutine of its own, so the order the
	// cap sees is not the order sent: both must have answered (been
	// admitted) before the third is sent, or under load the first may
	// be the one refused (a CI run waited for the third's error in vain).
	c.subscribe("1", `subscription { securityPosture { score } }`, nil)
	c.data("1", "securityPosture")
	c.subscribe("2", `subscription { securityPosture { score } }`, nil)
	c.data("2", "securityPosture")
	c.subscribe("3", `subscription { events { id } }`, nil)
	if m := c.next("3"); !isError(m) || !strings.Contains(fmt.Sprint(m["payload"]), "too many subscriptions on this connection (limit 2)") {
		t.Fatalf("third subscription: %v", m)
	}
	if n := metrics.LimitRejections("subscriptions"); n != 1 {
		t.Fatalf("subscription-cap rejections counted: %v, want 1", n)
	}
	// Ending one frees its slot.
	c.stop("2")
	deadline := time.Now().Add(5 * time.Second)
	for i := 0; ; i++ {
		id := fmt.Sprintf("retry-%d", i) // a fresh id: an errored one is followed by its "complete"
		c.subscribe(id, `subscription { securityPosture { score } }`, nil)
		m := c.next(id)
		if !isError(m) {
			if m["type"] != "next" {
				t.Fatalf("want a result, got %v", m)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("slot never freed: %v", m)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Without a Guard, browser origins other than the server's own host are
// refused, as for every Vigil WebSocket (the Guard's allow-list otherwise).
func TestSameOriginWithoutGuard(t *testing.T) {
	g := newGQL(t)
	url := "ws" + strings.TrimPrefix(g.srv.URL, "http") + "/graphql?token=" + testToken
	host := strings.TrimPrefix(g.srv.URL, "http://")
	for origin, ok := range map[string]bool{"http://" + host: true, "https://evil.example.net": false} {
		d := ws.Dialer{Protocols: []string{protoTransportWS}, Header: ws.HandshakeHeaderHTTP(http.Header{"Origin": {origin}})}
		conn, _, hs, err := d.Dial(context.Background(), url)
		if (err == nil) != ok {
			t.Fatalf("origin %s: err %v, want accepted=%v", origin, err, ok)
		}
		if err == nil {
			if hs.Protocol != protoTransportWS {
				t.Fatalf("negotiated %q", hs.Protocol)
			}
			conn.Close()
		}
	}
}

// TestMessageRateLimit: GraphQL WebSocket clients are held to the same
// per-connection message rate as every other Vigil stream, and closed with
// the same code (4003) when they exceed it.
func TestMessageRateLimit(t *testing.T) {
	metrics := auth.NewMetrics(nil)
	g := newGQLWith(t, func(_ *env, d *graphql.Deps) {
		d.Guard = auth.NewLimiter(auth.LimitConfig{MessagesPerSec: 1, MessageBurst: 3}, metrics)
	})
	c, err := dialGQL(t, g.srv.URL+"/graphql?token="+testToken, protoTransportWS, nil) // message 1
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		b, _ := json.Marshal(map[string]any{"type": "ping"})
		if err := wsutil.WriteClientText(c.conn, b); err != nil {
			break // the server may already have closed
		}
	}
	_ = c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		//lint:ignore SA1019 the peer is the server under test and its frames are small; the test reads raw frames for their opcode and close code
		f, err := ws.ReadFrame(c.r) // raw frames: the server hangs up right after its close frame
		if err != nil {
			t.Fatalf("connection ended without a close frame: %v", err)
		}
		if f.Header.OpCode == ws.OpClose {
			code, reason := ws.ParseCloseFrameData(f.Payload)
			if code != 4003 {
				t.Fatalf("closed with %d %q, want 4003", code, reason)
			}
			break
		}
	}
	if n := metrics.LimitRejections("message_rate"); n < 1 {
		t.Fatalf("message-rate rejections counted: %v", n)
	}
}

// TestPingBetweenFragments: a client ping between the two fragments of a
// message is answered, and the message still arrives whole.
func TestPingBetweenFragments(t *testing.T) {
	g := newGQL(t)
	c, err := dialGQL(t, g.srv.URL+"/graphql?token="+testToken, protoTransportWS, nil)
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte(`{"type":"ping"}`)
	frames := []ws.Frame{
		ws.NewFrame(ws.OpText, false, msg[:7]),
		ws.NewPingFrame([]byte("mid")),
		ws.NewFrame(ws.OpContinuation, true, msg[7:]),
	}
	for _, f := range frames {
		if err := ws.WriteFrame(c.conn, ws.MaskFrame(f)); err != nil {
			t.Fatal(err)
		}
	}
	_ = c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	var gotPong, gotMessage bool
	for !gotPong || !gotMessage {
		//lint:ignore SA1019 the peer is the server under test and its frames are small; the test reads raw frames for their opcode and close code
		f, err := ws.ReadFrame(c.r)
		if err != nil {
			t.Fatalf("pong %v, message %v: %v", gotPong, gotMessage, err)
		}
		switch {
		case f.Header.OpCode == ws.OpPong:
			if string(f.Payload) != "mid" {
				t.Fatalf("pong payload %q", f.Payload)
			}
			gotPong = true
		case f.Header.OpCode == ws.OpText && strings.Contains(string(f.Payload), `"pong"`):
			gotMessage = true
		}
	}
}
