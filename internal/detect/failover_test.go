package detect

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/store"
)

// startStandby starts an engine without waiting for it to lead (a second
// engine on the same log stands by).
func startStandby(t *testing.T, l *store.Log, opts Options) running {
	t.Helper()
	opts.Source, opts.Appender, opts.Log = l, l, l
	if opts.JetStream == nil {
		opts.JetStream = l.JetStream()
	}
	if opts.FlushInterval == 0 {
		opts.FlushInterval = 20 * time.Millisecond
	}
	e, err := New(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := e.Run(ctx); err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); wg.Wait() }) }
	t.Cleanup(stop)
	return running{e, stop}
}

// failures publishes n failed logins for user, one second apart in event
// time, and returns their seqs.
func failures(t *testing.T, l *store.Log, user string, start time.Time, n int) []uint64 {
	t.Helper()
	var evs []*event.Event
	for i := 0; i < n; i++ {
		f := failure(t, 0, user, "203.0.113.9")
		f.Time = start.Add(time.Duration(i) * time.Second)
		evs = append(evs, f)
	}
	acks, err := l.Append(context.Background(), evs)
	if err != nil {
		t.Fatal(err)
	}
	seqs := make([]uint64, len(acks))
	for i, a := range acks {
		seqs[i] = a.Seq
	}
	return seqs
}

func waitCursor(t *testing.T, e *Engine, seq uint64) {
	t.Helper()
	waitFor(t, "cursor at "+strconv.FormatUint(seq, 10), func() bool { return e.Stats().Cursor >= seq })
}

func countCreated(t *testing.T, l *store.Log) int {
	t.Helper()
	n := 0
	for _, ev := range logEvents(t, l) {
		if ev.Type == "detection.created" {
			n++
		}
	}
	return n
}

// TestEngineCorrelationWindowSurvivesRestart: three failed logins before a
// restart and two after make one brute-force detection (threshold 5): the
// new engine rebuilds the window from the log before its cursor.
func TestEngineCorrelationWindowSurvivesRestart(t *testing.T) {
	l := openLog(t, t.TempDir())
	defer l.Close()
	now := time.Now().UTC()
	run := startEngine(t, l, Options{Log: l})
	seqs := failures(t, l, "carol", now, 3)
	waitCursor(t, run.e, seqs[2])
	run.stop()
	if n := len(detectionsOf(run.e, admin, "SEC-AUTH-002")); n != 0 {
		t.Fatalf("%d detections after 3 failures", n)
	}

	run2 := startEngine(t, l, Options{Log: l})
	seqs = failures(t, l, "carol", now.Add(3*time.Second), 2)
	waitCursor(t, run2.e, seqs[1])
	waitFor(t, "one detection with count 5", func() bool {
		ds := detectionsOf(run2.e, admin, "SEC-AUTH-002")
		return len(ds) == 1 && ds[0].Count == 5 && len(ds[0].EventIDs) == 5
	})
	run2.stop()
	if n := countCreated(t, l); n != 1 {
		t.Fatalf("%d detection.created events, want 1", n)
	}
}

// TestEngineReevaluatedEventsCountOnce: a leader killed after it persisted
// a detection but before it saved the cursor leaves the cursor behind; the
// next leader evaluates those events again and must not count them twice
// nor create a second detection.
func TestEngineReevaluatedEventsCountOnce(t *testing.T) {
	l := openLog(t, t.TempDir())
	defer l.Close()
	now := time.Now().UTC()
	run := startEngine(t, l, Options{Log: l})
	seqs := failures(t, l, "dave", now, 6)
	waitCursor(t, run.e, seqs[5])
	waitFor(t, "count 6", func() bool {
		ds := detectionsOf(run.e, admin, "SEC-AUTH-002")
		return len(ds) == 1 && ds[0].Count == 6
	})
	run.stop()
	// The cursor as a leader killed just after the second failure's
	// cursor save would have left it.
	kv, err := l.JetStream().KeyValue(context.Background(), DefaultBucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(context.Background(), cursorKey, []byte(strconv.FormatUint(seqs[1], 10))); err != nil {
		t.Fatal(err)
	}

	run2 := startEngine(t, l, Options{Log: l})
	more := failures(t, l, "dave", now.Add(6*time.Second), 1)
	waitCursor(t, run2.e, more[0])
	waitFor(t, "count 7", func() bool {
		ds := detectionsOf(run2.e, admin, "SEC-AUTH-002")
		return len(ds) == 1 && ds[0].Count >= 7
	})
	ds := detectionsOf(run2.e, admin, "SEC-AUTH-002")
	if len(ds) != 1 || ds[0].Count != 7 || len(ds[0].EventIDs) != 7 || ds[0].LastSeq != more[0] {
		t.Fatalf("after re-evaluation: %d detections, %+v", len(ds), ds)
	}
	run2.stop()
	if n := countCreated(t, l); n != 1 {
		t.Fatalf("%d detection.created events, want 1", n)
	}
}

func leaders(es ...*Engine) (n int, which *Engine) {
	for _, e := range es {
		if e.Leader() {
			n++
			which = e
		}
	}
	return n, which
}

// TestEngineLeaderElection: two engines on one stream; exactly one
// evaluates, the standby serves the detections and takes analysts'
// changes, which the leader's later rule updates do not undo; a graceful
// stop hands leadership over at once (well within the lease TTL), and the
// new leader continues the same detection.
func TestEngineLeaderElection(t *testing.T) {
	l := openLog(t, t.TempDir())
	defer l.Close()
	const ttl = 5 * time.Second
	a := startStandby(t, l, Options{NodeID: "a", LeaseTTL: ttl})
	b := startStandby(t, l, Options{NodeID: "b", LeaseTTL: ttl})
	var lead, standby running
	waitFor(t, "one leader", func() bool {
		n, which := leaders(a.e, b.e)
		if n == 1 {
			lead, standby = a, b
			if which == b.e {
				lead, standby = b, a
			}
		}
		return n == 1
	})
	<-lead.e.Started()
	now := time.Now().UTC()
	seqs := failures(t, l, "erin", now, 5)
	waitCursor(t, lead.e, seqs[4])
	var id string
	waitFor(t, "the detection on both nodes", func() bool {
		ds, ss := detectionsOf(lead.e, admin, "SEC-AUTH-002"), detectionsOf(standby.e, admin, "SEC-AUTH-002")
		if len(ds) == 1 && len(ss) == 1 && ss[0].Count == 5 {
			id = ds[0].ID
			return true
		}
		return false
	})
	if n, _ := leaders(a.e, b.e); n != 1 {
		t.Fatalf("%d leaders", n)
	}
	if standby.e.Stats().Events != 0 {
		t.Fatalf("the standby evaluated %d events", standby.e.Stats().Events)
	}

	// An analyst's change through the standby, then a rule update by the
	// leader: the leader keeps the analyst's status.
	if code, body := patch(t, standby.e, analyst, id, `{"status":"investigating","assignee":"ana"}`); code != 200 {
		t.Fatalf("PATCH on the standby: %d %v", code, body)
	}
	seqs = failures(t, l, "erin", now.Add(5*time.Second), 1)
	waitCursor(t, lead.e, seqs[0])
	waitFor(t, "count 6 with the analyst's status on both nodes", func() bool {
		for _, e := range []*Engine{lead.e, standby.e} {
			ds := detectionsOf(e, admin, "SEC-AUTH-002")
			if len(ds) != 1 || ds[0].Count != 6 || ds[0].Status != StatusInvestigating || ds[0].Assignee != "ana" {
				return false
			}
		}
		return true
	})
	kv, err := l.JetStream().KeyValue(context.Background(), DefaultBucket)
	if err != nil {
		t.Fatal(err)
	}
	entry, err := kv.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if s := string(entry.Value()); !strings.Contains(s, `"status":"investigating"`) || !strings.Contains(s, `"count":6`) {
		t.Fatalf("stored: %s", s)
	}

	// A graceful stop releases the lease: the standby leads at once.
	stopped := time.Now()
	lead.stop()
	waitFor(t, "the standby to lead", standby.e.Leader)
	if took := time.Since(stopped); took > ttl/2 {
		t.Fatalf("takeover after a graceful stop took %s (lease TTL %s): not released", took, ttl)
	}
	<-standby.e.Started()
	seqs = failures(t, l, "erin", now.Add(6*time.Second), 1)
	waitCursor(t, standby.e, seqs[0])
	waitFor(t, "count 7 on the new leader", func() bool {
		ds := detectionsOf(standby.e, admin, "SEC-AUTH-002")
		return len(ds) == 1 && ds[0].Count == 7 && ds[0].Status == StatusInvestigating
	})
	standby.stop()
	if n := countCreated(t, l); n != 1 {
		t.Fatalf("%d detection.created events, want 1", n)
	}
	// The lease is free again (released by the last leader).
	lkv, err := l.JetStream().KeyValue(context.Background(), LeaderBucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lkv.Get(context.Background(), leaderKey); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatalf("lease after the last stop: %v", err)
	}
}

// TestEngineLeaderCutOffStepsDown: a leader that loses its NATS
// connection (no release is possible) stops leading on its own clock
// within the lease TTL, the standby takes over once the lease expires on
// the server, and events published meanwhile are counted once, in the
// same detection.
func TestEngineLeaderCutOffStepsDown(t *testing.T) {
	ctx := context.Background()
	l, err := store.Open(ctx, store.Config{DataDir: t.TempDir(), Listen: "127.0.0.1:-1", ListenToken: "failover"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	// Engine a reaches the bucket through a connection of its own: closing
	// it cuts a off as a dead node would be (it reads and appends through
	// the shared log, but every lease and bucket operation fails, and it
	// persists before it appends).
	nc, err := nats.Connect(l.ClientURL(), nats.Token("failover"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	const ttl = time.Second
	a := startStandby(t, l, Options{NodeID: "a", LeaseTTL: ttl, JetStream: js})
	waitFor(t, "a to lead", a.e.Leader)
	<-a.e.Started()
	b := startStandby(t, l, Options{NodeID: "b", LeaseTTL: ttl})

	now := time.Now().UTC()
	seqs := failures(t, l, "oscar", now, 5)
	waitCursor(t, a.e, seqs[4])
	waitFor(t, "the detection on b", func() bool {
		ds := detectionsOf(b.e, admin, "SEC-AUTH-002")
		return len(ds) == 1 && ds[0].Count == 5
	})

	cut := time.Now()
	nc.Close()
	more := failures(t, l, "oscar", now.Add(5*time.Second), 2)
	waitFor(t, "a to step down", func() bool { return !a.e.Leader() })
	if took := time.Since(cut); took > ttl {
		t.Fatalf("a led %s after losing its connection (lease TTL %s)", took, ttl)
	}
	waitFor(t, "b to lead", b.e.Leader)
	t.Logf("a stepped down, b took over %s after the cut (lease TTL %s)", time.Since(cut).Round(time.Millisecond), ttl)
	if n, _ := leaders(a.e, b.e); n != 1 {
		t.Fatalf("%d leaders", n)
	}
	waitCursor(t, b.e, more[1])
	waitFor(t, "count 7 on b", func() bool {
		ds := detectionsOf(b.e, admin, "SEC-AUTH-002")
		return len(ds) == 1 && ds[0].Count == 7 && len(ds[0].EventIDs) == 7
	})
	b.stop()
	a.stop()
	if n := countCreated(t, l); n != 1 {
		t.Fatalf("%d detection.created events, want 1", n)
	}
}

// TestEngineConcurrentWritesMerge: the leader's rule update and an
// analyst's change made through another node race for one detection;
// compare-and-swap makes the loser merge instead of overwriting.
func TestEngineConcurrentWritesMerge(t *testing.T) {
	ctx := context.Background()
	l := openLog(t, t.TempDir())
	defer l.Close()
	opts := Options{Source: l, Appender: l, JetStream: l.JetStream(), Log: l, NodeID: "lead"}
	e, err := New(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	e.leader.Store(true) // as Run would once it holds the lease
	for i := 0; i < 5; i++ {
		e.handle(ctx, failure(t, time.Duration(i)*time.Second, "peggy", "192.0.2.44"))
	}
	ds := detectionsOf(e, admin, "SEC-AUTH-002")
	if len(ds) != 1 || ds[0].rev == 0 {
		t.Fatalf("created: %+v", ds)
	}
	id := ds[0].ID
	kv, err := l.JetStream().KeyValue(ctx, DefaultBucket)
	if err != nil {
		t.Fatal(err)
	}

	// Another node resolves it, unseen yet by this engine (no Run, so no
	// watch); then this engine flushes a rule update from its stale copy.
	other, err := New(ctx, Options{Source: l, Appender: l, JetStream: l.JetStream(), NodeID: "other"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Update(ctx, analyst, id, Patch{Status: ptr("resolved"), Notes: ptr("benign")}); err != nil {
		t.Fatal(err)
	}
	e.handle(ctx, failure(t, 5*time.Second, "peggy", "192.0.2.44"))
	e.flush(ctx)
	entry, err := kv.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	s := string(entry.Value())
	if !strings.Contains(s, `"status":"resolved"`) || !strings.Contains(s, `"notes":"benign"`) || !strings.Contains(s, `"count":6`) {
		t.Fatalf("after the leader's flush the bucket holds %s: the analyst's change or the count was lost", s)
	}

	// And the other way round: the other node's copy is now stale (count
	// 5); its PATCH is applied again to the stored copy.
	got, err := other.Update(ctx, analyst, id, Patch{Assignee: ptr("ana")})
	if err != nil {
		t.Fatal(err)
	}
	if got.Count != 6 || got.Status != StatusResolved || got.Assignee != "ana" {
		t.Fatalf("PATCH from a stale copy: %+v", got)
	}
	if d, _ := e.Get(admin, id); d.Count != 6 || d.Status != StatusResolved || d.Notes != "benign" {
		t.Fatalf("the leader's copy: %+v", d)
	}
	entry, _ = kv.Get(ctx, id)
	if s := string(entry.Value()); !strings.Contains(s, `"count":6`) || !strings.Contains(s, `"assignee":"ana"`) {
		t.Fatalf("stored after the stale PATCH: %s", s)
	}
}

func ptr(s string) *string { return &s }

// TestEngineFirstStartCountsEventsBeforeLeading: on the very first start
// (no cursor) the engine begins at the head as of New — when the node
// starts accepting events — not at the head when it wins the election, so
// events accepted while it was campaigning are evaluated.
func TestEngineFirstStartCountsEventsBeforeLeading(t *testing.T) {
	l := openLog(t, t.TempDir())
	defer l.Close()
	failures(t, l, "old", time.Now().UTC(), 5) // history before the first start: not scanned
	e, err := New(context.Background(), Options{Source: l, Appender: l, JetStream: l.JetStream(), Log: l, FlushInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	seqs := failures(t, l, "early", time.Now().UTC(), 5) // accepted before the engine leads
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	defer func() { cancel(); <-done }()
	waitCursor(t, e, seqs[4])
	waitFor(t, "the early burst's detection", func() bool {
		ds := detectionsOf(e, admin, "SEC-AUTH-002")
		return len(ds) == 1 && ds[0].GroupKey == "user=early" && ds[0].Count == 5
	})
}
