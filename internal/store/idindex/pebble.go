package idindex

import (
	"bytes"
	"errors"
	"fmt"
	"golang.org/x/time/rate"
	"io"
	"log/slog"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/sstable"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// errStoreCorrupt marks the errors the store reports for unreadable data.
var errStoreCorrupt = errors.New("store data unreadable")

// isCorruption says whether err says the data on disk is unreadable.
func isCorruption(err error) bool { return errors.Is(err, errStoreCorrupt) }

// pebbleEngine keeps the key space in a Pebble LSM. Writes go to the WAL
// without an fsync (pebble.NoSync; Pebble's own goroutine writes the WAL
// after the commit returns): a kill -9 or power loss loses the tail of the
// WAL, whole batches at a time (TestKillMidPutKeepsWatermarkHonest saw a
// kill -9 lose batches already returned), and Pebble syncs its sstables and
// MANIFEST itself when it flushes or compacts, so what is read back is
// always a prefix of the batches applied.
type pebbleEngine struct {
	db   *pebble.DB
	lock *pebble.Lock
}

func openPebble(dir string, cacheBytes int64, log *slog.Logger) (engine, error) {
	// Taking the directory lock first tells "in use" apart from "corrupt".
	lock, err := pebble.LockDirectory(dir, vfs.Default)
	if err != nil {
		return nil, &inUseError{err}
	}
	opts := &pebble.Options{
		Lock: lock,
		// Memory: the block cache (index, filter and data blocks) and at
		// most MemTableStopWritesThreshold memtables; both fixed, whatever
		// the number of keys.
		CacheSize:                   cacheBytes / 2,
		MemTableSize:                uint64(cacheBytes / 8),
		MemTableStopWritesThreshold: 2,
		FormatMajorVersion:          pebble.FormatTableFormatV6,
		Merger:                      minSeqMerger,
		Logger:                      pebbleLogger{log: log, errors: &rate.Sometimes{Interval: 10 * time.Second}},
	}
	// Bloom filters (10 bits a key, 1 % false positives) answer most
	// Lookups of an absent id (every new event's dedup check) without
	// reading a data block.
	// No block compression: random ids barely compress (89 B/entry with
	// Snappy against 110 without), and not decompressing saves 15-25 % of
	// the CPU of inserts (compactions) and of lookups (docs/performance.md).
	for i := range opts.Levels {
		opts.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
		opts.Levels[i].FilterType = pebble.TableFilter
		opts.Levels[i].Compression = func() *sstable.CompressionProfile { return sstable.NoCompression }
	}
	db, err := pebble.Open(dir, opts)
	if err != nil {
		_ = lock.Close()
		return nil, fmt.Errorf("%w: %w", errStoreCorrupt, err)
	}
	return &pebbleEngine{db: db, lock: lock}, nil
}

// pebbleErr marks Pebble's corruption errors for isCorruption.
func pebbleErr(err error) error {
	if err != nil && pebble.IsCorruptionError(err) {
		return fmt.Errorf("%w: %w", errStoreCorrupt, err)
	}
	return err
}

func (e *pebbleEngine) get(key []byte) (val []byte, ok bool, err error) {
	v, closer, err := e.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, pebbleErr(err)
	}
	val = bytes.Clone(v)
	return val, true, closer.Close()
}

func (e *pebbleEngine) scan(lo, hi []byte, limit int) (keys [][]byte, err error) {
	it, err := e.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return nil, pebbleErr(err)
	}
	for ok := it.First(); ok && len(keys) < limit; ok = it.Next() {
		keys = append(keys, bytes.Clone(it.Key()))
	}
	if err := it.Close(); err != nil {
		return nil, pebbleErr(err)
	}
	return keys, nil
}

func (e *pebbleEngine) apply(bt *batch) error {
	b := e.db.NewBatch()
	// Close returns the batch's memory to Pebble's pool; a committed or
	// abandoned batch has nothing left that could fail to be written.
	defer func() { _ = b.Close() }()
	for _, m := range bt.mins {
		if err := b.Merge(m.k, m.v, nil); err != nil {
			return err
		}
	}
	for _, k := range bt.sets {
		if err := b.Set(k, nil, nil); err != nil {
			return err
		}
	}
	for _, k := range bt.dels {
		if err := b.Delete(k, nil); err != nil {
			return err
		}
	}
	for _, m := range bt.meta {
		if err := b.Set(m.k, m.v, nil); err != nil {
			return err
		}
	}
	return pebbleErr(b.Commit(pebble.NoSync))
}

func (e *pebbleEngine) empty() (bool, error) {
	it, err := e.db.NewIter(nil)
	if err != nil {
		return false, pebbleErr(err)
	}
	empty := !it.First()
	return empty, pebbleErr(it.Close())
}

func (e *pebbleEngine) close() error {
	return errors.Join(e.db.Close(), e.lock.Close())
}

// minSeqMerger folds the seqs merged into a by-id row into the lowest
// (its name is stored in the index: another name is refused at Open).
var minSeqMerger = &pebble.Merger{
	Name: "vigil.idindex.minseq.v1",
	Merge: func(_, value []byte) (pebble.ValueMerger, error) {
		m := &minSeq{}
		return m, m.add(value)
	},
}

type minSeq struct{ seq uint64 }

func (m *minSeq) add(v []byte) error {
	seq, err := decodeSeq(v)
	if err != nil {
		return fmt.Errorf("%w: %w", errStoreCorrupt, err)
	}
	if m.seq == 0 || seq < m.seq {
		m.seq = seq
	}
	return nil
}

func (m *minSeq) MergeNewer(v []byte) error { return m.add(v) }
func (m *minSeq) MergeOlder(v []byte) error { return m.add(v) }
func (m *minSeq) Finish(bool) ([]byte, io.Closer, error) {
	return encodeSeq(m.seq), nil, nil
}

// pebbleLogger sends Pebble's messages to slog: its routine reports
// (WAL recovery, flushes) at debug level.
type pebbleLogger struct {
	log *slog.Logger
	// errors: Pebble retries a failed background write (a full disk) in a
	// loop and reports each failure: ~200 lines a second, themselves
	// filling a disk that holds the log files. One line per 10 s at most.
	errors *rate.Sometimes
}

func (l pebbleLogger) Infof(format string, args ...any) {
	l.log.Debug(fmt.Sprintf(format, args...))
}

func (l pebbleLogger) Errorf(format string, args ...any) {
	l.errors.Do(func() { l.log.Error(fmt.Sprintf(format, args...) + " (further errors within 10s not logged)") })
}

// Fatalf is called on an invariant violation; Pebble expects it not to
// return.
func (l pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	l.log.Error(msg)
	panic("idindex: pebble: " + msg)
}
