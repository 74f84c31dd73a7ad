package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/event"
)

// TestDedupIndexSurvivesRestart (issue 8, item 4): every id stored inside
// the window before a restart is still a duplicate after it, answered with
// its original seq, per tenant, from the very first append after Open:
// after a clean stop (the index is taken from the snapshot Close wrote) and
// without a snapshot, as after a kill -9 (rebuilt from the log in the
// background; appends wait for it).
func TestDedupIndexSurvivesRestart(t *testing.T) {
	t.Run("snapshot", func(t *testing.T) { testDedupIndexSurvivesRestart(t, true) })
	t.Run("log", func(t *testing.T) { testDedupIndexSurvivesRestart(t, false) })
}

func testDedupIndexSurvivesRestart(t *testing.T, snapshot bool) {
	const n = 10_000
	ctx := context.Background()
	dir := t.TempDir()
	l := open(t, dir)
	seqs := map[string]uint64{} // tenant/id -> seq
	for b := 0; b < n; b += 1000 {
		evs := make([]*event.Event, 1000)
		for i := range evs {
			tenant := []string{"acme", "globex"}[i%2]
			evs[i] = &event.Event{ID: fmt.Sprintf("id-%d", b+i), Type: "audit.query"}
			if _, err := event.Normalize(evs[i], tenant, time.Now(), event.DefaultLimits()); err != nil {
				t.Fatal(err)
			}
		}
		acks, err := l.Append(ctx, evs)
		if err != nil {
			t.Fatal(err)
		}
		for i, a := range acks {
			seqs[evs[i].Tenant+"/"+a.ID] = a.Seq
		}
	}
	l.Close()
	snap := filepath.Join(dir, dedupSnapshotFile)
	if _, err := os.Stat(snap); err != nil {
		t.Fatalf("no dedup snapshot after a clean close: %v", err)
	}
	if !snapshot {
		if err := os.Remove(snap); err != nil {
			t.Fatal(err)
		}
	}

	l = open(t, dir)
	defer l.Close()
	// At once, without waiting for anything: the oldest, a middle and the
	// newest id of the window, each in its own tenant, are duplicates;
	// the same ids in the other tenant are new events.
	type probe struct {
		id, tenant string
		dup        bool
	}
	probes := []probe{
		{"id-0", "acme", true}, {"id-4999", "globex", true}, {fmt.Sprintf("id-%d", n-1), "globex", true},
		{"id-0", "globex", false}, {"id-4999", "acme", false}, {"new", "acme", false},
	}
	for _, p := range probes {
		e := &event.Event{ID: p.id, Type: "audit.query"}
		if _, err := event.Normalize(e, p.tenant, time.Now(), event.DefaultLimits()); err != nil {
			t.Fatal(err)
		}
		acks, err := l.Append(ctx, []*event.Event{e})
		if err != nil {
			t.Fatal(err)
		}
		want, stored := seqs[p.tenant+"/"+p.id]
		if stored != p.dup {
			t.Fatalf("probe %+v does not match the setup", p)
		}
		if p.dup && (!acks[0].Duplicate || acks[0].Seq != want) {
			t.Fatalf("%s/%s after restart: %+v, want a duplicate of seq %d", p.tenant, p.id, acks[0], want)
		}
		if !p.dup && (acks[0].Duplicate || acks[0].Seq <= n) {
			t.Fatalf("%s/%s after restart: %+v, want a new event after seq %d", p.tenant, p.id, acks[0], n)
		}
	}
	info, err := l.WaitDedupIndex(ctx)
	wantTail := n
	if snapshot {
		wantTail = 0 // a clean stop: nothing after the snapshot's head
	}
	if err != nil || info.IDs != n || info.Snapshot != snapshot || info.Tail != wantTail {
		t.Fatalf("dedup index rebuilt: %+v (%v), want %d ids, from the snapshot: %v, %d read from the log", info, err, n, snapshot, wantTail)
	}
	// And a whole retried batch stores nothing again.
	head, _ := l.Head(ctx)
	retry := make([]*event.Event, 0, 2000)
	for i := 0; i < n; i += 10 {
		e := &event.Event{ID: fmt.Sprintf("id-%d", i), Type: "audit.query"}
		if _, err := event.Normalize(e, []string{"acme", "globex"}[i%2], time.Now(), event.DefaultLimits()); err != nil {
			t.Fatal(err)
		}
		retry = append(retry, e)
	}
	acks, err := l.Append(ctx, retry)
	if err != nil {
		t.Fatal(err)
	}
	for i, a := range acks {
		if want := seqs[retry[i].Tenant+"/"+a.ID]; !a.Duplicate || a.Seq != want {
			t.Fatalf("retried %s: %+v, want a duplicate of seq %d", a.ID, a, want)
		}
	}
	if after, _ := l.Head(ctx); after != head {
		t.Fatalf("a retried batch stored %d events again", after-head)
	}
	rep, err := l.Verify(ctx)
	if err != nil || !rep.OK {
		t.Fatalf("verify: %+v %v", rep, err)
	}
}

// TestCloseDuringDedupRebuild: closing the log while the index is being
// rebuilt stops the rebuild, and an append waiting for it is told.
func TestCloseDuringDedupRebuild(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	l := open(t, dir)
	for b := 0; b < 10; b++ {
		if _, err := l.Append(ctx, manyEvents(t, 1000, fmt.Sprintf("b%d", b))); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	// No snapshot: the index is rebuilt from the log, in the background.
	if err := os.Remove(filepath.Join(dir, dedupSnapshotFile)); err != nil {
		t.Fatal(err)
	}
	l = open(t, dir)
	l.Close() // returns: the rebuild stopped (or had finished)
	if _, err := os.Stat(filepath.Join(dir, dedupSnapshotFile)); err == nil {
		if info, _ := l.WaitDedupIndex(context.Background()); info.IDs != 10_000 {
			t.Fatalf("a snapshot was written with an incomplete index (%+v)", info)
		}
	}
	if _, err := l.Append(ctx, manyEvents(t, 1, "late")); err == nil {
		t.Fatal("append on a closed log succeeded")
	}
}

// TestDedupKeyOfStoredMessage: layout 2 takes the tenant from the
// subject and the id from the body's first field, without decoding the
// body; a body of another shape is decoded in full, and anything that is
// not an event has no key.
func TestDedupKeyOfStoredMessage(t *testing.T) {
	full := `{"id":"id-1","time":"2026-01-01T00:00:00Z","received_at":"2026-01-01T00:00:00Z","type":"audit.query","category":"audit","severity":"info","tenant":"acme"}`
	reordered := `{"type":"audit.query","id":"id-2","time":"2026-01-01T00:00:00Z","received_at":"2026-01-01T00:00:00Z","category":"audit","severity":"info","tenant":"acme"}`
	for _, c := range []struct {
		subject, body, want string
	}{
		{"vigil.events.acme.authentication.high", full, "acme/id-1"},
		{"vigil.events.acme.authentication.high", `{"id":"x:y_z-1","seq":3}`, "acme/x:y_z-1"},
		{"vigil.events.acme.audit.info", reordered, "acme/id-2"},
		{"vigil.events.acme.audit.info", `{"id":"","type":"x"}`, ""},
		{"vigil.events.acme.audit.info", `not an event`, ""},
		{"vigil.events.acme.audit.info", `{"id":"unterminated`, ""},
		{"vigil.events..authentication.high", full, ""},
		{"vigil.events.acme", full, ""},
		{"other.events.acme.authentication.high", full, ""},
	} {
		got, ok := dedupKey(c.subject, []byte(c.body))
		if got != c.want || ok != (c.want != "") {
			t.Errorf("dedupKey(%q, %.30q) = %q, %v; want %q", c.subject, c.body, got, ok, c.want)
		}
	}
}

// TestDedupRebuildAcrossExpiredPulls: pull requests that expire before
// they are filled (a slow or busy server) are pulled again; the rebuild
// ends at the head, never at an expiry, so the index is complete.
func TestDedupRebuildAcrossExpiredPulls(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	l := open(t, dir)
	for b := 0; b < 3; b++ {
		if _, err := l.Append(ctx, manyEvents(t, 1000, fmt.Sprintf("b%d", b))); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	if err := os.Remove(filepath.Join(dir, dedupSnapshotFile)); err != nil {
		t.Fatal(err)
	}
	oldBatch, oldExpires := rebuildBatch, rebuildExpires
	rebuildBatch, rebuildExpires = 500, time.Millisecond
	defer func() { rebuildBatch, rebuildExpires = oldBatch, oldExpires }()
	l = open(t, dir)
	defer l.Close()
	info, err := l.WaitDedupIndex(ctx)
	if err != nil || info.IDs != 3000 || info.Snapshot {
		t.Fatalf("dedup index rebuilt: %+v (%v), want 3000 ids from the log", info, err)
	}
}

// TestDedupSnapshotRefused: a snapshot that is not of this stream (one
// written by another data directory's stream with the same ids), covers
// a head the stream does not have, a shorter window, or was damaged is
// ignored, and the whole window is read from the log: the ids appended
// after the snapshot are duplicates too.
func TestDedupSnapshotRefused(t *testing.T) {
	ctx := context.Background()
	// A snapshot of another stream holding the same ids at the same seqs.
	other := t.TempDir()
	ol := open(t, other)
	if _, err := ol.Append(ctx, manyEvents(t, 500, "old")); err != nil {
		t.Fatal(err)
	}
	if _, err := ol.Append(ctx, manyEvents(t, 500, "new")); err != nil {
		t.Fatal(err)
	}
	ol.Close()
	otherSnap, err := os.ReadFile(filepath.Join(other, dedupSnapshotFile))
	if err != nil {
		t.Fatal(err)
	}
	for name, spoil := range map[string]func(t *testing.T, dir string){
		"other stream": func(t *testing.T, dir string) {
			if err := os.WriteFile(filepath.Join(dir, dedupSnapshotFile), otherSnap, 0o600); err != nil {
				t.Fatal(err)
			}
		},
		"ahead of the stream": func(t *testing.T, dir string) {
			// As if the stream had lost its newest events since (restored
			// from an older copy): the ids after its head are not in it.
			rewriteSnapshotHeader(t, dir, func(created, head, covered int64) (int64, int64, int64) {
				return created, head + 1, covered
			})
		},
		"window grew": func(t *testing.T, dir string) {
			// Written with a 2-minute window: it cannot stand for a
			// longer one (ids stored earlier may have expired from it).
			// As if the window had been an hour shorter: the rest is
			// intact, and the checksum is recomputed, so only the
			// coverage refuses it.
			rewriteSnapshotHeader(t, dir, func(created, head, covered int64) (int64, int64, int64) {
				return created, head, covered + int64(time.Hour)
			})
		},
		"damaged": func(t *testing.T, dir string) {
			path := filepath.Join(dir, dedupSnapshotFile)
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			b[len(b)/2] ^= 1
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
		},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			l := open(t, dir)
			if _, err := l.Append(ctx, manyEvents(t, 500, "old")); err != nil {
				t.Fatal(err)
			}
			if _, err := l.Append(ctx, manyEvents(t, 500, "new")); err != nil {
				t.Fatal(err)
			}
			l.Close()
			spoil(t, dir)

			l = open(t, dir)
			defer l.Close()
			info, err := l.WaitDedupIndex(ctx)
			if err != nil || info.Snapshot || info.IDs != 1000 || info.Tail != 1000 {
				t.Fatalf("dedup index: %+v (%v), want 1000 ids from the log", info, err)
			}
			acks, err := l.Append(ctx, manyEvents(t, 500, "new"))
			if err != nil {
				t.Fatal(err)
			}
			for i, a := range acks {
				if !a.Duplicate || a.Seq != uint64(501+i) {
					t.Fatalf("new-%d after a %s snapshot: %+v, want a duplicate of seq %d", i, name, a, 501+i)
				}
			}
		})
	}
}

// rewriteSnapshotHeader edits the header of dir's snapshot and recomputes
// its checksum, so that only the edited field can refuse it.
func rewriteSnapshotHeader(t *testing.T, dir string, edit func(created, head, covered int64) (int64, int64, int64)) {
	t.Helper()
	path := filepath.Join(dir, dedupSnapshotFile)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	magic, rest, _ := bytes.Cut(b, []byte("\n"))
	header, rest, _ := bytes.Cut(rest, []byte("\n"))
	var c, h, cov int64
	if _, err := fmt.Sscanf(string(header), "stream_created %d head %d covered_since %d", &c, &h, &cov); err != nil {
		t.Fatal(err)
	}
	c, h, cov = edit(c, h, cov)
	body := fmt.Appendf(nil, "%s\nstream_created %d head %d covered_since %d\n%s", magic, c, h, cov, rest)
	end := bytes.LastIndex(body, []byte("sha256 "))
	sum := sha256.Sum256(body[:end])
	body = append(body[:end], "sha256 "+hex.EncodeToString(sum[:])+"\n"...)
	if err := os.WriteFile(path, body, 0o600); err != nil {
		t.Fatal(err)
	}
}
