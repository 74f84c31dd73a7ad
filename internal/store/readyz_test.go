package store_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/store"
	"github.com/vigil-sec/vigil/internal/transport/rest"
)

// TestReadyzWhileDedupRebuilding (issue 8, item 4): GET /readyz, over a
// real socket, answers 503 naming the dedup rebuild and its progress
// until appends are accepted, then 200 (on main it answered 200 while
// every append waited for the rebuild).
func TestReadyzWhileDedupRebuilding(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	cfg := store.Config{DataDir: dir}
	l, err := store.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	evs := make([]*event.Event, 2000)
	for i := range evs {
		evs[i] = &event.Event{ID: fmt.Sprintf("r-%d", i), Type: "audit.query"}
		if _, err := event.Normalize(evs[i], "acme", time.Now(), event.DefaultLimits()); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := l.Append(ctx, evs); err != nil {
		t.Fatal(err)
	}
	l.Close()
	// As after a kill -9 before any snapshot: the whole window is read.
	if err := os.Remove(filepath.Join(dir, "dedup-index.snapshot")); err != nil {
		t.Fatal(err)
	}
	gate := make(chan struct{})
	l, err = store.Open(ctx, store.WithRebuildGate(cfg, gate))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	srv := httptest.NewServer(rest.Ready(l))
	defer srv.Close()
	get := func() (int, string) {
		t.Helper()
		resp, err := http.Get(srv.URL + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body struct {
			Status, Error string
		}
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, body.Error
	}
	if st, reason := get(); st != http.StatusServiceUnavailable || !strings.Contains(reason, "dedup index rebuilding: 0 of 2000") {
		t.Fatalf("/readyz while the dedup index is rebuilt: %d %q, want 503 naming the rebuild, 0 of 2000", st, reason)
	}
	close(gate)
	if _, err := l.WaitDedupIndex(ctx); err != nil {
		t.Fatal(err)
	}
	if st, reason := get(); st != http.StatusOK {
		t.Fatalf("/readyz once appends are accepted: %d %q", st, reason)
	}
}
