package sse_test

import (
	"bufio"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/testenv"
	"github.com/vigil-sec/vigil/internal/transport/sse"
)

type admitAll struct{}

func (admitAll) Admit(*http.Request, *auth.Principal) (func(), int, error) { return func() {}, 0, nil }

// withPrincipal stands in for auth.Require (tested in auth).
func withPrincipal(p *auth.Principal, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r.WithContext(auth.WithPrincipal(r.Context(), p)))
	})
}

// TestStreamDeliversMatchingEventsFromSeq: an SSE stream from seq 1 with a
// filter delivers the stored matching events with their seq as the event
// id, then live ones; the rest are not sent.
func TestStreamDeliversMatchingEventsFromSeq(t *testing.T) {
	env := testenv.New(t)
	env.Publish(&event.Event{ID: "a-1", Type: "auth.login", Source: "idp", User: "alice"},
		&event.Event{ID: "b-1", Type: "auth.login", Source: "idp", User: "bob"})
	srv := env.Serve(withPrincipal(env.Admin, sse.Handler(env.Hub, admitAll{}, time.Minute, 0)))

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"?users=alice&from_seq=1", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("status %d, content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	env.Publish(&event.Event{ID: "a-2", Type: "auth.login", Source: "idp", User: "alice"})
	var ids, data []string
	sc := bufio.NewScanner(resp.Body)
	for len(data) < 2 && sc.Scan() {
		l := sc.Text()
		if v, ok := strings.CutPrefix(l, "id: "); ok {
			ids = append(ids, v)
		}
		if v, ok := strings.CutPrefix(l, "data: "); ok {
			data = append(data, v)
		}
	}
	if len(data) != 2 || !strings.Contains(data[0], `"id":"a-1"`) || !strings.Contains(data[1], `"id":"a-2"`) {
		t.Fatalf("data %q (scan: %v)", data, sc.Err())
	}
	if len(ids) != 2 || ids[0] != "1" || ids[1] != "3" {
		t.Fatalf("event ids %q, want the seqs 1 and 3", ids)
	}
}

// TestStreamRefusals: a role that may not read, and a bad filter, are
// refused before the stream starts.
func TestStreamRefusals(t *testing.T) {
	env := testenv.New(t)
	h := sse.Handler(env.Hub, admitAll{}, time.Minute, 0)
	cases := []struct {
		p      *auth.Principal
		query  string
		status int
	}{
		{&auth.Principal{ID: "pub", Role: auth.RolePublisher, Tenant: "acme"}, "", http.StatusForbidden},
		{env.Admin, "?min_severity=urgent", http.StatusBadRequest},
		{env.Admin, "?from_seq=-1", http.StatusBadRequest},
	}
	for _, c := range cases {
		rec := httptest.NewRecorder()
		withPrincipal(c.p, h).ServeHTTP(rec, httptest.NewRequest("GET", "/api/v1/stream/sse"+c.query, nil))
		if rec.Code != c.status {
			t.Errorf("%s %q: %d %s, want %d", c.p.Role, c.query, rec.Code, rec.Body, c.status)
		}
	}
}
