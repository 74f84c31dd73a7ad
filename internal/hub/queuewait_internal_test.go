package hub

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/filter"
	"github.com/vigil-sec/vigil/internal/testkit"
)

// Issue 12 item 1: QueueWait, which ingest admission reads, reports how
// long live deliveries waited in the clients' queues.
func TestQueueWaitIsTheTypicalClients(t *testing.T) {
	var returned atomic.Int64
	h := New(burstSource{returned: &returned}, Options{})
	admin := &auth.Principal{ID: "test", Role: auth.RoleAdmin, Tenant: auth.AllTenants}
	clients := make([]*Client, 5)
	for i := range clients {
		clients[i] = h.NewClient(ClientInfo{Transport: "test", Principal: admin})
		defer clients[i].Close()
		if _, err := clients[i].Subscribe(context.Background(), "s", filter.MatchAll(), Latest()); err != nil {
			t.Fatal(err)
		}
	}
	seq := uint64(0)
	offer := func() time.Time {
		seq++
		e := &event.Event{Type: "system.heartbeat", Source: "t"}
		if _, err := event.Normalize(e, "default", time.Now(), event.DefaultLimits()); err != nil {
			t.Fatal(err)
		}
		e.Seq = seq
		at := time.Now()
		h.dispatch(e)
		return at
	}
	take := func(c *Client) {
		if batch, err := c.TryNext(); err != nil || len(batch) != 1 {
			t.Fatalf("take: %d deliveries, %v", len(batch), err)
		}
	}
	// readMedian waits for the window holding the takes to complete.
	readMedian := func() time.Duration {
		var got time.Duration
		testkit.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
			if got = h.QueueWait(); got == 0 {
				return errors.New("no wait reported for the last window yet")
			}
			return nil
		})
		return got
	}
	waitPast := func(at time.Time, d time.Duration) {
		testkit.CheckFor(t, 10*time.Second, time.Millisecond, func() error {
			if time.Since(at) < d {
				return fmt.Errorf("only %v since the offer", time.Since(at))
			}
			return nil
		})
	}

	// Everyone takes the event after 70 ms: the median wait is >= 64 ms.
	waitPast(offer(), 70*time.Millisecond)
	for _, c := range clients {
		take(c)
	}
	if got := readMedian(); got < 64*time.Millisecond || got > 256*time.Millisecond {
		t.Fatalf("all five clients waited 70 ms; QueueWait %v, want 64–256 ms", got)
	}

}

// The median over one window ignores one slow client of five, follows
// four of five, and a window with nothing taken reads as no wait.
func TestQueueWaitMedianOfAWindow(t *testing.T) {
	var w queueWaits
	t0 := time.Unix(0, 0).Add(1000 * queueWaitWindow) // the start of a window
	for _, d := range []time.Duration{0, time.Millisecond / 2, 0, 0, 70 * time.Millisecond} {
		w.note(t0, d)
	}
	if got := w.median(t0.Add(queueWaitWindow)); got != 0 {
		t.Fatalf("one of five waited 70 ms: median %v, want 0 (under 1 ms)", got)
	}
	for _, d := range []time.Duration{70, 90, 100, 0, 120} {
		w.note(t0.Add(queueWaitWindow), d*time.Millisecond)
	}
	if got := w.median(t0.Add(2 * queueWaitWindow)); got != 128*time.Millisecond {
		t.Fatalf("four of five waited 70–120 ms: median %v, want 128ms", got)
	}
	if got := w.median(t0.Add(4 * queueWaitWindow)); got != 0 {
		t.Fatalf("nothing taken in the last window: median %v, want 0", got)
	}
	if b := queueWaitBucket(time.Hour); b != queueWaitBuckets-1 {
		t.Fatalf("an hour's wait in bucket %d, want the last (%d)", b, queueWaitBuckets-1)
	}
}
