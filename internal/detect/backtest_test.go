package detect

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime/pprof"
	"strconv"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/demo"
	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/store"
)

func postBacktest(t *testing.T, e *Engine, p *auth.Principal, body any) (int, []byte) {
	t.Helper()
	b, _ := json.Marshal(body)
	r := httptest.NewRequest(http.MethodPost, "/api/v1/rules/backtest", bytes.NewReader(b))
	r = r.WithContext(auth.WithPrincipal(r.Context(), p))
	w := httptest.NewRecorder()
	e.HandleBacktest(w, r)
	return w.Code, w.Body.Bytes()
}

// backtestEngine is an engine that never runs: it only serves backtests,
// so anything written to the log or the bucket would be the backtest's.
func backtestEngine(t *testing.T, l *store.Log) *Engine {
	t.Helper()
	e, err := New(context.Background(), Options{Source: l, Appender: l, JetStream: l.JetStream(), Log: l})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func kvKeys(t *testing.T, e *Engine) int {
	t.Helper()
	lister, err := e.kv.ListKeys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for range lister.Keys() {
		n++
	}
	return n
}

func findRule(t *testing.T, rep *BacktestReport, id string) BacktestRule {
	t.Helper()
	for _, r := range rep.Rules {
		if r.RuleID == id {
			return r
		}
	}
	t.Fatalf("rule %s not in the report", id)
	return BacktestRule{}
}

// TestBacktestOverTheLog: five failed logins two days old (event time) and
// one of another tenant; a backtest of the built-in rules reports the
// brute-force correlation's detection with the events' times, the base
// rule's matches and first ids, and writes nothing to the log or the
// detections bucket.
func TestBacktestOverTheLog(t *testing.T) {
	l := openLog(t, t.TempDir())
	defer l.Close()
	e := backtestEngine(t, l)
	old := time.Now().UTC().Add(-48 * time.Hour).Truncate(time.Second)
	failures(t, l, "alice", old, 5)
	other := failure(t, 0, "mallory", "198.51.100.7")
	other.Tenant = "acme"
	publish(t, l, other)
	head, _ := l.Head(context.Background())
	keys := kvKeys(t, e)

	code, body := postBacktest(t, e, admin, map[string]any{"since": "1h"})
	if code != http.StatusOK {
		t.Fatalf("backtest: %d %s", code, body)
	}
	var rep BacktestReport
	if err := json.Unmarshal(body, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Read != 6 || rep.Evaluated != 6 || rep.Truncated != "" {
		t.Fatalf("report: read %d evaluated %d truncated %q", rep.Read, rep.Evaluated, rep.Truncated)
	}
	bf := findRule(t, &rep, "SEC-AUTH-002")
	if bf.Detections != 1 || bf.Firings != 1 || len(bf.FirstDetections) != 1 {
		t.Fatalf("brute force: %+v", bf)
	}
	d := bf.FirstDetections[0]
	if !d.FirstSeen.Equal(old.Add(4*time.Second)) || d.Count != 5 || d.GroupKey != "user=alice" || len(d.EventIDs) != 5 {
		t.Fatalf("brute-force detection: %+v (events from %s)", d, old)
	}
	base := findRule(t, &rep, "vigil_auth_failure")
	if base.Matches != 6 || len(base.FirstMatches) != 6 || base.Scanned != 6 {
		t.Fatalf("base rule: %+v", base)
	}

	// A token of one tenant backtests over that tenant's events only.
	code, body = postBacktest(t, e, analyst, map[string]any{"since": "1h"})
	if code != http.StatusOK {
		t.Fatalf("analyst backtest: %d %s", code, body)
	}
	_ = json.Unmarshal(body, &rep)
	if rep.Evaluated != 5 || findRule(t, &rep, "vigil_auth_failure").Matches != 5 {
		t.Fatalf("analyst of default evaluated %d events", rep.Evaluated)
	}

	if h, _ := l.Head(context.Background()); h != head {
		t.Fatalf("the backtest appended to the log: head %d → %d", head, h)
	}
	if n := kvKeys(t, e); n != keys {
		t.Fatalf("the backtest wrote to the detections bucket: %d → %d keys", keys, n)
	}
	if len(e.List(admin, Query{})) != 0 {
		t.Fatal("the backtest created detections")
	}
}

// TestBacktestRulesFromRequest: rule files sent in the body are backtested
// (not the loaded ones), from a seq; errors are reported by file and line.
func TestBacktestRulesFromRequest(t *testing.T) {
	l := openLog(t, t.TempDir())
	defer l.Close()
	e := backtestEngine(t, l)
	publish(t, l, actionEvent(t, "a", "other"))
	seqs := failures(t, l, "bob", time.Now().UTC(), 2)
	publish(t, l, actionEvent(t, "b", "marker"), actionEvent(t, "c", "marker"))
	code, body := postBacktest(t, e, admin, map[string]any{"from_seq": seqs[0], "rules": []RuleFile{
		{Path: "plain.yml", Content: fmt.Sprintf(reloadPlain, "marker")},
		{Path: "broken.yml", Content: "title: x\ndetection:\n  sel: {a|bogus: 1}\n  condition: sel\n"},
	}})
	if code != http.StatusOK {
		t.Fatalf("backtest: %d %s", code, body)
	}
	var rep BacktestReport
	_ = json.Unmarshal(body, &rep)
	if rep.Read != 4 || len(rep.Rules) != 1 || rep.Rules[0].Matches != 2 || rep.Rules[0].Detections != 2 {
		t.Fatalf("report: %+v", rep)
	}
	if len(rep.Errors) != 1 || rep.Errors[0].Path != "broken.yml" || rep.Errors[0].Line != 3 {
		t.Fatalf("errors: %+v", rep.Errors)
	}
	code, body = postBacktest(t, e, admin, map[string]any{"rules": []RuleFile{{Path: "broken.yml", Content: "title: x\n"}}})
	if code != http.StatusBadRequest {
		t.Fatalf("no rule loaded: %d %s", code, body)
	}
}

// TestBacktestBounds: a backtest stops at max_events (and says so), asks
// beyond the hard limits are refused, a second concurrent backtest is
// refused, a tenant the token cannot see is refused, and a backtest whose
// client went away stops.
func TestBacktestBounds(t *testing.T) {
	l := openLog(t, t.TempDir())
	defer l.Close()
	e := backtestEngine(t, l)
	failures(t, l, "carol", time.Now().UTC(), 30)

	code, body := postBacktest(t, e, admin, map[string]any{"from_seq": 1, "max_events": 10})
	var rep BacktestReport
	_ = json.Unmarshal(body, &rep)
	if code != http.StatusOK || rep.Read != 10 || rep.Truncated != "max_events" || rep.LastSeq != 10 {
		t.Fatalf("max_events 10: %d read %d truncated %q last %d", code, rep.Read, rep.Truncated, rep.LastSeq)
	}
	for _, bad := range []map[string]any{
		{"max_events": MaxBacktestEvents + 1},
		{"max_seconds": int(MaxBacktestDuration.Seconds()) + 1},
		{"first": MaxBacktestFirst + 1},
		{"since": "yesterday"},
		{"max_events": -1},
		{"from_seq": 5, "to_seq": 2},
		{"bogus": 1},
		{"fieldmap": "fields: {A: user}"}, // a field map without the rules it is for
	} {
		if code, body := postBacktest(t, e, admin, bad); code != http.StatusBadRequest {
			t.Errorf("%v: %d %s, want 400", bad, code, body)
		}
	}
	if code, _ := postBacktest(t, e, analyst, map[string]any{"tenant": "acme"}); code != http.StatusForbidden {
		t.Errorf("invisible tenant: %d, want 403", code)
	}
	if code, _ := postBacktest(t, e, publisher, map[string]any{}); code != http.StatusForbidden {
		t.Errorf("publisher: %d, want 403", code)
	}
	e.backtests <- struct{}{} // one running
	if code, _ := postBacktest(t, e, admin, map[string]any{}); code != http.StatusTooManyRequests {
		t.Errorf("concurrent backtest: %d, want 429", code)
	}
	<-e.backtests

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Backtest(ctx, l, e.Rules(), BacktestOptions{FromSeq: 1}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled backtest: %v", err)
	}
}

// BenchmarkBacktest measures a backtest of the built-in rules plus 100
// generated ones over VIGIL_BACKTEST_EVENTS stored demo events (default
// 200,000), read from the log with the replay path. The log is filled
// once, before the timer starts.
func BenchmarkBacktest(b *testing.B) {
	n := 200_000
	if s := os.Getenv("VIGIL_BACKTEST_EVENTS"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil {
			b.Fatal(err)
		}
	}
	l := openLogTB(b, b.TempDir())
	defer l.Close()
	dir := b.TempDir()
	benchRules(b, dir, 100)
	rs, err := LoadRules(LoadOptions{Dir: dir})
	if err != nil {
		b.Fatal(err)
	}
	g := demo.New(7)
	start := time.Now().UTC().Add(-24 * time.Hour)
	batch := make([]*event.Event, 0, 1000)
	for i := 0; i < n; i++ {
		e := g.Next()
		if _, err := event.Normalize(e, "default", start, event.DefaultLimits()); err != nil {
			b.Fatal(err)
		}
		e.Time = start.Add(time.Duration(i) * time.Millisecond)
		batch = append(batch, e)
		if len(batch) == cap(batch) || i == n-1 {
			if _, err := l.Append(context.Background(), batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	if pf := os.Getenv("VIGIL_BACKTEST_CPUPROFILE"); pf != "" {
		// The backtest alone, without filling the log.
		f, err := os.Create(pf)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			b.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}
	b.ResetTimer()
	var rep *BacktestReport
	for i := 0; i < b.N; i++ {
		rep, err = Backtest(context.Background(), l, rs, BacktestOptions{FromSeq: 1, MaxEvents: MaxBacktestEvents, MaxDuration: MaxBacktestDuration})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if rep.Read != uint64(n) {
		b.Fatalf("read %d of %d events", rep.Read, n)
	}
	b.ReportMetric(float64(uint64(b.N)*rep.Read)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(rs.Len()), "rules")
	detections := 0
	for _, r := range rep.Rules {
		detections += r.Detections
	}
	b.Logf("%d events, %d rules, %d detections it would create, %.0f events/s", rep.Read, rs.Len(), detections, rep.EventsPerSecond)
}

func openLogTB(tb testing.TB, dir string) *store.Log {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := store.Open(ctx, store.Config{DataDir: dir})
	if err != nil {
		tb.Fatal(err)
	}
	return l
}

// TestBacktestStopsWhenCancelled: a backtest whose client goes away in the
// middle of the scan (its context ends) stops with the context's error
// instead of reading the rest of the log.
func TestBacktestStopsWhenCancelled(t *testing.T) {
	l := openLog(t, t.TempDir())
	defer l.Close()
	var evs []*event.Event
	for i := 0; i < 5000; i++ {
		evs = append(evs, actionEvent(t, fmt.Sprintf("u%d", i), "other"))
		if len(evs) == 1000 {
			publish(t, l, evs...)
			evs = evs[:0]
		}
	}
	rs := reloadRuleSetOf(t, fmt.Sprintf(reloadPlain, "marker"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	seen := 0
	rep, err := Backtest(ctx, l, rs, BacktestOptions{FromSeq: 1, View: func(e *event.Event) (*event.Event, bool) {
		seen++
		if seen == 1 {
			cancel() // the client disconnects while the first batch is evaluated
		}
		return e, true
	}})
	if !errors.Is(err, context.Canceled) || rep != nil {
		t.Fatalf("backtest after the client left: %v (report %v)", err, rep)
	}
	if seen >= 5000 {
		t.Fatalf("read all %d events after the cancel", seen)
	}
}

func reloadRuleSetOf(t *testing.T, body string) *RuleSet {
	t.Helper()
	dir := t.TempDir()
	writeRule(t, dir, "r.yml", body)
	return reloadRuleSet(t, dir)
}
