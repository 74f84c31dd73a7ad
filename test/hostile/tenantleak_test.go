package hostile

// Tenant isolation beyond what a client is sent: found by an audit that
// tried, as restricted tokens, to see or disturb what another tenant, or
// the unmasked event, holds. Over a real node, tokens made through the
// token API.

import (
	"net/http"
	"testing"

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
