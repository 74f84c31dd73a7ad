package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/store/idindex"
)

// The id index (issue 12, item 8): layout 2 has no subject per id, so a
// lookup by id older than the dedup window is served from an index on
// disk, <data-dir>/idindex (internal/store/idindex: tenant/id -> seq and
// a watermark, "every seq up to here is indexed"). It is derived from the
// log. The indexer, a goroutine owned by the Log, puts the entries in seq
// order with the new watermark, every indexPoll. What this node appended
// it learns from the acknowledgements (feed: key and seq, nothing read
// back); a seq it did not learn that way (stored by another node or a
// NATS producer, an acknowledgement dropped because too many were
// waiting) is read from the log with batched direct gets (tenant from the
// subject, id from the body's first field, nothing decoded) once it has
// been missing for gapWait, from it up to the head. At Open the backlog
// (what was stored while the node was down, or the whole log when the
// directory was deleted or unreadable) is read at once. With an external
// NATS each node keeps its own. Retention's removals are pruned from it.
//
// Reading every event back cost a direct get through the log's one NATS
// connection (an in-process pipe shared with the appends'
// acknowledgements and the tail) and the decompression of each S2 block
// again, in bursts of a second of events (docs/performance.md, "Ingest CPU
// per event").
const (
	idIndexDir = "idindex"
	// indexPoll is how often the indexer puts what was stored since.
	indexPoll = 200 * time.Millisecond
	// indexChunk is how many entries one Put writes.
	indexChunk = 8192
	// gapWait is how long a seq may be missing from the fed entries
	// before the indexer reads the log from it: a pending acknowledgement
	// comes sooner, one for another writer's message never comes.
	gapWait = time.Second
	// maxFed bounds the acknowledged entries waiting for a Put; beyond it
	// they are dropped and read back from the log.
	maxFed = 8 * indexChunk
)

type indexer struct {
	l   *Log
	idx *idindex.Index

	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	tenants map[string]struct{} // of the retained events (Get tries each)
	pruned  uint64              // the first seq of the last Prune
	caught  bool                // the backlog at Open is indexed

	// fed holds what this node's acknowledgements said was stored (seq ->
	// key), until a Put takes it; at most maxFed entries.
	fedMu sync.Mutex
	fed   map[uint64]string

	// gapSeq is the first seq found missing from fed at gapAt (0: none);
	// owned by run. backlogHead is the log's head at Open: up to it,
	// nothing is fed (it was stored before this start).
	gapSeq      uint64
	gapAt       time.Time
	backlogHead uint64

	readBack atomic.Uint64 // messages read from the log (for tests)
}

// openIndexer opens (or, when unreadable, recreates) the id index and
// starts the indexer. No data dir: no index (by-id lookups then see the
// dedup window only).
func (l *Log) openIndexer(ctx context.Context) error {
	if l.cfg.DataDir == "" {
		return nil
	}
	dir := filepath.Join(l.cfg.DataDir, idIndexDir)
	opts := idindex.Options{Logger: l.cfg.Logger}
	idx, err := idindex.Open(dir, opts)
	if errors.Is(err, idindex.ErrCorrupt) {
		// Derived data: rebuilt from the log.
		l.cfg.Logger.Warn("log: id index unreadable; rebuilding it from the log", "dir", dir, "err", err)
		if rerr := os.RemoveAll(dir); rerr != nil {
			return fmt.Errorf("store: id index: remove %s: %w", dir, rerr)
		}
		idx, err = idindex.Open(dir, opts)
	}
	if err != nil {
		return fmt.Errorf("store: id index: %w", err)
	}
	// The tenants of the events indexed before this start: one per
	// subject's first token (layout 2: a few thousand subjects at most).
	info, err := l.stream.Info(ctx, jetstream.WithSubjectFilter(SubjectPrefix+".>"))
	if err != nil {
		_ = idx.Close()
		return fmt.Errorf("store: id index: stream subjects: %w", err)
	}
	if wm := idx.Watermark(); wm > info.State.LastSeq {
		// The index claims seqs the log does not have: the log lost its
		// tail (a power loss before JetStream's sync: the index's flushed
		// tables may be newer) or the stream was recreated. Its entries
		// would map ids to seqs that new events will take, and the events
		// up to its watermark would never be indexed: rebuilt from the log.
		l.cfg.Logger.Warn("log: id index ahead of the log; rebuilding it from the log", "dir", dir, "watermark", wm, "head", info.State.LastSeq)
		if err := idx.Close(); err != nil {
			return fmt.Errorf("store: id index: close: %w", err)
		}
		if err := os.RemoveAll(dir); err != nil {
			return fmt.Errorf("store: id index: remove %s: %w", dir, err)
		}
		if idx, err = idindex.Open(dir, opts); err != nil {
			return fmt.Errorf("store: id index: %w", err)
		}
	}
	x := &indexer{l: l, idx: idx, done: make(chan struct{}), tenants: map[string]struct{}{}, fed: map[uint64]string{}}
	for subj := range info.State.Subjects {
		if t, ok := tenantOf(subj); ok {
			x.tenants[t] = struct{}{}
		}
	}
	x.backlogHead = info.State.LastSeq
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	x.cancel = cancel
	l.index = x
	go x.run(rctx) // owned by the Log: stopped by Close through stop
	return nil
}

func (x *indexer) stop() {
	if x == nil {
		return
	}
	x.cancel()
	<-x.done
	if err := x.idx.Close(); err != nil {
		x.l.cfg.Logger.Warn("log: id index close", "err", err)
	}
}

func (x *indexer) run(ctx context.Context) {
	defer close(x.done)
	start := time.Now()
	t := time.NewTicker(indexPoll)
	defer t.Stop()
	for {
		n, err := x.catchUp(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			x.l.cfg.Logger.Warn("log: id index: reading the log", "err", err)
		} else {
			x.mu.Lock()
			first := !x.caught
			x.caught = true
			x.mu.Unlock()
			if first {
				x.l.cfg.Logger.Info("log: id index caught up", "indexed", n, "watermark", x.idx.Watermark(), "took", time.Since(start))
			}
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
	}
}

// feed records what fl's acknowledgements say was stored, for the next
// Put: the key (tenant/id) and seq of every event stored by fl (not the
// duplicates: their seq is an earlier copy's, indexed with it).
func (x *indexer) feed(fl *inflight) {
	if x == nil {
		return
	}
	x.fedMu.Lock()
	defer x.fedMu.Unlock()
	for i, key := range fl.keys {
		a := fl.acks[i]
		if key == "" || a.err != nil || a.seq == 0 || a.duplicate {
			continue
		}
		if len(x.fed) >= maxFed {
			return // the rest is read back from the log
		}
		x.fed[a.seq] = key
	}
}

// catchUp indexes every message after the watermark up to the head, and
// prunes what retention removed. It returns the number of entries put.
func (x *indexer) catchUp(ctx context.Context) (int, error) {
	info, err := x.l.stream.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("stream info: %w", err)
	}
	first, head := info.State.FirstSeq, info.State.LastSeq
	// Prune in steps (each Prune scans from where the last one stopped).
	if first > 1 && (x.pruned == 0 || first >= x.pruned+indexChunk) {
		if err := x.idx.Prune(first); err != nil {
			return 0, err
		}
		x.pruned = first
	}
	wm := x.idx.Watermark()
	if head <= wm {
		return 0, nil
	}
	from := max(wm+1, first)
	// The fed entries from the watermark on, as long as they follow each
	// other.
	var entries []idindex.Entry
	x.fedMu.Lock()
	for s := from; s <= head; s++ {
		key, ok := x.fed[s]
		if !ok {
			break
		}
		delete(x.fed, s)
		entries = append(entries, idindex.Entry{Key: key, Seq: s})
	}
	x.fedMu.Unlock()
	n := 0
	if len(entries) > 0 {
		x.addTenants(entries)
		for chunk := range slices.Chunk(entries, indexChunk) {
			if err := x.idx.Put(chunk, chunk[len(chunk)-1].Seq); err != nil {
				return n, err
			}
			n += len(chunk)
		}
		from = entries[len(entries)-1].Seq + 1
	}
	if from > head {
		x.gapSeq = 0
		return n, nil
	}
	// A gap at from: the backlog found at Open is read at once (up to the
	// head then: what was appended since comes with its acknowledgements);
	// any other gap waits for its acknowledgement for up to gapWait, then
	// the log is read from there.
	to := head
	if from <= x.backlogHead {
		to = min(head, x.backlogHead)
	} else {
		now := time.Now()
		if x.gapSeq != from {
			x.gapSeq, x.gapAt = from, now
			return n, nil
		}
		if now.Sub(x.gapAt) < gapWait {
			return n, nil
		}
	}
	x.gapSeq = 0
	m, err := x.readLog(ctx, from, to)
	n += m
	// What the log gave is indexed: the fed entries at or below the new
	// watermark are not needed any more.
	wm = x.idx.Watermark()
	x.fedMu.Lock()
	for s := range x.fed {
		if s <= wm {
			delete(x.fed, s)
		}
	}
	x.fedMu.Unlock()
	return n, err
}

// addTenants records the tenants of entries (Get tries each).
func (x *indexer) addTenants(entries []idindex.Entry) {
	last := ""
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, e := range entries {
		tenant, _, _ := strings.Cut(e.Key, "/")
		if tenant != last {
			x.tenants[tenant] = struct{}{}
			last = tenant
		}
	}
}

// readLog indexes the messages from seq from up to head, read from the
// log. It returns the number of entries put.
func (x *indexer) readLog(ctx context.Context, from, head uint64) (int, error) {
	entries := make([]idindex.Entry, 0, indexChunk)
	var (
		through uint64 // the last seq read: every seq up to it is indexed
		n       int
		newT    []string
		putErr  error
	)
	flush := func() bool {
		if through == 0 {
			return true
		}
		if err := x.idx.Put(entries, through); err != nil {
			putErr = err
			return false
		}
		n += len(entries)
		entries = entries[:0]
		return true
	}
	// Only what was read advances the watermark (a lagging replica may
	// answer a direct get with less than the head).
	_, err := x.l.rawScan(ctx, from, "", func(seq uint64, subject string, body []byte) bool {
		through = seq
		if seq > head {
			return false
		}
		x.readBack.Add(1)
		if tenant, ok := tenantOf(subject); ok {
			if id, ok := idOf(body); ok {
				entries = append(entries, idindex.Entry{Key: tenant + "/" + id, Seq: seq})
				if len(newT) == 0 || newT[len(newT)-1] != tenant {
					newT = append(newT, tenant)
				}
			}
		}
		if len(entries) == indexChunk {
			return flush()
		}
		return true
	})
	if through > head {
		through = head
	}
	if len(newT) > 0 {
		x.mu.Lock()
		for _, t := range newT {
			x.tenants[t] = struct{}{}
		}
		x.mu.Unlock()
	}
	if putErr != nil {
		return n, putErr
	}
	if err != nil {
		flush()
		return n, err
	}
	if !flush() {
		return n, putErr
	}
	return n, nil
}

// lookup returns the seqs stored with id under the tenants seen, highest
// first.
func (x *indexer) lookup(id string) ([]uint64, error) {
	x.mu.Lock()
	tenants := make([]string, 0, len(x.tenants))
	for t := range x.tenants {
		tenants = append(tenants, t)
	}
	x.mu.Unlock()
	var seqs []uint64
	for _, t := range tenants {
		seq, ok, err := x.idx.Lookup(t + "/" + id)
		if err != nil {
			return nil, err
		}
		if ok {
			seqs = append(seqs, seq)
		}
	}
	slices.Sort(seqs)
	slices.Reverse(seqs)
	return seqs, nil
}

// lateDuplicates looks keys up in the id index: a retry that comes after
// the dedup window, of an event the log still holds, is answered with its
// first seq instead of being stored again (one Pebble lookup per event,
// answered by its bloom filters for the new ids). Found keys are cleared
// in keys and returned as known duplicates. The index lags the log by up
// to indexPoll: the dedup window covers that.
//
// Two kinds of id are not looked up, because an earlier copy could only
// have been stored within the dedup window, where the in-memory dedup
// index (and, across nodes, JetStream's Nats-Msg-Id window) answers
// exactly: an id ingest generated (event.IDAssigned), which cannot have
// been stored before, and a UUIDv7 made within the last half window
// (freshUUIDv7: the client package's ids, made just before the first
// publish). The lookup, a miss answered by Pebble's bloom filters for a
// new id, was 2.4-4.5 CPU-µs per event on the append path
// (docs/performance.md, "Ingest CPU per event").
func (x *indexer) lateDuplicates(keys []string, events []*event.Event) []dupRef {
	if x == nil {
		return nil
	}
	var dups []dupRef
	now := time.Now()
	for i, key := range keys {
		if key == "" || events[i].IDAssigned() || freshUUIDv7(events[i].ID, now, x.l.cfg.DedupWindow) {
			continue
		}
		seq, ok, err := x.idx.Lookup(key)
		if err != nil || !ok {
			continue // an unreadable index only loses this extra check
		}
		dups = append(dups, dupRef{index: i, key: key, seq: seq})
		keys[i] = ""
	}
	return dups
}

// IDIndexInfo says how far the id index has read the log.
type IDIndexInfo struct {
	Enabled   bool   // the log keeps an id index (a data dir)
	Watermark uint64 // every seq up to it is indexed
	CaughtUp  bool   // the backlog found at Open is indexed
}

// IDIndex reports the id index's progress (zero without one).
func (l *Log) IDIndex() IDIndexInfo {
	if l.index == nil {
		return IDIndexInfo{}
	}
	l.index.mu.Lock()
	defer l.index.mu.Unlock()
	return IDIndexInfo{Enabled: true, Watermark: l.index.idx.Watermark(), CaughtUp: l.index.caught}
}

// freshUUIDv7 says whether id is a UUIDv7 (RFC 9562, canonical text)
// whose timestamp lies within the last half of window before now, and not
// more than half a window after it. An event is stored after its
// producer made its id, so an earlier copy of such an id was stored less
// than a window ago, as long as the producer's clock is less than half a
// window ahead; a producer whose clock is further ahead only loses the
// late-retry check of a retry sent after the window (it stores a second
// copy, as without the id index).
func freshUUIDv7(id string, now time.Time, window time.Duration) bool {
	if len(id) != 36 || id[8] != '-' || id[13] != '-' || id[18] != '-' || id[23] != '-' || id[14] != '7' {
		return false
	}
	switch id[19] { // the variant: 10xx
	case '8', '9', 'a', 'b', 'A', 'B':
	default:
		return false
	}
	var ms int64
	for i := 0; i < 13; i++ { // 48-bit Unix milliseconds: 8 + 4 hex digits
		if i == 8 {
			continue
		}
		c := id[i]
		var v byte
		switch {
		case c >= '0' && c <= '9':
			v = c - '0'
		case c >= 'a' && c <= 'f':
			v = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			v = c - 'A' + 10
		default:
			return false
		}
		ms = ms<<4 | int64(v)
	}
	made := time.UnixMilli(ms)
	half := window / 2
	return made.After(now.Add(-half)) && made.Before(now.Add(half))
}
