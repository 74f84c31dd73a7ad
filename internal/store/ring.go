package store

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/vigil-sec/vigil/internal/event"
)

// The recent-event ring (issue 12, item 5): the newest events, already
// decoded by the node's tail, kept in memory so that a replay of a recent
// range (a client resuming after a short disconnect, a history query of
// the last minutes) is served without JetStream. Through JetStream each
// replayed event costs ~5.7 µs of CPU, over half of it in the server's
// per-message protocol work; from the ring it costs a pointer copy.
//
// Invariants:
//   - the ring holds one contiguous range of seqs [first, first+n): an
//     event that does not follow the last one (a tail restarted elsewhere,
//     a seq the tail skipped: a deleted or undecodable message) empties it
//     first;
//   - it is filled by one tail at a time (the hub's), in seq order, with
//     events that are in the log;
//   - it is bounded by maxBytes (an estimate of the memory each event
//     keeps alive, see ringCost) and by maxEvents: the oldest events are
//     dropped first, so its memory does not grow with the log;
//   - an event in it is shared by every reader (as the hub shares it
//     with every subscriber): nobody may modify it. Masking copies
//     (auth.MaskEvent); Verify, which rewrites fields while hashing, reads
//     the log instead (scanRange with a nil ring).
//
// A read below the ring comes from JetStream, then continues in the ring
// from the seq where that part ended, so the seam has no gap and no
// duplicate whatever the tail appends or evicts meanwhile.

// Defaults of Config.ReplayCacheBytes and Config.ReplayCacheEvents.
const (
	DefaultReplayCacheBytes  = 64 << 20
	DefaultReplayCacheEvents = 1 << 20
)

// ringEventOverhead is what a decoded event keeps alive besides its stored
// body and its client encoding: the Event struct (504 B, a 512 B size
// class) with its shared string-list array and number pointers, and the
// ring's slot. Measured by TestRingCostCoversHeap (~1,050 B with demo
// events).
const ringEventOverhead = 1024

// ringCost is the memory one event of stored size n holds while it is in
// the ring: its strings point into the stored body, the client encoding
// made on first send is a second copy of it (each rounded up to the
// allocator's size class: n/4 covers it), plus the fixed overhead. An
// event's data decoded into a map by a filter on data.* fields is not
// counted.
func ringCost(n int) int64 { return 2*int64(n) + int64(n)/4 + ringEventOverhead }

// ringChunk is how many events a reader copies out of the ring per lock:
// fn runs without the lock (it may block on a slow client's queue), and
// the tail is never held up by more than one short copy.
const ringChunk = 256

type ringSlot struct {
	e    *event.Event
	cost int64
}

// recentRing is the ring; a nil *recentRing is a disabled one.
type recentRing struct {
	maxBytes  int64
	maxEvents int

	feeding atomic.Bool // a tail fills the ring (one at a time)

	mu    sync.RWMutex
	buf   []ringSlot // circular, grown by doubling up to maxEvents
	head  int        // index of the oldest event
	n     int
	first uint64 // seq of the oldest event (when n > 0)
	bytes int64

	// Counters for the tests, the benchmark and operators.
	served  atomic.Uint64 // events handed out from the ring
	resets  atomic.Uint64 // times a gap emptied the ring
	evicted atomic.Uint64
}

func newRecentRing(maxBytes int64, maxEvents int) *recentRing {
	if maxBytes <= 0 || maxEvents <= 0 {
		return nil
	}
	return &recentRing{maxBytes: maxBytes, maxEvents: maxEvents}
}

// lazyRing is the Log's ring, made from its Config on first use (kept out
// of Open so the ring stays in this file).
type lazyRing struct {
	once sync.Once
	r    *recentRing
}

func (l *Log) recentRing() *recentRing {
	l.ring.once.Do(func() {
		b, n := l.cfg.ReplayCacheBytes, l.cfg.ReplayCacheEvents
		if b == 0 {
			b = DefaultReplayCacheBytes
		}
		if n == 0 {
			n = DefaultReplayCacheEvents
		}
		l.ring.r = newRecentRing(b, n)
	})
	return l.ring.r
}

// ringFeeder lets one Tail fill the ring; nil (all methods are no-ops)
// when the ring is disabled or another Tail already fills it.
type ringFeeder struct{ r *recentRing }

func (r *recentRing) feeder() *ringFeeder {
	if r == nil || !r.feeding.CompareAndSwap(false, true) {
		return nil
	}
	return &ringFeeder{r: r}
}

func (f *ringFeeder) add(e *event.Event, size int) {
	if f != nil {
		f.r.append(e, size)
	}
}

// release ends this tail's feeding. The ring keeps its events: they are
// still in the log (retention is checked by every read), and the next
// tail continues it if it starts where this one ended, or empties it.
func (f *ringFeeder) release() {
	if f != nil {
		f.r.feeding.Store(false)
	}
}

// append adds e (seq e.Seq, stored size size) at the new end.
func (r *recentRing) append(e *event.Event, size int) {
	cost := ringCost(size)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.n > 0 && e.Seq != r.first+uint64(r.n) {
		r.resetLocked()
	}
	if cost > r.maxBytes {
		// Larger than the whole ring: it cannot hold it, and holding
		// the events after it would leave a gap.
		r.resetLocked()
		return
	}
	if r.n == len(r.buf) {
		if len(r.buf) < r.maxEvents {
			r.growLocked()
		} else {
			r.evictLocked()
		}
	}
	if r.n == 0 {
		r.first = e.Seq
	}
	r.buf[(r.head+r.n)%len(r.buf)] = ringSlot{e: e, cost: cost}
	r.n++
	r.bytes += cost
	for r.bytes > r.maxBytes {
		r.evictLocked()
	}
}

func (r *recentRing) growLocked() {
	size := min(max(2*len(r.buf), 1024), r.maxEvents)
	buf := make([]ringSlot, size)
	for i := range r.n {
		buf[i] = r.buf[(r.head+i)%len(r.buf)]
	}
	r.buf, r.head = buf, 0
}

func (r *recentRing) evictLocked() {
	s := &r.buf[r.head]
	r.bytes -= s.cost
	*s = ringSlot{} // the event may be collected once no reader holds it
	r.head = (r.head + 1) % len(r.buf)
	r.n--
	r.first++
	r.evicted.Add(1)
}

func (r *recentRing) resetLocked() {
	if r.n > 0 {
		r.resets.Add(1)
	}
	r.buf, r.head, r.n, r.bytes = nil, 0, 0, 0
}

// dropBelow evicts the events with seq < seq: retention removed them from
// the log.
func (r *recentRing) dropBelow(seq uint64) {
	if r == nil {
		return
	}
	r.mu.RLock()
	stale := r.n > 0 && r.first < seq
	r.mu.RUnlock()
	if !stale {
		return
	}
	r.mu.Lock()
	for r.n > 0 && r.first < seq {
		r.evictLocked()
	}
	r.mu.Unlock()
}

// bounds returns the seqs the ring holds; ok is false when it is empty.
func (r *recentRing) bounds() (first, last uint64, ok bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.n == 0 {
		return 0, 0, false
	}
	return r.first, r.first + uint64(r.n) - 1, true
}

// copyRange copies the events from seq from on, up to seq to and at most
// len(dst), into dst and returns how many; 0 when from is not in the ring
// (any more).
func (r *recentRing) copyRange(from, to uint64, dst []*event.Event) int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.n == 0 || from < r.first || from > to {
		return 0
	}
	off := from - r.first
	if off >= uint64(r.n) {
		return 0
	}
	k := int(min(uint64(len(dst)), uint64(r.n)-off, to-from+1))
	for i := range k {
		dst[i] = r.buf[(r.head+int(off)+i)%len(r.buf)].e
	}
	return k
}

// RingStats describes the recent-event ring (tests, benchmark, operators).
type RingStats struct {
	First, Last uint64 // seqs held; 0, 0 when empty
	Events      int
	Bytes       int64 // accounted cost (ringCost), bounded by the configured bytes
	Served      uint64
	Resets      uint64
	Evicted     uint64
}

// ReplayCacheStats reports the recent-event ring's state (zero when it is
// disabled).
func (l *Log) ReplayCacheStats() RingStats {
	r := l.recentRing()
	if r == nil {
		return RingStats{}
	}
	r.mu.RLock()
	s := RingStats{Events: r.n, Bytes: r.bytes}
	if r.n > 0 {
		s.First, s.Last = r.first, r.first+uint64(r.n)-1
	}
	r.mu.RUnlock()
	s.Served, s.Resets, s.Evicted = r.served.Load(), r.resets.Load(), r.evicted.Load()
	return s
}

// scanWithRing is ScanRange over [from, to] (from already at or above
// the log's first seq) when the ring is on: the part inside the ring from
// it, the rest from the log, seamlessly.
func (l *Log) scanWithRing(ctx context.Context, r *recentRing, from, to uint64, fn func(*event.Event) bool) error {
	var buf []*event.Event
	for from <= to {
		first, last, ok := r.bounds()
		switch {
		case ok && from >= first && from <= last:
			if buf == nil {
				buf = make([]*event.Event, ringChunk)
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			n := r.copyRange(from, min(to, last), buf)
			if n == 0 {
				continue // evicted meanwhile: from is below the ring now
			}
			r.served.Add(uint64(n))
			for i, e := range buf[:n] {
				buf[i] = nil
				if !fn(e) {
					clear(buf[i:n])
					return nil
				}
			}
			from += uint64(n)
		case ok && from < first:
			// Below the ring: from the log up to the ring's first seq,
			// then on from the ring (or from the log again if the ring
			// moved past meanwhile).
			end := min(to, first-1)
			stopped, err := l.scanBelowRing(ctx, from, end, fn)
			if err != nil || stopped {
				return err
			}
			from = end + 1
		default:
			// Empty, or the tail has not reached from yet: the spill
			// and the log.
			_, err := l.scanBelowRing(ctx, from, to, fn)
			return err
		}
	}
	return nil
}
