package store

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/vigil-sec/vigil/internal/demo"
	"github.com/vigil-sec/vigil/internal/event"
)

// spillLog opens a log whose ring holds ~30 events, so that most of a
// replay is below it, with the replay spill on.
func spillLog(t *testing.T, dir string) *Log {
	t.Helper()
	l, err := Open(context.Background(), Config{DataDir: dir, ReplayCacheBytes: 30 * ringCost(700), ReplayCacheEvents: 30})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// spillScan is ScanRange into seq → id.
func spillScan(t *testing.T, l *Log, from, to uint64, scan func(context.Context, uint64, uint64, func(*event.Event) bool) error) ([]uint64, []string) {
	t.Helper()
	var seqs []uint64
	var ids []string
	if err := scan(context.Background(), from, to, func(e *event.Event) bool {
		seqs, ids = append(seqs, e.Seq), append(ids, e.ID)
		return true
	}); err != nil {
		t.Fatal(err)
	}
	return seqs, ids
}

// TestSpillServesReplaysBelowTheRing: a replay of a range older than the
// ring is served from the spill, event for event what the log holds, and
// any range across spill, ring and log has no gap and no duplicate.
func TestSpillServesReplaysBelowTheRing(t *testing.T) {
	l := spillLog(t, t.TempDir())
	defer l.Close()
	ringTail(t, l, 1, nil)
	ringAppendDemo(t, l, demo.New(3), 3000, map[uint64]string{}, nil)
	ringWaitFor(t, "the spill to hold the log", func() bool { return l.ReplaySpillStats().Last == 3000 })
	rs := l.ReplayCacheStats()
	if rs.First <= 1 {
		t.Fatalf("the ring holds everything (%+v): nothing is below it", rs)
	}
	wantSeqs, wantIDs := spillScan(t, l, 1, 3000, l.StoredScanForBench)
	for _, r := range [][2]uint64{{1, 3000}, {1, 10}, {700, 2990}, {2999, 3000}, {256, 257}, {1, rs.First - 1}} {
		before := l.ReplaySpillStats().Served
		seqs, ids := spillScan(t, l, r[0], r[1], l.ScanRange)
		if len(seqs) != int(r[1]-r[0]+1) {
			t.Fatalf("range %v: %d events", r, len(seqs))
		}
		for i, seq := range seqs {
			if seq != r[0]+uint64(i) || ids[i] != wantIDs[seq-1] || wantSeqs[seq-1] != seq {
				t.Fatalf("range %v: event %d is seq %d id %s, the log has id %s", r, i, seq, ids[i], wantIDs[seq-1])
			}
		}
		if r[0] < rs.First && l.ReplaySpillStats().Served == before {
			t.Fatalf("range %v: nothing came from the spill", r)
		}
	}
}

// TestSpillCorruptionReadsTheLog: a damaged record (a flipped byte in a
// segment file) is never delivered; the rest of the range comes from the
// log, complete and in order.
func TestSpillCorruptionReadsTheLog(t *testing.T) {
	l := spillLog(t, t.TempDir())
	defer l.Close()
	ringTail(t, l, 1, nil)
	ringAppendDemo(t, l, demo.New(4), 1000, map[uint64]string{}, nil)
	ringWaitFor(t, "the spill to hold the log", func() bool { return l.ReplaySpillStats().Last == 1000 })
	_, wantIDs := spillScan(t, l, 1, 1000, l.StoredScanForBench)
	segs, _ := filepath.Glob(filepath.Join(l.cfg.DataDir, spillDirName, "*.spill"))
	if len(segs) != 1 {
		t.Fatalf("segments: %v", segs)
	}
	b, err := os.ReadFile(segs[0])
	if err != nil {
		t.Fatal(err)
	}
	// Inside the id of event 500: decoded without the CRC check, it
	// would be another id.
	at := bytes.Index(b, []byte(wantIDs[499]))
	if at < 0 {
		t.Fatal("event 500's id is not in the segment")
	}
	b[at+len(wantIDs[499])-1] ^= 0x01
	if err := os.WriteFile(segs[0], b, 0o600); err != nil {
		t.Fatal(err)
	}
	served := l.ReplaySpillStats().Served
	seqs, ids := spillScan(t, l, 1, 1000, l.ScanRange)
	if got := l.ReplaySpillStats().Served - served; got != 499 {
		t.Fatalf("the spill served %d events, want the 499 before the damaged one", got)
	}
	if len(seqs) != 1000 {
		t.Fatalf("%d events, want 1000", len(seqs))
	}
	for i := range seqs {
		if seqs[i] != uint64(i+1) || ids[i] != wantIDs[i] {
			t.Fatalf("event %d: seq %d id %s, the log has %s", i, seqs[i], ids[i], wantIDs[i])
		}
	}
}

// TestSpillGapsBoundsAndLifetime: a seq that does not follow empties the
// spill; old segments go past the byte bound and below the log's first
// seq; what a previous process left is deleted at Open and the spill is
// deleted at Close.
func TestSpillGapsBoundsAndLifetime(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spill")
	s, err := openReplaySpill(context.Background(), dir, 1, 0, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	s.maxBytes, s.segBytes = 3*4096, 4096 // tiny segments: ~20 records each
	body := make([]byte, 180)
	feed := s.feeder()
	if s.feeder() != nil {
		t.Fatal("a second tail may not feed the spill")
	}
	add := func(from, to uint64) {
		for seq := from; seq <= to; seq++ {
			feed.add(seq, body)
		}
	}
	settled := func(want uint64) {
		t.Helper()
		ringWaitFor(t, "the writer", func() bool { _, last, ok := s.bounds(); return ok && last == want })
	}
	add(1, 100)
	settled(100)
	first, _, _ := s.bounds()
	if first == 1 || len(s.segs) > 4 {
		t.Fatalf("past the bound the oldest segments must go: first %d, %d segments", first, len(s.segs))
	}
	s.dropBelow(95)
	if first, _, _ := s.bounds(); first > 95 || len(s.segs) != 1 {
		t.Fatalf("dropBelow(95): first %d, %d segments", first, len(s.segs))
	}
	add(150, 160) // a gap
	settled(160)
	if first, _, _ := s.bounds(); first != 150 || s.resets.Load() != 1 {
		t.Fatalf("after a gap: first %d, resets %d", first, s.resets.Load())
	}
	if n, _, _ := s.read(context.Background(), 100, 140, func(*event.Event) bool { return true }); n != 100 {
		t.Fatalf("a read of what the spill no longer holds delivered up to %d", n)
	}
	feed.release()
	s.close()
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("the spill outlived Close: %v", err)
	}

	// A previous process's leftovers (a kill -9) are deleted at Open.
	data := t.TempDir()
	left := filepath.Join(data, spillDirName, "00000001.spill")
	if err := os.MkdirAll(filepath.Dir(left), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(left, []byte("stale"), 0o600); err != nil {
		t.Fatal(err)
	}
	l := spillLog(t, data)
	if _, err := os.Stat(left); !os.IsNotExist(err) {
		t.Fatalf("a previous process's spill survived Open: %v", err)
	}
	l.Close()
}

// TestSpillLeavesTheDiskToTheLog: a segment that would leave less than
// spillDiskReserve free on the file system is not made; the spill turns
// itself off (replays read the log) instead of taking space the log needs.
func TestSpillLeavesTheDiskToTheLog(t *testing.T) {
	s, err := openReplaySpill(context.Background(), filepath.Join(t.TempDir(), "spill"), 1, 0, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	s.segBytes = 4096
	var free atomic.Uint64
	free.Store(spillDiskReserve + 1<<20)
	s.freeBytes = func(string) (uint64, error) { return free.Load(), nil }
	feed := s.feeder()
	defer feed.release()
	body := make([]byte, 180)
	for seq := uint64(1); seq <= 30; seq++ { // two segments: room for both
		feed.add(seq, body)
	}
	ringWaitFor(t, "the writer", func() bool { _, last, ok := s.bounds(); return ok && last == 30 })
	free.Store(spillDiskReserve + 1000) // less than a segment above the reserve
	for seq := uint64(31); seq <= 60; seq++ {
		feed.add(seq, body)
	}
	ringWaitFor(t, "the spill to turn off", func() bool { return s.failedNow() })
	if _, _, ok := s.bounds(); ok {
		t.Fatal("the spill still serves after turning off")
	}
	if segs, _ := filepath.Glob(filepath.Join(s.dir, "*.spill")); len(segs) != 0 {
		t.Fatalf("its segments stayed on disk: %v", segs)
	}
}
