package dashboard

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/domain"
	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/hub"
)

// The console's two small endpoints: who the token is (so the page shows a
// viewer no status buttons) and the overview's counts over the last hour or
// day, computed from the log (the live stats keep one hour only, and a
// counter "since the page connected" resets on every reload).

// WhoAmI serves GET /api/v1/whoami: the principal behind the token (never
// the token) and what it may do. The console checks a token with it before
// opening any stream, because a browser cannot see the HTTP status of a
// refused WebSocket handshake (it reports 1006).
func WhoAmI(w http.ResponseWriter, r *http.Request) {
	p, ok := auth.FromContext(r.Context())
	if !ok {
		auth.WriteErr(w, domain.Errorf(domain.KindUnauthenticated, "missing bearer token"))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"principal":             p,
		"can_read":              p.CanRead(),
		"can_publish":           p.CanPublish(),
		"can_update_detections": p.CanUpdateDetections(),
		"is_admin":              p.IsAdmin(),
		"sees_all_tenants":      p.Tenant == auth.AllTenants,
	})
}

// Log is the event log as the stats endpoint reads it.
type Log interface {
	Head(ctx context.Context) (uint64, error)
	SeqForTime(ctx context.Context, t time.Time) (uint64, error)
	ScanRange(ctx context.Context, from, to uint64, fn func(*event.Event) bool) error
}

// DefaultMaxStatsScan bounds how many stored events one stats request
// reads: a busy day is summarised from its newest events, and the answer
// says so (truncated, and the time its oldest counted event has).
const DefaultMaxStatsScan = 200_000

// MaxStatsWindow is the longest window the stats endpoint accepts.
const MaxStatsWindow = 24 * time.Hour

// statsBuckets is how many rate points a window is cut into.
const statsBuckets = 60

// topN is how many entries each top list keeps.
const topN = 10

// Stats serves GET /api/v1/stats?window=1h|24h (any Go duration from 1m to
// 24h): counts per category and severity, a rate series per category, the
// top rules, users and source IPs, and the ATT&CK tactics and techniques
// seen in detection events, over the events the principal may read (masked
// as the policy masks them).
type Stats struct {
	Log    Log
	Policy hub.Policy
	// MaxScan bounds the events read per request (0: DefaultMaxStatsScan).
	MaxScan int
	// Now is the clock (nil: time.Now); tests pin it.
	Now func() time.Time

	// A report costs a read of the window (about 4 s per 100,000 events on
	// a busy 2-core machine), and every open overview asks again and again:
	// reports are cached per principal and window for a short while, and
	// at most maxConcurrentScans reads run at once (others wait).
	once  sync.Once
	sem   chan struct{}
	mu    sync.Mutex
	cache map[string]cachedReport
}

type cachedReport struct {
	rep *StatsReport
	at  time.Time
}

const (
	maxConcurrentScans = 2
	maxCachedReports   = 256
)

// cacheTTL is how long a report is reused: a tenth of its window, between
// 10 s and 2 min (one bucket of the rate series is a sixtieth).
func cacheTTL(win time.Duration) time.Duration {
	return min(max(win/10, 10*time.Second), 2*time.Minute)
}

func (s *Stats) init() {
	s.once.Do(func() {
		s.sem = make(chan struct{}, maxConcurrentScans)
		s.cache = map[string]cachedReport{}
	})
}

// cached returns the report of p over win, computing it at most once per
// cacheTTL (two principals with the same identity and scope share it).
func (s *Stats) cached(ctx context.Context, p *auth.Principal, win time.Duration) (*StatsReport, error) {
	s.init()
	key := fmt.Sprintf("%s|%s|%s|%v|%s", p.ID, p.Role, p.Tenant, p.Categories, win)
	now := time.Now()
	s.mu.Lock()
	if c, ok := s.cache[key]; ok && now.Sub(c.at) < cacheTTL(win) {
		s.mu.Unlock()
		return c.rep, nil
	}
	s.mu.Unlock()
	select {
	case s.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("stats: waiting for a free scan slot: %w", ctx.Err())
	}
	defer func() { <-s.sem }()
	rep, err := s.Report(ctx, p, win)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.cache) >= maxCachedReports {
		for k, c := range s.cache { // drop the expired, or else any one
			if now.Sub(c.at) >= cacheTTL(win) || len(s.cache) >= maxCachedReports {
				delete(s.cache, k)
			}
		}
	}
	s.cache[key] = cachedReport{rep: rep, at: time.Now()}
	return rep, nil
}

// Count is one entry of a top list.
type Count struct {
	Key   string `json:"key"`
	Count int64  `json:"count"`
}

// StatsReport is the answer of GET /api/v1/stats.
type StatsReport struct {
	Window     string           `json:"window"`
	From       time.Time        `json:"from"`
	To         time.Time        `json:"to"`
	Total      int64            `json:"total"`
	ByCategory map[string]int64 `json:"by_category"`
	BySeverity map[string]int64 `json:"by_severity"`
	// Series: bucket start times (Unix seconds) and, per category, the
	// events in each bucket.
	BucketSeconds int64              `json:"bucket_seconds"`
	Buckets       []int64            `json:"buckets"`
	Series        map[string][]int64 `json:"series"`
	TopRules      []Count            `json:"top_rules"`
	TopUsers      []Count            `json:"top_users"`
	TopSrcIPs     []Count            `json:"top_src_ips"`
	TopTypes      []Count            `json:"top_types"`
	// Attack counts detection firings per tactic|technique cell
	// ("TA0006|T1110"), per tactic and per technique.
	Attack     map[string]int64 `json:"attack"`
	Tactics    map[string]int64 `json:"tactics"`
	Techniques map[string]int64 `json:"techniques"`
	// Scanned is how many stored events were read; Truncated says the
	// window held more than MaxScan and only the newest were counted
	// (Oldest is the receive time of the oldest counted one).
	Scanned   int64     `json:"scanned"`
	Truncated bool      `json:"truncated"`
	Oldest    time.Time `json:"oldest,omitzero"`
}

// ServeHTTP handles GET /api/v1/stats.
func (s *Stats) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p, ok := auth.FromContext(r.Context())
	if !ok {
		auth.WriteErr(w, domain.Errorf(domain.KindUnauthenticated, "missing bearer token"))
		return
	}
	if !p.CanRead() {
		auth.WriteErr(w, domain.Errorf(domain.KindForbidden, "role %s may not read events", p.Role))
		return
	}
	win := time.Hour
	if v := r.URL.Query().Get("window"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < time.Minute || d > MaxStatsWindow {
			auth.WriteErr(w, domain.Errorf(domain.KindInvalid, "window: %q must be a duration from 1m to 24h, e.g. 1h or 24h", v))
			return
		}
		win = d
	}
	rep, err := s.cached(r.Context(), p, win)
	if err != nil {
		auth.WriteErr(w, domain.Errorf(domain.KindUnavailable, "%w", err))
		return
	}
	writeJSON(w, http.StatusOK, rep)
}

// Report computes the statistics of the last win that p may see.
func (s *Stats) Report(ctx context.Context, p *auth.Principal, win time.Duration) (*StatsReport, error) {
	now := time.Now()
	if s.Now != nil {
		now = s.Now()
	}
	from := now.Add(-win)
	bucket := win / statsBuckets
	rep := &StatsReport{
		Window: win.String(), From: from.UTC(), To: now.UTC(), BucketSeconds: int64(bucket / time.Second),
		ByCategory: map[string]int64{}, BySeverity: map[string]int64{}, Series: map[string][]int64{},
		Attack: map[string]int64{}, Tactics: map[string]int64{}, Techniques: map[string]int64{},
	}
	for _, sev := range event.Severities() {
		rep.BySeverity[sev.String()] = 0
	}
	rep.Buckets = make([]int64, statsBuckets)
	for i := range rep.Buckets {
		rep.Buckets[i] = from.Add(time.Duration(i) * bucket).Unix()
	}
	head, err := s.Log.Head(ctx)
	if err != nil {
		return nil, fmt.Errorf("stats: log head: %w", err)
	}
	lo, err := s.Log.SeqForTime(ctx, from)
	if err != nil {
		return nil, fmt.Errorf("stats: seq for %s: %w", from.Format(time.RFC3339), err)
	}
	lo = max(lo, 1)
	if head == 0 || lo > head {
		return rep, nil
	}
	maxScan := uint64(s.MaxScan)
	if maxScan == 0 {
		maxScan = DefaultMaxStatsScan
	}
	if head-lo+1 > maxScan {
		lo = head - maxScan + 1
		rep.Truncated = true
	}
	policy := s.Policy
	if policy == nil {
		policy = hub.DefaultPolicy
	}
	rules, users, ips, types := map[string]int64{}, map[string]int64{}, map[string]int64{}, map[string]int64{}
	err = s.Log.ScanRange(ctx, lo, head, func(e *event.Event) bool {
		rep.Scanned++
		if rep.Oldest.IsZero() {
			rep.Oldest = e.ReceivedAt.UTC()
		}
		if e.ReceivedAt.Before(from) || e.ReceivedAt.After(now) {
			return true
		}
		v, ok := policy(p, e)
		if !ok {
			return true
		}
		rep.Total++
		cat := string(v.Category)
		rep.ByCategory[cat]++
		rep.BySeverity[v.Severity.String()]++
		types[v.Type]++
		if v.User != "" {
			users[v.User]++
		}
		if v.SrcIP != "" {
			ips[v.SrcIP]++
		}
		i := int(e.ReceivedAt.Sub(from) / bucket)
		if i >= 0 && i < statsBuckets {
			ser := rep.Series[cat]
			if ser == nil {
				ser = make([]int64, statsBuckets)
				rep.Series[cat] = ser
			}
			ser[i]++
		}
		if v.Category == event.CategoryDetection && v.Type == "detection.created" {
			countDetection(rep, rules, v)
		}
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("stats: scan %d..%d: %w", lo, head, err)
	}
	rep.TopRules, rep.TopUsers, rep.TopSrcIPs, rep.TopTypes = top(rules), top(users), top(ips), top(types)
	return rep, nil
}

// countDetection tallies one new detection: its rule and its ATT&CK cells.
func countDetection(rep *StatsReport, rules map[string]int64, e *event.Event) {
	rule, _ := e.Field("data.rule_id")
	if s, ok := rule.(string); ok && s != "" {
		rules[s]++
	}
	tactics, techniques := e.MitreTactics, e.MitreTechniques
	for _, ta := range tactics {
		rep.Tactics[ta]++
	}
	for _, t := range techniques {
		rep.Techniques[t]++
		if len(tactics) == 0 {
			rep.Attack["|"+t]++
		}
		for _, ta := range tactics {
			rep.Attack[ta+"|"+t]++
		}
	}
}

func top(m map[string]int64) []Count {
	out := make([]Count, 0, len(m))
	for k, n := range m {
		out = append(out, Count{Key: k, Count: n})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Count != out[j].Count {
			return out[i].Count > out[j].Count
		}
		return out[i].Key < out[j].Key
	})
	if len(out) > topN {
		out = out[:topN]
	}
	return out
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
