package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/demo"
	"github.com/vigil-sec/vigil/internal/event"
)

// ringWaitFor polls cond until it holds or the deadline passes.
func ringWaitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// ringTail runs l.Tail from seq from until the returned stop is called
// (which waits for it to end); fn may be nil.
func ringTail(t *testing.T, l *Log, from uint64, fn func(*event.Event)) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { // owned by this test: stopped by stop (or the cleanup)
		done <- l.Tail(ctx, from, func(e *event.Event) {
			if fn != nil {
				fn(e)
			}
		})
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("tail: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// ringAppendDemo appends n demo events in batches of 100 and returns their
// ids by seq.
func ringAppendDemo(t *testing.T, l *Log, gen *demo.Generator, n int, ids map[uint64]string, mu *sync.Mutex) {
	t.Helper()
	for done := 0; done < n; done += 100 {
		batch := make([]*event.Event, min(100, n-done))
		for i := range batch {
			batch[i] = gen.Next()
		}
		acks, err := l.Append(context.Background(), normalized(t, batch...))
		if err != nil {
			t.Error(err)
			return
		}
		if mu != nil {
			mu.Lock()
		}
		for _, a := range acks {
			ids[a.Seq] = a.ID
		}
		if mu != nil {
			mu.Unlock()
		}
	}
}

// TestRingAppendGapAndBounds: the ring holds one contiguous range; a gap
// empties it; the byte and count bounds hold under a flood, dropping the
// oldest events first.
func TestRingAppendGapAndBounds(t *testing.T) {
	ev := func(seq uint64) *event.Event { return &event.Event{ID: fmt.Sprint(seq), Seq: seq} }
	r := newRecentRing(100*ringCost(100), 50)
	for s := uint64(10); s < 20; s++ {
		r.append(ev(s), 100)
	}
	if f, l, ok := r.bounds(); !ok || f != 10 || l != 19 {
		t.Fatalf("bounds %d..%d %v, want 10..19", f, l, ok)
	}
	dst := make([]*event.Event, 4)
	if n := r.copyRange(12, 30, dst); n != 4 || dst[0].Seq != 12 || dst[3].Seq != 15 {
		t.Fatalf("copyRange(12, 30) = %d from %d", n, dst[0].Seq)
	}
	if n := r.copyRange(18, 30, dst); n != 2 || dst[1].Seq != 19 {
		t.Fatalf("copyRange(18, 30) = %d", n)
	}
	if n := r.copyRange(9, 30, dst); n != 0 {
		t.Fatalf("copyRange below the ring = %d", n)
	}
	r.append(ev(21), 100) // 20 skipped: a gap
	if f, l, ok := r.bounds(); !ok || f != 21 || l != 21 || r.resets.Load() != 1 {
		t.Fatalf("after a gap: bounds %d..%d %v, resets %d; want 21..21", f, l, ok, r.resets.Load())
	}
	r.append(ev(5), 100) // backwards (a tail restarted earlier)
	if f, _, _ := r.bounds(); f != 5 || r.n != 1 {
		t.Fatalf("after going back: first %d, n %d", f, r.n)
	}
	// Flood: count bound (50) first, then bytes with larger events.
	for s := uint64(6); s < 5000; s++ {
		r.append(ev(s), 100)
		if r.n > 50 || r.bytes > r.maxBytes {
			t.Fatalf("seq %d: %d events, %d bytes: over the bounds", s, r.n, r.bytes)
		}
	}
	if f, l, _ := r.bounds(); f != 4950 || l != 4999 || len(r.buf) > 50 {
		t.Fatalf("after the flood: %d..%d, slots %d; want the newest 50", f, l, len(r.buf))
	}
	for s := uint64(5000); s < 6000; s++ {
		r.append(ev(s), 1000) // larger events: fewer fit
		if r.bytes > r.maxBytes {
			t.Fatalf("seq %d: %d bytes over %d", s, r.bytes, r.maxBytes)
		}
	}
	if r.n != int(r.maxBytes/ringCost(1000)) {
		t.Fatalf("%d large events held, want %d", r.n, r.maxBytes/ringCost(1000))
	}
	r.append(ev(6000), 1<<20) // larger than the ring: empties it (else a gap)
	if _, _, ok := r.bounds(); ok {
		t.Fatal("an event larger than the ring was kept")
	}
	r.append(ev(6001), 100)
	r.dropBelow(6002)
	if _, _, ok := r.bounds(); ok || r.bytes != 0 {
		t.Fatal("dropBelow kept a stale event")
	}
	if newRecentRing(0, 10) != nil || newRecentRing(10, 0) != nil {
		t.Fatal("a zero bound must disable the ring")
	}
	var off *recentRing
	off.feeder().add(ev(1), 1) // disabled: no-ops
	off.feeder().release()
	off.dropBelow(1)
}

// TestRingCostCoversHeap: the bytes the ring accounts for cover what its
// events really keep alive (decoded from the stored body, encoded for
// clients once, data decoded by a matcher), and the heap stays bounded
// when ten times the ring's size flows through it.
func TestRingCostCoversHeap(t *testing.T) {
	gen := demo.New(7)
	const maxBytes = 16 << 20
	r := newRecentRing(maxBytes, DefaultReplayCacheEvents)
	var seq uint64
	fill := func(n int) {
		for range n {
			e := normalized(t, gen.Next())[0]
			body, _, err := canonical(e)
			if err != nil {
				t.Fatal(err)
			}
			seq++
			// The tail decodes a body the NATS client allocated to size.
			body = bytes.Clone(body)
			d, err := decode(body, seq)
			if err != nil {
				t.Fatal(err)
			}
			d.JSON() // what the hub's fan-out does to every event
			r.append(d, len(body))
		}
	}
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	before := heap()
	fill(5000)
	grown := int64(heap()) - int64(before)
	if r.n != 5000 {
		t.Fatalf("ring holds %d of 5000 events (16 MiB should hold them)", r.n)
	}
	t.Logf("5000 events: heap +%d B (%d B/event), accounted %d B (%d B/event)", grown, grown/5000, r.bytes, r.bytes/5000)
	if grown > r.bytes {
		t.Fatalf("the events hold %d B of heap, the ring accounts for only %d B: the byte bound would not bound memory", grown, r.bytes)
	}
	// A flood: the accounted bytes and the heap stay bounded.
	for range 10 {
		fill(10000)
		if r.bytes > maxBytes {
			t.Fatalf("ring accounts %d B over its bound %d", r.bytes, maxBytes)
		}
	}
	if h := int64(heap()) - int64(before); h > maxBytes+maxBytes/4 {
		t.Fatalf("after 105,000 events through a 16 MiB ring the heap grew by %d B", h)
	}
	runtime.KeepAlive(r)
}

// TestScanRangeStraddlesRing: replays that start below the ring (from the
// log) and go on into it (from memory) while the tail appends and evicts
// get every event once, in order, with the right content; most of a
// recent range comes from the ring. Run with -race.
func TestScanRangeStraddlesRing(t *testing.T) {
	ctx := context.Background()
	l, err := Open(ctx, Config{DataDir: t.TempDir(), ReplayCacheEvents: 700})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	gen := demo.New(3)
	var mu sync.Mutex
	ids := map[uint64]string{}
	ringAppendDemo(t, l, gen, 1000, ids, &mu)
	ringTail(t, l, 301, nil)
	ringWaitFor(t, "the ring to reach seq 1000", func() bool { return l.ReplayCacheStats().Last == 1000 })
	if s := l.ReplayCacheStats(); s.First != 301 || s.Events != 700 {
		t.Fatalf("ring %+v, want 301..1000", s)
	}

	// Straddling a still ring: 100..300 from the log, 301..1000 from memory.
	var got []uint64
	if err := l.ScanRange(ctx, 100, 1000, func(e *event.Event) bool { got = append(got, e.Seq); return true }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 901 || got[0] != 100 || got[900] != 1000 {
		t.Fatalf("got %d events %v..%v, want 100..1000", len(got), got[0], got[len(got)-1])
	}
	if s := l.ReplayCacheStats(); s.Served != 700 {
		t.Fatalf("ring served %d events, want 700", s.Served)
	}

	// Now while producers append (the ring evicts its low end all along),
	// readers replay from below the ring to the head.
	stopAppend := make(chan struct{})
	producerDone := make(chan struct{})
	go func() { // producer, stopped by stopAppend
		defer close(producerDone)
		for {
			select {
			case <-stopAppend:
				return
			default:
			}
			ringAppendDemo(t, l, gen, 200, ids, &mu)
		}
	}()
	var readers sync.WaitGroup
	for r := range 3 {
		readers.Add(1)
		go func() { // reader
			defer readers.Done()
			for i := range 4 {
				head, err := l.Head(ctx)
				if err != nil {
					t.Error(err)
					return
				}
				from := uint64(1)
				if back := uint64(750 + 100*r + 50*i); head > back {
					from = head - back // below the ring (700 events)
				}
				next := from
				err = l.ScanRange(ctx, from, head, func(e *event.Event) bool {
					if e.Seq != next {
						t.Errorf("reader %d: seq %d after %d", r, e.Seq, next-1)
						return false
					}
					mu.Lock()
					id := ids[e.Seq]
					mu.Unlock()
					if id != "" && id != e.ID {
						t.Errorf("seq %d: id %s, want %s", e.Seq, e.ID, id)
					}
					next++
					return true
				})
				if err != nil {
					t.Error(err)
				}
				if next != head+1 {
					t.Errorf("reader %d: replay %d..%d ended at %d", r, from, head, next-1)
				}
			}
		}()
	}
	readers.Wait()
	close(stopAppend)
	<-producerDone
	s := l.ReplayCacheStats()
	if s.Evicted == 0 || s.Events > 700 {
		t.Fatalf("ring %+v: the producers should have made it evict, within 700 events", s)
	}
	if s.Served <= 700 {
		t.Fatalf("ring %+v: no concurrent replay was served from the ring", s)
	}
	t.Logf("ring after the run: %+v", s)

	// Early stop inside the ring ends the scan there.
	n := 0
	if err := l.ScanRange(ctx, s.First, s.Last, func(*event.Event) bool { n++; return n < 3 }); err != nil || n != 3 {
		t.Fatalf("early stop: %d events, %v", n, err)
	}
	// And in the log part below it.
	n = 0
	if err := l.ScanRange(ctx, 1, s.Last, func(*event.Event) bool { n++; return n < 3 }); err != nil || n != 3 {
		t.Fatalf("early stop below the ring: %d events, %v", n, err)
	}
}

// TestRingTailRestartAndSecondTail: only one tail fills the ring; a tail
// restarted further on empties it rather than leave a gap; replays stay
// exact throughout.
func TestRingTailRestartAndSecondTail(t *testing.T) {
	ctx := context.Background()
	l := open(t, t.TempDir())
	defer l.Close()
	gen := demo.New(4)
	ids := map[uint64]string{}
	ringAppendDemo(t, l, gen, 300, ids, nil)
	stop := ringTail(t, l, 1, nil)
	ringWaitFor(t, "the ring to reach 300", func() bool { return l.ReplayCacheStats().Last == 300 })
	// A second tail (from 200) must not feed the ring: it would interleave.
	var second sync.Map
	stop2 := ringTail(t, l, 200, func(e *event.Event) { second.Store(e.Seq, true) })
	ringAppendDemo(t, l, gen, 100, ids, nil)
	ringWaitFor(t, "both tails to reach 400", func() bool {
		_, ok := second.Load(uint64(400))
		return ok && l.ReplayCacheStats().Last == 400
	})
	if s := l.ReplayCacheStats(); s.First != 1 || s.Resets != 0 {
		t.Fatalf("two tails: ring %+v, want 1..400 without reset", s)
	}
	stop2()
	stop()
	// Restart past a gap (as after the hub restarted at a later head).
	ringAppendDemo(t, l, gen, 100, ids, nil) // 401..500, not seen by any tail
	ringTail(t, l, 451, nil)
	ringWaitFor(t, "the restarted tail to fill the ring", func() bool { return l.ReplayCacheStats().Last == 500 })
	if s := l.ReplayCacheStats(); s.First != 451 || s.Resets != 1 {
		t.Fatalf("after the restart: ring %+v, want 451..500 after one reset", s)
	}
	next := uint64(1)
	if err := l.ScanRange(ctx, 1, 500, func(e *event.Event) bool {
		if e.Seq != next || e.ID != ids[e.Seq] {
			t.Fatalf("seq %d (%s), want %d (%s)", e.Seq, e.ID, next, ids[next])
		}
		next++
		return true
	}); err != nil || next != 501 {
		t.Fatalf("replay 1..500 ended at %d: %v", next-1, err)
	}
}

// TestRingRespectsRetention: events retention removed from the log are
// never served from the ring, although the ring still held them.
func TestRingRespectsRetention(t *testing.T) {
	ctx := context.Background()
	l, err := Open(ctx, Config{DataDir: t.TempDir(), MaxBytes: 256 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	gen := demo.New(5)
	ids := map[uint64]string{}
	ringTail(t, l, 1, nil)
	ringAppendDemo(t, l, gen, 200, ids, nil)
	ringWaitFor(t, "the ring to reach 200", func() bool { return l.ReplayCacheStats().Last == 200 })
	if s := l.ReplayCacheStats(); s.First != 1 {
		t.Fatalf("ring %+v, want it from seq 1", s)
	}
	ringAppendDemo(t, l, gen, 1800, ids, nil) // retention drops the oldest
	ringWaitFor(t, "the ring to reach 2000", func() bool { return l.ReplayCacheStats().Last == 2000 })
	first, err := l.First(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if first <= 1 {
		t.Fatalf("retention removed nothing (first %d)", first)
	}
	if s := l.ReplayCacheStats(); s.First >= first {
		t.Fatalf("the ring (%+v) should still hold events the log dropped (first %d) for this test to mean anything", s, first)
	}
	var got []uint64
	if err := l.ScanRange(ctx, 1, 2000, func(e *event.Event) bool { got = append(got, e.Seq); return true }); err != nil {
		t.Fatal(err)
	}
	// The log may drop more between its First and the scan: never less.
	if len(got) == 0 || got[0] < first || got[len(got)-1] != 2000 || uint64(len(got)) != 2001-got[0] {
		t.Fatalf("replay after retention: %d events from %d, log's first %d", len(got), got[0], first)
	}
	if s := l.ReplayCacheStats(); s.First < first {
		t.Fatalf("ring %+v still holds events below the log's first seq %d after a read", s, first)
	}
}

// TestRingEventsSharedNotModified: the events a replay hands out from the
// ring are the tail's own (shared with the hub); masking them for a
// viewer copies, and neither concurrent masking, encoding nor Verify
// (which rewrites seq and hash while hashing, so it reads the log) writes
// into them. Run with -race.
func TestRingEventsSharedNotModified(t *testing.T) {
	ctx := context.Background()
	l := open(t, t.TempDir())
	defer l.Close()
	gen := demo.New(6)
	var tailed sync.Map
	ringTail(t, l, 1, func(e *event.Event) { tailed.Store(e.Seq, e) })
	ringAppendDemo(t, l, gen, 300, map[uint64]string{}, nil)
	ringWaitFor(t, "the ring to reach 300", func() bool { return l.ReplayCacheStats().Last == 300 })

	type snap struct {
		json              []byte
		hash, user, srcIP string
		seq               uint64
	}
	orig := map[uint64]snap{}
	if err := l.ScanRange(ctx, 1, 300, func(e *event.Event) bool {
		if v, _ := tailed.Load(e.Seq); v != e {
			t.Fatalf("seq %d: the replay did not hand out the tail's event", e.Seq)
		}
		orig[e.Seq] = snap{bytes.Clone(e.JSON()), e.Hash, e.User, e.SrcIP, e.Seq}
		return true
	}); err != nil {
		t.Fatal(err)
	}
	rules := auth.DefaultMasking()[auth.RoleViewer]
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() { // reader masking and encoding
			defer wg.Done()
			if err := l.ScanRange(ctx, 1, 300, func(e *event.Event) bool {
				m := auth.MaskEvent(rules, e)
				if m == e {
					t.Error("masking returned the shared event")
				}
				_ = m.JSON()
				_ = e.DataMap()
				return true
			}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Add(1)
	go func() { // Verify at the same time
		defer wg.Done()
		rep, err := l.Verify(ctx)
		if err != nil || !rep.OK || rep.Checked != 300 {
			t.Errorf("verify: %+v, %v", rep, err)
		}
	}()
	wg.Wait()
	if err := l.ScanRange(ctx, 1, 300, func(e *event.Event) bool {
		o := orig[e.Seq]
		if !bytes.Equal(e.JSON(), o.json) || e.Hash != o.hash || e.User != o.user || e.SrcIP != o.srcIP || e.Seq != o.seq {
			t.Fatalf("seq %d was modified while shared", o.seq)
		}
		return true
	}); err != nil {
		t.Fatal(err)
	}
}

// TestRingOnSharedStream: two nodes on one external stream each keep
// every event in their own ring (each tail sees all of them), and each
// replays the whole log exactly.
func TestRingOnSharedStream(t *testing.T) {
	ctx := context.Background()
	url := startNATS(t)
	var logs []*Log
	for _, id := range []string{"n1", "n2"} {
		l, err := Open(ctx, Config{NATSURL: url, NodeID: id})
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		ringTail(t, l, 1, nil)
		logs = append(logs, l)
	}
	var mu sync.Mutex
	ids := map[uint64]string{}
	var wg sync.WaitGroup
	for i, l := range logs {
		wg.Add(1)
		go func() { // producer on node i
			defer wg.Done()
			ringAppendDemo(t, l, demo.New(uint64(10+i)), 500, ids, &mu)
		}()
	}
	wg.Wait()
	for i, l := range logs {
		ringWaitFor(t, "the ring to reach 1000", func() bool { return l.ReplayCacheStats().Last == 1000 })
		if s := l.ReplayCacheStats(); s.First != 1 || s.Events != 1000 {
			t.Fatalf("node %d: ring %+v, want 1..1000", i, s)
		}
		next := uint64(1)
		if err := l.ScanRange(ctx, 1, 1000, func(e *event.Event) bool {
			if e.Seq != next || e.ID != ids[e.Seq] {
				t.Fatalf("node %d: seq %d (%s), want %d (%s)", i, e.Seq, e.ID, next, ids[next])
			}
			next++
			return true
		}); err != nil || next != 1001 {
			t.Fatalf("node %d: replay ended at %d: %v", i, next-1, err)
		}
		if s := l.ReplayCacheStats(); s.Served != 1000 {
			t.Fatalf("node %d: ring served %d of 1000", i, s.Served)
		}
	}
}

// TestRingDisabled: a negative size turns the ring off: replays come from
// the log, the tail keeps nothing.
func TestRingDisabled(t *testing.T) {
	ctx := context.Background()
	l, err := Open(ctx, Config{DataDir: t.TempDir(), ReplayCacheBytes: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var seen sync.Map
	ringTail(t, l, 1, func(e *event.Event) { seen.Store(e.Seq, true) })
	ringAppendDemo(t, l, demo.New(8), 100, map[uint64]string{}, nil)
	ringWaitFor(t, "the tail", func() bool { _, ok := seen.Load(uint64(100)); return ok })
	n := 0
	if err := l.ScanRange(ctx, 1, 100, func(*event.Event) bool { n++; return true }); err != nil || n != 100 {
		t.Fatalf("replay: %d events, %v", n, err)
	}
	if s := l.ReplayCacheStats(); s != (RingStats{}) {
		t.Fatalf("disabled ring reports %+v", s)
	}
}

// TestRingScanHonoursContext: a replay served from the ring ends with the
// context's error at the next chunk (the GraphQL time limit and a client
// that disconnects rely on it).
func TestRingScanHonoursContext(t *testing.T) {
	l := open(t, t.TempDir())
	defer l.Close()
	ringTail(t, l, 1, nil)
	ringAppendDemo(t, l, demo.New(9), 1000, map[uint64]string{}, nil)
	ringWaitFor(t, "the ring to reach 1000", func() bool { return l.ReplayCacheStats().Last == 1000 })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n := 0
	err := l.ScanRange(ctx, 1, 1000, func(*event.Event) bool {
		if n++; n == 300 {
			cancel()
		}
		return true
	})
	if !errors.Is(err, context.Canceled) || n > 300+ringChunk {
		t.Fatalf("canceled after 300 events: %d delivered, err %v", n, err)
	}
}
