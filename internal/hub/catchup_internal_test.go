package hub

import (
	"context"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/filter"
	"github.com/vigil-sec/vigil/internal/testkit"
)

// sliceLog is a log of events seq 1..len(events) that scans from memory
// (as the recent-event ring does: a catch-up then finishes in microseconds).
type sliceLog struct{ events []*event.Event }

func (l sliceLog) Head(context.Context) (uint64, error) { return uint64(len(l.events)), nil }
func (sliceLog) Tail(ctx context.Context, _ uint64, _ func(*event.Event)) error {
	<-ctx.Done()
	return nil
}
func (l sliceLog) ScanRange(_ context.Context, from, to uint64, fn func(*event.Event) bool) error {
	for seq := from; seq <= to && seq <= uint64(len(l.events)); seq++ {
		if !fn(l.events[seq-1]) {
			return nil
		}
	}
	return nil
}
func (sliceLog) SeqForTime(context.Context, time.Time) (uint64, error) { return 1, nil }

// A replay reads the log up to inflight, the last seq of the chunk being
// offered; when it ends (the subscription goes live) before the
// dispatcher has offered that chunk to it, the chunk's events reach it a
// second time, live. SPEC 7: a connection never receives the same event
// twice. Seen once as a duplicate in TestResumeNoGapNoDuplicate on a
// loaded box after the dispatcher began offering chunks of 16.
func TestCatchUpEndingMidChunkDeliversNoDuplicate(t *testing.T) {
	events := make([]*event.Event, 10)
	for i := range events {
		e := &event.Event{Type: "system.heartbeat", Source: "chunk"}
		if _, err := event.Normalize(e, "default", time.Now(), event.DefaultLimits()); err != nil {
			t.Fatal(err)
		}
		e.Seq = uint64(i + 1)
		events[i] = e
	}
	h := New(sliceLog{events}, Options{})
	// The dispatcher has offered 1..7 and is about to offer the chunk
	// 8..10: inflight is already its last seq (dispatchChunk's order).
	h.dispatched.Store(7)
	h.inflight.Store(10)
	admin := &auth.Principal{ID: "test", Role: auth.RoleAdmin, Tenant: auth.AllTenants}
	c := h.NewClient(ClientInfo{Transport: "test", Principal: admin})
	defer c.Close()
	if _, err := c.Subscribe(context.Background(), "s", filter.MatchAll(), FromSeq(1)); err != nil {
		t.Fatal(err)
	}
	var got []uint64
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for len(got) < 10 {
		batch, err := c.Next(ctx)
		if err != nil {
			t.Fatalf("after %v: %v", got, err)
		}
		for _, d := range batch {
			got = append(got, d.Event.Seq)
		}
	}
	s := c.subs["s"]
	testkit.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
		if s.catching.Load() {
			return context.DeadlineExceeded
		}
		return nil
	})
	h.dispatchChunk(events[7:]) // the chunk the replay already covered
	short, cancelShort := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancelShort()
	if extra, err := c.Next(short); err == nil {
		for _, d := range extra {
			got = append(got, d.Event.Seq)
		}
		t.Fatalf("deliveries %v: seqs 8..10 came twice", got)
	}
}
