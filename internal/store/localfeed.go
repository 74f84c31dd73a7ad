package store

import (
	"slices"
	"sync"
	"sync/atomic"
)

// The local fast path (issue 12 item 1): an event this node appended is
// handed to the node's tail as soon as JetStream acknowledges it, instead
// of waiting for the stream to deliver it back through the tail's ordered
// consumer.
//
// Why: on a node saturated by fan-out every goroutine waits for a CPU,
// and the way back through the consumer is five goroutine hand-offs (the
// stream's consumer, the server's writer, the in-process pipe, the
// client's reader, the iterator) before the hub's dispatcher sees the
// event; each waits behind the runnable writers. The acknowledgement has
// already made that trip once: it carries the seq, and the append still
// holds the stored body.
//
// Correctness does not depend on it. The ordered consumer still reads
// every stored message and stays the source of truth: the tail delivers
// seqs strictly in order, each once, whichever path brings it first.
//   - A local append at the next seq is delivered at once; one ahead of
//     it (another node's or a NATS producer's message comes first) waits
//     until the consumer brings the missing seq (tailMerge).
//   - A consumer message below the next seq was delivered locally and is
//     skipped without being decoded.
//   - A consumer message above the next seq means the seqs in between are
//     not in the log (deleted): local appends waiting below it are
//     dropped, as the consumer would never have delivered them.
//   - The feed never blocks the append: a full channel or a full
//     look-ahead drops the local copy, and the consumer brings it.
//
// Only what JetStream acknowledged as newly stored is fed: no duplicate
// (delivered when first stored), nothing looked up after a lost
// acknowledgement (the consumer brings it).

// localAppend is one acknowledged message of this node's appends.
type localAppend struct {
	seq  uint64
	body []byte // the stored body, byte for byte
}

// Bounds of what the local path holds while the tail is busy: the batches
// (and their bodies' bytes) waiting in the channel, and the local appends
// a tail keeps while it waits for an earlier seq. Past them local copies
// are dropped and the consumer brings those events: the memory a stalled
// tail pins does not grow with what producers send.
const (
	localFeedBatches  = 1024
	localFeedMaxBytes = 32 << 20
	localAhead        = 8192
	localAheadBytes   = 32 << 20
)

// localBatch is one settled batch's newly stored messages.
type localBatch struct {
	appends []localAppend
	bytes   int64 // of their bodies
}

// localFeed passes a Log's acknowledged appends to the one tail that
// listens (the hub's); with none, offers are dropped.
type localFeed struct {
	mu       sync.Mutex
	ch       chan localBatch
	attached atomic.Bool  // ch != nil, read without the lock
	queued   atomic.Int64 // body bytes in ch

	delivered atomic.Uint64 // events a tail delivered from the local path
	dropped   atomic.Uint64 // local copies dropped (the consumer brought them)
}

// LocalTail counts the events the node's tail delivered straight from this
// node's acknowledgements, and the local copies it dropped (a full
// channel or look-ahead; the consumer delivered those).
func (l *Log) LocalTail() (delivered, dropped uint64) {
	return l.local.delivered.Load(), l.local.dropped.Load()
}

// attach makes the caller the listening tail; nil if another tail is.
func (f *localFeed) attach() chan localBatch {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ch != nil {
		return nil
	}
	f.ch = make(chan localBatch, localFeedBatches)
	f.attached.Store(true)
	return f.ch
}

// detach ends ch's listening (a no-op for nil).
func (f *localFeed) detach(ch chan localBatch) {
	if ch == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ch == ch {
		f.ch = nil
		f.attached.Store(false)
		f.queued.Store(0) // what ch still holds is dropped with it
	}
}

// offer hands b to the listening tail without waiting.
func (f *localFeed) offer(b localBatch) {
	if len(b.appends) == 0 {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ch == nil {
		return
	}
	if f.queued.Load()+b.bytes > localFeedMaxBytes {
		f.dropped.Add(uint64(len(b.appends)))
		return
	}
	select {
	case f.ch <- b:
		f.queued.Add(b.bytes)
	default:
		f.dropped.Add(uint64(len(b.appends)))
	}
}

// taken is called by the tail for each batch it receives.
func (f *localFeed) taken(b localBatch) { f.queued.Add(-b.bytes) }

// offerSettled feeds the newly stored messages of a settled batch.
func (f *localFeed) offerSettled(fl *inflight) {
	if fl.bodies == nil || !f.attached.Load() {
		return // nobody listens (no hub: vigil migrate, verify, a test)
	}
	var b localBatch
	for i, a := range fl.acks {
		if fl.keys[i] == "" || a.err != nil || a.duplicate || a.seq == 0 || fl.bodies[i] == nil || fl.abandoned {
			continue
		}
		if b.appends == nil {
			b.appends = make([]localAppend, 0, len(fl.acks)-i)
		}
		b.appends = append(b.appends, localAppend{seq: a.seq, body: fl.bodies[i]})
		b.bytes += int64(len(fl.bodies[i]))
	}
	f.offer(b)
}

// tailMerge orders the two sources of one tail: deliver is called once
// per seq, in increasing order, from next on.
type tailMerge struct {
	next       uint64
	ahead      []localAppend // local appends above next, sorted by seq
	aheadBytes int64         // of their bodies
	deliver    func(seq uint64, body []byte)
	// dropped and fromLocal count local appends dropped and delivered
	// (nil: not counted).
	dropped, fromLocal *atomic.Uint64
}

func count(c *atomic.Uint64) {
	if c != nil {
		c.Add(1)
	}
}

// local takes acknowledged appends of this node.
func (m *tailMerge) local(b []localAppend) {
	for _, a := range b {
		switch {
		case a.seq < m.next:
			// The consumer was first.
		case a.seq == m.next:
			m.deliver(a.seq, a.body)
			count(m.fromLocal)
			m.next++
			m.drainAhead()
		default:
			m.keepAhead(a)
		}
	}
}

// stored takes the consumer's next message: every stored seq from the
// tail's start, in order.
func (m *tailMerge) stored(seq uint64, body []byte) {
	if seq < m.next {
		return // delivered from the local path
	}
	// The log holds nothing in [next, seq): drop what waits there.
	n := 0
	for n < len(m.ahead) && m.ahead[n].seq <= seq {
		n++
	}
	for _, a := range m.ahead[:n] {
		if a.seq < seq {
			count(m.dropped) // removed from the log before the tail got to it
		}
	}
	m.forget(n)
	m.deliver(seq, body)
	m.next = seq + 1
	m.drainAhead()
}

func (m *tailMerge) keepAhead(a localAppend) {
	i, found := slices.BinarySearchFunc(m.ahead, a.seq, func(x localAppend, seq uint64) int {
		switch {
		case x.seq < seq:
			return -1
		case x.seq > seq:
			return 1
		}
		return 0
	})
	if found {
		return
	}
	if len(m.ahead) >= localAhead || m.aheadBytes+int64(len(a.body)) > localAheadBytes {
		count(m.dropped)
		return // the consumer brings it
	}
	m.ahead = slices.Insert(m.ahead, i, a)
	m.aheadBytes += int64(len(a.body))
}

func (m *tailMerge) drainAhead() {
	n := 0
	for n < len(m.ahead) && m.ahead[n].seq <= m.next {
		if a := m.ahead[n]; a.seq == m.next {
			m.deliver(a.seq, a.body)
			count(m.fromLocal)
			m.next++
		}
		n++
	}
	m.forget(n)
}

// forget removes the first n local appends kept ahead.
func (m *tailMerge) forget(n int) {
	if n == 0 {
		return
	}
	for _, a := range m.ahead[:n] {
		m.aheadBytes -= int64(len(a.body))
	}
	m.ahead = slices.Delete(m.ahead, 0, n)
}

// background runs goroutines a Log owns past the call that started them
// (a stopped tail's consumer pump and deletion); Close waits for them.
type background struct {
	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
}

// Go runs fn in a goroutine unless closeAndWait has begun (false).
func (b *background) Go(fn func()) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return false
	}
	b.wg.Add(1)
	go func() { // owned by b: closeAndWait waits for it
		defer b.wg.Done()
		fn()
	}()
	return true
}

// closeAndWait refuses new goroutines and waits for the running ones.
func (b *background) closeAndWait() {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	b.wg.Wait()
}
