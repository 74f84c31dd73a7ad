package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// A replay spill survives a restart (a deploy, an upgrade, a crash): when
// every client reconnects and resumes from its last seq at once, the
// spill serves them from disk instead of JetStream at a third of the pace
// (docs/performance.md, "The replay spill"). It is kept only when it
// provably still agrees with the log:
//
//   - The spill describes itself in a manifest (spillManifestName): the
//     segments, their seqs, sizes and offset indexes, and the stream's
//     identity (its creation time). Close writes one after its last
//     flush, with the segments synced; the writer one every
//     checkpointEvery (a checkpoint, not synced: see writeManifest).
//     Open reads it and deletes it before
//     anything else, so what is kept is exactly what one manifest
//     described: all of it after a clean stop, the last checkpoint after
//     a crash (records written after it are past its sizes and seqs, and
//     are not kept).
//   - The stream must be the same one (a stream deleted and created
//     again has another creation time), must hold no deleted message
//     inside it (nothing in Vigil deletes one; an operator's `nats stream
//     rmm` would, and the spill would still have it), and must still hold
//     the spill's last seq.
//   - Segments the manifest lists that are gone are skipped while they
//     are the oldest (evicted after a checkpoint); one gone after a
//     present one refuses the spill. No segment may be shorter than the
//     manifest gives (longer is a checkpoint's segment written on). The
//     oldest kept record and the newest one must be byte for byte what
//     the log holds at their seqs (a data directory restored from
//     another backup, or another node's, differs there; so does a log
//     that lost its last writes in a power loss the spill survived).
//   - Segments wholly below the stream's first seq (retention ran while
//     the node was down) are removed.
//
// Anything else empties the spill, as before. A record damaged after the
// check is still caught by its CRC when read (the rest of its range comes
// from the log).

const spillManifestName = "manifest.json"

// spillCheckTimeout bounds each read of the log that checks a kept spill.
const spillCheckTimeout = 2 * time.Second

type spillManifest struct {
	Version  int                    `json:"version"`
	Stream   string                 `json:"stream"` // spillLogView.identity
	Segments []spillManifestSegment `json:"segments"`
}

type spillManifestSegment struct {
	File  string  `json:"file"`
	First uint64  `json:"first"`
	Last  uint64  `json:"last"`
	Size  int64   `json:"size"`
	Index []int64 `json:"index"`
}

// spillLogView is what a spill left by a previous process is checked
// against at Open.
type spillLogView struct {
	identity    string // the stream's creation time
	first, last uint64 // the stream's first and last seq
	deleted     uint64 // messages deleted inside the stream
	// body returns the stored body of seq.
	body func(ctx context.Context, seq uint64) ([]byte, error)
}

// checkpoint writes a manifest while the spill runs (the writer, every
// checkpointEvery, right after a flush), so that a crash leaves a spill
// the next Open can check and keep as it was then. Later records are
// past what the manifest describes and are not kept; a segment removed
// since (eviction, retention) is skipped if it is among the oldest, and
// anything else (a reset) removes the manifest with the segments. A
// checkpoint that fails is only logged: the next one tries again, and a
// crash before it keeps what the previous manifest described (if it
// still checks out).
func (s *replaySpill) checkpoint() {
	if s.failedNow() {
		return
	}
	if _, err := s.writeManifest(false); err != nil {
		s.log.Debug("replay spill: checkpoint", "err", err)
	}
}

// writeManifest describes the flushed segments for the next Open (on the
// writer's goroutine, or after it stopped); written is false when there
// is nothing to describe. Written to a temporary file and renamed, so a
// manifest is whole or absent. durable (at Close) syncs the segments and
// the manifest to disk first; a checkpoint does not: an fsync every 10 s
// would make the writer (and, through a journal commit, the log's own
// writes) wait for the disk, and what a checkpoint is for, kill -9,
// loses nothing the kernel has. After a power loss an unsynced spill is
// refused by the checks at Open or, for a record in the middle, by its
// CRC when read.
func (s *replaySpill) writeManifest(durable bool) (written bool, err error) {
	s.mu.RLock()
	m := spillManifest{Version: 1, Stream: s.identity}
	for _, sg := range s.segs {
		if sg.flushed < sg.first {
			continue // nothing readable (the newest, just rotated)
		}
		m.Segments = append(m.Segments, spillManifestSegment{File: filepath.Base(sg.path), First: sg.first, Last: sg.flushed, Size: sg.size, Index: sg.index})
	}
	s.mu.RUnlock()
	if len(m.Segments) == 0 || s.identity == "" {
		return false, nil
	}
	// At Close the segments reach the disk before a manifest describes
	// them (most pages went out long ago, so this is quick).
	for i := 0; durable && i < len(m.Segments); i++ {
		if err := syncFile(filepath.Join(s.dir, m.Segments[i].File)); err != nil {
			return false, err
		}
	}
	b, err := json.Marshal(m)
	if err != nil {
		return false, err
	}
	tmp := filepath.Join(s.dir, spillManifestName+".tmp")
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return false, err
	}
	if _, err := f.Write(b); err != nil {
		_ = f.Close() // the write error is the one to report
		return false, err
	}
	if durable {
		if err := f.Sync(); err != nil {
			_ = f.Close() // likewise
			return false, err
		}
	}
	if err := f.Close(); err != nil {
		return false, err
	}
	if err := os.Rename(tmp, filepath.Join(s.dir, spillManifestName)); err != nil {
		return false, err
	}
	if durable {
		// The rename is durable once the directory is (as the dedup
		// snapshot's).
		if err := syncFile(s.dir); err != nil {
			return false, err
		}
	}
	return true, nil
}

// adopt takes over the segments a previous process's manifest (its Close,
// or its last checkpoint) described, when they agree with the log (view);
// otherwise it empties the directory. It runs before the writer starts. It returns the events
// kept and, when nothing was, why (for the log line).
func (s *replaySpill) adopt(ctx context.Context, view *spillLogView) (kept uint64, why string) {
	why, err := s.adoptChecked(ctx, view)
	if err != nil {
		why = err.Error()
	}
	if why != "" {
		s.segs, s.bytes = nil, 0
		if err := os.RemoveAll(s.dir); err != nil {
			return 0, "removing it: " + err.Error()
		}
		if err := os.MkdirAll(s.dir, 0o700); err != nil {
			return 0, err.Error()
		}
		return 0, why
	}
	for _, sg := range s.segs {
		kept += sg.flushed - sg.first + 1
	}
	return kept, ""
}

// adoptChecked is adopt's checks; a non-empty why rejects the spill.
func (s *replaySpill) adoptChecked(ctx context.Context, view *spillLogView) (why string, err error) {
	path := filepath.Join(s.dir, spillManifestName)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		if entries, _ := os.ReadDir(s.dir); len(entries) > 0 {
			return "no manifest (the previous process stopped before it described its spill)", nil
		}
		return "nothing to keep", nil
	}
	if err != nil {
		return "", err
	}
	// Whatever happens next, this start owns the segments now: a crash
	// before its own first checkpoint must not find them described.
	if err := os.Remove(path); err != nil {
		return "", err
	}
	var m spillManifest
	if err := json.Unmarshal(b, &m); err != nil {
		return "unreadable manifest: " + err.Error(), nil
	}
	switch {
	case m.Version != 1:
		return fmt.Sprintf("manifest version %d", m.Version), nil
	case view == nil || m.Stream != view.identity:
		return "the stream is not the one the spill was written from", nil
	case view.deleted > 0:
		return fmt.Sprintf("the stream has %d deleted messages inside it", view.deleted), nil
	case len(m.Segments) == 0:
		return "empty manifest", nil
	}
	// A crash after a checkpoint: the oldest segments it lists may have
	// been evicted since. Those are skipped; a missing segment after a
	// present one means the spill was not what the manifest says.
	for len(m.Segments) > 0 {
		if _, err := os.Stat(filepath.Join(s.dir, filepath.Base(m.Segments[0].File))); !errors.Is(err, os.ErrNotExist) {
			break
		}
		m.Segments = m.Segments[1:]
	}
	if len(m.Segments) == 0 {
		return "the segments it describes are gone", nil
	}
	listed := map[string]bool{}
	for i, ms := range m.Segments {
		switch {
		case ms.File != filepath.Base(ms.File) || !strings.HasSuffix(ms.File, ".spill"):
			return fmt.Sprintf("segment name %q", ms.File), nil
		case ms.Last < ms.First || ms.Size <= 0 || len(ms.Index) != int((ms.Last-ms.First)/spillIndexEvery+1) || ms.Index[0] != 0:
			return fmt.Sprintf("segment %s: inconsistent bounds or index", ms.File), nil
		case i > 0 && ms.First <= m.Segments[i-1].Last:
			return fmt.Sprintf("segment %s overlaps the one before it", ms.File), nil
		}
		for k := 1; k < len(ms.Index); k++ {
			if ms.Index[k] <= ms.Index[k-1] || ms.Index[k] >= ms.Size {
				return fmt.Sprintf("segment %s: index out of order", ms.File), nil
			}
		}
		// Larger is a checkpoint's segment written on after it (its
		// records past Size are not kept); smaller is damage.
		st, err := os.Stat(filepath.Join(s.dir, ms.File))
		if err != nil || st.Size() < ms.Size {
			return fmt.Sprintf("segment %s: shorter than the manifest gives, or gone", ms.File), nil
		}
		listed[ms.File] = true
	}
	if last := m.Segments[len(m.Segments)-1].Last; last > view.last {
		return fmt.Sprintf("the spill ends at seq %d, past the stream's last seq %d", last, view.last), nil
	}
	// Retention ran while the node was down.
	for len(m.Segments) > 0 && m.Segments[0].Last < view.first {
		delete(listed, m.Segments[0].File)
		m.Segments = m.Segments[1:]
	}
	if len(m.Segments) == 0 {
		return "retention removed everything it held", nil
	}
	oldest, newest := m.Segments[0], m.Segments[len(m.Segments)-1]
	for _, c := range []struct {
		seg spillManifestSegment
		seq uint64
	}{{oldest, max(oldest.First, view.first)}, {newest, newest.Last}} {
		body, err := spillRecordAt(filepath.Join(s.dir, c.seg.File), c.seg.First, c.seg.Index, c.seq)
		if err != nil {
			return fmt.Sprintf("segment %s: seq %d: %v", c.seg.File, c.seq, err), nil
		}
		stored, err := view.body(ctx, c.seq)
		if err != nil {
			return fmt.Sprintf("reading seq %d from the log: %v", c.seq, err), nil
		}
		if !bytes.Equal(body, stored) {
			return fmt.Sprintf("seq %d differs from the log's", c.seq), nil
		}
	}
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return "", err
	}
	for _, e := range entries {
		if !listed[e.Name()] {
			if err := os.RemoveAll(filepath.Join(s.dir, e.Name())); err != nil {
				return "", err
			}
		}
	}
	for _, ms := range m.Segments {
		s.segs = append(s.segs, &spillSegment{path: filepath.Join(s.dir, ms.File), first: ms.First, flushed: ms.Last, size: ms.Size, index: ms.Index})
		s.bytes += ms.Size
		if n, err := strconv.Atoi(strings.TrimSuffix(ms.File, ".spill")); err == nil {
			s.files = max(s.files, n)
		}
	}
	s.adopted = newest.Last
	s.mu.Lock()
	for s.bytes > s.maxBytes && len(s.segs) > 1 { // the bound may have shrunk
		s.removeOldestLocked()
	}
	s.mu.Unlock()
	return "", nil
}

// spillRecordAt reads the body of seq from a segment whose first record is
// first, with its seq and CRC checked.
func spillRecordAt(path string, first uint64, index []int64, seq uint64) ([]byte, error) {
	k := (seq - first) / spillIndexEvery
	var body []byte
	err := readSpillRecords(path, index[k], first+k*spillIndexEvery, seq, seq, func(_ uint64, b []byte) bool {
		body = b
		return false
	})
	if err == nil && body == nil {
		err = errors.New("not found")
	}
	return body, err
}

// spillView is what a previous process's spill is checked against: the
// stream as it is now.
func (l *Log) spillView(ctx context.Context) (*spillLogView, error) {
	info, err := l.stream.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("store: replay spill: stream info: %w", err)
	}
	return &spillLogView{
		identity: info.Created.UTC().Format(time.RFC3339Nano),
		first:    info.State.FirstSeq,
		last:     info.State.LastSeq,
		deleted:  uint64(info.State.NumDeleted),
		body: func(ctx context.Context, seq uint64) ([]byte, error) {
			// Bounded: on a cluster still electing a leader the start
			// should not wait on the spill (it then starts empty).
			ctx, cancel := context.WithTimeout(ctx, spillCheckTimeout)
			defer cancel()
			m, err := l.stream.GetMsg(ctx, seq)
			if err != nil {
				return nil, err
			}
			return m.Data, nil
		},
	}, nil
}

// syncFile flushes a file's data to its disk.
func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
