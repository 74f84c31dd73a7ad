package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigil-sec/vigil/internal/event"
)

func open(t *testing.T, dir string) *Log {
	t.Helper()
	l, err := Open(context.Background(), Config{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func normalized(t *testing.T, evs ...*event.Event) []*event.Event {
	t.Helper()
	for _, e := range evs {
		if _, err := event.Normalize(e, "default", time.Now(), event.DefaultLimits()); err != nil {
			t.Fatal(err)
		}
	}
	return evs
}

func TestAppendGetScanAndRestart(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	l := open(t, dir)
	acks, err := l.Append(ctx, normalized(t, &event.Event{ID: "a", Type: "audit.query"}, &event.Event{ID: "b", Type: "authentication.login", User: "alice"}))
	if err != nil {
		t.Fatal(err)
	}
	if acks[0].Seq != 1 || acks[1].Seq != 2 {
		t.Fatalf("acks %+v", acks)
	}
	e, err := l.Get(ctx, "b")
	if err != nil || e.Seq != 2 || e.User != "alice" {
		t.Fatalf("get b: %+v %v", e, err)
	}
	if !strings.HasPrefix(string(e.JSON()), `{"seq":2,`) {
		t.Fatalf("client encoding lacks the seq: %s", e.JSON())
	}
	if _, err := l.Get(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown id: %v", err)
	}
	// A retried producer id is acknowledged with its seq, not stored again.
	dup, err := l.Append(ctx, normalized(t, &event.Event{ID: "a", Type: "audit.query"}))
	if err != nil || !dup[0].Duplicate || dup[0].Seq != 1 {
		t.Fatalf("duplicate: %+v %v", dup, err)
	}
	l.Close()

	// After a restart: the dedup window is rebuilt, seq continues, the
	// chain links on.
	l = open(t, dir)
	defer l.Close()
	dup, err = l.Append(ctx, normalized(t, &event.Event{ID: "b", Type: "authentication.login"}))
	if err != nil || !dup[0].Duplicate || dup[0].Seq != 2 {
		t.Fatalf("duplicate after restart: %+v %v", dup, err)
	}
	next, err := l.Append(ctx, normalized(t, &event.Event{ID: "c", Type: "audit.query"}))
	if err != nil || next[0].Seq != 3 {
		t.Fatalf("after restart: %+v %v", next, err)
	}
	var seqs []uint64
	if err := l.ScanRange(ctx, 2, 3, func(e *event.Event) bool { seqs = append(seqs, e.Seq); return true }); err != nil {
		t.Fatal(err)
	}
	if len(seqs) != 2 || seqs[0] != 2 || seqs[1] != 3 {
		t.Fatalf("scan 2..3 = %v", seqs)
	}
	rep, err := l.Verify(ctx)
	if err != nil || !rep.OK || rep.Checked != 3 {
		t.Fatalf("verify: %+v %v", rep, err)
	}
}

func TestSeqForTime(t *testing.T) {
	ctx := context.Background()
	l := open(t, t.TempDir())
	defer l.Close()
	if _, err := l.Append(ctx, normalized(t, &event.Event{Type: "audit.query"})); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	mark := time.Now()
	time.Sleep(20 * time.Millisecond)
	if _, err := l.Append(ctx, normalized(t, &event.Event{Type: "audit.query"})); err != nil {
		t.Fatal(err)
	}
	if seq, err := l.SeqForTime(ctx, mark); err != nil || seq != 2 {
		t.Fatalf("seq for time = %d %v, want 2", seq, err)
	}
	if seq, err := l.SeqForTime(ctx, time.Now().Add(time.Hour)); err != nil || seq != 3 {
		t.Fatalf("seq for a future time = %d %v, want head+1 = 3", seq, err)
	}
}

// TestVerifyDetectsTampering: a message written to the stream behind
// Vigil's back (an altered copy of an event) breaks the chain.
func TestVerifyDetectsTampering(t *testing.T) {
	ctx := context.Background()
	l := open(t, t.TempDir())
	defer l.Close()
	evs := normalized(t, &event.Event{ID: "x1", Type: "audit.query", Message: "original"}, &event.Event{ID: "x2", Type: "audit.query"})
	if _, err := l.Append(ctx, evs); err != nil {
		t.Fatal(err)
	}
	stored, err := l.Get(ctx, "x2")
	if err != nil {
		t.Fatal(err)
	}
	// Forge a third event that claims to follow x2 but was altered after hashing.
	forged := strings.Replace(string(stored.JSON()), `"id":"x2"`, `"id":"x3","message":"forged"`, 1)
	forged = strings.Replace(forged, `{"seq":2,`, `{`, 1)
	msg := &nats.Msg{Subject: "vigil.events.default.audit.info", Data: []byte(forged)}
	if _, err := l.JetStream().PublishMsg(ctx, msg); err != nil {
		t.Fatal(err)
	}
	rep, err := l.Verify(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK || rep.Broken == nil || rep.Broken.Seq != 3 || !strings.Contains(rep.Broken.Reason, "hash") {
		t.Fatalf("verify = %+v, want a broken link at seq 3", rep)
	}
}

func manyEvents(t *testing.T, n int, prefix string) []*event.Event {
	t.Helper()
	evs := make([]*event.Event, n)
	for i := range evs {
		evs[i] = &event.Event{ID: fmt.Sprintf("%s-%d", prefix, i), Type: "audit.query", Message: strings.Repeat("m", i%300)}
	}
	return normalized(t, evs...)
}

// TestScanRangeBatchesAndGaps: a replay crossing several direct-read
// batches delivers every seq once, in order; one with deleted messages
// inside (the consumer takes over) does too, skipping only those.
func TestScanRangeBatchesAndGaps(t *testing.T) {
	ctx := context.Background()
	l := open(t, t.TempDir())
	defer l.Close()
	const total = 7000
	for i := 0; i < total; i += 1000 {
		if _, err := l.Append(ctx, manyEvents(t, 1000, fmt.Sprintf("b%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	check := func(from, to uint64, deleted map[uint64]bool) {
		t.Helper()
		want := from
		err := l.ScanRange(ctx, from, to, func(e *event.Event) bool {
			for deleted[want] {
				want++
			}
			if e.Seq != want {
				t.Fatalf("scan %d..%d: got seq %d, want %d", from, to, e.Seq, want)
			}
			if !strings.HasPrefix(string(e.JSON()), fmt.Sprintf(`{"seq":%d,"id":`, want)) {
				t.Fatalf("seq %d: client encoding %.40s", want, e.JSON())
			}
			want++
			return true
		})
		if err != nil {
			t.Fatal(err)
		}
		for deleted[want] {
			want++
		}
		if want != to+1 {
			t.Fatalf("scan %d..%d ended at %d", from, to, want-1)
		}
	}
	check(1, total, nil)
	check(2047, 4100, nil)
	check(total, total, nil)
	// Stop early.
	n := 0
	if err := l.ScanRange(ctx, 10, total, func(e *event.Event) bool { n++; return n < 3000 }); err != nil || n != 3000 {
		t.Fatalf("early stop: %d events, %v", n, err)
	}
	deleted := map[uint64]bool{3000: true, 3001: true, 5500: true}
	for seq := range deleted {
		if err := l.stream.DeleteMsg(ctx, seq); err != nil {
			t.Fatal(err)
		}
	}
	check(1, total, deleted)
	check(2990, 3010, deleted)
	// Deleting breaks the chain where it happened, and verify says so.
	rep, err := l.Verify(ctx)
	if err != nil || rep.OK || rep.Broken.Seq != 3002 {
		t.Fatalf("verify after deletes: %+v %v", rep, err)
	}
}

// TestDuplicateIDsInFlight: an id repeated within a batch and across
// concurrent batches is stored once; every answer carries its seq.
func TestDuplicateIDsInFlight(t *testing.T) {
	ctx := context.Background()
	l := open(t, t.TempDir())
	defer l.Close()
	var wg sync.WaitGroup
	results := make([][]Ack, 4)
	for p := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			evs := manyEvents(t, 500, "shared")
			evs = append(evs, normalized(t, &event.Event{ID: "shared-7", Type: "audit.query"})...)
			acks, err := l.Append(ctx, evs)
			if err != nil {
				t.Error(err)
			}
			results[p] = acks
		}()
	}
	wg.Wait()
	head, err := l.Head(ctx)
	if err != nil || head != 500 {
		t.Fatalf("head %d %v, want 500 (each id once)", head, err)
	}
	for p, acks := range results {
		for i, a := range acks {
			j := i
			if i == 500 {
				j = 7 // shared-7 again
			}
			want := acks[j].Seq
			if a.Seq == 0 || a.Seq != want || a.Seq != results[0][j].Seq {
				t.Fatalf("publisher %d event %d: ack %+v, want seq %d", p, i, a, want)
			}
		}
	}
	rep, err := l.Verify(ctx)
	if err != nil || !rep.OK || rep.Checked != 500 {
		t.Fatalf("verify: %+v %v", rep, err)
	}
}

// TestCanceledAppendSettles: a producer that gives up does not leave its
// ids reserved: the batch settles in the background and a retry is
// answered with the stored seqs.
func TestCanceledAppendSettles(t *testing.T) {
	l := open(t, t.TempDir())
	defer l.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := l.Append(ctx, manyEvents(t, 100, "c")); err == nil {
		t.Fatal("append with a canceled context succeeded")
	}
	acks, err := l.Append(context.Background(), manyEvents(t, 100, "c"))
	if err != nil {
		t.Fatal(err)
	}
	for i, a := range acks {
		if !a.Duplicate || a.Seq != uint64(i+1) {
			t.Fatalf("retry %d: %+v", i, a)
		}
	}
}

// TestAbandonedAcksLookedUp: in the embedded log (no Nats-Msg-Id), a batch
// whose acknowledgements come too late learns its outcome from the stream
// itself, so the retry of a stored event is a duplicate, never a second copy.
func TestAbandonedAcksLookedUp(t *testing.T) {
	old := ackTimeout
	ackTimeout = time.Nanosecond
	defer func() { ackTimeout = old }()
	ctx := context.Background()
	l := open(t, t.TempDir())
	defer l.Close()
	if l.msgIDHeader {
		t.Fatal("the embedded log sends Nats-Msg-Id")
	}
	first, err := l.Append(ctx, manyEvents(t, 300, "late"))
	if err != nil {
		t.Fatal(err)
	}
	ackTimeout = old
	again, err := l.Append(ctx, manyEvents(t, 300, "late"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range again {
		if !again[i].Duplicate || again[i].Seq != first[i].Seq || first[i].Seq != uint64(i+1) {
			t.Fatalf("event %d: first %+v, retry %+v", i, first[i], again[i])
		}
	}
	if head, _ := l.Head(ctx); head != 300 {
		t.Fatalf("head %d, want 300", head)
	}
}

// TestSeqForTimeLeavesNoConsumer (issue 8 item 5b): every from.time
// subscription and every dedup rebuild asks SeqForTime; it used to create
// an ordered consumer per call that JetStream kept for five minutes.
func TestSeqForTimeLeavesNoConsumer(t *testing.T) {
	ctx := context.Background()
	l := open(t, t.TempDir())
	defer l.Close()
	if _, err := l.Append(ctx, normalized(t, &event.Event{Type: "audit.query"}, &event.Event{Type: "audit.query"})); err != nil {
		t.Fatal(err)
	}
	before, err := l.stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		if seq, err := l.SeqForTime(ctx, time.Now().Add(-time.Hour)); err != nil || seq != 1 {
			t.Fatalf("seq for an old time = %d %v, want 1", seq, err)
		}
	}
	after, err := l.stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if after.State.Consumers != before.State.Consumers {
		t.Fatalf("20 calls left %d consumers on the stream (had %d)", after.State.Consumers, before.State.Consumers)
	}
}

// TestLeaderChangeReanchorsTheChain: after a new stream leader (or a
// reconnect), the next append takes the chain position from the log
// instead of linking to what this node hashed last, which the old leader
// may have lost with a batch still in flight; verify then holds.
func TestLeaderChangeReanchorsTheChain(t *testing.T) {
	ctx := context.Background()
	l := open(t, t.TempDir())
	defer l.Close()
	if _, err := l.Append(ctx, normalized(t, &event.Event{ID: "one", Type: "audit.query"})); err != nil {
		t.Fatal(err)
	}
	// As after a batch the old leader lost while its settlement is still
	// pending: the chain position points at an event not in the log.
	l.mu.Lock()
	l.lastHash = strings.Repeat("e", 64)
	l.mu.Unlock()
	l.leaderChanged(time.Now()) // the advisory
	if _, err := l.Append(ctx, normalized(t, &event.Event{ID: "two", Type: "audit.query"})); err != nil {
		t.Fatal(err)
	}
	rep, err := l.Verify(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK {
		t.Fatalf("the append after a leader change linked to a lost event: %+v", rep.Broken)
	}
}

// TestFailedChainRecoveryKeepsChainDirty (issue 8 item 5a): an append
// after a lost event must take the chain position from the log; when that
// recovery fails, the batch fails and the chain stays dirty, so the next
// append recovers again instead of linking to a lost event.
func TestFailedChainRecoveryKeepsChainDirty(t *testing.T) {
	ctx := context.Background()
	l := open(t, t.TempDir())
	defer l.Close()
	if _, err := l.Append(ctx, normalized(t, &event.Event{ID: "one", Type: "audit.query"}, &event.Event{ID: "two", Type: "audit.query"})); err != nil {
		t.Fatal(err)
	}
	// As after a batch whose last event was lost: the chain position
	// points at an event that is not in the log.
	l.mu.Lock()
	l.lastHash = strings.Repeat("f", 64)
	l.mu.Unlock()
	l.chainDirty.Store(true)

	// JetStream stops answering: the recovery fails.
	acc := l.ns.GlobalAccount()
	if err := acc.DisableJetStream(); err != nil {
		t.Fatal(err)
	}
	// A retry of "two" publishes nothing (the dedup index answers it), so
	// no failed publish marks the chain dirty again: only the recovery
	// failure itself can keep it dirty.
	failCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	_, err := l.Append(failCtx, normalized(t, &event.Event{ID: "two", Type: "audit.query"}))
	cancel()
	if !l.chainDirty.Load() {
		t.Fatalf("chain no longer dirty after a failed recovery (append error: %v)", err)
	}
	if err == nil || !strings.Contains(err.Error(), "recover the chain position") {
		t.Fatalf("append while the chain position cannot be recovered: %v, want the recovery error", err)
	}
	if err := acc.EnableJetStream(nil, nil); err != nil {
		t.Fatal(err)
	}
	// The stream comes back from disk; the next append recovers and links
	// to "two".
	var acks []Ack
	deadline := time.Now().Add(10 * time.Second)
	for {
		if acks, err = l.Append(ctx, normalized(t, &event.Event{ID: "three", Type: "audit.query"})); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil || acks[0].Seq != 3 {
		t.Fatalf("append after JetStream is back: %+v %v", acks, err)
	}
	rep, err := l.Verify(ctx)
	if err != nil || !rep.OK || rep.Checked != 3 {
		t.Fatalf("verify: %+v %v", rep, err)
	}
}

// TestUndecodableMessagesAreCountedAndLogged (issue 8 item 5c): a message
// written to the stream's subjects that is not an event is skipped by
// every read path, counted, and logged (rate-limited).
func TestUndecodableMessagesAreCountedAndLogged(t *testing.T) {
	ctx := context.Background()
	var logged strings.Builder
	var mu sync.Mutex
	l, err := Open(ctx, Config{DataDir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(&lockedWriter{w: &logged, mu: &mu}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, err := l.Append(ctx, normalized(t, &event.Event{ID: "good-1", Type: "audit.query"})); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if _, err := l.js.Publish(ctx, SubjectPrefix+".default.audit.info.junk"+fmt.Sprint(i), []byte("not an event")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := l.Append(ctx, normalized(t, &event.Event{ID: "good-2", Type: "audit.query"})); err != nil {
		t.Fatal(err)
	}
	var got []string
	if err := l.Scan(ctx, 1, func(e *event.Event) bool { got = append(got, e.ID); return true }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0] != "good-1" || got[1] != "good-2" {
		t.Fatalf("scan = %v, want the two events", got)
	}
	if n := l.UndecodableSkipped(); n != 20 {
		t.Fatalf("skipped %d undecodable messages, want 20", n)
	}
	// The tail skips them too.
	tctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	var tailed []string
	go func() { // ended by cancel once both events arrived
		defer close(done)
		_ = l.Tail(tctx, 1, func(e *event.Event) {
			tailed = append(tailed, e.ID)
			if len(tailed) == 2 {
				cancel()
			}
		})
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatal("tail did not deliver the two events")
	}
	if n := l.UndecodableSkipped(); n != 40 {
		t.Fatalf("skipped %d after the tail, want 40", n)
	}
	mu.Lock()
	out := logged.String()
	mu.Unlock()
	if lines := strings.Count(out, "not an event; skipped"); lines == 0 || lines > 5 {
		t.Fatalf("%d log lines for 40 skipped messages, want 1-5 (rate-limited):\n%s", lines, out)
	}
}

type lockedWriter struct {
	w  *strings.Builder
	mu *sync.Mutex
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(p)
}

// TestReadyReportsUnacknowledgedAppends: the embedded JetStream stops
// storing after a write error (a full disk: found by an audit, where
// /readyz said ready for ten minutes while every publish timed out) yet
// still answers stream info. Readiness follows the appends instead: none
// acknowledged for failingGrace makes it fail, naming the cause and what
// to do; one acknowledged again makes it pass. The stream is made to
// refuse new messages (discard new at its current size) for the test.
func TestReadyReportsUnacknowledgedAppends(t *testing.T) {
	ctx := context.Background()
	l := open(t, t.TempDir())
	defer l.Close()
	if _, err := l.Append(ctx, manyEvents(t, 3, "ok")); err != nil {
		t.Fatal(err)
	}
	setLimit := func(discard jetstream.DiscardPolicy, maxMsgs int64) {
		t.Helper()
		cfg := l.stream.CachedInfo().Config
		cfg.Discard, cfg.MaxMsgs = discard, maxMsgs
		if _, err := l.js.UpdateStream(ctx, cfg); err != nil {
			t.Fatal(err)
		}
	}
	old := l.stream.CachedInfo().Config
	setLimit(jetstream.DiscardNew, 3)
	if _, err := l.Append(ctx, manyEvents(t, 2, "refused")); err == nil {
		t.Fatal("an append to a full stream succeeded")
	}
	if err := l.Ready(ctx); err != nil {
		t.Fatalf("not ready at once after one refused append: %v", err)
	}
	deadline := time.Now().Add(failingGrace + 5*time.Second)
	for {
		err := l.Ready(ctx)
		if err != nil {
			if !strings.Contains(err.Error(), "no append acknowledged since") || !strings.Contains(err.Error(), "free space and restart") {
				t.Fatalf("readiness error does not say what is wrong: %v", err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("still ready with no append acknowledged")
		}
		time.Sleep(50 * time.Millisecond)
	}
	setLimit(old.Discard, old.MaxMsgs)
	if _, err := l.Append(ctx, manyEvents(t, 1, "again")); err != nil {
		t.Fatal(err)
	}
	if err := l.Ready(ctx); err != nil {
		t.Fatalf("not ready after an append was acknowledged again: %v", err)
	}
}

// TestEmbeddedListenerAddressTaken: a NATS listener address already in
// use fails the start at once, naming it; the embedded server used to
// wait 30 s to become ready and then say nothing about why.
func TestEmbeddedListenerAddressTaken(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	start := time.Now()
	_, err = Open(context.Background(), Config{DataDir: t.TempDir(), Listen: ln.Addr().String(), ListenToken: "t"})
	if err == nil || !strings.Contains(err.Error(), "address already in use") || !strings.Contains(err.Error(), ln.Addr().String()) {
		t.Fatalf("Open on a taken address: %v", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("refused after %v", took)
	}
}
