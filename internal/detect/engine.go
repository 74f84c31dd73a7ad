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
	"os"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/domain"
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
	Append(ctx context.Context, events []*event.Event) ([]domain.Ack, error)
}

// Rewinder reads the log before the cursor (satisfied by *store.Log): an
// engine that starts leading replays the span of the longest correlation
// window before its cursor to rebuild the windows.
type Rewinder interface {
	Read(ctx context.Context, from uint64, max int) ([]*event.Event, error)
	SeqForTime(ctx context.Context, t time.Time) (uint64, error)
}

// Options configure an Engine.
type Options struct {
	Source    Source
	Appender  Appender
	JetStream jetstream.JetStream // nil: detections live in memory only
	Bucket    string              // default DefaultBucket
	// Rules is the rule set; nil loads the built-ins and RulesDir.
	Rules    *RuleSet
	RulesDir string
	// Pipelines and Placeholders are LoadOptions.Pipelines and
	// .Placeholders for the rules loaded from RulesDir (issue 13).
	Pipelines    []string
	Placeholders string
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
	// Policy masks what List, Get, Update and backtests show a principal
	// whose role is masked (viewers by default), as the streams mask the
	// detection events. nil: nothing is masked.
	Policy *auth.Policy

	// Fail-over (docs/detections.md): with JetStream, every node's engine
	// campaigns for one lease in LeaderBucket and only the holder
	// evaluates rules. NodeID names the holder in logs and in the lease;
	// LeaseTTL (default DefaultLeaseTTL) bounds how long a killed leader
	// keeps the lease; Replicas is the replica count of both buckets
	// (store.Log.Replicas: the stream's; default 1, raised but never
	// lowered on an existing bucket).
	NodeID       string
	LeaseTTL     time.Duration
	LeaderBucket string // default LeaderBucket
	Replicas     int
	// Log, when set, lets a new leader rebuild correlation windows by
	// replaying up to MaxReplay events (default 1,000,000) before the
	// cursor: the span of the longest correlation timespan.
	Log       Rewinder
	MaxReplay int

	// Hot reload (docs/detections.md): ReloadOnSIGHUP reloads the rules
	// on SIGHUP (the server sets it; tests leave it off, a process-wide
	// signal cannot say which engine); RulesPoll is how often the rule
	// sources are checked for changes (0: DefaultRulesPoll, negative:
	// never).
	ReloadOnSIGHUP bool
	RulesPoll      time.Duration
	// MaxBacktests is how many backtests this node runs at once (default
	// 1); more are refused with 429.
	MaxBacktests int
}

// Engine evaluates rules over the log and owns the detections.
type Engine struct {
	opts Options
	log  *slog.Logger
	// rules and eval are swapped together by a hot reload (reload.go);
	// evalMu is held by whoever runs eval (Run's goroutine) and by the
	// swap, so a reload never lands in the middle of an event.
	rules  atomic.Pointer[RuleSet]
	eval   atomic.Pointer[Evaluator]
	evalMu sync.Mutex
	reload reloader
	// backtests holds a token per running backtest (Options.MaxBacktests).
	backtests chan struct{}
	kv        jetstream.KeyValue
	lease     *lease // nil without JetStream: this engine always leads

	leader atomic.Bool // holds the lease and evaluates
	// replayTo: events up to this seq are evaluated only to rebuild the
	// correlation windows (they were evaluated before the cursor); Run's
	// goroutine only.
	replayTo uint64
	// cursorFound: load found a saved cursor (even 0). Without one the
	// engine starts at the head and saves that at once, so a successor
	// never mistakes "nothing saved yet" for "start at the head" and skips
	// what this leader evaluated.
	cursorFound bool
	// startHead is the head when New found no cursor: the first leader
	// starts there, not at the head when it wins the election, so the
	// events a node accepted while its engine was still campaigning are
	// evaluated too.
	startHead      uint64
	startHeadKnown bool

	mu    sync.Mutex
	byID  map[string]*Detection
	open  map[string]string // tenant, rule, group key → open detection id
	dirty map[string]bool

	// emitMu serialises "snapshot then append", so the log's order of
	// detection events is the order of the changes.
	emitMu sync.Mutex

	started   chan struct{} // closed once Run has positioned itself on the log
	startOnce sync.Once

	lastSeq atomic.Uint64
	// handled: every event up to this seq was handled by this leadership,
	// its correlation-window replay included (from-1 when it starts):
	// ReplayedTo, for the node's start-up catch-up.
	handled  atomic.Uint64
	savedSeq uint64 // guarded by emitMu
	evalNs   atomic.Int64
	events   atomic.Uint64
	firings  atomic.Uint64
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
	if opts.LeaseTTL <= 0 {
		opts.LeaseTTL = DefaultLeaseTTL
	}
	if opts.LeaderBucket == "" {
		opts.LeaderBucket = LeaderBucket
	}
	if opts.NodeID == "" {
		opts.NodeID, _ = os.Hostname()
	}
	if opts.MaxReplay <= 0 {
		opts.MaxReplay = 1_000_000
	}
	if opts.RulesPoll == 0 {
		opts.RulesPoll = DefaultRulesPoll
	}
	if opts.MaxBacktests <= 0 {
		opts.MaxBacktests = 1
	}
	e := &Engine{opts: opts, log: opts.Logger.With("component", "detect"), byID: map[string]*Detection{},
		open: map[string]string{}, dirty: map[string]bool{}, started: make(chan struct{}),
		backtests: make(chan struct{}, opts.MaxBacktests)}
	e.reload.instance = newInstance()
	rs := opts.Rules
	if rs != nil {
		e.reload.stamp = rulesStamp(rs.opts) // as good as we can: it loaded before we were called
	} else {
		lo := LoadOptions{Dir: opts.RulesDir, Pipelines: opts.Pipelines, Placeholders: opts.Placeholders}
		e.reload.stamp = rulesStamp(lo)
		var err error
		rs, err = LoadRules(lo)
		if err != nil {
			return nil, err
		}
	}
	e.rules.Store(rs)
	for _, se := range rs.Errors() {
		e.log.Error("rule not loaded", "path", se.Path, "line", se.Line, "rule", se.Rule, "reason", se.Reason)
	}
	e.log.Info("detection rules loaded", "loaded", rs.Len(), "failed", len(rs.Errors()))
	e.eval.Store(NewEvaluator(rs, opts.MaxKeys, opts.MaxEventIDs))
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
		if e.lease, err = newLease(ctx, opts.JetStream, opts.LeaderBucket, opts.NodeID, opts.LeaseTTL, opts.Replicas); err != nil {
			return nil, err
		}
	}
	if !e.cursorFound && opts.Source != nil {
		head, err := opts.Source.Head(ctx)
		if err != nil {
			return nil, fmt.Errorf("detect: head: %w", err)
		}
		e.startHead, e.startHeadKnown = head, true
	}
	return e, nil
}

// Started is closed once Run knows where in the log it starts: events
// appended after that are evaluated.
func (e *Engine) Started() <-chan struct{} { return e.started }

// Rules returns the rule set.
func (e *Engine) Rules() *RuleSet { return e.rules.Load() }

func openKey(tenant, ruleID, groupKey string) string {
	return tenant + "\x1f" + ruleID + "\x1f" + groupKey
}

// load reads every persisted detection and the cursor: at start, and again
// when this engine becomes the leader (another one may have led
// meanwhile). Entries newer than the copy in memory replace it.
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
				e.mu.Lock()
				n := len(e.byID)
				e.mu.Unlock()
				e.log.Info("detections loaded", "count", n, "cursor", e.lastSeq.Load())
				return nil
			}
			if entry.Key() == cursorKey {
				if entry.Operation() != jetstream.KeyValuePut {
					continue
				}
				seq, err := strconv.ParseUint(string(entry.Value()), 10, 64)
				if err == nil {
					e.cursorFound = true
					e.emitMu.Lock()
					e.savedSeq = seq
					e.emitMu.Unlock()
					e.lastSeq.Store(seq)
				}
				continue
			}
			e.applyEntry(entry)
		}
	}
}

// applyEntry brings the copy in memory of one detection up to a KV entry,
// unless memory already holds that revision or a newer one.
func (e *Engine) applyEntry(entry jetstream.KeyValueEntry) {
	var d *Detection
	if entry.Operation() == jetstream.KeyValuePut {
		d = new(Detection)
		if err := json.Unmarshal(entry.Value(), d); err != nil {
			e.log.Warn("skipping unreadable detection in kv", "key", entry.Key(), "err", err)
			return
		}
		d.ID, d.rev = entry.Key(), entry.Revision()
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	id, rev := entry.Key(), entry.Revision()
	cur := e.byID[id]
	if cur != nil && cur.rev >= rev {
		return
	}
	if d == nil { // deleted from the bucket
		if cur != nil {
			e.unindexOpen(cur)
			delete(e.byID, id)
			delete(e.dirty, id)
		}
		return
	}
	if cur != nil && e.leader.Load() {
		// Only the leader changes count, event ids and times, and it
		// loaded them when it became leader: what another node wrote
		// since is an analyst's change. Take those fields and keep ours.
		cur.Status, cur.Notes, cur.Assignee, cur.History = d.Status, d.Notes, d.Assignee, d.History
		if d.UpdatedAt.After(cur.UpdatedAt) {
			cur.UpdatedAt = d.UpdatedAt
		}
		cur.rev = rev
		e.indexOpen(cur)
		return
	}
	if cur != nil {
		e.unindexOpen(cur)
	}
	e.byID[id] = d
	e.indexOpen(d)
}

// indexOpen makes d the open detection of its rule and group key when it
// is open and no other open detection was seen later (e.mu held).
func (e *Engine) indexOpen(d *Detection) {
	k := openKey(d.Tenant, d.RuleID, d.GroupKey)
	if d.Status.Final() {
		if e.open[k] == d.ID {
			delete(e.open, k)
		}
		return
	}
	if prev, ok := e.open[k]; ok && prev != d.ID {
		if p := e.byID[prev]; p != nil && !p.Status.Final() && !p.LastSeen.Before(d.LastSeen) {
			return
		}
	}
	e.open[k] = d.ID
}

func (e *Engine) unindexOpen(d *Detection) {
	k := openKey(d.Tenant, d.RuleID, d.GroupKey)
	if e.open[k] == d.ID {
		delete(e.open, k)
	}
}

// follow applies the changes other nodes make to the bucket — the
// leader's rule updates on a standby node, analysts' changes made through
// any node — so every node serves the detections API and the leader never
// overwrites an analyst's change. It runs until ctx ends.
func (e *Engine) follow(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for {
		// Every watch starts with the current values (applied only where
		// newer), so nothing written while it was down is missed.
		w, err := e.kv.WatchAll(ctx)
		if err == nil {
			backoff = 100 * time.Millisecond
			e.drainWatch(ctx, w)
			_ = w.Stop()
		} else if ctx.Err() == nil {
			e.log.Warn("detections watch failed; retrying", "err", err, "in", backoff)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

func (e *Engine) drainWatch(ctx context.Context, w jetstream.KeyWatcher) {
	for {
		select {
		case <-ctx.Done():
			return
		case entry, ok := <-w.Updates():
			if !ok {
				return
			}
			if entry != nil && entry.Key() != cursorKey {
				e.applyEntry(entry)
			}
		}
	}
}

// ReplayedTo is the seq up to which this node's engine has handled the
// log while leading: the events it evaluates and those it replays after a
// start to rebuild its correlation windows. 0 until it leads (a standby
// reads nothing).
func (e *Engine) ReplayedTo() uint64 { return e.handled.Load() }

// Leader reports whether this engine currently evaluates the rules.
func (e *Engine) Leader() bool { return e.leader.Load() }

// Run takes part in the election of the one engine that evaluates rules
// (docs/detections.md, "Fail-over") until ctx ends. While this node holds
// the lease it evaluates every event appended after the shared cursor (the
// current head on the very first start), having first rebuilt the
// correlation windows from the log before the cursor; when it loses the
// lease it stops evaluating and campaigns again. Meanwhile, leader or not,
// it keeps the detections in memory in step with the bucket. On return it
// has flushed and released the lease, so another node takes over at once.
// It owns the evaluator, a flusher, a lease keeper and the bucket watch,
// and stops them before returning. Without JetStream it always leads.
func (e *Engine) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	followCtx, stopFollow := context.WithCancel(ctx)
	defer func() { stopFollow(); wg.Wait() }()
	wg.Add(1)
	go func() { // the rules watcher (hot reload): stopped by stopFollow
		defer wg.Done()
		e.watchRules(followCtx)
	}()
	if e.kv != nil {
		wg.Add(1)
		go func() { // the bucket watch: stopped by stopFollow
			defer wg.Done()
			e.follow(followCtx)
		}()
	}
	if e.lease == nil {
		defer e.leader.Store(false)
		return e.lead(ctx, ctx)
	}
	for {
		acquired, err := e.campaign(ctx)
		if err != nil {
			return nil // ctx ended
		}
		lctx, lost := context.WithCancelCause(ctx)
		var kw sync.WaitGroup
		kw.Add(1)
		go func() { // the lease keeper: stopped by lost below
			defer kw.Done()
			e.lease.keep(lctx, acquired, lost, func(err error) {
				e.log.Warn("detection engine: renewing leadership failed; retrying", "err", err)
			})
		}()
		err = e.lead(ctx, lctx)
		cause := context.Cause(lctx) // nil while the lease is ours
		lost(nil)
		kw.Wait()
		e.leader.Store(false)
		if cause == nil || !errors.Is(cause, errLeaseLost) {
			// Graceful stop (or a failure to start leading): give the
			// lease up so another node need not wait for the TTL.
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			rerr := e.lease.release(rctx)
			cancel()
			if rerr != nil {
				e.log.Warn("detection engine leadership not released; a standby takes over when the lease expires", "node", e.opts.NodeID, "cursor", e.lastSeq.Load(), "err", rerr)
			} else {
				e.log.Info("detection engine leadership released", "node", e.opts.NodeID, "cursor", e.lastSeq.Load())
			}
		} else {
			e.log.Warn("detection engine leadership lost", "node", e.opts.NodeID, "reason", cause)
		}
		e.stepDown(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			e.log.Error("detection engine could not lead; campaigning again", "err", err)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(e.lease.ttl):
			}
		}
	}
}

// campaign returns once this node holds the lease (with the time its
// winning request was sent, where the lease's clock starts), or ctx's
// error. It tries at once, whenever the key is deleted (a graceful
// release, seen through a watch) and every ttl/10 (an expired lease leaves
// no trace in a watch).
func (e *Engine) campaign(ctx context.Context) (time.Time, error) {
	var updates <-chan jetstream.KeyValueEntry
	if w, err := e.lease.kv.Watch(ctx, leaderKey, jetstream.UpdatesOnly()); err == nil {
		defer func() { _ = w.Stop() }()
		updates = w.Updates()
	} else if ctx.Err() == nil {
		e.log.Warn("detection engine: leadership watch failed; polling only", "err", err)
	}
	poll := time.NewTicker(e.lease.ttl / 10)
	defer poll.Stop()
	following, failing := "", false
	for {
		sent := time.Now()
		ok, cur, err := e.lease.tryAcquire(ctx)
		switch {
		case ok:
			return sent, nil
		case err != nil:
			if !failing && ctx.Err() == nil {
				e.log.Warn("detection engine: campaigning for leadership failed; retrying", "err", err)
			}
			failing = true
		default:
			failing = false
			if cur.Instance != following {
				following = cur.Instance
				e.log.Info("detection engine standing by", "node", e.opts.NodeID, "leader", cur.Node, "leader_since", cur.Since)
			}
		}
	wait:
		for {
			select {
			case <-ctx.Done():
				return time.Time{}, ctx.Err()
			case <-poll.C:
				break wait
			case entry, ok := <-updates:
				if !ok {
					updates = nil
					continue
				}
				if entry != nil && entry.Operation() != jetstream.KeyValuePut {
					break wait // released: race for it now
				}
			}
		}
	}
}

// stepDown forgets what only the lost leadership knew: changes not yet
// persisted (the next leader evaluates those events again from the shared
// cursor and writes them) and detections never persisted. The ones that
// were persisted are read back as the bucket holds them.
func (e *Engine) stepDown(ctx context.Context) {
	e.mu.Lock()
	var reread []string
	for id := range e.dirty {
		d := e.byID[id]
		switch {
		case d == nil:
		case d.rev == 0:
			e.unindexOpen(d)
			delete(e.byID, id)
		default:
			d.rev = 0 // the next entry seen for it replaces it
			reread = append(reread, id)
		}
	}
	clear(e.dirty)
	e.mu.Unlock()
	if e.kv == nil || len(reread) == 0 {
		return
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	for _, id := range reread {
		if entry, err := e.kv.Get(rctx, id); err == nil {
			e.applyEntry(entry)
		}
	}
}

// lead evaluates events while ctx (the leadership) lasts; stop is the
// node's context: when it ends with the lease still held, lead flushes
// before returning.
func (e *Engine) lead(stop, ctx context.Context) error {
	if e.lease != nil {
		// The shared state as the last leader left it.
		e.lastSeq.Store(0)
		e.cursorFound = false
		if err := e.load(ctx); err != nil {
			return err
		}
	}
	e.evalMu.Lock()
	e.eval.Load().reset()
	e.evalMu.Unlock()
	from, err := e.position(ctx)
	if err != nil {
		return err
	}
	e.handled.Store(from - 1)
	e.leader.Store(true)
	if e.lease != nil {
		e.log.Info("detection engine leadership gained", "node", e.opts.NodeID, "cursor", e.lastSeq.Load(),
			"replay_from", from, "ttl", e.lease.ttl)
	}
	e.startOnce.Do(func() { close(e.started) })
	var wg sync.WaitGroup
	// Periodic flushes end with the leadership: a node that lost the
	// lease must not write the cursor or detections the new leader owns.
	// On a graceful stop the final flush below redoes an interrupted one.
	flushCtx, stopFlush := context.WithCancel(ctx)
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
		if stop.Err() == nil || errors.Is(context.Cause(ctx), errLeaseLost) {
			return // not leading any more: the next leader writes what is pending
		}
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
		from = max(e.lastSeq.Load(), e.replayTo) + 1
		e.log.Warn("log tail ended; resuming", "from", from, "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// position returns the seq the tail starts at: the one after the cursor
// (the head on the very first start), or, to rebuild the correlation
// windows, the first event within the longest correlation timespan before
// the cursor's event (at most MaxReplay events back). Events up to the
// cursor then only feed the windows (replayTo).
func (e *Engine) position(ctx context.Context) (uint64, error) {
	e.replayTo = 0
	cursor := e.lastSeq.Load()
	if !e.cursorFound {
		head := e.startHead
		if !e.startHeadKnown {
			var err error
			if head, err = e.opts.Source.Head(ctx); err != nil {
				return 0, fmt.Errorf("detect: head: %w", err)
			}
		}
		e.lastSeq.Store(head)
		if e.kv != nil {
			e.emitMu.Lock()
			_, err := e.kv.Put(ctx, cursorKey, []byte(strconv.FormatUint(head, 10)))
			if err == nil {
				e.savedSeq, e.cursorFound = head, true
			}
			e.emitMu.Unlock()
			if err != nil {
				return 0, fmt.Errorf("detect: save the starting cursor: %w", err)
			}
		}
		return head + 1, nil
	}
	if cursor == 0 {
		return 1, nil
	}
	span := e.rules.Load().maxTimespan()
	if span <= 0 || e.opts.Log == nil {
		return cursor + 1, nil
	}
	evs, err := e.opts.Log.Read(ctx, cursor, 1)
	if err != nil || len(evs) == 0 || evs[0].Seq != cursor {
		e.log.Warn("detection engine: cursor event unreadable; correlation windows start empty", "cursor", cursor, "err", err)
		return cursor + 1, nil
	}
	at := evs[0].Time
	if ra := evs[0].ReceivedAt; !ra.IsZero() && ra.Before(at) {
		at = ra
	}
	from, err := e.opts.Log.SeqForTime(ctx, at.Add(-span))
	if err != nil {
		e.log.Warn("detection engine: correlation windows start empty", "cursor", cursor, "err", err)
		return cursor + 1, nil
	}
	if limit := uint64(e.opts.MaxReplay); cursor > limit && from < cursor-limit+1 {
		from = cursor - limit + 1
	}
	if from == 0 {
		from = 1
	}
	if from > cursor {
		return cursor + 1, nil
	}
	e.replayTo = cursor
	return from, nil
}

// handle evaluates one event (Run's goroutine only).
func (e *Engine) handle(ctx context.Context, ev *event.Event) {
	defer e.handled.Store(ev.Seq)
	own := ev.Category == event.CategoryDetection && ev.Source == SourceName
	if e.replayTo != 0 && ev.Seq <= e.replayTo {
		// Evaluated before the cursor: it only rebuilds the windows.
		if !own {
			e.evalMu.Lock()
			e.eval.Load().Evaluate(ev)
			e.evalMu.Unlock()
		}
		return
	}
	defer e.lastSeq.Store(ev.Seq)
	if own {
		return
	}
	start := time.Now()
	// The firings stay valid after the unlock: a reload gives the next
	// event a new evaluator and never touches this one again.
	e.evalMu.Lock()
	fs := e.eval.Load().Evaluate(ev)
	e.evalMu.Unlock()
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
	var seq uint64
	if f.trigger != nil {
		seq = f.trigger.Seq
	}
	e.mu.Lock()
	if id, ok := e.open[k]; ok {
		d := e.byID[id]
		if d != nil && !d.Status.Final() && f.at.Sub(d.LastSeen) <= e.opts.Suppression {
			if seq != 0 && seq <= d.LastSeq {
				// Counted already: evaluated again after a fail-over or
				// restart (at-least-once from the shared cursor).
				e.mu.Unlock()
				return
			}
			d.Count += f.newEvents
			d.EventIDs = mergeIDs(d.EventIDs, f.eventIDs, e.opts.MaxEventIDs)
			if f.at.After(d.LastSeen) {
				d.LastSeen = f.at
			}
			d.LastSeq = max(d.LastSeq, seq)
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
		FirstSeen: f.at, LastSeen: f.at, LastSeq: seq,
		History: []Change{{At: now, By: "rule:" + m.RuleID, Field: "status", From: "", To: string(StatusActive)}},
	}
	e.byID[d.ID] = d
	e.open[k] = d.ID
	e.mu.Unlock()
	if err := e.emit(ctx, []string{d.ID}, "detection.created"); err != nil {
		e.log.Error("append detection.created", "detection", d.ID, "rule", m.RuleID, "err", err)
		return // emit marked it dirty: the flusher retries (as detection.updated)
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
// last flush, persists them and then the cursor.
func (e *Engine) flush(ctx context.Context) {
	// The cursor is read first: handle marks a detection dirty before it
	// stores the event's seq, so every change up to seq is in the dirty
	// set taken below, and the cursor is saved only once they are
	// persisted. A leader killed in between leaves the cursor behind its
	// changes, never ahead (the next one evaluates them again; LastSeq
	// keeps that from counting twice).
	seq := e.lastSeq.Load()
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
			return
		}
	}
	e.saveCursor(ctx, seq)
}

func (e *Engine) saveCursor(ctx context.Context, seq uint64) {
	if e.kv == nil {
		return
	}
	e.emitMu.Lock()
	defer e.emitMu.Unlock()
	if seq <= e.savedSeq {
		return
	}
	if _, err := e.kv.Put(ctx, cursorKey, []byte(strconv.FormatUint(seq, 10))); err != nil {
		e.log.Warn("save detection cursor", "err", err)
		return
	}
	e.savedSeq = seq
}

// emit snapshots the rule engine's changes to the detections, persists
// them and appends one event each. Dirty marks are cleared for what was
// emitted; on failure they are restored so the flusher retries.
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
	err := e.persistAndAppend(ctx, snaps, typ, now)
	if err != nil {
		e.mu.Lock()
		for _, d := range snaps {
			e.dirty[d.ID] = true
		}
		e.mu.Unlock()
	}
	return err
}

// persistAndAppend writes the rule engine's snapshots to the bucket, then
// appends their events (emitMu held). Persisting first lets a write that
// loses a race with an analyst's change on another node be merged before
// anything reaches the log, so the log never shows an analyst's change
// undone.
func (e *Engine) persistAndAppend(ctx context.Context, snaps []Detection, typ string, now time.Time) error {
	if len(snaps) == 0 {
		return nil
	}
	events := make([]*event.Event, 0, len(snaps))
	for i := range snaps {
		if e.kv != nil {
			if err := e.persistRuleChange(ctx, &snaps[i]); err != nil {
				return err
			}
		}
		ev, _, err := e.detectionEvent(&snaps[i], typ, now)
		if err != nil {
			return err
		}
		events = append(events, ev)
	}
	if e.opts.Appender != nil {
		if _, err := e.opts.Appender.Append(ctx, events); err != nil {
			return fmt.Errorf("detect: append %s: %w", typ, err)
		}
	}
	return nil
}

// casConflict reports a compare-and-swap write that lost to another one.
func casConflict(err error) bool {
	return errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch)
}

// casPut writes d as revision d.rev's successor (d.rev 0: a new key) and
// returns the new revision.
func (e *Engine) casPut(ctx context.Context, d *Detection) (uint64, error) {
	blob, err := json.Marshal(d)
	if err != nil {
		return 0, fmt.Errorf("detect: encode detection: %w", err)
	}
	if d.rev == 0 {
		return e.kv.Create(ctx, d.ID, blob)
	}
	return e.kv.Update(ctx, d.ID, blob, d.rev)
}

// reread loads the stored copy of a detection after a lost
// compare-and-swap and applies it to memory.
func (e *Engine) reread(ctx context.Context, id string) (Detection, error) {
	entry, err := e.kv.Get(ctx, id)
	if err != nil {
		return Detection{}, fmt.Errorf("detect: re-read %s after a concurrent change: %w", id, err)
	}
	var stored Detection
	if err := json.Unmarshal(entry.Value(), &stored); err != nil {
		return Detection{}, fmt.Errorf("detect: re-read %s: %w", id, err)
	}
	stored.rev = entry.Revision()
	e.applyEntry(entry)
	return stored, nil
}

// maxCASAttempts bounds the retries of a write that keeps losing races.
const maxCASAttempts = 4

// persistRuleChange writes the leader's snapshot d. When an analyst
// changed the detection through another node since d's revision, it takes
// the stored analyst fields into d and writes again.
func (e *Engine) persistRuleChange(ctx context.Context, d *Detection) error {
	for attempt := 1; ; attempt++ {
		rev, err := e.casPut(ctx, d)
		if err == nil {
			d.rev = rev
			e.mu.Lock()
			if live := e.byID[d.ID]; live != nil && live.rev < rev {
				live.rev = rev
			}
			e.mu.Unlock()
			return nil
		}
		if !casConflict(err) || attempt == maxCASAttempts {
			return fmt.Errorf("detect: persist %s: %w", d.ID, err)
		}
		stored, err := e.reread(ctx, d.ID)
		if err != nil {
			return err
		}
		d.Status, d.Notes, d.Assignee, d.History = stored.Status, stored.Notes, stored.Assignee, stored.History
		if stored.UpdatedAt.After(d.UpdatedAt) {
			d.UpdatedAt = stored.UpdatedAt
		}
		d.rev = stored.rev
	}
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
	for i := range out {
		out[i] = e.maskFor(p, out[i])
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
	d, ok := e.byID[id]
	if !ok || !visible(p, d) {
		e.mu.Unlock()
		return Detection{}, ErrNotFound
	}
	c := d.clone()
	e.mu.Unlock()
	return e.maskFor(p, c), nil
}

// maskFor returns d as p may see it: masked as the detection events of the
// streams are (the same rules over the same JSON: group key, group values,
// assignee, notes, history), when p's role is masked. Fails closed: a
// detection whose masked form does not decode keeps only fields masking
// never changes.
func (e *Engine) maskFor(p *auth.Principal, d Detection) Detection {
	pol := e.opts.Policy
	if pol == nil || p == nil || !pol.Masks(p.Role) {
		return d
	}
	safe := Detection{ID: d.ID, RuleID: d.RuleID, Category: d.Category, Severity: d.Severity, Confidence: d.Confidence,
		Status: d.Status, MitreTactics: d.MitreTactics, MitreTechniques: d.MitreTechniques, OWASPCategory: d.OWASPCategory,
		CreatedAt: d.CreatedAt, UpdatedAt: d.UpdatedAt, Count: d.Count, Tenant: d.Tenant, FirstSeen: d.FirstSeen,
		LastSeen: d.LastSeen, LastSeq: d.LastSeq, EventIDs: d.EventIDs}
	data, err := json.Marshal(d)
	if err != nil {
		return safe
	}
	ev := &event.Event{Category: event.CategoryDetection, Tenant: d.Tenant, Data: data}
	var out Detection
	if err := json.Unmarshal(pol.Mask(p.Role, ev).Data, &out); err != nil || out.ID != d.ID {
		return safe
	}
	out.rev = d.rev
	return out
}

// Update applies an analyst's patch, on any node (leader or not): it is
// validated against the lifecycle, appended to the log as
// detection.updated and persisted before it takes effect, so a failed
// append changes nothing. The write is a compare-and-swap on the revision
// this node last saw: when the leader or another node changed the
// detection meanwhile, the patch is applied again to the stored copy (and
// appended again; it may now be refused by the lifecycle, 409).
func (e *Engine) Update(ctx context.Context, p *auth.Principal, id string, patch Patch) (Detection, error) {
	d, err := e.update(ctx, p, id, patch)
	if err != nil && d.ID == "" {
		return d, err
	}
	return e.maskFor(p, d), err // a masked role allowed to update sees the result masked
}

func (e *Engine) update(ctx context.Context, p *auth.Principal, id string, patch Patch) (Detection, error) {
	e.emitMu.Lock()
	defer e.emitMu.Unlock()
	now := time.Now().UTC()
	by := p.ID
	if p.Name != "" && p.Name != p.ID {
		by = p.ID + " (" + p.Name + ")"
	}
	var next Detection
	for attempt := 1; ; attempt++ {
		e.mu.Lock()
		live, ok := e.byID[id]
		if !ok || !visible(p, live) {
			e.mu.Unlock()
			return Detection{}, ErrNotFound
		}
		next = live.clone()
		changed, err := next.apply(patch, by, now)
		e.mu.Unlock()
		if err != nil || !changed {
			return next, err
		}
		ev, _, err := e.detectionEvent(&next, "detection.updated", now)
		if err != nil {
			return Detection{}, err
		}
		if e.opts.Appender != nil {
			if _, err := e.opts.Appender.Append(ctx, []*event.Event{ev}); err != nil {
				return Detection{}, fmt.Errorf("detect: append detection.updated: %w", err)
			}
		}
		if e.kv == nil {
			break
		}
		rev, err := e.casPut(ctx, &next)
		if err == nil {
			next.rev = rev
			break
		}
		if !casConflict(err) || attempt == maxCASAttempts {
			return Detection{}, fmt.Errorf("detect: persist %s: %w", id, err)
		}
		if _, err := e.reread(ctx, id); err != nil {
			return Detection{}, err
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	live, ok := e.byID[id]
	if !ok {
		return next, nil
	}
	// Rule firings may have bumped count and event ids meanwhile; keep
	// those and take the analyst's fields.
	live.Status, live.Notes, live.Assignee = next.Status, next.Notes, next.Assignee
	live.History, live.UpdatedAt = next.History, next.UpdatedAt
	live.rev = max(live.rev, next.rev)
	e.indexOpen(live)
	return live.clone(), nil
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
	Leader       bool          `json:"leader"`
}

// Stats returns a snapshot of the counters.
func (e *Engine) Stats() Stats {
	e.mu.Lock()
	defer e.mu.Unlock()
	return Stats{Events: e.events.Load(), Firings: e.firings.Load(), Detections: len(e.byID), Open: len(e.open),
		Cursor: e.lastSeq.Load(), EvalTime: time.Duration(e.evalNs.Load()), KeysOverflow: e.overflowTotal(), Leader: e.leader.Load()}
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
