package rest_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/testenv"
	"github.com/vigil-sec/vigil/internal/transport/rest"
)

// serve routes the event endpoints as the server does, with the principal
// of each request set by the test (auth.Require is tested in auth).
func serve(t *testing.T, env *testenv.Env) func(p *auth.Principal, method, target, body string) *httptest.ResponseRecorder {
	h := &rest.Events{Ingest: env.Ingest, Log: env.Log, Policy: auth.NewPolicy(nil).Visible, MaxScan: 10_000}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/v1/events", h.Publish)
	mux.HandleFunc("GET /api/v1/events", h.History)
	mux.HandleFunc("GET /api/v1/events/{id}", h.Get)
	mux.HandleFunc("GET /readyz", rest.Ready(env.Log))
	return func(p *auth.Principal, method, target, body string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, target, strings.NewReader(body))
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		req = req.WithContext(auth.WithPrincipal(context.Background(), p))
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, req)
		return rec
	}
}

// TestEventsPublishGetHistory drives the REST event endpoints over a real
// log: publish, read back by id and in history, and the refusals (role,
// tenant, unknown id, bad query) with their statuses.
func TestEventsPublishGetHistory(t *testing.T) {
	env := testenv.New(t)
	do := serve(t, env)
	publisher := &auth.Principal{ID: "p", Role: auth.RolePublisher, Tenant: "acme"}
	analyst := &auth.Principal{ID: "a", Role: auth.RoleAnalyst, Tenant: "acme"}
	other := &auth.Principal{ID: "o", Role: auth.RoleAnalyst, Tenant: "globex"}

	rec := do(publisher, "POST", "/api/v1/events", `[{"id":"e-1","type":"auth.login","severity":"high","source":"idp","user":"alice"}]`)
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"id":"e-1"`) {
		t.Fatalf("publish: %d %s", rec.Code, rec.Body)
	}
	if rec := do(analyst, "GET", "/api/v1/events/e-1", ""); rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"user":"alice"`) {
		t.Fatalf("get: %d %s", rec.Code, rec.Body)
	}
	if rec := do(analyst, "GET", "/api/v1/events/nope", ""); rec.Code != http.StatusNotFound {
		t.Fatalf("unknown id: %d %s", rec.Code, rec.Body)
	}
	if rec := do(other, "GET", "/api/v1/events/e-1", ""); rec.Code != http.StatusNotFound {
		t.Fatalf("another tenant's event: %d, want 404 (ids of other tenants are not revealed)", rec.Code)
	}
	rec = do(analyst, "GET", "/api/v1/events?users=alice", "")
	var hist struct {
		Events []struct{ ID string }
	}
	if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &hist) != nil || len(hist.Events) != 1 || hist.Events[0].ID != "e-1" {
		t.Fatalf("history: %d %s", rec.Code, rec.Body)
	}
	if rec := do(other, "GET", "/api/v1/events", ""); rec.Code != http.StatusOK || strings.Contains(rec.Body.String(), "e-1") {
		t.Fatalf("history of another tenant: %d %s", rec.Code, rec.Body)
	}
	if rec := do(analyst, "GET", "/api/v1/events?min_severity=urgent", ""); rec.Code != http.StatusBadRequest {
		t.Fatalf("bad filter: %d %s", rec.Code, rec.Body)
	}
	viewer := &auth.Principal{ID: "v", Role: auth.RoleViewer, Tenant: "acme"}
	if rec := do(viewer, "POST", "/api/v1/events", `[{"type":"auth.login"}]`); rec.Code != http.StatusForbidden {
		t.Fatalf("viewer publish: %d %s", rec.Code, rec.Body)
	}
	if rec := do(publisher, "POST", "/api/v1/events", `[{"severity":"high"}]`); rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), `"details"`) {
		t.Fatalf("invalid event: %d %s", rec.Code, rec.Body)
	}
	if rec := do(analyst, "GET", "/readyz", ""); rec.Code != http.StatusOK {
		t.Fatalf("readyz: %d %s", rec.Code, rec.Body)
	}
}
