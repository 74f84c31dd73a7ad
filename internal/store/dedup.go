package store

import (
	"context"
	"errors"
	"sync"
	"time"
)

// dedupIndex remembers recently stored producer ids (tenant/id -> seq) for
// the dedup window. The append path consults it before hashing, so a retried
// event is answered with its original seq and never reaches the stream a
// second time, which would break the integrity chain. JetStream's own
// Nats-Msg-Id window stays as the backstop across nodes.
type dedupIndex struct {
	mu      sync.Mutex
	window  time.Duration
	entries map[string]*pending
	order   []string // insertion order, for expiry; order[head:] is live
	head    int
	checked time.Time // last expiry pass
}

type pending struct {
	done chan struct{} // closed once seq or err is known
	seq  uint64
	err  error
	at   time.Time
}

var errAppendFailed = errors.New("the first append of this id failed; retry")

func newDedupIndex(window time.Duration) *dedupIndex {
	return &dedupIndex{window: window, entries: map[string]*pending{}}
}

// lookupOrReserve returns the existing entry (dup=true), or reserves key for
// an append in flight.
func (d *dedupIndex) lookupOrReserve(key string) (*pending, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.expireLocked(time.Now())
	if p, ok := d.entries[key]; ok {
		return p, true
	}
	p := &pending{done: make(chan struct{}), at: time.Now()}
	d.entries[key] = p
	d.order = append(d.order, key)
	return nil, false
}

func (d *dedupIndex) commit(key string, seq uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if p, ok := d.entries[key]; ok && p.seq == 0 {
		p.seq = seq
		close(p.done)
	}
}

// remember records an already stored id (used when rebuilding after start).
func (d *dedupIndex) remember(key string, seq uint64, at time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.entries[key]; ok {
		return
	}
	p := &pending{done: make(chan struct{}), seq: seq, at: at}
	close(p.done)
	d.entries[key] = p
	d.order = append(d.order, key)
}

func (d *dedupIndex) release(key string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if p, ok := d.entries[key]; ok && p.seq == 0 {
		p.err = errAppendFailed
		close(p.done)
		delete(d.entries, key)
	}
}

// expireLocked drops entries older than the window, at most every 100 ms,
// advancing a head index and compacting the order slice only once half of
// it is dead, so each append costs O(1) amortised.
func (d *dedupIndex) expireLocked(now time.Time) {
	if now.Sub(d.checked) < 100*time.Millisecond {
		return
	}
	d.checked = now
	for d.head < len(d.order) {
		key := d.order[d.head]
		if p, ok := d.entries[key]; ok {
			if now.Sub(p.at) < d.window || p.seq == 0 {
				break
			}
			delete(d.entries, key)
		}
		d.order[d.head] = ""
		d.head++
	}
	if d.head > 1024 && d.head > len(d.order)/2 {
		d.order = append(d.order[:0:0], d.order[d.head:]...)
		d.head = 0
	}
}

// wait returns the seq of the first append of an id, once it is known.
func (d *dedupIndex) wait(ctx context.Context, p *pending) (uint64, error) {
	select {
	case <-p.done:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return p.seq, p.err
}
