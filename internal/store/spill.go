package store

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/vigil-sec/vigil/internal/event"
)

// The replay spill (issue 12 item 5): the recent-event ring (ring.go)
// continued on disk. The tail that fills the ring also writes every event
// it delivers, as stored, to segment files under <data-dir>/replay-spill,
// so that a replay of a range older than the ring but younger than the
// spill's bound is read from one sequential file instead of one JetStream
// message per event (~5 µs of CPU each: docs/performance.md). Reading a
// spilled event costs a copy, a CRC and the decode.
//
// Invariants:
//   - the spill holds one contiguous range of seqs, as the ring does: a
//     record that does not follow the last one (a tail restarted
//     elsewhere, a seq the tail skipped, a record the writer had to drop)
//     empties it first;
//   - it holds what a tail delivered: this process's, and a previous
//     process's only when that one closed cleanly and what it left still
//     agrees with the log (spill_restart.go); anything else a previous
//     process left is deleted at Open, so it can never disagree with a
//     log that changed while it was not running (power loss, a recreated
//     stream). The one gap it may hold is between what it kept from the
//     previous process and what this one's tail delivers;
//   - readers see only flushed records, each checked by its CRC, and any
//     surprise (a short read, a CRC or seq mismatch, a segment removed)
//     sends the rest of their range to the log: the spill only speeds
//     reads up, it is never the source of an answer the log would not
//     give;
//   - it is bounded by bytes on disk: whole segments, oldest first, are
//     removed past the bound, and below the log's first seq (retention);
//   - ingest and the tail never wait for it: records are handed to its
//     writer goroutine through a bounded queue, and dropped when the queue
//     is full (the gap then empties the spill).

// DefaultReplaySpillBytes is Config.ReplaySpillBytes's default.
const DefaultReplaySpillBytes = 1 << 30

// DefaultReplaySpillCheckpoint is Config.ReplaySpillCheckpoint's default:
// after a crash the next start keeps the spill as it was at most this
// long before it.
const DefaultReplaySpillCheckpoint = 10 * time.Second

const (
	spillSegmentBytes = 64 << 20               // the largest segment
	spillIndexEvery   = 256                    // a record offset is kept every this many seqs
	spillHeaderBytes  = 16                     // seq (8), body length (4), CRC-32C of the body (4)
	spillQueueEvents  = 8192                   // records waiting for the writer
	spillQueueBytes   = 32 << 20               // their bodies
	spillFlushBytes   = 1 << 20                // the writer flushes when this much is buffered
	spillFlushEvery   = 250 * time.Millisecond // or this long after the last flush
	spillMaxRecord    = 16 << 20               // a longer length field is corruption
	spillReadBuffer   = 1 << 20
	spillDirName      = "replay-spill"
)

var spillCRC = crc32.MakeTable(crc32.Castagnoli)

type spillRecord struct {
	seq  uint64
	body []byte
}

type spillSegment struct {
	path    string
	first   uint64
	flushed uint64  // last seq readers may read; first-1 while none is
	size    int64   // bytes written
	index   []int64 // index[i]: offset of the record of seq first+i*spillIndexEvery
}

// replaySpill is the spill; a nil *replaySpill is a disabled one.
type replaySpill struct {
	dir      string
	maxBytes int64
	segBytes int64 // a segment's size before the next one starts
	log      *slog.Logger
	identity string // the stream's, for the manifest (spill_restart.go)
	// checkpointEvery: the writer writes a manifest this often.
	checkpointEvery time.Duration
	// adopted is the newest seq kept from a previous process (0: none
	// kept, or the tail has delivered since): the tail's first record
	// starts a segment of its own after it, or empties the spill when
	// it is not past it.
	adopted uint64

	feeding atomic.Bool // a tail fills the spill (one at a time)
	in      chan spillRecord
	queued  atomic.Int64 // bytes of bodies in `in`
	stop    chan struct{}
	done    chan struct{}

	mu     sync.RWMutex
	segs   []*spillSegment // oldest first; contiguous
	bytes  int64
	failed bool // a write failed: the spill is off until the next start

	served, resets, evicted, dropped, recovered atomic.Uint64

	// freeBytes reports the bytes available to unprivileged users on
	// the spill's file system (statfs; a field for the tests).
	freeBytes func(dir string) (uint64, error)

	// The writer's own state.
	f       *os.File
	w       *bufio.Writer
	last    uint64 // last seq written (0: empty)
	written uint64 // last seq in w not yet flushed
	files   int    // segment files made, for their names
}

// openReplaySpill keeps what a previous process's clean Close left in dir
// if it agrees with the log (view; nil: nothing is kept), deletes
// anything else there, and starts the writer; nil when maxBytes is not
// positive or dir is empty. Segments are a quarter of maxBytes (1–64
// MiB), so the spill holds at most maxBytes plus the segment being
// written.
func openReplaySpill(ctx context.Context, dir string, maxBytes int64, checkpointEvery time.Duration, logger *slog.Logger, view *spillLogView) (*replaySpill, error) {
	if maxBytes <= 0 || dir == "" {
		return nil, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("store: replay spill: %w", err)
	}
	if checkpointEvery <= 0 {
		checkpointEvery = DefaultReplaySpillCheckpoint
	}
	s := &replaySpill{dir: dir, maxBytes: maxBytes, segBytes: min(max(maxBytes/4, 1<<20), spillSegmentBytes), log: logger, freeBytes: statfsFree,
		checkpointEvery: checkpointEvery,
		in:              make(chan spillRecord, spillQueueEvents), stop: make(chan struct{}), done: make(chan struct{})}
	if view != nil {
		s.identity = view.identity
	}
	kept, why := s.adopt(ctx, view)
	if kept > 0 {
		first, last, _ := s.bounds()
		logger.Info("replay spill: kept the previous run's", "events", kept, "first_seq", first, "last_seq", last)
	} else if why != "nothing to keep" {
		logger.Info("replay spill: starting empty", "reason", why)
	}
	s.recovered.Store(kept)
	go s.run() // owned by the spill: close stops it
	return s, nil
}

// close stops the writer and leaves what it flushed, described by a
// manifest, for the next start (spill_restart.go); after a write error,
// or when the manifest cannot be written, it deletes the spill's files.
func (s *replaySpill) close() {
	if s == nil {
		return
	}
	close(s.stop)
	<-s.done // the writer flushed on its way out
	if s.f != nil {
		if err := s.f.Close(); err != nil {
			s.fail(err)
		}
	}
	if !s.failedNow() {
		written, err := s.writeManifest(true)
		if err == nil && written {
			return
		}
		if err != nil {
			s.log.Warn("replay spill: writing its manifest; the next start begins empty", "err", err)
		}
	}
	if err := os.RemoveAll(s.dir); err != nil {
		s.log.Warn("replay spill: removing its files", "err", err)
	}
}

// spillFeeder lets one Tail fill the spill; nil (every method a no-op)
// when the spill is off or another Tail fills it.
type spillFeeder struct{ s *replaySpill }

func (s *replaySpill) feeder() *spillFeeder {
	if s == nil || !s.feeding.CompareAndSwap(false, true) {
		return nil
	}
	return &spillFeeder{s: s}
}

// add queues a delivered event's stored body (which nobody modifies).
// It never waits: past the queue's bounds the record is dropped, and the
// gap it leaves empties the spill.
func (f *spillFeeder) add(seq uint64, body []byte) {
	if f == nil {
		return
	}
	s := f.s
	if s.queued.Load()+int64(len(body)) > spillQueueBytes {
		s.dropped.Add(1)
		return
	}
	select {
	case s.in <- spillRecord{seq: seq, body: body}:
		s.queued.Add(int64(len(body)))
	default:
		s.dropped.Add(1)
	}
}

func (f *spillFeeder) release() {
	if f != nil {
		f.s.feeding.Store(false)
	}
}

// run is the writer: it appends records, flushes when a buffer's worth
// is waiting or spillFlushEvery has passed, and makes what it flushed
// readable. Not flushing at every pause of the tail keeps its writes few
// and large (the newest events are in the ring anyway).
func (s *replaySpill) run() {
	defer close(s.done)
	tick := time.NewTicker(spillFlushEvery)
	defer tick.Stop()
	cp := time.NewTicker(s.checkpointEvery)
	defer cp.Stop()
	for {
		select {
		case r := <-s.in:
			s.queued.Add(-int64(len(r.body)))
			s.write(r)
			if s.w != nil && s.w.Buffered() >= spillFlushBytes {
				s.flush()
			}
		case <-tick.C:
			s.flush()
		case <-cp.C:
			s.flush()
			s.checkpoint()
		case <-s.stop:
			s.flush() // for the manifest close writes
			return
		}
	}
}

func (s *replaySpill) write(r spillRecord) {
	if s.failedNow() {
		return
	}
	if s.adopted != 0 {
		// The first record since a previous process's segments were
		// kept: it starts a segment after them (rotate, s.f is nil), or
		// the spill starts over if it is not past them.
		if r.seq <= s.adopted {
			s.reset()
		}
		s.adopted = 0
	}
	if s.last != 0 && r.seq != s.last+1 {
		s.reset()
	}
	if s.f == nil || s.active().size >= s.segBytes {
		if err := s.rotate(r.seq); err != nil {
			s.fail(err)
			return
		}
	}
	seg := s.active()
	if (r.seq-seg.first)%spillIndexEvery == 0 {
		s.mu.Lock()
		seg.index = append(seg.index, seg.size)
		s.mu.Unlock()
	}
	var h [spillHeaderBytes]byte
	binary.LittleEndian.PutUint64(h[0:], r.seq)
	binary.LittleEndian.PutUint32(h[8:], uint32(len(r.body)))
	binary.LittleEndian.PutUint32(h[12:], crc32.Checksum(r.body, spillCRC))
	if _, err := s.w.Write(h[:]); err != nil {
		s.fail(err)
		return
	}
	if _, err := s.w.Write(r.body); err != nil {
		s.fail(err)
		return
	}
	seg.size += int64(spillHeaderBytes + len(r.body)) // the writer's field; readers use flushed
	s.last, s.written = r.seq, r.seq
}

// flush writes what is buffered and publishes it to readers.
func (s *replaySpill) flush() {
	if s.w == nil || s.written == 0 || s.failedNow() {
		return
	}
	if err := s.w.Flush(); err != nil {
		s.fail(err)
		return
	}
	s.mu.Lock()
	seg := s.segs[len(s.segs)-1]
	seg.flushed = s.written
	s.bytes = 0
	for _, sg := range s.segs {
		s.bytes += sg.size
	}
	for s.bytes > s.maxBytes && len(s.segs) > 1 {
		s.removeOldestLocked()
	}
	s.mu.Unlock()
	s.written = 0
}

// spillDiskReserve is the free space a new segment must leave on the
// spill's file system: the spill is a cache, and the log (JetStream's
// files, usually on the same disk) must never run out of room for it.
const spillDiskReserve = 2 << 30

// errSpillDiskLow turns the spill off when a segment would leave less
// than spillDiskReserve free.
var errSpillDiskLow = errors.New("less than 2 GiB would stay free on its disk after the next segment; the replay spill leaves the space to the log")

// statfsFree is the space available to unprivileged users under dir.
func statfsFree(dir string) (uint64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return st.Bavail * uint64(st.Bsize), nil
}

// rotate starts a segment whose first record is seq.
func (s *replaySpill) rotate(seq uint64) error {
	if free, err := s.freeBytes(s.dir); err != nil || free < uint64(s.segBytes)+spillDiskReserve {
		if err != nil {
			return fmt.Errorf("replay spill: free space: %w", err)
		}
		return errSpillDiskLow
	}
	if s.f != nil {
		if err := s.w.Flush(); err != nil {
			return err
		}
		s.mu.Lock()
		s.segs[len(s.segs)-1].flushed = s.last
		s.mu.Unlock()
		if err := s.f.Close(); err != nil {
			return err
		}
		s.written = 0
	}
	s.files++
	path := filepath.Join(s.dir, fmt.Sprintf("%08d.spill", s.files))
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if s.w == nil {
		s.w = bufio.NewWriterSize(f, spillFlushBytes)
	} else {
		s.w.Reset(f)
	}
	s.f = f
	s.mu.Lock()
	s.segs = append(s.segs, &spillSegment{path: path, first: seq, flushed: seq - 1})
	s.mu.Unlock()
	return nil
}

func (s *replaySpill) active() *spillSegment {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.segs[len(s.segs)-1]
}

// reset empties the spill (a gap): every segment file is removed; a
// reader that opened one still reads it, and its records are still the
// log's.
func (s *replaySpill) reset() {
	if s.f != nil {
		_ = s.f.Close() // removed next
		s.f = nil
	}
	if s.w != nil {
		s.w.Reset(io.Discard)
	}
	// A checkpoint's manifest describes what goes now.
	if err := os.Remove(filepath.Join(s.dir, spillManifestName)); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.log.Warn("replay spill: removing its manifest", "err", err)
	}
	s.mu.Lock()
	if len(s.segs) > 0 {
		s.resets.Add(1)
	}
	for len(s.segs) > 0 {
		s.removeOldestLocked()
	}
	s.bytes = 0
	s.mu.Unlock()
	s.last, s.written = 0, 0
}

func (s *replaySpill) removeOldestLocked() {
	seg := s.segs[0]
	s.segs = s.segs[1:]
	s.bytes -= seg.size
	if seg.flushed >= seg.first {
		s.evicted.Add(seg.flushed - seg.first + 1)
	}
	if err := os.Remove(seg.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.log.Warn("replay spill: removing a segment", "path", seg.path, "err", err)
	}
}

// fail turns the spill off after a write error (a full disk): replays
// read the log, ingest is not affected.
func (s *replaySpill) fail(err error) {
	s.log.Warn("replay spill: write failed; replays older than the in-memory ring read the log until the next start", "err", err)
	s.reset()
	s.mu.Lock()
	s.failed = true
	s.mu.Unlock()
}

func (s *replaySpill) failedNow() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.failed
}

// bounds returns the seqs a reader may read; ok is false when none.
func (s *replaySpill) bounds() (first, last uint64, ok bool) {
	if s == nil {
		return 0, 0, false
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if len(s.segs) == 0 {
		return 0, 0, false
	}
	first = s.segs[0].first
	for i := len(s.segs) - 1; i >= 0; i-- {
		if sg := s.segs[i]; sg.flushed >= sg.first {
			return first, sg.flushed, true
		}
	}
	return 0, 0, false
}

// nextSegment returns the first seq of the oldest segment that starts
// after seq.
func (s *replaySpill) nextSegment(seq uint64) (uint64, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, sg := range s.segs {
		if sg.first > seq && sg.flushed >= sg.first {
			return sg.first, true
		}
	}
	return 0, false
}

// dropBelow removes the segments wholly below seq (retention removed
// them from the log; readers never ask below the log's first seq).
func (s *replaySpill) dropBelow(seq uint64) {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(s.segs) > 1 && s.segs[0].flushed < seq {
		s.removeOldestLocked()
	}
}

// read delivers the spilled events from seq from up to to, in order, and
// returns the first seq it did not deliver: from itself when it holds
// nothing readable at from, less than to+1 when it met a surprise (the
// caller reads the rest from the log). stopped reports that fn asked to
// stop.
func (s *replaySpill) read(ctx context.Context, from, to uint64, fn func(*event.Event) bool) (next uint64, stopped bool, err error) {
	next = from
	for next <= to {
		s.mu.RLock()
		i := sort.Search(len(s.segs), func(i int) bool { return s.segs[i].flushed >= next })
		if i == len(s.segs) || s.segs[i].first > next || s.segs[i].flushed < s.segs[i].first {
			s.mu.RUnlock()
			return next, false, nil
		}
		seg := s.segs[i]
		k := (next - seg.first) / spillIndexEvery
		if k >= uint64(len(seg.index)) {
			s.mu.RUnlock()
			return next, false, nil
		}
		path, off, seq, last := seg.path, seg.index[k], seg.first+k*spillIndexEvery, min(to, seg.flushed)
		s.mu.RUnlock()
		n, stopped, err := s.readSegment(ctx, path, off, seq, next, last, fn)
		if err != nil || stopped {
			return next + n, stopped, err
		}
		if n == 0 {
			return next, false, nil
		}
		next += n
	}
	return next, false, nil
}

// readSegment reads path from offset off, whose record is seq, and
// delivers seqs from..last; it returns how many it delivered. A segment
// removed meanwhile, a short read or a bad record end it early without an
// error (the caller goes to the log).
func (s *replaySpill) readSegment(ctx context.Context, path string, off int64, seq, from, last uint64, fn func(*event.Event) bool) (n uint64, stopped bool, err error) {
	rerr := readSpillRecords(path, off, seq, from, last, func(seq uint64, body []byte) bool {
		e, derr := decode(body, seq)
		if derr != nil {
			return false // the log decides what to do with it
		}
		if n%scanCheckEvery == 0 {
			if err = ctx.Err(); err != nil {
				return false
			}
		}
		n++
		s.served.Add(1)
		stopped = !fn(e)
		return !stopped
	})
	var bad *spillRecordError
	if errors.As(rerr, &bad) {
		s.log.Warn("replay spill: "+bad.what+"; reading the log instead", "path", path, "seq", bad.seq)
	}
	return n, stopped, err
}

// readSpillRecords reads the segment at path from offset off, whose record
// is seq, and hands fn the body of each record from..last, with its seq
// and CRC checked, until fn returns false. A body is fn's to keep. It
// returns nil at last or when fn stopped, a *spillRecordError for a
// record that is not what it should be, any other error for a file that
// is gone or short.
func readSpillRecords(path string, off int64, seq, from, last uint64, fn func(seq uint64, body []byte) bool) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }() // opened read-only: nothing to lose
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return err
	}
	r := bufio.NewReaderSize(f, spillReadBuffer)
	var h [spillHeaderBytes]byte
	for ; seq <= last; seq++ {
		if _, err := io.ReadFull(r, h[:]); err != nil {
			return err
		}
		size := binary.LittleEndian.Uint32(h[8:])
		if binary.LittleEndian.Uint64(h[0:]) != seq || size > spillMaxRecord {
			return &spillRecordError{"unexpected record", seq}
		}
		if seq < from {
			if _, err := r.Discard(int(size)); err != nil {
				return err
			}
			continue
		}
		body := make([]byte, size) // a decoded event's strings point into it
		if _, err := io.ReadFull(r, body); err != nil {
			return err
		}
		if crc32.Checksum(body, spillCRC) != binary.LittleEndian.Uint32(h[12:]) {
			return &spillRecordError{"CRC mismatch", seq}
		}
		if !fn(seq, body) {
			return nil
		}
	}
	return nil
}

// spillRecordError is a record whose header or body is not what it should
// be at seq.
type spillRecordError struct {
	what string
	seq  uint64
}

func (e *spillRecordError) Error() string {
	return fmt.Sprintf("%s where seq %d should be", e.what, e.seq)
}

// SpillStats describes the replay spill (tests, benchmark, operators).
type SpillStats struct {
	First, Last uint64 // readable seqs; 0, 0 when empty
	Events      uint64 // readable events (fewer than Last-First+1 across the gap a restart may leave)
	Segments    int
	Bytes       int64
	Served      uint64
	Resets      uint64
	Evicted     uint64
	Dropped     uint64 // records the tail could not queue
	Recovered   uint64 // events kept from the previous process at Open
	Failed      bool
}

// ReplaySpillStats reports the replay spill's state (zero when it is off).
func (l *Log) ReplaySpillStats() SpillStats {
	s := l.spill
	if s == nil {
		return SpillStats{}
	}
	st := SpillStats{Served: s.served.Load(), Resets: s.resets.Load(), Evicted: s.evicted.Load(), Dropped: s.dropped.Load(), Recovered: s.recovered.Load()}
	if first, last, ok := s.bounds(); ok {
		st.First, st.Last = first, last
	}
	s.mu.RLock()
	st.Segments, st.Bytes, st.Failed = len(s.segs), s.bytes, s.failed
	for _, sg := range s.segs {
		if sg.flushed >= sg.first {
			st.Events += sg.flushed - sg.first + 1
		}
	}
	s.mu.RUnlock()
	return st
}

// scanBelowRing is scanStored with the spill in front of it: the part of
// [from, to] the spill holds from disk, the rest from the log.
func (l *Log) scanBelowRing(ctx context.Context, from, to uint64, fn func(*event.Event) bool) (stopped bool, err error) {
	for from <= to {
		first, last, ok := l.spill.bounds()
		switch {
		case ok && from >= first && from <= last:
			next, stopped, err := l.spill.read(ctx, from, min(to, last), fn)
			if err != nil || stopped {
				return stopped, err
			}
			if next == from {
				// Nothing readable at from: the gap between what was kept
				// from the previous process and what this one's tail
				// spilled, or a surprise. The log up to the next segment.
				end := to
				if at, ok := l.spill.nextSegment(from); ok {
					end = min(to, at-1)
				}
				if stopped, err := l.scanStored(ctx, from, end, fn); err != nil || stopped {
					return stopped, err
				}
				next = end + 1
			}
			from = next
		case ok && from < first:
			end := min(to, first-1)
			if stopped, err := l.scanStored(ctx, from, end, fn); err != nil || stopped {
				return stopped, err
			}
			from = end + 1
		default:
			return l.scanStored(ctx, from, to, fn)
		}
	}
	return false, nil
}
