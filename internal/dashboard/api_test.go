package dashboard

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/event"
)

// memLog is an in-memory log ordered by seq (ReceivedAt ascending).
type memLog []*event.Event

func (l memLog) Head(context.Context) (uint64, error) { return uint64(len(l)), nil }

func (l memLog) SeqForTime(_ context.Context, t time.Time) (uint64, error) {
	i := sort.Search(len(l), func(i int) bool { return !l[i].ReceivedAt.Before(t) })
	return uint64(i + 1), nil
}

func (l memLog) ScanRange(_ context.Context, from, to uint64, fn func(*event.Event) bool) error {
	for s := from; s <= to && s <= uint64(len(l)); s++ {
		if !fn(l[s-1]) {
			return nil
		}
	}
	return nil
}

func statsLog(now time.Time) memLog {
	var l memLog
	add := func(ago time.Duration, tenant, typ string, sev event.Severity, user string) {
		e := &event.Event{Seq: uint64(len(l) + 1), ReceivedAt: now.Add(-ago), Tenant: tenant, Type: typ,
			Category: event.Category(typ[:len(typ)-len(".x")]), Severity: sev, User: user}
		l = append(l, e)
	}
	add(3*time.Hour, "acme", "authentication.x", event.SeverityLow, "old@example.com") // outside 1h, inside 24h
	for i := 0; i < 5; i++ {
		add(30*time.Minute, "acme", "authentication.x", event.SeverityHigh, "mallory@example.com")
	}
	add(10*time.Minute, "other", "fraud.x", event.SeverityCritical, "eve@example.com")
	return l
}

func getStats(t *testing.T, s *Stats, p *auth.Principal, query string) (int, StatsReport) {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, "/api/v1/stats"+query, nil)
	req = req.WithContext(auth.WithPrincipal(req.Context(), p))
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, req)
	var rep StatsReport
	if rec.Code == http.StatusOK {
		if err := json.Unmarshal(rec.Body.Bytes(), &rep); err != nil {
			t.Fatal(err)
		}
	}
	return rec.Code, rep
}

func TestStatsWindowsAndTenants(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	s := &Stats{Log: statsLog(now), Now: func() time.Time { return now }}
	admin := &auth.Principal{ID: "a", Role: auth.RoleAdmin, Tenant: auth.AllTenants}
	acme := &auth.Principal{ID: "v", Role: auth.RoleViewer, Tenant: "acme"}

	code, hour := getStats(t, s, admin, "?window=1h")
	if code != 200 || hour.Total != 6 || hour.ByCategory["authentication"] != 5 || hour.BySeverity["critical"] != 1 {
		t.Fatalf("1h: code %d report %+v", code, hour)
	}
	if len(hour.TopUsers) == 0 || hour.TopUsers[0] != (Count{Key: "mallory@example.com", Count: 5}) {
		t.Fatalf("top users = %+v", hour.TopUsers)
	}
	if sum(hour.Series["authentication"]) != 5 || len(hour.Buckets) != statsBuckets {
		t.Fatalf("series = %v (%d buckets)", hour.Series, len(hour.Buckets))
	}
	if _, day := getStats(t, s, admin, "?window=24h"); day.Total != 7 {
		t.Fatalf("24h total = %d, want 7", day.Total)
	}
	// A tenant-scoped token counts its tenant only.
	if _, own := getStats(t, s, acme, "?window=24h"); own.Total != 6 || own.ByCategory["fraud"] != 0 {
		t.Fatalf("tenant acme sees %+v", own)
	}
}

// TestStatsBounds: the window is validated and one request reads at most
// MaxScan events, saying when it truncated.
func TestStatsBounds(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	s := &Stats{Log: statsLog(now), Now: func() time.Time { return now }, MaxScan: 3}
	admin := &auth.Principal{ID: "a", Role: auth.RoleAdmin, Tenant: auth.AllTenants}
	for _, q := range []string{"?window=48h", "?window=1s", "?window=soon"} {
		if code, _ := getStats(t, s, admin, q); code != http.StatusBadRequest {
			t.Errorf("%s: code %d, want 400", q, code)
		}
	}
	code, rep := getStats(t, s, admin, "?window=24h")
	if code != 200 || rep.Scanned != 3 || !rep.Truncated || rep.Total != 3 {
		t.Fatalf("bounded scan: code %d scanned %d truncated %v total %d", code, rep.Scanned, rep.Truncated, rep.Total)
	}
	publisher := &auth.Principal{ID: "p", Role: auth.RolePublisher, Tenant: auth.AllTenants}
	if code, _ := getStats(t, s, publisher, ""); code != http.StatusForbidden {
		t.Fatalf("publisher: code %d, want 403", code)
	}
}

func sum(xs []int64) (n int64) {
	for _, x := range xs {
		n += x
	}
	return n
}

// TestStatsMasksForViewers: the top lists are built from the events as the
// policy shows them, so a viewer's top users and source IPs are masked.
func TestStatsMasksForViewers(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	l := memLog{{Seq: 1, ReceivedAt: now.Add(-time.Minute), Tenant: "acme", Type: "authentication.login_failed",
		Category: event.CategoryAuthentication, User: "mallory@example.com", SrcIP: "203.0.113.9"}}
	s := &Stats{Log: l, Now: func() time.Time { return now }, Policy: auth.NewPolicy(auth.DefaultMasking()).Visible}
	viewer := &auth.Principal{ID: "v", Role: auth.RoleViewer, Tenant: auth.AllTenants}
	_, rep := getStats(t, s, viewer, "")
	if rep.Total != 1 || len(rep.TopUsers) != 1 || len(rep.TopSrcIPs) != 1 {
		t.Fatalf("viewer report %+v", rep)
	}
	if rep.TopUsers[0].Key == "mallory@example.com" || rep.TopSrcIPs[0].Key == "203.0.113.9" {
		t.Fatalf("viewer sees unmasked values: users %+v ips %+v", rep.TopUsers, rep.TopSrcIPs)
	}
}

// countingLog counts scans and the most that ran at once.
type countingLog struct {
	memLog
	mu            sync.Mutex
	scans, active int
	maxActive     int
	hold          time.Duration
}

func (l *countingLog) ScanRange(ctx context.Context, from, to uint64, fn func(*event.Event) bool) error {
	l.mu.Lock()
	l.scans++
	l.active++
	l.maxActive = max(l.maxActive, l.active)
	l.mu.Unlock()
	time.Sleep(l.hold) // a slow read, so concurrent requests overlap
	defer func() { l.mu.Lock(); l.active--; l.mu.Unlock() }()
	return l.memLog.ScanRange(ctx, from, to, fn)
}

// TestStatsCachedAndBounded: a report is reused within its TTL instead of
// reading the log again, and no more than maxConcurrentScans reads run at
// once however many consoles ask.
func TestStatsCachedAndBounded(t *testing.T) {
	now := time.Now()
	l := &countingLog{memLog: statsLog(now), hold: 30 * time.Millisecond}
	s := &Stats{Log: l}
	admin := &auth.Principal{ID: "a", Role: auth.RoleAdmin, Tenant: auth.AllTenants}
	for i := 0; i < 3; i++ {
		if code, _ := getStats(t, s, admin, "?window=1h"); code != 200 {
			t.Fatalf("code %d", code)
		}
	}
	if l.scans != 1 {
		t.Fatalf("3 requests within the TTL read the log %d times, want 1", l.scans)
	}
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := &auth.Principal{ID: fmt.Sprintf("p%d", i), Role: auth.RoleAnalyst, Tenant: auth.AllTenants}
			req := httptest.NewRequest(http.MethodGet, "/api/v1/stats", nil)
			s.ServeHTTP(httptest.NewRecorder(), req.WithContext(auth.WithPrincipal(req.Context(), p)))
		}()
	}
	wg.Wait()
	if l.scans != 9 || l.maxActive > maxConcurrentScans {
		t.Fatalf("8 principals: %d scans, at most %d at once (limit %d)", l.scans-1, l.maxActive, maxConcurrentScans)
	}
}
