package store

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"time"
)

// dedupIndex remembers recently stored producer ids (tenant/id -> seq) for
// the dedup window. The append path consults it before hashing, so a retried
// event is answered with its original seq and never reaches the stream a
// second time, which would break the integrity chain. JetStream's own
// Nats-Msg-Id window stays as the backstop across nodes.
//
// An id being appended points at its batch in flight; a duplicate that
// arrives meanwhile waits for that batch to settle and takes its seq. A
// batch settles when its last acknowledgement arrives (or it is abandoned
// after ackTimeout), whether or not its producer is still waiting, so no
// entry stays reserved forever.
type dedupIndex struct {
	mu      sync.Mutex
	window  time.Duration
	entries map[string]dedupEntry
	order   []orderEntry // insertion order, for expiry; order[head:] is live
	head    int
	checked time.Time // last expiry pass

	// stored lists every id whose seq is known (settled, or read back from
	// the log or a snapshot), in the order learnt; stored[storedHead:] is
	// live. It is append-only: expiry advances storedHead and compaction
	// copies into a new array, never writing an element in place, so the
	// snapshot writer reads a prefix of it without the lock (see view).
	stored     []storedID
	storedHead int
	// known is a seq up to which every stored event within the window is
	// in the index: the highest seq learnt, or the head a rebuild read to.
	known uint64
	// tenants holds every tenant of a key learnt (a few: tenants are
	// configured), so that a lookup by id alone (Get) tries each.
	tenants map[string]struct{}
	// floors holds, per batch in flight with reserved ids, the known seq
	// when it was reserved: its events get seqs above it (the embedded log
	// publishes batches in reservation order, each after the reservation).
	floors map[*inflight]uint64
}

// storedID is an id of the index as a snapshot writes it.
type storedID struct {
	key string
	seq uint64
	at  int64 // unix nanoseconds
}

type dedupEntry struct {
	seq uint64
	at  time.Time
	fl  *inflight // non-nil while the append of this id is in flight
}

type orderEntry struct {
	key string
	at  time.Time
}

var errAppendFailed = errors.New("the first append of this id failed; retry")

func newDedupIndex(window time.Duration) *dedupIndex {
	return &dedupIndex{window: window, entries: map[string]dedupEntry{}, floors: map[*inflight]uint64{}, tenants: map[string]struct{}{}}
}

// dupRef is an id of a batch that is already stored or in flight.
type dupRef struct {
	index int
	key   string
	seq   uint64    // known seq, or 0 while fl is in flight
	fl    *inflight // the batch to wait for
}

// reserve looks every key up under one lock: a known or in-flight key is
// returned as a duplicate (keys[i] is then cleared), any other is reserved
// for fl.
func (d *dedupIndex) reserve(keys []string, now time.Time, fl *inflight) []dupRef {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.expireLocked(now)
	var dups []dupRef
	reserved := false
	for i, key := range keys {
		if key == "" {
			continue // answered already (a late duplicate: Log.Append)
		}
		if p, ok := d.entries[key]; ok {
			dups = append(dups, dupRef{index: i, key: key, seq: p.seq, fl: p.fl})
			keys[i] = ""
			continue
		}
		d.entries[key] = dedupEntry{at: now, fl: fl}
		d.order = append(d.order, orderEntry{key, now})
		reserved = true
	}
	if reserved {
		d.floors[fl] = d.known
		fl.floor = d.known
	}
	return dups
}

// settle records the outcome of fl's appends: stored ids keep their seq,
// failed ones are forgotten so that a retry appends them.
func (d *dedupIndex) settle(fl *inflight) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.floors, fl)
	for i, key := range fl.keys {
		if key == "" {
			continue
		}
		p, ok := d.entries[key]
		if !ok || p.fl != fl {
			continue
		}
		if a := fl.acks[i]; a.err == nil && a.seq != 0 {
			d.entries[key] = dedupEntry{seq: a.seq, at: p.at}
			d.learnLocked(key, a.seq, p.at)
		} else {
			delete(d.entries, key)
		}
	}
}

// remember records an already stored id (used when rebuilding after start).
func (d *dedupIndex) remember(key string, seq uint64, at time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.entries[key]; ok {
		return
	}
	d.entries[key] = dedupEntry{seq: seq, at: at}
	d.order = append(d.order, orderEntry{key, at})
	d.learnLocked(key, seq, at)
}

// learnLocked records an id whose seq is now known for the snapshots.
func (d *dedupIndex) learnLocked(key string, seq uint64, at time.Time) {
	d.stored = append(d.stored, storedID{key: key, seq: seq, at: at.UnixNano()})
	d.known = max(d.known, seq)
	if tenant, _, ok := strings.Cut(key, "/"); ok { // tenants hold no '/' (event.ValidTenant)
		if _, seen := d.tenants[tenant]; !seen {
			d.tenants[tenant] = struct{}{}
		}
	}
}

// lookupID returns the seqs stored with id under any tenant among the
// ids of the index, newest first.
func (d *dedupIndex) lookupID(id string) []uint64 {
	d.mu.Lock()
	var seqs []uint64
	for tenant := range d.tenants {
		if p, found := d.entries[tenant+"/"+id]; found && p.fl == nil {
			seqs = append(seqs, p.seq)
		}
	}
	d.mu.Unlock()
	slices.Sort(seqs)
	slices.Reverse(seqs)
	return seqs
}

// coverTo records that every id stored up to head is in the index (a
// rebuild read the window up to head; older events are outside it).
func (d *dedupIndex) coverTo(head uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.known = max(d.known, head)
}

// view returns, for a snapshot, the ids whose seq is known (to be read
// without the lock: see stored; the caller drops those stored at or
// before covered, which may have expired) and head, a seq such that every
// event stored up to it within the window is among them: the known seq,
// lowered below every batch still in flight (their ids have no seq yet).
// It holds the lock for O(batches in flight), whatever the index size, so
// appends do not wait for the snapshot writer.
func (d *dedupIndex) view(now time.Time) (ids []storedID, head uint64, covered time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	head = d.known
	for _, f := range d.floors {
		head = min(head, f)
	}
	n := len(d.stored)
	return d.stored[d.storedHead:n:n], head, now.Add(-d.window)
}

// rememberAll records the entries of a snapshot stored at or after since,
// in order, under one lock; it returns how many it took.
func (d *dedupIndex) rememberAll(entries []snapshotEntry, since time.Time) int {
	// Sized for the entries still inside the window only: a snapshot
	// written at a stop holds the whole window then, and after a longer
	// stop most or all of it has expired. Sizing for all of them kept a
	// map and an order array of that size for the life of the process
	// (Go maps do not shrink): 13 MB at a 10 s window of a 9,000 ev/s
	// bench, an estimated 150 MB at the default 2 minutes (docs/performance.md, "RSS
	// after restart").
	fresh := 0
	for _, e := range entries {
		if !e.at.Before(since) {
			fresh++
		}
	}
	if fresh == 0 {
		return 0
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.entries) == 0 {
		d.entries = make(map[string]dedupEntry, fresh)
	}
	d.order = slices.Grow(d.order, fresh)
	n := 0
	for _, e := range entries {
		if e.at.Before(since) {
			continue
		}
		if _, ok := d.entries[e.key]; ok {
			continue
		}
		d.entries[e.key] = dedupEntry{seq: e.seq, at: e.at}
		d.order = append(d.order, orderEntry{e.key, e.at})
		d.learnLocked(e.key, e.seq, e.at)
		n++
	}
	return n
}

// grow makes room for n more entries at once, so that rebuilding a full
// window (a million ids) does not grow the map step by step.
func (d *dedupIndex) grow(n int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.entries) == 0 && n > 0 {
		d.entries = make(map[string]dedupEntry, n)
	}
	d.order = append(make([]orderEntry, 0, len(d.order)-d.head+n), d.order[d.head:]...)
	d.head = 0
	d.stored = append(make([]storedID, 0, len(d.stored)-d.storedHead+n), d.stored[d.storedHead:]...)
	d.storedHead = 0
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
		o := d.order[d.head]
		if now.Sub(o.at) < d.window {
			break
		}
		if p, ok := d.entries[o.key]; ok && now.Sub(p.at) >= d.window {
			if p.fl != nil {
				break // in flight: settles within ackTimeout
			}
			delete(d.entries, o.key)
		}
		// (An entry younger than its order entry was forgotten and
		// appended again since: its newer order entry expires it.)
		d.order[d.head] = orderEntry{}
		d.head++
	}
	if d.head > 1024 && d.head > len(d.order)/2 {
		d.order = append(d.order[:0:0], d.order[d.head:]...)
		d.head = 0
	}
	// stored is in the order seqs were learnt, close to the order of at:
	// an id that is out of order expires from it a little late, which a
	// snapshot corrects (it drops what is older than the window).
	cutoff := now.Add(-d.window).UnixNano()
	for d.storedHead < len(d.stored) && d.stored[d.storedHead].at <= cutoff {
		d.storedHead++ // not cleared: a snapshot writer may be reading it
	}
	if d.storedHead > 1024 && d.storedHead > len(d.stored)/2 {
		d.stored = append(d.stored[:0:0], d.stored[d.storedHead:]...)
		d.storedHead = 0
	}
}

// wait returns the seq of the first append of a duplicate id, once known.
func (d *dedupIndex) wait(ctx context.Context, r dupRef) (uint64, error) {
	if r.fl == nil {
		return r.seq, nil
	}
	select {
	case <-r.fl.done:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if p, ok := d.entries[r.key]; ok && p.fl == nil {
		return p.seq, nil
	}
	return 0, errAppendFailed
}
