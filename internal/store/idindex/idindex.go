// Package idindex is the on-disk index from an event's producer id to its
// seq in the log (issue 12, item 8): by-id lookups and the dedup of late
// retries, with resident memory bounded whatever the number of retained
// events, once the id is no longer part of the JetStream subject.
//
// The log is the source of truth and the index is derived from it: Put
// stores a batch of entries together with a watermark, "every seq up to
// here is indexed", in one atomic write, and the caller re-indexes the log
// from Watermark()+1 after Open. Writes are not fsynced: a kill -9 (or a
// power loss) may lose the last batches, never tear one, so the watermark
// read back never claims an entry the index lacks; re-indexing puts the
// lost batches again (Put is idempotent). An index that cannot be read is
// refused by Open with an error naming the directory to delete; the caller
// then rebuilds it from the log.
//
// A key may be Put more than once with different seqs (a retried event
// stored twice, e.g. after a fail-over): the index keeps the lowest, the
// first stored, whatever the order of the Puts, and Lookup answers it.
// When Prune drops that seq the key is gone, even though the later copy
// may still be in the log: a late retry of an event retention removed is
// stored again.
//
// Safe for concurrent use: any number of Lookups run alongside one Put or
// Prune at a time (concurrent writers are serialised).
package idindex

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
)

// Entry is one event in the index.
type Entry struct {
	Key string // tenant + "/" + producer id
	Seq uint64 // its seq in the log (> 0)
}

// Options tunes an Index; the zero value is what Vigil uses.
type Options struct {
	// CacheBytes bounds the memory the store keeps for reading and writing:
	// half is Pebble's block cache, a quarter at most its memtables (two of
	// an eighth each). 0 means DefaultCacheBytes; it is at least 8 MB.
	CacheBytes int64
	// Logger receives the store's own messages (flushes, compactions,
	// recovery); nil means slog.Default().
	Logger *slog.Logger
}

// DefaultCacheBytes is the memory bound when Options.CacheBytes is 0.
const DefaultCacheBytes = 32 << 20

// minCacheBytes is the least CacheBytes taken (a smaller value is raised
// to it): memtables of 1 MB.
const minCacheBytes = 8 << 20

// ErrCorrupt is wrapped by the errors of Open (and of later calls) when the
// index on disk cannot be read; the message says which directory to delete
// so that the index is rebuilt from the log.
var ErrCorrupt = errors.New("index corrupt or unreadable")

// ErrClosed is returned by the calls made after Close.
var ErrClosed = errors.New("idindex: closed")

// defaultPruneChunk is the most entries one Prune write deletes, so that a
// long Prune does not hold up Put (they alternate between chunks) nor
// build a write of unbounded size.
const defaultPruneChunk = 10_000

// Index maps tenant/id keys to seqs, on disk. Create it with Open.
type Index struct {
	dir string
	log *slog.Logger
	eng engine

	watermark atomic.Uint64

	// writeMu serialises Put and Prune; prunedBelow is the highest
	// belowSeq a Prune completed (by-seq rows below it are gone, so a
	// Prune starts its scan there instead of skipping deleted rows).
	writeMu     sync.Mutex
	prunedBelow uint64
	pruneChunk  int // defaultPruneChunk; smaller in tests
	buf         []byte

	// mu guards closed against the calls in flight: they hold it for
	// reading, Close for writing.
	mu     sync.RWMutex
	closed bool
}

// engine is the store underneath the index, an ordered key space: Pebble
// (pebble.go). The same interface ran bbolt for the comparison that chose
// Pebble (docs/performance.md, "On-disk id index").
type engine interface {
	// get returns a copy of the value stored under key.
	get(key []byte) (val []byte, ok bool, err error)
	// scan returns copies of at most limit keys in [lo, hi), in order.
	scan(lo, hi []byte, limit int) ([][]byte, error)
	// apply writes b atomically (all of it or, after a crash, none).
	apply(b *batch) error
	// empty says whether the store holds no key at all.
	empty() (bool, error)
	close() error
}

// batch is one atomic write: by-id rows merged (each keeps the lower of
// its stored seq and the one given), keys set with empty values, keys
// deleted, metadata set.
type batch struct {
	mins []kv
	sets [][]byte
	dels [][]byte
	meta []kv
}

type kv struct{ k, v []byte }

func (x *Index) corrupt(err error) error {
	return fmt.Errorf("idindex: %w (%v): delete %s to rebuild from the log", ErrCorrupt, err, x.dir)
}

// Open opens the index in dir, creating dir and an empty index (watermark
// 0) if there is none. An index it cannot read is refused with an error
// wrapping ErrCorrupt that says to delete dir to rebuild it from the log.
func Open(dir string, opts Options) (*Index, error) {
	if dir == "" {
		return nil, errors.New("idindex: open: no directory given")
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("idindex: open: %w", err)
	}
	x := &Index{dir: dir, log: opts.Logger, pruneChunk: defaultPruneChunk}
	if x.log == nil {
		x.log = slog.Default()
	}
	cacheBytes := opts.CacheBytes
	if cacheBytes <= 0 {
		cacheBytes = DefaultCacheBytes
	}
	cacheBytes = max(cacheBytes, minCacheBytes)
	eng, err := openPebble(dir, cacheBytes, x.log.With("component", "idindex"))
	if err != nil {
		var inUse *inUseError
		if errors.As(err, &inUse) {
			return nil, fmt.Errorf("idindex: open %s: %w", dir, err)
		}
		return nil, x.corrupt(err)
	}
	x.eng = eng
	if err := x.load(); err != nil {
		_ = eng.close()
		return nil, err
	}
	return x, nil
}

// inUseError says the index is open in another process.
type inUseError struct{ err error }

func (e *inUseError) Error() string { return "in use by another process: " + e.err.Error() }
func (e *inUseError) Unwrap() error { return e.err }

// load checks the format and reads the watermark, or initialises a new
// index.
func (x *Index) load() error {
	format, ok, err := x.eng.get(metaFormat)
	if err != nil {
		return x.corrupt(err)
	}
	if !ok {
		empty, err := x.eng.empty()
		if err != nil {
			return x.corrupt(err)
		}
		if !empty {
			return x.corrupt(errors.New("rows without a format record"))
		}
		return x.eng.apply(&batch{meta: []kv{{metaFormat, []byte(formatVersion)}}})
	}
	if string(format) != formatVersion {
		return x.corrupt(fmt.Errorf("format %q, this build reads %q", format, formatVersion))
	}
	for _, m := range []struct {
		key []byte
		dst func(uint64)
	}{
		{metaWatermark, x.watermark.Store},
		{metaPrunedBelow, func(v uint64) { x.prunedBelow = v }},
	} {
		v, ok, err := x.eng.get(m.key)
		if err != nil {
			return x.corrupt(err)
		}
		if !ok {
			continue
		}
		w, err := decodeWatermark(v)
		if err != nil {
			return x.corrupt(fmt.Errorf("%s: %w", m.key[1:], err))
		}
		m.dst(w)
	}
	return nil
}

// acquire holds the index open for one call.
func (x *Index) acquire() error {
	x.mu.RLock()
	if x.closed {
		x.mu.RUnlock()
		return ErrClosed
	}
	return nil
}

// Put stores entries and the watermark through in one atomic write: after
// it, every seq <= through is indexed (the caller indexes the log in seq
// order). Every entry needs a key of 1 to MaxKeyLen bytes and a seq in
// 1..through. The watermark never goes down: a through below the current
// one keeps the current one. Putting an entry again is harmless; a key Put
// with several seqs keeps the lowest.
func (x *Index) Put(entries []Entry, through uint64) error {
	for i, e := range entries {
		switch {
		case e.Key == "":
			return fmt.Errorf("idindex: put: entry %d has an empty key", i)
		case len(e.Key) > MaxKeyLen:
			return fmt.Errorf("idindex: put: entry %d has a key of %d bytes (at most %d)", i, len(e.Key), MaxKeyLen)
		case e.Seq == 0:
			return fmt.Errorf("idindex: put: entry %d (%q) has seq 0", i, e.Key)
		case e.Seq > through:
			return fmt.Errorf("idindex: put: entry %d (%q) has seq %d above the watermark %d", i, e.Key, e.Seq, through)
		}
	}
	if err := x.acquire(); err != nil {
		return err
	}
	defer x.mu.RUnlock()
	x.writeMu.Lock()
	defer x.writeMu.Unlock()

	size := 0
	for _, e := range entries {
		size += 2*(1+len(e.Key)+seqLen) + seqLen
	}
	buf := x.buf[:0]
	if cap(buf) < size {
		buf = make([]byte, 0, size)
	}
	// One buffer holds every key and value of the batch.
	b := &batch{mins: make([]kv, 0, len(entries)), sets: make([][]byte, 0, len(entries))}
	for _, e := range entries {
		n := len(buf)
		buf = appendByID(buf, e.Key)
		k := buf[n:len(buf):len(buf)]
		n = len(buf)
		buf = binary.BigEndian.AppendUint64(buf, e.Seq)
		b.mins = append(b.mins, kv{k, buf[n:len(buf):len(buf)]})
		n = len(buf)
		buf = appendBySeq(buf, e.Key, e.Seq)
		b.sets = append(b.sets, buf[n:len(buf):len(buf)])
	}
	x.buf = buf
	wm := max(x.watermark.Load(), through)
	b.meta = []kv{{metaWatermark, encodeWatermark(wm)}}
	if err := x.eng.apply(b); err != nil {
		return fmt.Errorf("idindex: put %d entries through %d: %w", len(entries), through, err)
	}
	x.watermark.Store(wm)
	return nil
}

// Lookup returns the lowest seq stored for key.
func (x *Index) Lookup(key string) (seq uint64, ok bool, err error) {
	if key == "" || len(key) > MaxKeyLen {
		return 0, false, nil // never stored
	}
	if err := x.acquire(); err != nil {
		return 0, false, err
	}
	defer x.mu.RUnlock()
	v, ok, err := x.eng.get(appendByID(make([]byte, 0, 1+len(key)), key))
	if err != nil {
		return 0, false, fmt.Errorf("idindex: lookup %q: %w", key, x.maybeCorrupt(err))
	}
	if !ok {
		return 0, false, nil
	}
	seq, err = decodeSeq(v)
	if err != nil {
		return 0, false, fmt.Errorf("idindex: lookup %q: %w", key, x.corrupt(err))
	}
	return seq, true, nil
}

// maybeCorrupt adds the deletion hint to a store error that says the data
// is corrupt.
func (x *Index) maybeCorrupt(err error) error {
	if isCorruption(err) {
		return x.corrupt(err)
	}
	return err
}

// Watermark returns the highest seq through which every entry is indexed
// (0 for a new index): the caller indexes the log from Watermark()+1.
func (x *Index) Watermark() uint64 { return x.watermark.Load() }

// Prune drops the entries whose seq is below belowSeq (the events the
// log's retention removed). Its cost is proportional to the number of
// entries dropped, never to the size of the index: it reads the by-seq
// rows from where the previous Prune stopped and, for each, the by-id row
// (deleted if it still holds that seq), in writes of at most 10,000
// entries, letting a concurrent Put in between. Pruning below a seq
// already pruned is a no-op.
func (x *Index) Prune(belowSeq uint64) error {
	for {
		done, err := x.pruneOnce(belowSeq)
		if err != nil || done {
			return err
		}
	}
}

// pruneOnce deletes one chunk of at most x.pruneChunk entries below
// belowSeq and says whether none are left.
func (x *Index) pruneOnce(belowSeq uint64) (done bool, err error) {
	if err := x.acquire(); err != nil {
		return false, err
	}
	defer x.mu.RUnlock()
	x.writeMu.Lock()
	defer x.writeMu.Unlock()
	if belowSeq <= x.prunedBelow {
		return true, nil
	}
	rows, err := x.eng.scan(bySeqBound(x.prunedBelow), bySeqBound(belowSeq), x.pruneChunk)
	if err != nil {
		return false, fmt.Errorf("idindex: prune below %d: %w", belowSeq, x.maybeCorrupt(err))
	}
	done = len(rows) < x.pruneChunk
	reached := belowSeq
	b := &batch{dels: make([][]byte, 0, 2*len(rows))}
	for _, row := range rows {
		key, seq, err := decodeBySeq(row)
		if err != nil {
			return false, fmt.Errorf("idindex: prune below %d: %w", belowSeq, x.corrupt(fmt.Errorf("row %x: %v", row, err)))
		}
		b.dels = append(b.dels, row)
		byID := appendByID(nil, key)
		v, ok, err := x.eng.get(byID)
		if err != nil {
			return false, fmt.Errorf("idindex: prune below %d: %w", belowSeq, x.maybeCorrupt(err))
		}
		if ok {
			stored, err := decodeSeq(v)
			if err != nil {
				return false, fmt.Errorf("idindex: prune below %d: %q: %w", belowSeq, key, x.corrupt(err))
			}
			if stored == seq { // not a later copy of a key stored earlier
				b.dels = append(b.dels, byID)
			}
		}
		if !done {
			// Every row below the last one's seq is deleted; that seq may
			// have more rows (several keys Put with one seq), so the next
			// chunk starts at it.
			reached = seq
		}
	}
	b.meta = []kv{{metaPrunedBelow, encodeWatermark(reached)}}
	if err := x.eng.apply(b); err != nil {
		return false, fmt.Errorf("idindex: prune below %d: %w", belowSeq, err)
	}
	x.prunedBelow = reached
	return done, nil
}

// Close closes the index; calls in flight finish first, later ones return
// ErrClosed.
func (x *Index) Close() error {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.closed {
		return nil
	}
	x.closed = true
	if err := x.eng.close(); err != nil {
		return fmt.Errorf("idindex: close: %w", err)
	}
	return nil
}
