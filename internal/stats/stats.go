// Package stats owns Vigil's live counters derived from the event stream:
// events per type and per category over the last minute and hour, failure,
// block and violation counts, the open detections by severity, the
// securityMetrics figures and the 0–100 security posture score. One
// internal hub client feeds it (replaying recent history on start), so every
// consumer — phase 8 get_security_status, GET /api/v1/status, GraphQL
// securityMetrics and securityPosture — reads the same numbers.
package stats

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/hub"
)

// key is one counted dimension. Counting per tenant lets a snapshot show a
// principal only its own tenant's traffic.
type key struct {
	tenant   string
	category event.Category
	typ      string
}

// counts are what is tallied per key and time bucket.
type counts struct {
	events   int64
	failures int64 // outcome == failure
	blocked  int64 // rate-limit style blocks (see Blocked)
	highRisk int64 // severity high or critical
	opens    int64 // circuit breaker transitions to open (see CircuitOpened)
}

func (c *counts) add(o counts) {
	c.events += o.events
	c.failures += o.failures
	c.blocked += o.blocked
	c.highRisk += o.highRisk
	c.opens += o.opens
}

// bucket holds the counts of one second (minute ring) or one minute (hour
// ring); stamp says which second/minute, so stale slots are recognised
// without a sweeper goroutine.
type bucket struct {
	stamp int64
	m     map[key]*counts
}

// openDetection is the stream-derived state of one detection.
type openDetection struct {
	tenant   string
	severity string
}

// maxOpenDetections bounds the open-detection index; past it the oldest
// entries are forgotten (the detection engine, not stats, is authoritative).
const maxOpenDetections = 100_000

// DefaultMaxReplay bounds how many stored events Run replays at start.
const DefaultMaxReplay = 200_000

// Stats is safe for concurrent use. Create it with New, feed it with Run
// (or Observe), read it with Snapshot.
type Stats struct {
	// MaxReplay bounds the start-up replay (set before Run; 0: the
	// default). Replaying a busy hour in full could take minutes, so the
	// windows after a restart hold at most this many earlier events.
	MaxReplay int

	log   *slog.Logger
	start time.Time

	mu      sync.Mutex
	seconds [60]bucket
	minutes [60]bucket
	total   map[string]int64 // per tenant, since start of observation
	open    map[string]openDetection
	order   []string // insertion order of open, for bounding
	lastSeq uint64
}

// New returns empty statistics.
func New(logger *slog.Logger) *Stats {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Stats{log: logger, start: time.Now(), total: map[string]int64{}, open: map[string]openDetection{}}
}

// Stats see every tenant and category (the consumer is an internal admin):
// they are filtered per reader at Snapshot time, not at collection.
// Run observes every event through an in-process hub consumer, replaying
// up to MaxReplay stored events first so the windows are right after a
// restart (events older than an hour are skipped), until ctx ends. It
// misses no event: the consumer resumes after a lag. The caller owns the
// goroutine running it; it returns when ctx ends or the hub shuts down.
func (s *Stats) Run(ctx context.Context, h *hub.Hub) error {
	maxReplay := uint64(s.MaxReplay)
	if maxReplay == 0 {
		maxReplay = DefaultMaxReplay
	}
	c := h.Consumer("stats")
	head, err := c.Head(ctx)
	if err != nil {
		return nil // ctx ended before the hub started
	}
	from := uint64(1)
	if head > maxReplay {
		from = head - maxReplay + 1
	}
	if err := c.Tail(ctx, from, s.Observe); err != nil && !errors.Is(err, hub.ErrShutdown) {
		return fmt.Errorf("stats: %w", err)
	}
	return nil
}

// LastSeq is the seq of the last event observed (its start-up replay
// included): for the node's start-up catch-up.
func (s *Stats) LastSeq() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastSeq
}

// Blocked reports whether an event records a blocked request or action:
// data.blocked == true, or an action/outcome naming a block. The database
// security dialect and GraphQL rateLimitEvents use the same rule.
func Blocked(e *event.Event) bool {
	if v, ok := e.Field("data.blocked"); ok {
		if b, ok := v.(bool); ok {
			return b
		}
	}
	return e.Action == "blocked" || e.Action == "request_blocked" || strings.HasSuffix(e.Type, ".blocked")
}

// CircuitOpened reports whether a circuit-breaker event records a circuit
// opening: data.state "open" (any case) or action "opened"/"circuit_opened".
func CircuitOpened(e *event.Event) bool {
	if e.Category != event.CategoryCircuitBreaker {
		return false
	}
	if v, ok := e.Field("data.state"); ok {
		if st, ok := v.(string); ok {
			return strings.EqualFold(st, "open")
		}
	}
	return e.Action == "opened" || e.Action == "circuit_opened"
}

// Observe counts one event. Events are placed by their received_at time,
// so a replay after restart fills the right buckets; events older than an
// hour only count towards the totals.
func (s *Stats) Observe(e *event.Event) {
	at := e.ReceivedAt
	if at.IsZero() {
		at = time.Now()
	}
	c := counts{events: 1}
	if e.Outcome == "failure" {
		c.failures = 1
	}
	if Blocked(e) {
		c.blocked = 1
	}
	if e.Severity >= event.SeverityHigh {
		c.highRisk = 1
	}
	if CircuitOpened(e) {
		c.opens = 1
	}
	k := key{tenant: e.Tenant, category: e.Category, typ: e.Type}
	now := time.Now()

	s.mu.Lock()
	defer s.mu.Unlock()
	if e.Seq != 0 && e.Seq <= s.lastSeq {
		return // already counted (a resubscription overlapping its resume point)
	}
	if e.Seq != 0 {
		s.lastSeq = e.Seq
	}
	if e.Category == event.CategoryDetection {
		s.trackDetection(e)
	}
	if now.Sub(at) >= time.Hour || at.After(now.Add(time.Minute)) {
		return // replayed history beyond the windows
	}
	s.total[e.Tenant]++
	sec, min := at.Unix(), at.Unix()/60
	if now.Unix()-sec < 60 {
		addTo(&s.seconds[sec%60], sec, k, c)
	}
	addTo(&s.minutes[min%60], min, k, c)
}

func addTo(b *bucket, stamp int64, k key, c counts) {
	if b.stamp != stamp || b.m == nil {
		b.stamp = stamp
		b.m = map[key]*counts{}
	}
	cur := b.m[k]
	if cur == nil {
		cur = &counts{}
		b.m[k] = cur
	}
	cur.add(c)
}

// trackDetection follows detection.created / detection.updated events: a
// detection is open until its status is resolved or false_positive.
func (s *Stats) trackDetection(e *event.Event) {
	idv, _ := e.Field("data.id")
	id, _ := idv.(string)
	if id == "" {
		return
	}
	stv, _ := e.Field("data.status")
	status, _ := stv.(string)
	if status == "resolved" || status == "false_positive" {
		delete(s.open, id)
		return
	}
	sev := e.Severity.String()
	if v, ok := e.Field("data.severity"); ok {
		if str, ok := v.(string); ok && str != "" {
			sev = strings.ToLower(str)
		}
	}
	if _, known := s.open[id]; !known {
		s.order = append(s.order, id)
	}
	s.open[id] = openDetection{tenant: e.Tenant, severity: sev}
	if len(s.order) > 2*maxOpenDetections {
		s.compactOpen()
	}
}

// compactOpen drops closed ids from the order list and, if still too many
// are open, forgets the oldest.
func (s *Stats) compactOpen() {
	kept := s.order[:0]
	for _, id := range s.order {
		if _, ok := s.open[id]; ok {
			kept = append(kept, id)
		}
	}
	for len(kept) > maxOpenDetections {
		delete(s.open, kept[0])
		kept = kept[1:]
	}
	s.order = append([]string(nil), kept...)
}

// Window is a count over the last minute and the last hour.
type Window struct {
	LastMinute int64 `json:"last_minute"`
	LastHour   int64 `json:"last_hour"`
}

// Snapshot is the statistics one principal may see at one moment.
type Snapshot struct {
	Timestamp time.Time `json:"timestamp"`
	// Events is every visible event; ByType and ByCategory break it down.
	Events     Window            `json:"events"`
	ByType     map[string]Window `json:"events_per_type"`
	ByCategory map[string]Window `json:"events_per_category"`
	// Failures counts events with outcome failure, per category.
	Failures map[string]Window `json:"failures_per_category"`
	// Blocked counts blocked requests (see Blocked).
	Blocked Window `json:"blocked"`
	// HighSeverity counts high and critical events.
	HighSeverity Window `json:"high_severity"`
	// CircuitOpens counts circuit breakers opening (see CircuitOpened).
	CircuitOpens Window `json:"circuit_opens"`
	// OpenDetections counts detections not resolved, by severity.
	OpenDetections map[string]int64 `json:"open_detections"`
	// TotalObserved counts every visible event seen since the process
	// started observing (including replayed events of the last hour).
	TotalObserved int64 `json:"total_observed"`
	// EventsPerSecond is the last minute's average rate.
	EventsPerSecond float64 `json:"events_per_second"`
	UptimeSeconds   int64   `json:"uptime_seconds"`
}

// visible reports whether p may see counts of tenant t and category c; a
// nil principal sees everything (internal callers).
func visible(p *auth.Principal, tenant string, c event.Category) bool {
	if p == nil {
		return true
	}
	return p.CanRead() && p.SeesTenant(tenant) && p.SeesCategory(c)
}

// Snapshot sums the buckets visible to p (nil: all).
func (s *Stats) Snapshot(p *auth.Principal) Snapshot {
	now := time.Now()
	snap := Snapshot{
		Timestamp: now.UTC(), ByType: map[string]Window{}, ByCategory: map[string]Window{},
		Failures: map[string]Window{}, OpenDetections: map[string]int64{},
		UptimeSeconds: int64(now.Sub(s.start).Seconds()),
	}
	for _, sev := range event.Severities() {
		snap.OpenDetections[sev.String()] = 0
	}
	nowSec, nowMin := now.Unix(), now.Unix()/60
	s.mu.Lock()
	defer s.mu.Unlock()
	add := func(b *bucket, minute bool) {
		for k, c := range b.m {
			if !visible(p, k.tenant, k.category) {
				continue
			}
			bump := func(w *Window, n int64) {
				if minute {
					w.LastMinute += n
				} else {
					w.LastHour += n
				}
			}
			t, cat, f := snap.ByType[k.typ], snap.ByCategory[string(k.category)], snap.Failures[string(k.category)]
			bump(&snap.Events, c.events)
			bump(&t, c.events)
			bump(&cat, c.events)
			bump(&f, c.failures)
			bump(&snap.Blocked, c.blocked)
			bump(&snap.HighSeverity, c.highRisk)
			bump(&snap.CircuitOpens, c.opens)
			snap.ByType[k.typ], snap.ByCategory[string(k.category)] = t, cat
			if f.LastMinute > 0 || f.LastHour > 0 {
				snap.Failures[string(k.category)] = f
			}
		}
	}
	for i := range s.seconds {
		if b := &s.seconds[i]; b.m != nil && nowSec-b.stamp < 60 && b.stamp <= nowSec {
			add(b, true)
		}
	}
	for i := range s.minutes {
		if b := &s.minutes[i]; b.m != nil && nowMin-b.stamp < 60 && b.stamp <= nowMin {
			add(b, false)
		}
	}
	for t, n := range s.total {
		if p == nil || p.SeesTenant(t) {
			snap.TotalObserved += n
		}
	}
	for _, d := range s.open {
		if p == nil || (p.SeesTenant(d.tenant) && p.SeesCategory(event.CategoryDetection)) {
			snap.OpenDetections[d.severity]++
		}
	}
	snap.EventsPerSecond = float64(snap.Events.LastMinute) / 60
	return snap
}

// SortedKeys returns the keys of a window map in order, for stable output.
func SortedKeys(m map[string]Window) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
