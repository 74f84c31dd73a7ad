package hostile

// Tenant isolation beyond what a client is sent: found by an audit that
// tried, as restricted tokens, to see or disturb what another tenant, or
// the unmasked event, holds. Over a real node, tokens made through the
// token API.

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/testnode"
)

// TestTenantEventIDsDoNotShadow: an id is unique within a tenant only
// (dedup is per tenant), so globex may store an event with the id of one
// of acme's. A lookup by id used to find the newest event with the id in
// any tenant and then hide it from acme as another tenant's: acme's own
// event answered 404 ("no event"), in REST and GraphQL alike, and the
// detections' event links broke. Each tenant now finds its own.
func TestTenantEventIDsDoNotShadow(t *testing.T) {
	n := testnode.Start(t)
	root := taClient{t: t, base: n.URL(), tok: n.AdminToken()}
	tok := func(role, tenant string) taClient {
		tk := root.taCreate(map[string]any{"role": role, "tenant": tenant, "name": tenant + " " + role})
		return taClient{t: t, base: n.URL(), tok: tk.Token}
	}
	acmePub, globexPub := tok("publisher", "acme"), tok("publisher", "globex")
	acme, globex := tok("analyst", "acme"), tok("analyst", "globex")

	const id = "0193f1e2-0000-7000-8000-00000000a11c"
	publish := func(c taClient, msg string) {
		t.Helper()
		ev := map[string]any{"id": id, "type": "authentication.login", "severity": "low", "user": "u@example.com", "message": msg}
		if st, body := c.do("POST", "/api/v1/events", ev, nil); st != http.StatusOK && st != http.StatusCreated && st != http.StatusAccepted {
			t.Fatalf("publish: HTTP %d %s", st, body)
		}
	}
	publish(acmePub, "acme's own")
	publish(globexPub, "globex's, same id") // after acme's: the newest with the id

	type ev struct {
		ID, Tenant, Message string
	}
	for _, c := range []struct {
		who    taClient
		tenant string
		msg    string
	}{{acme, "acme", "acme's own"}, {globex, "globex", "globex's, same id"}, {root, "globex", "globex's, same id"}} {
		var got ev
		if st, body := c.who.do("GET", "/api/v1/events/"+id, nil, &got); st != http.StatusOK {
			t.Fatalf("%s reader: GET its event by id: HTTP %d %s", c.tenant, st, body)
		}
		if got.Tenant != c.tenant || got.Message != c.msg {
			t.Fatalf("%s reader: got %+v", c.tenant, got)
		}
		var gq struct {
			Data struct {
				Event *struct{ Tenant, Message string }
			}
		}
		q := map[string]any{"query": `query($id: ID!) { event(id: $id) { tenant message } }`, "variables": map[string]any{"id": id}}
		if st, body := c.who.do("POST", "/graphql", q, &gq); st != http.StatusOK || gq.Data.Event == nil || gq.Data.Event.Tenant != c.tenant {
			t.Fatalf("%s reader: GraphQL event(id): HTTP %d %s", c.tenant, st, body)
		}
	}
	// A tenant without such an event still learns nothing.
	other := tok("analyst", "initech")
	if st, body := other.do("GET", "/api/v1/events/"+id, nil, nil); st != http.StatusNotFound {
		t.Fatalf("initech reader: HTTP %d %s, want 404", st, body)
	}
}

// TestViewerSeesDetectionsMasked: the streams mask detection events for
// a viewer; the detection queries (REST list and detail, which the
// console's detail page reads, and GraphQL) and rule backtests did not:
// the audit read bob's address and IP from a detection's group key,
// group, assignee, notes and history, and a viewer's backtest rule
// matching src_ip 203.0.113.7 exactly reported its matches and unmasked
// group keys. Now they show what the streams show.
func TestViewerSeesDetectionsMasked(t *testing.T) {
	n := testnode.Start(t)
	root := taClient{t: t, base: n.URL(), tok: n.AdminToken()}
	mk := func(role string) taClient {
		tk := root.taCreate(map[string]any{"role": role, "tenant": "default", "name": "default " + role})
		return taClient{t: t, base: n.URL(), tok: tk.Token}
	}
	viewer := mk("viewer")
	for range 6 { // the built-in brute-force rule: failures for one user from one address
		ev := map[string]any{"type": "authentication.login", "user": "bob@example.com", "src_ip": "203.0.113.7",
			"action": "login", "outcome": "failure", "severity": "medium", "source": "sso", "message": "wrong password"}
		if st, body := root.do("POST", "/api/v1/events", ev, nil); st != http.StatusOK {
			t.Fatalf("publish: HTTP %d %s", st, body)
		}
	}
	type det struct {
		ID       string
		GroupKey string `json:"group_key"`
	}
	var list struct{ Detections []det }
	clusterCheckFor(t, 10*time.Second, func() error {
		if st, body := root.do("GET", "/api/v1/detections", nil, &list); st != http.StatusOK || len(list.Detections) == 0 {
			return fmt.Errorf("no detection yet: HTTP %d %s", st, body)
		}
		return nil
	})
	id := list.Detections[0].ID
	patch := map[string]any{"assignee": "alice@example.com", "notes": "contact bob@example.com from 203.0.113.7", "status": "investigating"}
	if st, body := root.do("PATCH", "/api/v1/detections/"+id, patch, nil); st != http.StatusOK {
		t.Fatalf("patch: HTTP %d %s", st, body)
	}
	secrets := []string{"bob@example.com", "alice@example.com", "203.0.113.7"}
	leaks := func(what, body string) {
		t.Helper()
		for _, s := range secrets {
			if strings.Contains(body, s) {
				t.Errorf("%s shows a viewer %q: %s", what, s, body)
			}
		}
	}
	// The admin sees it unmasked (the test's own check that the values are there).
	if _, body := root.do("GET", "/api/v1/detections/"+id, nil, nil); !strings.Contains(body, "bob@example.com") || !strings.Contains(body, "203.0.113.7") {
		t.Fatalf("admin's detail lacks the values the test looks for: %s", body)
	}
	st, body := viewer.do("GET", "/api/v1/detections/"+id, nil, nil)
	if st != http.StatusOK || !strings.Contains(body, "***@example.com") || !strings.Contains(body, "203.0.113.0") {
		t.Fatalf("viewer's detail: HTTP %d %s (want masked values)", st, body)
	}
	leaks("GET /api/v1/detections/{id}", body)
	_, body = viewer.do("GET", "/api/v1/detections", nil, nil)
	leaks("GET /api/v1/detections", body)
	q := map[string]any{"query": `{ detections { id groupKey assignee notes } }`}
	_, body = viewer.do("POST", "/graphql", q, nil)
	leaks("GraphQL detections", body)
	q = map[string]any{"query": `query($id: ID!) { detection(id: $id) { groupKey assignee notes } }`, "variables": map[string]any{"id": id}}
	_, body = viewer.do("POST", "/graphql", q, nil)
	leaks("GraphQL detection(id)", body)

	// A backtest evaluates the viewer's rule on its masked events.
	rule := func(ip string) map[string]any {
		return map[string]any{"rules": []map[string]any{{"path": "probe.yml", "content": "title: probe\nid: 5d3c0d7e-0000-4000-8000-000000000001\nlogsource: {category: authentication}\ndetection:\n  sel:\n    src_ip: '" + ip + "'\n  condition: sel\nlevel: low\n"}}}
	}
	type report struct {
		Rules []struct {
			Matches         int
			FirstDetections []struct {
				GroupKey string `json:"group_key"`
			} `json:"first_detections"`
		}
	}
	var exact, masked report
	if st, body := viewer.do("POST", "/api/v1/rules/backtest", rule("203.0.113.7"), &exact); st != http.StatusOK || len(exact.Rules) != 1 {
		t.Fatalf("viewer's backtest: HTTP %d %s", st, body)
	}
	if exact.Rules[0].Matches != 0 {
		t.Errorf("a viewer's backtest rule on the exact address matched %d events", exact.Rules[0].Matches)
	}
	st, body = viewer.do("POST", "/api/v1/rules/backtest", rule("203.0.113.0"), &masked)
	if st != http.StatusOK || len(masked.Rules) != 1 || masked.Rules[0].Matches != 6 {
		t.Fatalf("viewer's backtest on the masked address: HTTP %d %s (want 6 matches)", st, body)
	}
	leaks("a viewer's backtest", body)
}
