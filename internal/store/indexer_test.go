package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigil-sec/vigil/internal/event"
)

func waitIndexed(t *testing.T, l *Log, through uint64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		info := l.IDIndex()
		if info.CaughtUp && info.Watermark >= through {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("id index at %+v, want through %d", info, through)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestGetByIDAfterTheDedupWindow (issue 12 item 8): layout 2 has no
// subject per id; an event older than the dedup window is found by id
// through the id index on disk, which is rebuilt from the log when its
// directory is deleted, and forgets what retention removed.
func TestGetByIDAfterTheDedupWindow(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	l := open(t, dir)
	var evs []*event.Event
	for i := range 3000 {
		e := &event.Event{ID: fmt.Sprintf("old-%d", i), Type: "audit.query"}
		evs = append(evs, e)
	}
	normalized(t, evs...)
	for i, e := range evs {
		if i%3 == 0 {
			e.Tenant = "acme"
		}
	}
	if _, err := l.Append(ctx, evs); err != nil {
		t.Fatal(err)
	}
	l.Close()

	// A window of a millisecond: after the restart the dedup index holds
	// none of them.
	reopen := func() *Log {
		l, err := Open(ctx, Config{DataDir: dir, DedupWindow: time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := l.WaitDedupIndex(ctx); err != nil {
			t.Fatal(err)
		}
		return l
	}
	check := func(l *Log) {
		t.Helper()
		waitIndexed(t, l, 3000)
		if len(l.recent.lookupID("old-7")) > 0 {
			t.Fatal("the dedup index still holds the events")
		}
		for _, i := range []int{0, 1, 2, 1500, 2999} {
			e, err := l.Get(ctx, fmt.Sprintf("old-%d", i))
			if err != nil || e.Seq != uint64(i+1) || e.ID != fmt.Sprintf("old-%d", i) {
				t.Fatalf("get old-%d: %+v %v", i, e, err)
			}
		}
		if _, err := l.Get(ctx, "never-stored"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("unknown id: %v", err)
		}
	}
	l = reopen()
	check(l)
	// Appended now: found at once (dedup index), and indexed within a poll.
	if _, err := l.Append(ctx, normalized(t, &event.Event{ID: "new-1", Type: "audit.query"})); err != nil {
		t.Fatal(err)
	}
	if e, err := l.Get(ctx, "new-1"); err != nil || e.Seq != 3001 {
		t.Fatalf("get new-1: %+v %v", e, err)
	}
	waitIndexed(t, l, 3001)
	l.Close()

	// Deleted: rebuilt from the log at the next start.
	if err := os.RemoveAll(filepath.Join(dir, idIndexDir)); err != nil {
		t.Fatal(err)
	}
	l = reopen()
	defer l.Close()
	check(l)

	// Retention removed the first 1000: they are pruned from the index.
	s, err := l.js.Stream(ctx, StreamName)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Purge(ctx, jetstream.WithPurgeSequence(1001)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, ok, err := l.index.idx.Lookup("acme/old-0")
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("retention's removals were not pruned from the id index")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := l.Get(ctx, "old-0"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("removed by retention: %v", err)
	}
	if e, err := l.Get(ctx, "old-1000"); err != nil || e.Seq != 1001 {
		t.Fatalf("get old-1000: %+v %v", e, err)
	}
}

// TestLateRetryAfterTheDedupWindow (issue 12 item 8): a retry that comes
// after the dedup window, of an event the log still holds, is found in the
// id index and acknowledged as a duplicate with its first seq; before, it
// was stored a second time.
func TestLateRetryAfterTheDedupWindow(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	l := open(t, dir)
	if _, err := l.Append(ctx, manyEvents(t, 100, "late")); err != nil {
		t.Fatal(err)
	}
	l.Close()
	l, err := Open(ctx, Config{DataDir: dir, DedupWindow: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	waitIndexed(t, l, 100)
	retry := manyEvents(t, 101, "late") // late-0..late-99 again, and late-100 new
	acks, err := l.Append(ctx, retry)
	if err != nil {
		t.Fatal(err)
	}
	for i, a := range acks[:100] {
		if !a.Duplicate || a.Seq != uint64(i+1) {
			t.Fatalf("retry of late-%d: %+v, want a duplicate of seq %d", i, a, i+1)
		}
	}
	if a := acks[100]; a.Duplicate || a.Seq != 101 {
		t.Fatalf("new event: %+v, want seq 101", a)
	}
	if head, _ := l.Head(ctx); head != 101 {
		t.Fatalf("head %d, want 101: a late retry was stored again", head)
	}
	rep, err := l.Verify(ctx)
	if err != nil || !rep.OK {
		t.Fatalf("verify: %+v %v", rep, err)
	}
}

// TestFindChoosesAmongTenants: two tenants each stored an event with one
// id (dedup is per tenant). Find answers each reader with the newest one
// it accepts, from the dedup index and, once that has forgotten them,
// from the id index on disk; Get (no choice) the newest of all.
func TestFindChoosesAmongTenants(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	l := open(t, dir)
	acme := &event.Event{ID: "shared-id", Type: "audit.query", Tenant: "acme", Message: "acme's"}
	globex := &event.Event{ID: "shared-id", Type: "audit.query", Tenant: "globex", Message: "globex's"}
	normalized(t, acme, globex)
	acme.Tenant, globex.Tenant = "acme", "globex"
	for _, e := range []*event.Event{acme, globex} { // acme's first: globex's is the newest
		if _, err := l.Append(ctx, []*event.Event{e}); err != nil {
			t.Fatal(err)
		}
	}
	check := func(l *Log, where string) {
		t.Helper()
		for _, tenant := range []string{"acme", "globex"} {
			e, err := l.Find(ctx, "shared-id", func(e *event.Event) bool { return e.Tenant == tenant })
			if err != nil || e.Tenant != tenant {
				t.Fatalf("%s: Find for %s: %+v, %v", where, tenant, e, err)
			}
		}
		if e, err := l.Get(ctx, "shared-id"); err != nil || e.Tenant != "globex" {
			t.Fatalf("%s: Get: %+v, %v", where, e, err)
		}
		if _, err := l.Find(ctx, "shared-id", func(e *event.Event) bool { return e.Tenant == "initech" }); !errors.Is(err, ErrNotFound) {
			t.Fatalf("%s: Find for a tenant without it: %v", where, err)
		}
	}
	check(l, "dedup index")
	l.Close()
	l, err := Open(ctx, Config{DataDir: dir, DedupWindow: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, err := l.WaitDedupIndex(ctx); err != nil {
		t.Fatal(err)
	}
	waitIndexed(t, l, 2)
	if len(l.recent.lookupID("shared-id")) > 0 {
		t.Fatal("the dedup index still holds the events")
	}
	check(l, "id index")
}
