package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// The dedup snapshot lets a planned restart of the embedded log skip the
// rebuild (issue 8, item 4): Close writes the complete index with the
// stream's identity (creation time) and head; the next Open takes it only
// if the stream is that stream at that head, i.e. nothing was appended
// since, and deletes it before using it, so that it is never used twice
// (a node killed later rebuilds from the log, as after any crash). A
// snapshot that does not check out (other stream or head, torn or edited
// file: a SHA-256 over its content ends it) is ignored.
const dedupSnapshotFile = "dedup-index.snapshot"

const dedupSnapshotMagic = "vigil-dedup-snapshot 1"

func (l *Log) dedupSnapshotPath() string {
	if l.ns == nil || l.cfg.DataDir == "" {
		return "" // external NATS: other nodes append while this one is down
	}
	return filepath.Join(l.cfg.DataDir, dedupSnapshotFile)
}

// saveDedupSnapshot writes the index at Close when it is complete and no
// append is in flight; otherwise (or on any error) it writes nothing and
// the next start rebuilds.
func (l *Log) saveDedupSnapshot() error {
	path := l.dedupSnapshotPath()
	if path == "" || l.stream == nil || l.rebuild == nil {
		return nil
	}
	select {
	case <-l.rebuild.ready:
	default:
		return nil // incomplete
	}
	l.mu.Lock() // no append starts meanwhile
	defer l.mu.Unlock()
	l.pub.mu.Lock()
	inFlight := len(l.pub.batches)
	l.pub.mu.Unlock()
	if inFlight > 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	info, err := l.stream.Info(ctx)
	if err != nil {
		return fmt.Errorf("store: dedup snapshot: %w", err)
	}
	var buf bytes.Buffer
	d := l.recent
	d.mu.Lock()
	// Every id stored since covered is in the index (older ones may have
	// expired): a start with a longer window must read the log instead.
	covered := time.Now().Add(-d.window)
	fmt.Fprintf(&buf, "%s\nstream_created %d head %d covered_since %d\n", dedupSnapshotMagic, info.Created.UnixNano(), info.State.LastSeq, covered.UnixNano())
	for _, o := range d.order[d.head:] {
		p, ok := d.entries[o.key]
		if !ok || !p.at.Equal(o.at) {
			continue // forgotten, or covered by a newer order entry
		}
		if p.fl != nil {
			d.mu.Unlock()
			return nil // in flight after all
		}
		buf.WriteString(o.key)
		buf.WriteByte(' ')
		buf.WriteString(strconv.FormatUint(p.seq, 10))
		buf.WriteByte(' ')
		buf.WriteString(strconv.FormatInt(p.at.UnixNano(), 10))
		buf.WriteByte('\n')
	}
	d.mu.Unlock()
	sum := sha256.Sum256(buf.Bytes())
	buf.WriteString("sha256 " + hex.EncodeToString(sum[:]) + "\n")

	tmp := path + ".tmp"
	if err := writeFileSync(tmp, buf.Bytes()); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("store: dedup snapshot: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("store: dedup snapshot: %w", err)
	}
	return nil
}

func writeFileSync(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// loadDedupSnapshot fills the index from the snapshot Close left, if it
// is this stream's at this head, with the entries stored since since. It
// removes the file first in every case; it reports whether it was used.
func (l *Log) loadDedupSnapshot(since time.Time, head uint64) (int, bool) {
	path := l.dedupSnapshotPath()
	if path == "" {
		return 0, false
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	if err := os.Remove(path); err != nil {
		return 0, false // a file that stays could be taken again later: never
	}
	entries, ok := parseDedupSnapshot(b, l.stream.CachedInfo().Created, head, since)
	if !ok {
		return 0, false
	}
	return l.recent.rememberAll(entries, since), true
}

type snapshotEntry struct {
	key string
	seq uint64
	at  time.Time
}

// parseDedupSnapshot checks a snapshot against the stream's creation time
// and head, and that it covers the window from since on, and returns its
// entries; ok is false for anything else.
func parseDedupSnapshot(b []byte, created time.Time, head uint64, since time.Time) (entries []snapshotEntry, ok bool) {
	end := bytes.LastIndex(b, []byte("sha256 "))
	if end < 0 {
		return nil, false
	}
	sum := sha256.Sum256(b[:end])
	if string(bytes.TrimSpace(b[end+len("sha256 "):])) != hex.EncodeToString(sum[:]) {
		return nil, false
	}
	magic, rest, _ := bytes.Cut(b[:end], []byte("\n"))
	header, rest, _ := bytes.Cut(rest, []byte("\n"))
	if string(magic) != dedupSnapshotMagic {
		return nil, false
	}
	var c, covered int64
	var h uint64
	if _, err := fmt.Sscanf(string(header), "stream_created %d head %d covered_since %d", &c, &h, &covered); err != nil ||
		c != created.UnixNano() || h != head || covered > since.UnixNano() {
		return nil, false
	}
	// One line per id: "<tenant>/<id> <seq> <unix nanoseconds>".
	entries = make([]snapshotEntry, 0, bytes.Count(rest, []byte("\n")))
	for len(rest) > 0 {
		line, tail, found := bytes.Cut(rest, []byte("\n"))
		if !found {
			return nil, false
		}
		rest = tail
		sp1, sp2 := bytes.IndexByte(line, ' '), bytes.LastIndexByte(line, ' ')
		if sp1 <= 0 || sp2 <= sp1 {
			return nil, false
		}
		seq, ok1 := parseDecimal(line[sp1+1 : sp2])
		at, ok2 := parseDecimal(line[sp2+1:])
		if !ok1 || !ok2 || seq == 0 || seq > head {
			return nil, false
		}
		entries = append(entries, snapshotEntry{key: string(line[:sp1]), seq: seq, at: time.Unix(0, int64(at))})
	}
	return entries, true
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
