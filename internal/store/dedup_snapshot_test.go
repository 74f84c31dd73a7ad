package store

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func openConfig(t *testing.T, cfg Config) *Log {
	t.Helper()
	l, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// crash stops l as a kill -9 would leave it for the next start: no
// snapshot at close (what is on disk is the last periodic one).
func crash(l *Log) {
	l.rebuild.stop()     // the rebuild and the periodic writer
	l.index.stop()       // a dead process releases the id index's lock
	l.heads.close(false) // the checkpoint's writer, without the final write
	l.nc.Close()
	l.shutdownServer()
}

// snapshotHead is the head of dir's snapshot (0 without one).
func snapshotHead(t *testing.T, dir string) (uint64, []byte) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, dedupSnapshotFile))
	if err != nil {
		return 0, nil
	}
	_, rest, _ := bytes.Cut(b, []byte("\n"))
	header, _, _ := bytes.Cut(rest, []byte("\n"))
	var c, cov int64
	var h uint64
	if _, err := fmt.Sscanf(string(header), "stream_created %d head %d covered_since %d", &c, &h, &cov); err != nil {
		t.Fatalf("snapshot header %q: %v", header, err)
	}
	return h, b
}

// TestDedupSnapshotPeriodicAfterCrash (issue 8, item 4): the log writes
// its dedup index periodically while it runs; after a crash the next Open
// takes the newest snapshot and reads only the events after its head from
// the log. An id stored before the snapshot and one stored after it are
// both duplicates, with their original seqs, from the first append on.
func TestDedupSnapshotPeriodicAfterCrash(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	cfg := Config{DataDir: dir, DedupSnapshotInterval: 20 * time.Millisecond}
	l := openConfig(t, cfg)
	if _, err := l.Append(ctx, manyEvents(t, 1000, "before")); err != nil {
		t.Fatal(err)
	}
	// A periodic snapshot covering the first batch, written while the log
	// runs (on main: only Close wrote one, so this waits in vain).
	var periodic []byte
	deadline := time.Now().Add(10 * time.Second)
	for {
		h, b := snapshotHead(t, dir)
		if h >= 1000 {
			periodic = b
			break
		}
		if time.Now().After(deadline) {
			l.Close()
			t.Fatalf("no periodic dedup snapshot covering seq 1000 within 10 s (head %d)", h)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := l.Append(ctx, manyEvents(t, 500, "after")); err != nil {
		t.Fatal(err)
	}
	crash(l)
	// The crash came before the next tick: the snapshot on disk is the
	// one that covers only the first batch.
	if err := os.WriteFile(filepath.Join(dir, dedupSnapshotFile), periodic, 0o600); err != nil {
		t.Fatal(err)
	}

	for run := range 2 { // a prefix snapshot may be used again: the tail is read each time
		l = openConfig(t, Config{DataDir: dir, DedupSnapshotInterval: -1})
		for _, probe := range []struct {
			prefix string
			i      int
			seq    uint64
		}{{"before", 0, 1}, {"before", 999, 1000}, {"after", 0, 1001}, {"after", 499, 1500}} {
			acks, err := l.Append(ctx, manyEvents(t, probe.i+1, probe.prefix)[probe.i:])
			if err != nil {
				t.Fatal(err)
			}
			if !acks[0].Duplicate || acks[0].Seq != probe.seq {
				t.Fatalf("run %d: %s-%d after a crash: %+v, want a duplicate of seq %d", run, probe.prefix, probe.i, acks[0], probe.seq)
			}
		}
		info, err := l.WaitDedupIndex(ctx)
		if err != nil || !info.Snapshot || info.IDs != 1500 || info.Tail != 500 {
			t.Fatalf("run %d: dedup index: %+v (%v), want 1000 ids from the snapshot and 500 from the log", run, info, err)
		}
		if head, _ := l.Head(ctx); head != 1500 {
			t.Fatalf("run %d: duplicates were stored again: head %d", run, head)
		}
		crash(l)
	}
}

// TestDedupIndexViewHead: a snapshot's head stays below every batch in
// flight (its ids have no seq yet), even when a later batch settled first.
func TestDedupIndexViewHead(t *testing.T) {
	d := newDedupIndex(time.Minute)
	now := time.Now()
	for i := 1; i <= 5; i++ {
		d.remember(fmt.Sprintf("t/%d", i), uint64(i), now)
	}
	d.coverTo(5)
	fl1 := &inflight{keys: []string{"t/a"}, acks: make([]pubAck, 1)}
	fl2 := &inflight{keys: []string{"t/b"}, acks: make([]pubAck, 1)}
	d.reserve(fl1.keys, now, fl1)
	d.reserve(fl2.keys, now, fl2)
	fl2.acks[0] = pubAck{seq: 7}
	d.settle(fl2)
	ids, head, _ := d.view(now)
	if head != 5 || len(ids) != 6 {
		t.Fatalf("with seq 6 in flight: head %d, %d ids; want head 5, 6 ids", head, len(ids))
	}
	fl1.acks[0] = pubAck{seq: 6}
	d.settle(fl1)
	if ids, head, _ = d.view(now); head != 7 || len(ids) != 7 {
		t.Fatalf("nothing in flight: head %d, %d ids; want head 7, 7 ids", head, len(ids))
	}
}

// TestReadyWhileDedupRebuilding: the readiness probe says not ready, with
// the rebuild's progress, until appends are accepted (on main it said
// ready while every append waited).
func TestReadyWhileDedupRebuilding(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	l := open(t, dir)
	for b := range 3 {
		if _, err := l.Append(ctx, manyEvents(t, 1000, fmt.Sprintf("b%d", b))); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	if err := os.Remove(filepath.Join(dir, dedupSnapshotFile)); err != nil {
		t.Fatal(err)
	}
	gate := make(chan struct{})
	l = openConfig(t, Config{DataDir: dir, rebuildGate: gate})
	defer l.Close()
	err := l.Ready(ctx)
	if err == nil || !strings.Contains(err.Error(), "dedup index rebuilding: 0 of 3000") {
		t.Fatalf("Ready while the dedup index is rebuilt: %v, want not ready, rebuilding 0 of 3000", err)
	}
	actx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	_, aerr := l.Append(actx, manyEvents(t, 1, "b0"))
	cancel()
	if aerr == nil {
		t.Fatal("an append was accepted while Ready said not ready")
	}
	close(gate)
	if _, err := l.WaitDedupIndex(ctx); err != nil {
		t.Fatal(err)
	}
	if err := l.Ready(ctx); err != nil {
		t.Fatalf("Ready once appends are accepted: %v", err)
	}
	acks, err := l.Append(ctx, manyEvents(t, 1, "b0"))
	if err != nil || !acks[0].Duplicate || acks[0].Seq != 1 {
		t.Fatalf("b0-0 once ready: %+v %v, want a duplicate of seq 1", acks, err)
	}
}

// BenchmarkDedupSnapshotWrite measures one snapshot of a full index,
// 1,000,000 ids (as the periodic writer writes it every interval): the
// time to write and fsync it, its size, and how long the index's lock is
// held for it (appends wait only that long):
//
//	go test -run '^$' -bench DedupSnapshotWrite -benchtime 5x ./internal/store/
func BenchmarkDedupSnapshotWrite(b *testing.B) {
	const ids = 1_000_000
	l, err := Open(context.Background(), Config{DataDir: b.TempDir(), DedupSnapshotInterval: -1})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	now := time.Now()
	l.recent.grow(ids)
	for i := range ids {
		l.recent.remember(fmt.Sprintf("%s/e%07d", []string{"acme", "globex"}[i%2], i), uint64(i+1), now)
	}
	l.recent.coverTo(ids)
	var size int64
	var locked time.Duration
	for b.Loop() {
		t0 := time.Now()
		l.recent.view(time.Now())
		locked += time.Since(t0)
		st, err := l.saveDedupSnapshot(l.rebuild, 0)
		if err != nil || st.ids != ids {
			b.Fatalf("snapshot: %+v %v", st, err)
		}
		size = st.bytes
	}
	b.ReportMetric(float64(size)/1e6, "MB")
	b.ReportMetric(float64(locked.Nanoseconds())/float64(b.N), "ns-locked/op")
}

// TestDedupSnapshotExpiredKeepsNoMemory (issue 12 item 8, RSS after a
// restart): a snapshot whose ids have all left the window by the next
// start is read without sizing the index for them. rememberAll sized the
// map and the order array for every entry of the file, expired or not,
// and Go maps never shrink: a node restarted after its bench kept 13 MB
// (10 s window), an estimated 150 MB at the default 2 minutes, for nothing.
func TestDedupSnapshotExpiredKeepsNoMemory(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	const window = 4 * time.Second // room for the appends and the snapshot on a slow machine (2 s once left 1 id in CI)
	cfg := Config{DataDir: dir, DedupWindow: window, DedupSnapshotInterval: -1}
	l := openConfig(t, cfg)
	const n = 5_000
	if _, err := l.Append(ctx, manyEvents(t, n, "old")); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	l.Close() // writes the snapshot of the window
	h, b := snapshotHead(t, dir)
	if ids := bytes.Count(b, []byte("\n")) - 2; h != n || ids < n/2 {
		t.Fatalf("snapshot head %d with %d ids, want %d with most of them (appending took longer than the window?)", h, ids, n)
	}
	// The node stays down longer than the window: every id expires.
	time.Sleep(time.Until(stopped.Add(window + 100*time.Millisecond)))

	l = openConfig(t, cfg)
	defer l.Close()
	info, err := l.WaitDedupIndex(ctx)
	if err != nil || !info.Snapshot || info.IDs != 0 {
		t.Fatalf("dedup index after the window: %+v (%v), want the snapshot read and no id taken", info, err)
	}
	l.recent.mu.Lock()
	orderCap := cap(l.recent.order)
	l.recent.mu.Unlock()
	if orderCap >= n/2 {
		t.Fatalf("the dedup index keeps room for %d expired ids (order capacity %d)", n, orderCap)
	}
	// The index still works: a new id is stored, then a duplicate.
	for range 2 {
		if _, err := l.Append(ctx, manyEvents(t, 1, "new")); err != nil {
			t.Fatal(err)
		}
	}
	if head, _ := l.Head(ctx); head != n+1 {
		t.Fatalf("head %d after an id and its retry, want %d", head, n+1)
	}
}
