// Package detect owns detections (SPEC 6): loading built-in and directory
// Sigma rules into a RuleSet, evaluating them (with Sigma v2 correlation
// state) over the log off the ingest path, turning firings into
// detections with one open detection per rule and group key, the
// detection lifecycle, persistence in a JetStream KV bucket, the
// detection.created / detection.updated events appended to the log, and
// the REST handlers for detections and rules.
//
// The engine reads events through a Source: in a node that is the hub's
// in-process consumer (hub.Consumer), which hands it the events the hub has
// already decoded and, when rule evaluation falls behind during a burst,
// resumes from the missed event by replaying from the log, so every event
// is evaluated and no client waits for the rules; tests may pass the log
// itself (store.Log.Tail). A cursor kept in the KV bucket lets it resume
// after a restart where it stopped.
package detect

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/store"
)

// SourceName is the source of every event the engine appends; the engine
// skips its own events so detections never feed back into themselves.
const SourceName = "vigil-detect"

// DefaultBucket is the JetStream KV bucket holding detection state.
const DefaultBucket = "VIGIL_DETECTIONS"

// cursorKey holds the seq of the last event evaluated.
const cursorKey = "cursor"

// Source is the stream of events as the engine reads it, in seq order
// (satisfied by *hub.Consumer and *store.Log).
type Source interface {
	Head(ctx context.Context) (uint64, error)
	Tail(ctx context.Context, from uint64, fn func(*event.Event)) error
}

// Appender is the log as the engine writes to it (satisfied by *store.Log).
type Appender interface {
	Append(ctx context.Context, events []*event.Event) ([]store.Ack, error)
}

// Options configure an Engine.
type Options struct {
	Source    Source
	Appender  Appender
	JetStream jetstream.JetStream // nil: detections live in memory only
	Bucket    string              // default DefaultBucket
	// Replicas of the bucket (store.Log.Replicas: the stream's); 0 means 1.
	Replicas int
	// Rules is the rule set; nil loads the built-ins and RulesDir.
	Rules    *RuleSet
	RulesDir string
	// Suppression: a firing for a rule and group key that has an open
	// detection last seen less than this long ago updates that detection
	// instead of creating a new one. Default 1h.
	Suppression time.Duration
	// FlushInterval batches detection.updated events and KV writes for
	// detections that keep firing. Default 1s.
	FlushInterval time.Duration
	MaxKeys       int // correlation windows per rule; default 100,000
	MaxEventIDs   int // event ids kept per detection; default 100
	Limits        event.Limits
	Logger        *slog.Logger
}

// Engine evaluates rules over the log and owns the detections.
type Engine struct {
	opts  Options
	log   *slog.Logger
	rules *RuleSet
	eval  *Evaluator // owned by the Run goroutine
	kv    jetstream.KeyValue

	mu    sync.Mutex
	byID  map[string]*Detection
	open  map[string]string // tenant, rule, group key → open detection id
	dirty map[string]bool

	// emitMu serialises "snapshot then append", so the log's order of
	// detection events is the order of the changes.
	emitMu sync.Mutex

	started   chan struct{} // closed once Run has positioned itself on the log
	startOnce sync.Once

	lastSeq  atomic.Uint64
	savedSeq uint64 // guarded by emitMu
	evalNs   atomic.Int64
	events   atomic.Uint64
	firings  atomic.Uint64
	overflow atomic.Uint64
}

// New loads rules and persisted detections. Run starts evaluation.
func New(ctx context.Context, opts Options) (*Engine, error) {
	if opts.Suppression <= 0 {
		opts.Suppression = time.Hour
	}
	if opts.FlushInterval <= 0 {
		opts.FlushInterval = time.Second
	}
	if opts.MaxEventIDs <= 0 {
		opts.MaxEventIDs = 100
	}
	if opts.Limits.MaxStringLen == 0 {
		opts.Limits = event.DefaultLimits()
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Bucket == "" {
		opts.Bucket = DefaultBucket
	}
	e := &Engine{opts: opts, log: opts.Logger.With("component", "detect"), byID: map[string]*Detection{},
		open: map[string]string{}, dirty: map[string]bool{}, started: make(chan struct{})}
	rs := opts.Rules
	if rs == nil {
		var err error
		rs, err = LoadRules(LoadOptions{Dir: opts.RulesDir})
		if err != nil {
			return nil, err
		}
	}
	e.rules = rs
	for _, se := range rs.Errors() {
		e.log.Error("rule not loaded", "path", se.Path, "line", se.Line, "rule", se.Rule, "reason", se.Reason)
	}
	e.log.Info("detection rules loaded", "loaded", rs.Len(), "failed", len(rs.Errors()))
	e.eval = NewEvaluator(rs, opts.MaxKeys, opts.MaxEventIDs)
	if opts.JetStream != nil {
		kv, err := store.OpenKeyValue(ctx, opts.JetStream, jetstream.KeyValueConfig{
			Bucket:      opts.Bucket,
			Description: "Vigil detections (one key per detection id) and the rule engine's cursor",
			History:     1,
			Storage:     jetstream.FileStorage,
			Replicas:    opts.Replicas,
		})
		if err != nil {
			return nil, fmt.Errorf("detect: kv bucket %s: %w", opts.Bucket, err)
		}
		e.kv = kv
		if err := e.load(ctx); err != nil {
			return nil, err
		}
	}
	return e, nil
}

// Started is closed once Run knows where in the log it starts: events
// appended after that are evaluated.
func (e *Engine) Started() <-chan struct{} { return e.started }

// Rules returns the rule set.
func (e *Engine) Rules() *RuleSet { return e.rules }

func openKey(tenant, ruleID, groupKey string) string {
	return tenant + "\x1f" + ruleID + "\x1f" + groupKey
}

// load reads every persisted detection and the cursor.
func (e *Engine) load(ctx context.Context) error {
	w, err := e.kv.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("detect: kv watch: %w", err)
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case entry, ok := <-w.Updates():
			if !ok {
				return errors.New("detect: kv watch closed while loading")
			}
			if entry == nil { // all initial values delivered
				e.log.Info("detections loaded", "count", len(e.byID), "cursor", e.savedSeq)
				return nil
			}
			if entry.Operation() != jetstream.KeyValuePut {
				continue
			}
			if entry.Key() == cursorKey {
				seq, err := strconv.ParseUint(string(entry.Value()), 10, 64)
				if err == nil {
					e.savedSeq = seq
					e.lastSeq.Store(seq)
				}
				continue
			}
			var d Detection
			if err := json.Unmarshal(entry.Value(), &d); err != nil {
				e.log.Warn("skipping unreadable detection in kv", "key", entry.Key(), "err", err)
				continue
			}
			e.byID[d.ID] = &d
			if !d.Status.Final() {
				k := openKey(d.Tenant, d.RuleID, d.GroupKey)
				if prev, ok := e.open[k]; !ok || e.byID[prev].LastSeen.Before(d.LastSeen) {
					e.open[k] = d.ID
				}
			}
		}
	}
}

// Run evaluates every event appended from the saved cursor (or the
// current head on first start) until ctx ends. It owns the evaluator and a
// flusher goroutine that it stops before returning.
func (e *Engine) Run(ctx context.Context) error {
	from := e.lastSeq.Load() + 1
	if e.lastSeq.Load() == 0 {
		head, err := e.opts.Source.Head(ctx)
		if err != nil {
			return fmt.Errorf("detect: head: %w", err)
		}
		from = head + 1
		e.lastSeq.Store(head)
	}
	e.startOnce.Do(func() { close(e.started) })
	var wg sync.WaitGroup
	flushCtx, stopFlush := context.WithCancel(context.WithoutCancel(ctx))
	wg.Add(1)
	go func() { // the flusher: stopped by stopFlush below
		defer wg.Done()
		t := time.NewTicker(e.opts.FlushInterval)
		defer t.Stop()
		for {
			select {
			case <-flushCtx.Done():
				return
			case <-t.C:
				e.flush(flushCtx)
			}
		}
	}()
	defer func() {
		stopFlush()
		wg.Wait()
		final, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		e.flush(final)
	}()
	backoff := 100 * time.Millisecond
	for {
		err := e.opts.Source.Tail(ctx, from, func(ev *event.Event) { e.handle(ctx, ev) })
		if ctx.Err() != nil {
			return nil
		}
		from = e.lastSeq.Load() + 1
		e.log.Warn("log tail ended; resuming", "from", from, "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// handle evaluates one event (Run's goroutine only).
func (e *Engine) handle(ctx context.Context, ev *event.Event) {
	defer e.lastSeq.Store(ev.Seq)
	if ev.Category == event.CategoryDetection && ev.Source == SourceName {
		return
	}
	start := time.Now()
	fs := e.eval.Evaluate(ev)
	e.evalNs.Add(int64(time.Since(start)))
	e.events.Add(1)
	for _, f := range fs {
		e.firings.Add(1)
		e.fire(ctx, f)
	}
}

// fire turns a firing into a new detection or an update of the open one.
func (e *Engine) fire(ctx context.Context, f *firing) {
	now := time.Now().UTC()
	m := f.rule.meta
	k := openKey(f.tenant, m.RuleID, f.groupKey)
	e.mu.Lock()
	if id, ok := e.open[k]; ok {
		d := e.byID[id]
		if d != nil && !d.Status.Final() && f.at.Sub(d.LastSeen) <= e.opts.Suppression {
			d.Count += f.newEvents
			d.EventIDs = mergeIDs(d.EventIDs, f.eventIDs, e.opts.MaxEventIDs)
			if f.at.After(d.LastSeen) {
				d.LastSeen = f.at
			}
			d.UpdatedAt = now
			e.dirty[id] = true
			e.mu.Unlock()
			return
		}
	}
	id, err := uuid.NewV7()
	if err != nil {
		e.mu.Unlock()
		e.log.Error("detection id", "err", err)
		return
	}
	d := &Detection{
		ID: id.String(), RuleID: m.RuleID, Title: m.Title, Category: m.Category, Severity: m.Severity,
		Confidence: m.Confidence, Status: StatusActive,
		MitreTactics: nonNil(m.Tactics), MitreTechniques: nonNil(m.Techniques), OWASPCategory: m.OWASP,
		CreatedAt: now, UpdatedAt: now, EventIDs: mergeIDs(nil, f.eventIDs, e.opts.MaxEventIDs),
		GroupKey: f.groupKey, Count: max(f.newEvents, 1), Tenant: f.tenant, Group: f.group,
		FirstSeen: f.at, LastSeen: f.at,
		History: []Change{{At: now, By: "rule:" + m.RuleID, Field: "status", From: "", To: string(StatusActive)}},
	}
	e.byID[d.ID] = d
	e.open[k] = d.ID
	e.mu.Unlock()
	if err := e.emit(ctx, []string{d.ID}, "detection.created"); err != nil {
		e.log.Error("append detection.created", "detection", d.ID, "rule", m.RuleID, "err", err)
		e.mu.Lock()
		e.dirty[d.ID] = true // the flusher retries (as detection.updated)
		e.mu.Unlock()
		return
	}
	e.log.Info("detection created", "detection", d.ID, "rule", m.RuleID, "severity", m.Severity, "group", f.groupKey, "tenant", f.tenant)
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return slices.Clone(s)
}

// mergeIDs appends new ids not yet present, keeping the newest max.
// A correlation re-fires with its whole window, in log order, so the ids
// already kept usually end where the window's new ids begin: find have's
// newest id in add and take what follows. Only when it is absent (a new
// window, a sequence rule) are the ids compared one by one, through a set.
func mergeIDs(have, add []string, max int) []string {
	if len(have) > 0 {
		last := have[len(have)-1]
		for i := len(add) - 1; i >= 0; i-- {
			if add[i] == last {
				have = append(have, add[i+1:]...)
				return capIDs(have, max)
			}
		}
	}
	seen := make(map[string]struct{}, len(have)+len(add))
	for _, id := range have {
		seen[id] = struct{}{}
	}
	for _, id := range add {
		if _, ok := seen[id]; !ok {
			seen[id] = struct{}{}
			have = append(have, id)
		}
	}
	return capIDs(have, max)
}

func capIDs(have []string, max int) []string {
	if len(have) > max {
		have = append(have[:0], have[len(have)-max:]...)
	}
	return have
}

// flush appends detection.updated for detections that changed since the
// last flush, persists them and the cursor.
func (e *Engine) flush(ctx context.Context) {
	e.mu.Lock()
	ids := make([]string, 0, len(e.dirty))
	for id := range e.dirty {
		ids = append(ids, id)
	}
	e.mu.Unlock()
	if len(ids) > 0 {
		sort.Strings(ids)
		if err := e.emit(ctx, ids, "detection.updated"); err != nil {
			e.log.Error("append detection.updated", "count", len(ids), "err", err)
		}
	}
	e.saveCursor(ctx)
}

func (e *Engine) saveCursor(ctx context.Context) {
	if e.kv == nil {
		return
	}
	e.emitMu.Lock()
	defer e.emitMu.Unlock()
	seq := e.lastSeq.Load()
	if seq == e.savedSeq {
		return
	}
	if _, err := e.kv.Put(ctx, cursorKey, []byte(strconv.FormatUint(seq, 10))); err != nil {
		e.log.Warn("save detection cursor", "err", err)
		return
	}
	e.savedSeq = seq
}

// emit snapshots the detections, appends one event each and persists
// them. Dirty marks are cleared for what was emitted; on failure they are
// restored so the flusher retries.
func (e *Engine) emit(ctx context.Context, ids []string, typ string) error {
	e.emitMu.Lock()
	defer e.emitMu.Unlock()
	now := time.Now().UTC()
	e.mu.Lock()
	snaps := make([]Detection, 0, len(ids))
	for _, id := range ids {
		if d, ok := e.byID[id]; ok {
			snaps = append(snaps, d.clone())
			delete(e.dirty, id)
		}
	}
	e.mu.Unlock()
	err := e.appendAndPersist(ctx, snaps, typ, now)
	if err != nil {
		e.mu.Lock()
		for _, d := range snaps {
			e.dirty[d.ID] = true
		}
		e.mu.Unlock()
	}
	return err
}

// appendAndPersist must be called with emitMu held.
func (e *Engine) appendAndPersist(ctx context.Context, snaps []Detection, typ string, now time.Time) error {
	if len(snaps) == 0 {
		return nil
	}
	events := make([]*event.Event, 0, len(snaps))
	blobs := make([][]byte, 0, len(snaps))
	for i := range snaps {
		ev, blob, err := e.detectionEvent(&snaps[i], typ, now)
		if err != nil {
			return err
		}
		events = append(events, ev)
		blobs = append(blobs, blob)
	}
	if e.opts.Appender != nil {
		if _, err := e.opts.Appender.Append(ctx, events); err != nil {
			return fmt.Errorf("detect: append %s: %w", typ, err)
		}
	}
	if e.kv != nil {
		for i, d := range snaps {
			if _, err := e.kv.Put(ctx, d.ID, blobs[i]); err != nil {
				return fmt.Errorf("detect: persist %s: %w", d.ID, err)
			}
		}
	}
	return nil
}

// detectionEvent builds the log event for a detection change.
func (e *Engine) detectionEvent(d *Detection, typ string, now time.Time) (*event.Event, []byte, error) {
	data, err := json.Marshal(d)
	if err != nil {
		return nil, nil, fmt.Errorf("detect: encode detection: %w", err)
	}
	sev, err := event.ParseSeverity(d.Severity)
	if err != nil {
		sev = event.SeverityMedium
	}
	conf := d.Confidence
	msg := d.Title
	if d.GroupKey != "" {
		msg += " (" + d.GroupKey + ")"
	}
	ev := &event.Event{
		Type: typ, Category: event.CategoryDetection, Severity: sev, Source: SourceName, Time: now,
		Message: msg, Action: string(d.Status), Confidence: &conf,
		MitreTactics: d.MitreTactics, MitreTechniques: d.MitreTechniques,
		Tags: []string{"rule:" + d.RuleID}, Data: data,
	}
	if u := d.Group["user"]; u != "" {
		ev.User = u
	}
	if ip := d.Group["src_ip"]; ip != "" {
		if _, err := netip.ParseAddr(ip); err == nil {
			ev.SrcIP = ip
		}
	}
	if len(ev.MitreTactics) == 0 {
		ev.MitreTactics = nil
	}
	if len(ev.MitreTechniques) == 0 {
		ev.MitreTechniques = nil
	}
	tenant := d.Tenant
	if tenant == "" {
		tenant = auth.DefaultTenant
	}
	if _, err := event.Normalize(ev, tenant, now, e.opts.Limits); err != nil {
		return nil, nil, fmt.Errorf("detect: detection event: %w", err)
	}
	return ev, data, nil
}

// visible reports whether p may see d.
func visible(p *auth.Principal, d *Detection) bool {
	return p.CanRead() && p.SeesTenant(d.Tenant) && p.SeesCategory(event.CategoryDetection)
}

// Query selects detections for the list endpoint.
type Query struct {
	Statuses   []string
	Severities []string
	Tactics    []string
	RuleIDs    []string
	Since      time.Time // updated at or after
	Limit      int
}

// List returns the detections p may see that match q, most recently
// updated first.
func (e *Engine) List(p *auth.Principal, q Query) []Detection {
	e.mu.Lock()
	var out []Detection
	for _, d := range e.byID {
		if !visible(p, d) {
			continue
		}
		if len(q.Statuses) > 0 && !slices.Contains(q.Statuses, string(d.Status)) ||
			len(q.Severities) > 0 && !slices.Contains(q.Severities, d.Severity) ||
			len(q.RuleIDs) > 0 && !slices.Contains(q.RuleIDs, d.RuleID) ||
			len(q.Tactics) > 0 && !intersects(q.Tactics, d.MitreTactics) ||
			!q.Since.IsZero() && d.UpdatedAt.Before(q.Since) {
			continue
		}
		out = append(out, d.clone())
	}
	e.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if !out[i].UpdatedAt.Equal(out[j].UpdatedAt) {
			return out[i].UpdatedAt.After(out[j].UpdatedAt)
		}
		return out[i].ID > out[j].ID
	})
	if q.Limit > 0 && len(out) > q.Limit {
		out = out[:q.Limit]
	}
	return out
}

func intersects(a, b []string) bool {
	for _, x := range a {
		if slices.Contains(b, x) {
			return true
		}
	}
	return false
}

// Get returns one detection p may see.
func (e *Engine) Get(p *auth.Principal, id string) (Detection, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	d, ok := e.byID[id]
	if !ok || !visible(p, d) {
		return Detection{}, ErrNotFound
	}
	return d.clone(), nil
}

// Update applies an analyst's patch: it is validated against the
// lifecycle, appended to the log as detection.updated and persisted before
// it takes effect, so a failed append changes nothing.
func (e *Engine) Update(ctx context.Context, p *auth.Principal, id string, patch Patch) (Detection, error) {
	e.emitMu.Lock()
	defer e.emitMu.Unlock()
	now := time.Now().UTC()
	by := p.ID
	if p.Name != "" && p.Name != p.ID {
		by = p.ID + " (" + p.Name + ")"
	}
	e.mu.Lock()
	live, ok := e.byID[id]
	if !ok || !visible(p, live) {
		e.mu.Unlock()
		return Detection{}, ErrNotFound
	}
	next := live.clone()
	changed, err := next.apply(patch, by, now)
	e.mu.Unlock()
	if err != nil || !changed {
		return next, err
	}
	if err := e.appendAndPersist(ctx, []Detection{next}, "detection.updated", now); err != nil {
		return Detection{}, err
	}
	e.mu.Lock()
	// Rule firings may have bumped count and event ids meanwhile; keep
	// those and take the analyst's fields.
	live.Status, live.Notes, live.Assignee = next.Status, next.Notes, next.Assignee
	live.History, live.UpdatedAt = next.History, next.UpdatedAt
	k := openKey(live.Tenant, live.RuleID, live.GroupKey)
	if live.Status.Final() {
		if e.open[k] == live.ID {
			delete(e.open, k)
		}
	} else if cur, ok := e.open[k]; !ok || e.byID[cur].Status.Final() {
		e.open[k] = live.ID // reopened: further firings update it again
	}
	out := live.clone()
	e.mu.Unlock()
	return out, nil
}

// Stats are the engine's counters.
type Stats struct {
	Events       uint64        `json:"events_evaluated"`
	Firings      uint64        `json:"firings"`
	Detections   int           `json:"detections"`
	Open         int           `json:"open_detections"`
	Cursor       uint64        `json:"cursor"`
	EvalTime     time.Duration `json:"eval_time_ns"`
	KeysOverflow uint64        `json:"correlation_keys_overflow"`
}

// Stats returns a snapshot of the counters.
func (e *Engine) Stats() Stats {
	e.mu.Lock()
	defer e.mu.Unlock()
	return Stats{Events: e.events.Load(), Firings: e.firings.Load(), Detections: len(e.byID), Open: len(e.open),
		Cursor: e.lastSeq.Load(), EvalTime: time.Duration(e.evalNs.Load()), KeysOverflow: e.eval.overflowTotal()}
}

// OpenBySeverity counts active and investigating detections per severity
// (for status endpoints).
func (e *Engine) OpenBySeverity() map[string]int {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := map[string]int{}
	for _, d := range e.byID {
		if !d.Status.Final() {
			out[d.Severity]++
		}
	}
	return out
}
