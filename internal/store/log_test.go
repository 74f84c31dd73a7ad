package store_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/store"
)

func open(t *testing.T, dir string) *store.Log {
	t.Helper()
	l, err := store.Open(context.Background(), store.Config{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func normalized(t *testing.T, evs ...*event.Event) []*event.Event {
	t.Helper()
	for _, e := range evs {
		if _, err := event.Normalize(e, "default", time.Now(), event.DefaultLimits()); err != nil {
			t.Fatal(err)
		}
	}
	return evs
}

func TestAppendGetScanAndRestart(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	l := open(t, dir)
	acks, err := l.Append(ctx, normalized(t, &event.Event{ID: "a", Type: "audit.query"}, &event.Event{ID: "b", Type: "authentication.login", User: "alice"}))
	if err != nil {
		t.Fatal(err)
	}
	if acks[0].Seq != 1 || acks[1].Seq != 2 {
		t.Fatalf("acks %+v", acks)
	}
	e, err := l.Get(ctx, "b")
	if err != nil || e.Seq != 2 || e.User != "alice" {
		t.Fatalf("get b: %+v %v", e, err)
	}
	if !strings.HasPrefix(string(e.JSON()), `{"seq":2,`) {
		t.Fatalf("client encoding lacks the seq: %s", e.JSON())
	}
	if _, err := l.Get(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown id: %v", err)
	}
	// A retried producer id is acknowledged with its seq, not stored again.
	dup, err := l.Append(ctx, normalized(t, &event.Event{ID: "a", Type: "audit.query"}))
	if err != nil || !dup[0].Duplicate || dup[0].Seq != 1 {
		t.Fatalf("duplicate: %+v %v", dup, err)
	}
	l.Close()

	// After a restart: the dedup window is rebuilt, seq continues, the
	// chain links on.
	l = open(t, dir)
	defer l.Close()
	dup, err = l.Append(ctx, normalized(t, &event.Event{ID: "b", Type: "authentication.login"}))
	if err != nil || !dup[0].Duplicate || dup[0].Seq != 2 {
		t.Fatalf("duplicate after restart: %+v %v", dup, err)
	}
	next, err := l.Append(ctx, normalized(t, &event.Event{ID: "c", Type: "audit.query"}))
	if err != nil || next[0].Seq != 3 {
		t.Fatalf("after restart: %+v %v", next, err)
	}
	var seqs []uint64
	if err := l.ScanRange(ctx, 2, 3, func(e *event.Event) bool { seqs = append(seqs, e.Seq); return true }); err != nil {
		t.Fatal(err)
	}
	if len(seqs) != 2 || seqs[0] != 2 || seqs[1] != 3 {
		t.Fatalf("scan 2..3 = %v", seqs)
	}
	rep, err := l.Verify(ctx)
	if err != nil || !rep.OK || rep.Checked != 3 {
		t.Fatalf("verify: %+v %v", rep, err)
	}
}

func TestSeqForTime(t *testing.T) {
	ctx := context.Background()
	l := open(t, t.TempDir())
	defer l.Close()
	if _, err := l.Append(ctx, normalized(t, &event.Event{Type: "audit.query"})); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	mark := time.Now()
	time.Sleep(20 * time.Millisecond)
	if _, err := l.Append(ctx, normalized(t, &event.Event{Type: "audit.query"})); err != nil {
		t.Fatal(err)
	}
	if seq, err := l.SeqForTime(ctx, mark); err != nil || seq != 2 {
		t.Fatalf("seq for time = %d %v, want 2", seq, err)
	}
	if seq, err := l.SeqForTime(ctx, time.Now().Add(time.Hour)); err != nil || seq != 3 {
		t.Fatalf("seq for a future time = %d %v, want head+1 = 3", seq, err)
	}
}

// TestVerifyDetectsTampering: a message written to the stream behind
// Vigil's back (an altered copy of an event) breaks the chain.
func TestVerifyDetectsTampering(t *testing.T) {
	ctx := context.Background()
	l := open(t, t.TempDir())
	defer l.Close()
	evs := normalized(t, &event.Event{ID: "x1", Type: "audit.query", Message: "original"}, &event.Event{ID: "x2", Type: "audit.query"})
	if _, err := l.Append(ctx, evs); err != nil {
		t.Fatal(err)
	}
	stored, err := l.Get(ctx, "x2")
	if err != nil {
		t.Fatal(err)
	}
	// Forge a third event that claims to follow x2 but was altered after hashing.
	forged := strings.Replace(string(stored.JSON()), `"id":"x2"`, `"id":"x3","message":"forged"`, 1)
	forged = strings.Replace(forged, `{"seq":2,`, `{`, 1)
	msg := &nats.Msg{Subject: "vigil.events.default.audit.info.x3", Data: []byte(forged)}
	if _, err := l.JetStream().PublishMsg(ctx, msg); err != nil {
		t.Fatal(err)
	}
	rep, err := l.Verify(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK || rep.Broken == nil || rep.Broken.Seq != 3 || !strings.Contains(rep.Broken.Reason, "hash") {
		t.Fatalf("verify = %+v, want a broken link at seq 3", rep)
	}
}
