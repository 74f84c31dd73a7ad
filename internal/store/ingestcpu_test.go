package store

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/store/idindex"
	"github.com/vigil-sec/vigil/internal/testkit"
)

// TestAssignedIDSkipsTheLateRetryLookup (issue 12 item 4): an event whose
// id ingest generated is not looked up in the id index (it cannot have
// been stored before); one whose id the producer sent still is. Both ids
// are planted in the index as if stored at seq 1: only the producer's is
// answered as a duplicate, the generated one is stored.
func TestAssignedIDSkipsTheLateRetryLookup(t *testing.T) {
	ctx := context.Background()
	l := open(t, t.TempDir())
	defer l.Close()
	if _, err := l.Append(ctx, normalized(t, &event.Event{ID: "filler", Type: "audit.query"})); err != nil {
		t.Fatal(err)
	}
	assigned := normalized(t, &event.Event{Type: "audit.query"})[0]
	given := normalized(t, &event.Event{ID: "given-1", Type: "audit.query"})[0]
	if !assigned.IDAssigned() || given.IDAssigned() {
		t.Fatal("Normalize did not mark the generated id")
	}
	if err := l.index.idx.Put([]idindex.Entry{{Key: "default/" + assigned.ID, Seq: 1}, {Key: "default/given-1", Seq: 1}}, 1); err != nil {
		t.Fatal(err)
	}
	acks, err := l.Append(ctx, []*event.Event{assigned, given})
	if err != nil {
		t.Fatal(err)
	}
	if a := acks[0]; a.Duplicate || a.Seq != 2 {
		t.Fatalf("generated id: %+v, want stored at seq 2 without a lookup", a)
	}
	if a := acks[1]; !a.Duplicate || a.Seq != 1 {
		t.Fatalf("producer's id: %+v, want the duplicate of seq 1 from the index", a)
	}
}

// TestIndexerLearnsAppendsFromAcknowledgements (issue 12 item 4): what
// this node appends is indexed from the acknowledgements, without reading
// a single message back from the log (before, the indexer read every
// event back with direct gets through the log's one connection, a second
// of events at a time); a message another writer stored, which no
// acknowledgement of this node reports, is read from the log once it has
// been missing for gapWait, and indexed too.
func TestIndexerLearnsAppendsFromAcknowledgements(t *testing.T) {
	ctx := context.Background()
	l := open(t, t.TempDir())
	defer l.Close()
	for b := range 5 {
		if _, err := l.Append(ctx, manyEvents(t, 200, fmt.Sprintf("acked-%d", b))); err != nil {
			t.Fatal(err)
		}
	}
	waitIndexed(t, l, 1000)
	if n := l.index.readBack.Load(); n != 0 {
		t.Fatalf("%d messages read back from the log for events this node appended", n)
	}
	for _, key := range []string{"default/acked-0-0", "default/acked-4-199"} {
		if _, ok, err := l.index.idx.Lookup(key); err != nil || !ok {
			t.Fatalf("lookup %s: %v %v", key, ok, err)
		}
	}

	// Another writer (a NATS producer, another node) stores seq 1001.
	foreign := normalized(t, &event.Event{ID: "foreign-1", Type: "audit.query"})[0]
	foreign.Chain = "other-node"
	body, _, err := canonical(foreign)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.js.Publish(ctx, Subject(foreign), body); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(ctx, manyEvents(t, 10, "after")); err != nil {
		t.Fatal(err)
	}
	waitIndexed(t, l, 1011)
	if seq, ok, err := l.index.idx.Lookup("default/foreign-1"); err != nil || !ok || seq != 1001 {
		t.Fatalf("the other writer's event: %d %v %v, want seq 1001", seq, ok, err)
	}
	if seq, ok, err := l.index.idx.Lookup("default/after-9"); err != nil || !ok || seq != 1011 {
		t.Fatalf("after the gap: %d %v %v, want seq 1011", seq, ok, err)
	}
	if n := l.index.readBack.Load(); n == 0 || n > 11 {
		t.Fatalf("%d messages read back, want the other writer's (and at most the 10 after it)", n)
	}
}

// crashLogEnv names the data directory a re-executed test binary appends
// to until it is killed.
const crashLogEnv = "STORE_TEST_INDEX_CRASH_CHILD"

// TestIndexAfterKill9LosesNothing (issue 12 item 4): the id index is
// written without fsync (a kill -9 loses the tail of Pebble's WAL, and the
// acknowledged entries not yet put): a child process appends as fast as
// it can and is killed with SIGKILL three times; after each kill the log
// is opened again and, once the indexer has caught up, every event the
// log holds is found in the index under its seq. An entry lost with the
// watermark it was written with is read back from the log; one lost while
// the watermark survived would fail here.
func TestIndexAfterKill9LosesNothing(t *testing.T) {
	if dir := os.Getenv(crashLogEnv); dir != "" {
		crashLogChild(dir)
		return
	}
	if testing.Short() {
		t.Skip("re-executes the test binary")
	}
	ctx := context.Background()
	dir := t.TempDir()
	var total uint64
	for round := range 3 {
		// Past a few of the indexer's Puts (every indexPoll), then killed
		// at a random point of its work.
		reported := testkit.KillChild(t, "TestIndexAfterKill9LosesNothing", crashLogEnv+"="+dir, 4+round, indexPoll)
		t.Logf("round %d: the child's last report (head, index watermark): %s", round, reported)

		l, err := Open(ctx, Config{DataDir: dir})
		if err != nil {
			t.Fatalf("round %d: open after kill -9: %v", round, err)
		}
		wmAtOpen := l.IDIndex().Watermark
		head, err := l.Head(ctx)
		if err != nil {
			l.Close()
			t.Fatal(err)
		}
		waitIndexed(t, l, head)
		checked := uint64(0)
		if _, err := l.rawScan(ctx, 1, "", func(seq uint64, subject string, body []byte) bool {
			key, ok := dedupKey(subject, body)
			if !ok {
				t.Errorf("round %d: seq %d is not an event", round, seq)
				return false
			}
			got, found, err := l.index.idx.Lookup(key)
			if err != nil || !found || got != seq {
				t.Errorf("round %d: seq %d (%s) indexed as %d %v %v (watermark at open %d, head %d)", round, seq, key, got, found, err, wmAtOpen, head)
				return false
			}
			checked++
			return true
		}); err != nil {
			t.Error(err)
		}
		l.Close()
		if t.Failed() {
			return
		}
		t.Logf("round %d: %d events in the log, all indexed (the index's watermark was %d at open)", round, checked, wmAtOpen)
		if checked <= total {
			t.Fatalf("round %d: the child stored nothing new (%d events, %d before)", round, checked, total)
		}
		total = checked
	}
}

// crashLogChild appends batches of 50 events (ids generated) to the log in
// dir, printing the head after each, until killed.
func crashLogChild(dir string) {
	ctx := context.Background()
	l, err := Open(ctx, Config{DataDir: dir})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(2)
	}
	w := bufio.NewWriter(os.Stdout)
	for i := 0; ; i++ {
		evs := make([]*event.Event, 50)
		for j := range evs {
			evs[j] = &event.Event{Type: "audit.query", Message: strconv.Itoa(i)}
			if _, err := event.Normalize(evs[j], "default", time.Now(), event.DefaultLimits()); err != nil {
				fmt.Fprintln(os.Stderr, "child:", err)
				os.Exit(2)
			}
		}
		acks, err := l.Append(ctx, evs)
		if err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(2)
		}
		// One line per indexPoll at most: the parent counts Puts, roughly.
		if i%20 == 0 {
			_, _ = w.WriteString(strconv.FormatUint(acks[len(acks)-1].Seq, 10) + " " + strconv.FormatUint(l.IDIndex().Watermark, 10) + "\n")
			_ = w.Flush()
		}
	}
}

// ingestcpuUUIDv7 is a UUIDv7 made at t.
func ingestcpuUUIDv7(t time.Time) string {
	ms := t.UnixMilli()
	return fmt.Sprintf("%08x-%04x-7abc-8def-0123456789ab", ms>>16, ms&0xffff)
}

func TestFreshUUIDv7(t *testing.T) {
	now := time.Now()
	const window = 2 * time.Minute
	for _, c := range []struct {
		id   string
		want bool
	}{
		{uuid.Must(uuid.NewV7()).String(), true},
		{ingestcpuUUIDv7(now.Add(-50 * time.Second)), true},
		{strings.ToUpper(ingestcpuUUIDv7(now)), true},
		{ingestcpuUUIDv7(now.Add(50 * time.Second)), true},                    // a clock a little ahead
		{ingestcpuUUIDv7(now.Add(-70 * time.Second)), false},                  // older than half the window
		{ingestcpuUUIDv7(now.Add(-time.Hour)), false},                         // a late retry
		{ingestcpuUUIDv7(now.Add(70 * time.Second)), false},                   // too far ahead
		{uuid.Must(uuid.NewRandom()).String(), false},                         // v4: no time
		{strings.Replace(ingestcpuUUIDv7(now), "-8def-", "-cdef-", 1), false}, // another variant
		{strings.Replace(ingestcpuUUIDv7(now), "-", "", 1), false},
		{"g" + ingestcpuUUIDv7(now)[1:], false},
		{"late-1", false},
		{"", false},
	} {
		if got := freshUUIDv7(c.id, now, window); got != c.want {
			t.Errorf("freshUUIDv7(%q) = %v, want %v", c.id, got, c.want)
		}
	}
}

// TestFreshUUIDv7SkipsTheLateRetryLookup (issue 12 item 4): a producer's
// UUIDv7 made within the last half of the dedup window is not looked up in
// the id index (an earlier copy would be within the window, where the
// in-memory dedup index answers); one made long ago, as a retry after the
// window carries, is. Both are planted in the index as if stored at seq 1.
func TestFreshUUIDv7SkipsTheLateRetryLookup(t *testing.T) {
	ctx := context.Background()
	l := open(t, t.TempDir())
	defer l.Close()
	if _, err := l.Append(ctx, normalized(t, &event.Event{ID: "filler", Type: "audit.query"})); err != nil {
		t.Fatal(err)
	}
	fresh := uuid.Must(uuid.NewV7()).String()
	old := ingestcpuUUIDv7(time.Now().Add(-time.Hour))
	if err := l.index.idx.Put([]idindex.Entry{{Key: "default/" + fresh, Seq: 1}, {Key: "default/" + old, Seq: 1}}, 1); err != nil {
		t.Fatal(err)
	}
	acks, err := l.Append(ctx, normalized(t, &event.Event{ID: fresh, Type: "audit.query"}, &event.Event{ID: old, Type: "audit.query"}))
	if err != nil {
		t.Fatal(err)
	}
	if a := acks[0]; a.Duplicate || a.Seq != 2 {
		t.Fatalf("fresh UUIDv7: %+v, want stored at seq 2 without a lookup", a)
	}
	if a := acks[1]; !a.Duplicate || a.Seq != 1 {
		t.Fatalf("old UUIDv7: %+v, want the duplicate of seq 1 from the index", a)
	}
	// A retry of the fresh one within the window: the in-memory index.
	acks, err = l.Append(ctx, normalized(t, &event.Event{ID: fresh, Type: "audit.query"}))
	if err != nil || !acks[0].Duplicate || acks[0].Seq != 2 {
		t.Fatalf("retry of the fresh UUIDv7: %+v %v, want the duplicate of seq 2", acks, err)
	}
}

// TestIndexAheadOfTheLogIsRebuilt: an index whose watermark is above the
// log's head (the log lost its tail in a power loss while the index's
// flushed tables kept theirs, or the stream was recreated) would answer
// late retries with seqs that other events then take, and never index the
// events up to its watermark: it is rebuilt from the log at Open.
func TestIndexAheadOfTheLogIsRebuilt(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	l := open(t, dir)
	if _, err := l.Append(ctx, manyEvents(t, 100, "kept")); err != nil {
		t.Fatal(err)
	}
	waitIndexed(t, l, 100)
	// The lost tail: ids 101..150 indexed, not in the log.
	lost := make([]idindex.Entry, 50)
	for i := range lost {
		lost[i] = idindex.Entry{Key: fmt.Sprintf("default/lost-%d", i), Seq: uint64(101 + i)}
	}
	if err := l.index.idx.Put(lost, 150); err != nil {
		t.Fatal(err)
	}
	l.Close()

	l, err := Open(ctx, Config{DataDir: dir, DedupWindow: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, err := l.Append(ctx, manyEvents(t, 20, "new")); err != nil { // seqs 101..120
		t.Fatal(err)
	}
	waitIndexed(t, l, 120)
	if seq, ok, err := l.index.idx.Lookup("default/lost-0"); err != nil || ok {
		t.Fatalf("an id the log lost is still indexed at %d (%v)", seq, err)
	}
	for i, want := range map[string]uint64{"default/kept-0": 1, "default/kept-99": 100, "default/new-0": 101, "default/new-19": 120} {
		if seq, ok, err := l.index.idx.Lookup(i); err != nil || !ok || seq != want {
			t.Fatalf("%s: %d %v %v, want seq %d", i, seq, ok, err, want)
		}
	}
	// A late retry of a lost id is stored (it is not in the log), not
	// answered with the seq another event now holds.
	acks, err := l.Append(ctx, normalized(t, &event.Event{ID: "lost-0", Type: "audit.query"}))
	if err != nil || acks[0].Duplicate || acks[0].Seq != 121 {
		t.Fatalf("retry of a lost id: %+v %v, want stored at seq 121", acks, err)
	}
}
