package store

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// The dedup snapshot bounds the work of a restart (issue 8, item 4). The
// index is written to <data-dir>/dedup-index.snapshot with the stream's
// identity (creation time) and a head: every id stored up to that seq
// within the window is in the file. It is written every
// Config.DedupSnapshotInterval while the log runs and at Close. The next
// Open takes it if it is this stream's, its head is not past the stream's
// last seq and it covers the current window, and reads only the tail, the
// events after its head, from the log: after a clean stop nothing, after a
// kill -9 at most an interval's worth of events.
//
// Until periodic snapshots, a snapshot was the whole index, taken without
// reading the log, so it could only stand for the stream at the head it
// was written at: Open refused any other head and deleted the file before
// using it, "never used twice", so that a node that ran on and was killed
// read the log. A snapshot is now a prefix, always completed by reading
// everything the log holds after its head, so using it again after more
// appends (a node killed before it wrote a newer one) is as exact as the
// first time: the ids up to its head are in it, those after are read from
// the log, and an id in both is the same event (the same stream, whose
// seqs are never reused). So it stays, and the newest one written
// replaces it atomically (temporary file, fsync, rename). A snapshot that does not check out (another stream, a head the
// stream does not have, a window longer than it covers, a torn or edited
// file: a SHA-256 over its content ends it) is ignored and the whole
// window is read from the log.
const dedupSnapshotFile = "dedup-index.snapshot"

const dedupSnapshotMagic = "vigil-dedup-snapshot 1"

func (l *Log) dedupSnapshotPath() string {
	if l.ns == nil || l.cfg.DataDir == "" {
		return "" // external NATS: other nodes append while this one is down
	}
	return filepath.Join(l.cfg.DataDir, dedupSnapshotFile)
}

// dedupSnapshotStats describes one snapshot written.
type dedupSnapshotStats struct {
	head  uint64
	ids   int
	bytes int64
	took  time.Duration
}

// saveDedupSnapshot writes the index if it is complete (r, the rebuild
// after Open, is ready) and covers a head beyond skip (the head of the
// last one written). It does not take the append lock: the index lends
// its ids under its own lock for O(batches in flight) (dedupIndex.view),
// and the file is written from them meanwhile. A batch in flight lowers
// the head (its ids are left to the tail read at the next start).
func (l *Log) saveDedupSnapshot(r *dedupRebuild, skip uint64) (dedupSnapshotStats, error) {
	path := l.dedupSnapshotPath()
	if path == "" || l.stream == nil || r == nil {
		return dedupSnapshotStats{}, nil
	}
	select {
	case <-r.ready:
	default:
		return dedupSnapshotStats{}, nil // incomplete
	}
	start := time.Now()
	ids, head, covered := l.recent.view(start)
	if head == 0 || head <= skip {
		return dedupSnapshotStats{head: head}, nil // nothing new
	}
	// Ids stored at or before covered may have expired from the index:
	// those left are dropped too, and the file says it is complete only
	// after covered.
	cut := covered.UnixNano()
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return dedupSnapshotStats{}, fmt.Errorf("store: dedup snapshot: %w", err)
	}
	fail := func(err error) (dedupSnapshotStats, error) {
		_ = f.Close()
		_ = os.Remove(tmp)
		return dedupSnapshotStats{}, fmt.Errorf("store: dedup snapshot: %w", err)
	}
	sum := sha256.New()
	w := bufio.NewWriterSize(io.MultiWriter(f, sum), 1<<20)
	fmt.Fprintf(w, "%s\nstream_created %d head %d covered_since %d\n", dedupSnapshotMagic, l.stream.CachedInfo().Created.UnixNano(), head, cut+1)
	n := 0
	line := make([]byte, 0, 128)
	for _, id := range ids {
		if id.at <= cut {
			continue
		}
		line = append(line[:0], id.key...)
		line = append(line, ' ')
		line = strconv.AppendUint(line, id.seq, 10)
		line = append(line, ' ')
		line = strconv.AppendInt(line, id.at, 10)
		line = append(line, '\n')
		_, _ = w.Write(line)
		n++
	}
	if err := w.Flush(); err != nil {
		return fail(err)
	}
	// The checksum line goes to the file only.
	if _, err := f.WriteString("sha256 " + hex.EncodeToString(sum.Sum(nil)) + "\n"); err != nil {
		return fail(err)
	}
	size, err := f.Seek(0, io.SeekCurrent)
	if err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		_ = os.Remove(tmp)
		return dedupSnapshotStats{}, fmt.Errorf("store: dedup snapshot: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return dedupSnapshotStats{}, fmt.Errorf("store: dedup snapshot: %w", err)
	}
	// The rename is durable once the directory is synced.
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return dedupSnapshotStats{head: head, ids: n, bytes: size, took: time.Since(start)}, nil
}

// snapshotLoop writes a snapshot every interval once the index is
// complete, until ctx ends (Close then writes the last one). Owned by the
// dedupRebuild: stop waits for it.
func (l *Log) snapshotLoop(ctx context.Context, r *dedupRebuild, interval time.Duration) {
	defer close(r.writerDone)
	select {
	case <-r.ready:
	case <-ctx.Done():
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
		st, err := l.saveDedupSnapshot(r, r.snapshotHead.Load())
		if err != nil {
			l.cfg.Logger.Warn("log: periodic dedup snapshot failed; a restart after a crash reads more of the log", "err", err)
			continue
		}
		if st.bytes > 0 {
			r.snapshotHead.Store(st.head)
			l.cfg.Logger.Debug("log: dedup snapshot written", "head", st.head, "ids", st.ids, "bytes", st.bytes, "took", st.took)
		}
	}
}

// loadDedupSnapshot fills the index from the newest snapshot, if it is
// this stream's, covers the window from since on and a head no later than
// the stream's (last): it returns how many ids it took and the head it
// covers (the log is read after it). The file stays (see above).
func (l *Log) loadDedupSnapshot(since time.Time, last uint64) (n int, head uint64, ok bool) {
	path := l.dedupSnapshotPath()
	if path == "" {
		return 0, 0, false
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, false
	}
	entries, head, ok := parseDedupSnapshot(b, l.stream.CachedInfo().Created, last, since)
	if !ok {
		l.cfg.Logger.Warn("log: dedup snapshot ignored (another stream, ahead of the stream, a shorter window, or damaged): reading the whole window from the log", "path", path)
		return 0, 0, false
	}
	return l.recent.rememberAll(entries, since), head, true
}

type snapshotEntry struct {
	key string
	seq uint64
	at  time.Time
}

// parseDedupSnapshot checks a snapshot against the stream's creation time
// and last seq (its head and every seq in it are at most that), and that
// it covers the window from since on, and returns its entries and head;
// ok is false for anything else.
func parseDedupSnapshot(b []byte, created time.Time, last uint64, since time.Time) (entries []snapshotEntry, head uint64, ok bool) {
	end := bytes.LastIndex(b, []byte("sha256 "))
	if end < 0 {
		return nil, 0, false
	}
	sum := sha256.Sum256(b[:end])
	if string(bytes.TrimSpace(b[end+len("sha256 "):])) != hex.EncodeToString(sum[:]) {
		return nil, 0, false
	}
	magic, rest, _ := bytes.Cut(b[:end], []byte("\n"))
	header, rest, _ := bytes.Cut(rest, []byte("\n"))
	if string(magic) != dedupSnapshotMagic {
		return nil, 0, false
	}
	var c, covered int64
	var h uint64
	if _, err := fmt.Sscanf(string(header), "stream_created %d head %d covered_since %d", &c, &h, &covered); err != nil ||
		c != created.UnixNano() || h > last || covered > since.UnixNano() {
		return nil, 0, false
	}
	// One line per id: "<tenant>/<id> <seq> <unix nanoseconds>".
	entries = make([]snapshotEntry, 0, bytes.Count(rest, []byte("\n")))
	for len(rest) > 0 {
		line, tail, found := bytes.Cut(rest, []byte("\n"))
		if !found {
			return nil, 0, false
		}
		rest = tail
		sp1, sp2 := bytes.IndexByte(line, ' '), bytes.LastIndexByte(line, ' ')
		if sp1 <= 0 || sp2 <= sp1 {
			return nil, 0, false
		}
		seq, ok1 := parseDecimal(line[sp1+1 : sp2])
		at, ok2 := parseDecimal(line[sp2+1:])
		// (A seq past the head is an id settled while an earlier batch
		// was in flight: it is stored, but the stream must have it.)
		if !ok1 || !ok2 || seq == 0 || seq > last {
			return nil, 0, false
		}
		entries = append(entries, snapshotEntry{key: string(line[:sp1]), seq: seq, at: time.Unix(0, int64(at))})
	}
	return entries, h, true
}

// parseDecimal parses a non-negative decimal below 2^63.
func parseDecimal(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 19 { // 19 digits cannot overflow a uint64
		return 0, false
	}
	var n uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	return n, n <= math.MaxInt64
}
