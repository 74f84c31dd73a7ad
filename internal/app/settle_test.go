package app

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/config"
	"github.com/vigil-sec/vigil/internal/testkit"
)

// settleRecords keeps the attributes of the node's start-up catch-up
// records (the rest of the log is dropped).
type settleRecords struct {
	mu   sync.Mutex
	recs []map[string]slog.Value
}

func (h *settleRecords) Enabled(context.Context, slog.Level) bool { return true }
func (h *settleRecords) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *settleRecords) WithGroup(string) slog.Handler            { return h }
func (h *settleRecords) Handle(_ context.Context, r slog.Record) error {
	if !strings.HasPrefix(r.Message, "start-up catch-up") {
		return nil
	}
	attrs := map[string]slog.Value{"msg": slog.StringValue(r.Message)}
	r.Attrs(func(a slog.Attr) bool { attrs[a.Key] = a.Value; return true })
	h.mu.Lock()
	h.recs = append(h.recs, attrs)
	h.mu.Unlock()
	return nil
}

func (h *settleRecords) all() []map[string]slog.Value {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]map[string]slog.Value(nil), h.recs...)
}

// TestSettleWaitsForTheStartupCatchUp (issue 12 item 8, RSS after a
// restart): a node restarted on a log returns the freed memory to the OS
// once, and only after every start-up reader has read the log up to its
// head at start: the detection engine's replay of its correlation windows
// (the whole log here: it is inside the longest timespan), the
// statistics' replay and the id index. Released earlier, the replay's
// garbage would stay resident afterwards.
func TestSettleWaitsForTheStartupCatchUp(t *testing.T) {
	if testing.Short() {
		t.Skip("fills a log of 30,000 events")
	}
	cfg := config.Defaults()
	cfg.Listen, cfg.DataDir = freeAddr(t, "tcp"), t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	first := New(cfg, nil)
	if err := first.Start(ctx); err != nil {
		t.Fatal(err)
	}
	token, err := os.ReadFile(filepath.Join(cfg.DataDir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	const batches, perBatch = 30, 1000
	for b := range batches {
		var body strings.Builder
		for i := range perBatch {
			fmt.Fprintf(&body, `{"type":"auth.login.failure","severity":"low","source":"settle-test","user":"u%d","outcome":"failure"}`+"\n", b*perBatch+i)
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+first.Addr()+"/api/v1/events", strings.NewReader(body.String()))
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
		req.Header.Set("Content-Type", "application/x-ndjson")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode >= 300 {
			t.Fatalf("publish: %d", resp.StatusCode)
		}
	}
	if err := first.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}

	recs := &settleRecords{}
	second := New(cfg, slog.New(recs))
	if err := second.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = second.Shutdown(context.Background()) }()
	testkit.CheckFor(t, 30*time.Second, 10*time.Millisecond, func() error {
		if len(recs.all()) == 0 {
			return fmt.Errorf("no start-up catch-up record yet")
		}
		return nil
	})
	got := recs.all()
	if len(got) != 1 {
		t.Fatalf("%d start-up catch-up records, want one: %v", len(got), got)
	}
	r := got[0]
	head := r["head"].Uint64()
	if head < batches*perBatch {
		t.Fatalf("head at start %d, want at least %d: %v", head, batches*perBatch, r)
	}
	if w := r["waiting_for"].String(); w != "" {
		t.Fatalf("memory returned while still waiting for %s: %v", w, r)
	}
	for _, k := range []string{"detection_replayed_to", "statistics_seq", "id_index_watermark"} {
		if v := r[k].Uint64(); v < head {
			t.Errorf("memory returned before %s reached the head at start: %d < %d (%v)", k, v, head, r)
		}
	}
}
