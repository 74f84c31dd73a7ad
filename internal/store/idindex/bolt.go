package idindex

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

func init() {
	engines["bbolt"] = openBolt
}

// errStoreCorrupt marks the errors an engine reports for unreadable data.
var errStoreCorrupt = errors.New("store data unreadable")

// isCorruption says whether err says the data on disk is unreadable.
func isCorruption(err error) bool { return errors.Is(err, errStoreCorrupt) }

const boltFile = "index.bolt"

var boltBucket = []byte("idindex")

// boltEngine keeps the key space in one bbolt bucket. Commits are not
// fsynced (NoSync): a process killed mid-commit leaves the previous meta
// page, which points only at pages written before it (copy on write).
type boltEngine struct{ db *bolt.DB }

func openBolt(dir string, _ int64, _ *slog.Logger) (_ engine, err error) {
	// bbolt panics on some damaged files (a truncated freelist page); the
	// descriptor it opened then stays open until the process exits.
	defer recoverCorrupt(&err)
	db, err := bolt.Open(filepath.Join(dir, boltFile), 0o600, &bolt.Options{
		Timeout:      time.Second, // the file lock: another process has it
		NoSync:       true,
		NoGrowSync:   true,
		FreelistType: bolt.FreelistMapType,
	})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, &inUseError{err}
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errStoreCorrupt, err)
	}
	e := &boltEngine{db: db}
	if err := e.update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(boltBucket)
		return err
	}); err != nil {
		_ = db.Close()
		return nil, err
	}
	return e, nil
}

// view and update turn the panics bbolt raises on a corrupt page into
// errors (its View and Update roll the transaction back first).
func (e *boltEngine) view(fn func(*bolt.Tx) error) (err error) {
	defer recoverCorrupt(&err)
	return e.db.View(fn)
}

func (e *boltEngine) update(fn func(*bolt.Tx) error) (err error) {
	defer recoverCorrupt(&err)
	return e.db.Update(fn)
}

func recoverCorrupt(err *error) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("%w: bbolt: %v", errStoreCorrupt, r)
	}
}

func (e *boltEngine) bucket(tx *bolt.Tx) (*bolt.Bucket, error) {
	b := tx.Bucket(boltBucket)
	if b == nil {
		return nil, fmt.Errorf("%w: bucket %q missing", errStoreCorrupt, boltBucket)
	}
	return b, nil
}

func (e *boltEngine) get(key []byte) (val []byte, ok bool, err error) {
	err = e.view(func(tx *bolt.Tx) error {
		b, err := e.bucket(tx)
		if err != nil {
			return err
		}
		if v := b.Get(key); v != nil {
			val, ok = bytes.Clone(v), true
		}
		return nil
	})
	return val, ok, err
}

func (e *boltEngine) scan(lo, hi []byte, limit int) (keys [][]byte, err error) {
	err = e.view(func(tx *bolt.Tx) error {
		b, err := e.bucket(tx)
		if err != nil {
			return err
		}
		c := b.Cursor()
		for k, _ := c.Seek(lo); k != nil && bytes.Compare(k, hi) < 0 && len(keys) < limit; k, _ = c.Next() {
			keys = append(keys, bytes.Clone(k))
		}
		return nil
	})
	return keys, err
}

func (e *boltEngine) apply(bt *batch) error {
	// Sorted keys walk the B+tree in order: each leaf is found once.
	slices.SortFunc(bt.mins, func(a, b kv) int { return bytes.Compare(a.k, b.k) })
	slices.SortFunc(bt.sets, bytes.Compare)
	slices.SortFunc(bt.dels, bytes.Compare)
	return e.update(func(tx *bolt.Tx) error {
		b, err := e.bucket(tx)
		if err != nil {
			return err
		}
		for _, m := range bt.mins {
			if v := b.Get(m.k); v != nil {
				stored, err := decodeSeq(v)
				if err != nil {
					return fmt.Errorf("%w: %w", errStoreCorrupt, err)
				}
				if stored <= binary.BigEndian.Uint64(m.v) {
					continue
				}
			}
			if err := b.Put(m.k, m.v); err != nil {
				return err
			}
		}
		for _, k := range bt.sets {
			if err := b.Put(k, []byte{}); err != nil {
				return err
			}
		}
		for _, k := range bt.dels {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		for _, m := range bt.meta {
			if err := b.Put(m.k, m.v); err != nil {
				return err
			}
		}
		return nil
	})
}

func (e *boltEngine) empty() (bool, error) {
	var empty bool
	err := e.view(func(tx *bolt.Tx) error {
		b, err := e.bucket(tx)
		if err != nil {
			return err
		}
		k, _ := b.Cursor().First()
		empty = k == nil
		return nil
	})
	return empty, err
}

func (e *boltEngine) close() error { return e.db.Close() }
