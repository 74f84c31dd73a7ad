package store

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/vigil-sec/vigil/internal/event"
)

// testChainDepth stands for chainSearchDepth in these tests: the other
// node appends more than that while B is stopped.
const testChainDepth = 200

// openNode opens a log on the external NATS at url with node id id and
// the lowered chain search depth.
func openNode(t *testing.T, url, id string, logger *slog.Logger) *Log {
	t.Helper()
	l, err := Open(withChainSearchDepth(context.Background(), testChainDepth), Config{NATSURL: url, NodeID: id, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// appendOne appends one event and returns it, stored.
func appendOne(t *testing.T, l *Log, id string) *event.Event {
	t.Helper()
	e := normalized(t, &event.Event{ID: id, Type: "audit.query"})[0]
	if _, err := l.Append(context.Background(), []*event.Event{e}); err != nil {
		t.Fatal(err)
	}
	return e
}

// appendMany appends n events (one batch) received at recv.
func appendMany(t *testing.T, l *Log, n int, prefix string, recv time.Time) {
	t.Helper()
	evs := make([]*event.Event, n)
	for i := range evs {
		evs[i] = &event.Event{ID: fmt.Sprintf("%s-%d", prefix, i), Type: "audit.query"}
		if _, err := event.Normalize(evs[i], "default", recv, event.DefaultLimits()); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := l.Append(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
}

// waitCheckpoint polls until l's checkpoint in the bucket holds seq.
func waitCheckpoint(t *testing.T, l *Log, seq uint64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		cp, ok, err := l.heads.load(context.Background())
		if err == nil && ok && cp.Seq == seq {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("checkpoint of %s: %+v %v %v, want seq %d within 10 s", l.cfg.NodeID, cp, ok, err, seq)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// verifyTwoChains checks that the log verifies with chains A and B, B
// holding wantB events.
func verifyTwoChains(t *testing.T, l *Log, wantB uint64) {
	t.Helper()
	rep, err := l.Verify(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK || len(rep.Chains) != 2 || rep.Chains["B"] != wantB {
		t.Fatalf("verify: ok %v chains %v broken %+v, want ok with 2 chains and %d events of B", rep.OK, rep.Chains, rep.Broken, wantB)
	}
}

// leakCheck fails t if a goroutine started during it outlives it (its
// logs and the NATS server, registered after it, are stopped first).
func leakCheck(t *testing.T) {
	opt := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, opt) })
}

// TestChainSurvivesRestartPastSearchDepth: node B stops cleanly, node A
// appends more events than the search depth to the shared stream, B
// starts again and appends: B's chain continues from its last link (the
// chain-head checkpoint written at Close) and verify holds. Before the
// checkpoint B started a new segment and verify reported
// `prev_hash … does not match the previous event of chain "B"`.
func TestChainSurvivesRestartPastSearchDepth(t *testing.T) {
	leakCheck(t)
	url := startNATS(t)
	b := openNode(t, url, "B", nil)
	b1 := appendOne(t, b, "b-1")
	b.Close()

	a := openNode(t, url, "A", nil)
	defer a.Close()
	appendMany(t, a, testChainDepth+100, "a", time.Now())

	b = openNode(t, url, "B", nil)
	defer b.Close()
	b2 := appendOne(t, b, "b-2")
	if b2.PrevHash != b1.Hash {
		t.Errorf("B's event after the restart links to %.16q, want its last one %.16q", b2.PrevHash, b1.Hash)
	}
	verifyTwoChains(t, a, 2)
}

// TestChainSurvivesCrashPastSearchDepth: as above, but B dies without
// Close after one more append than its checkpoint holds (the writer
// stopped first, as a kill -9 between two ticks leaves it): the restart
// finds the checkpoint's link and scans forward to the newer one.
func TestChainSurvivesCrashPastSearchDepth(t *testing.T) {
	leakCheck(t)
	url := startNATS(t)
	b := openNode(t, url, "B", nil)
	b1 := appendOne(t, b, "b-1")
	waitCheckpoint(t, b, b1.Seq)
	b.heads.close(false) // no more checkpoints: as if the process died now
	b2 := appendOne(t, b, "b-2")
	if cp, _, err := b.heads.load(context.Background()); err != nil || cp.Seq != b1.Seq {
		t.Fatalf("checkpoint after the writer stopped: %+v %v, want seq %d", cp, err, b1.Seq)
	}
	crash(b)
	b.group.close() // crash leaves the external log's committer

	a := openNode(t, url, "A", nil)
	defer a.Close()
	appendMany(t, a, testChainDepth+100, "a", time.Now())

	b = openNode(t, url, "B", nil)
	defer b.Close()
	b3 := appendOne(t, b, "b-3")
	if b3.PrevHash != b2.Hash {
		t.Errorf("B's event after the crash links to %.16q, want its last one %.16q (the checkpoint's is %.16q)", b3.PrevHash, b2.Hash, b1.Hash)
	}
	verifyTwoChains(t, a, 3)
}

// TestChainCheckpointScanStopsPastWindow: the forward scan from the
// checkpoint stops at the first event received more than chainHeadWindow
// after B's newest link instead of reading on to the search depth.
func TestChainCheckpointScanStopsPastWindow(t *testing.T) {
	leakCheck(t)
	url := startNATS(t)
	b := openNode(t, url, "B", nil)
	b1 := appendOne(t, b, "b-1")
	b.Close()

	a := openNode(t, url, "A", nil)
	defer a.Close()
	appendMany(t, a, testChainDepth+100, "a", time.Now().Add(chainHeadWindow+time.Minute))

	var logged strings.Builder
	var mu sync.Mutex
	b = openNode(t, url, "B", slog.New(slog.NewTextHandler(&lockedWriter{w: &logged, mu: &mu}, nil)))
	defer b.Close()
	b2 := appendOne(t, b, "b-2")
	if b2.PrevHash != b1.Hash {
		t.Errorf("B's event after the restart links to %.16q, want %.16q", b2.PrevHash, b1.Hash)
	}
	mu.Lock()
	out := logged.String()
	mu.Unlock()
	// b-1 at seq 1, then A's first event, past the window.
	if !strings.Contains(out, "chain position found from the chain-head checkpoint") || !strings.Contains(out, "scanned=2") {
		t.Errorf("log: %s\nwant the recovery from the checkpoint after scanning 2 events", out)
	}
	verifyTwoChains(t, a, 2)
}

// TestKeyToken: an id that is a KV key token (at most 128 bytes) is the key; any
// other is hashed.
func TestKeyToken(t *testing.T) {
	for id, want := range map[string]string{"node-1": "node-1", "B_2": "B_2"} {
		if got := KeyToken(id); got != want {
			t.Errorf("KeyToken(%q) = %q, want %q", id, got, want)
		}
	}
	for _, id := range []string{"node.1", "node 1", "nœud", "a/b", "*", "", strings.Repeat("n", 129)} {
		got := KeyToken(id)
		if !strings.HasPrefix(got, "sha256-") || len(got) != len("sha256-")+32 || got == KeyToken(id+"x") {
			t.Errorf("KeyToken(%q) = %q", id, got)
		}
	}
}

// TestChainHeadWriteFailureIsRetried: while the checkpoint cannot be
// written (its bucket is gone) appends go on, the failure is logged, and
// the writer retries until the bucket is back.
func TestChainHeadWriteFailureIsRetried(t *testing.T) {
	leakCheck(t)
	ctx := context.Background()
	var logged strings.Builder
	var mu sync.Mutex
	logs := func() string { mu.Lock(); defer mu.Unlock(); return logged.String() }
	l := openNode(t, startNATS(t), "B", slog.New(slog.NewTextHandler(&lockedWriter{w: &logged, mu: &mu}, nil)))
	defer l.Close()
	if err := l.js.DeleteKeyValue(ctx, ChainHeadBucket); err != nil {
		t.Fatal(err)
	}
	e := appendOne(t, l, "b-1") // does not wait for the checkpoint
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs(), "writing the chain-head checkpoint failed") {
		if time.Now().After(deadline) {
			t.Fatalf("no failed checkpoint write logged within 10 s: %s", logs())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := OpenKeyValue(ctx, l.js, jetstream.KeyValueConfig{Bucket: ChainHeadBucket, History: 1}); err != nil {
		t.Fatal(err)
	}
	waitCheckpoint(t, l, e.Seq)
	if !strings.Contains(logs(), "chain-head checkpoint written again") {
		t.Errorf("no recovery logged: %s", logs())
	}
}
