package hub

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/filter"
	"github.com/vigil-sec/vigil/internal/testkit"
)

// burstSource is a log whose tail is a burst of n events, then nothing
// until the hub stops; returned counts the tail callbacks that returned.
type burstSource struct {
	events   []*event.Event
	returned *atomic.Int64
}

func (burstSource) Head(context.Context) (uint64, error) { return 0, nil }
func (s burstSource) Tail(ctx context.Context, _ uint64, fn func(*event.Event)) error {
	for _, e := range s.events {
		fn(e)
		s.returned.Add(1)
	}
	<-ctx.Done()
	return nil
}
func (burstSource) ScanRange(context.Context, uint64, uint64, func(*event.Event) bool) error {
	return nil
}
func (burstSource) SeqForTime(context.Context, time.Time) (uint64, error) { return 0, nil }

// Issue 12 (fan-out at saturation): the log's tail hands events to the
// dispatching goroutine instead of offering each one itself, so a slow
// offer (1,000 subscriptions, or one client's queue lock held by its
// writer) does not hold the tail, and the events that gather meanwhile
// are offered as one chunk: each client is woken once for all of them and
// its writer sends them in one socket write. Before, the tail called
// dispatch and waited for every client of every event.
func TestTailIsNotHeldBySlowDispatch(t *testing.T) {
	defer goleak.VerifyNone(t)
	const n = 100
	events := make([]*event.Event, n)
	for i := range events {
		e := &event.Event{Type: "system.heartbeat", Source: "burst"}
		if _, err := event.Normalize(e, "default", time.Now(), event.DefaultLimits()); err != nil {
			t.Fatal(err)
		}
		e.Seq = uint64(i + 1)
		events[i] = e
	}
	var returned atomic.Int64
	h := New(burstSource{events: events, returned: &returned}, Options{})
	admin := &auth.Principal{ID: "test", Role: auth.RoleAdmin, Tenant: auth.AllTenants}
	var wakes atomic.Int64
	c := h.NewClient(ClientInfo{Transport: "test", Principal: admin, OnReady: func() { wakes.Add(1) }})
	defer c.Close()
	if _, err := c.Subscribe(context.Background(), "s", filter.MatchAll(), Latest()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	defer func() { // after the unlock below (deferred calls run last first)
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	// The client's lock is held (as by a writer taking its queue, for
	// long): whoever offers the first event waits for it.
	c.mu.Lock()
	locked := true
	defer func() {
		if locked {
			c.mu.Unlock()
		}
	}()
	go func() { done <- h.Run(ctx) }()
	testkit.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		if got := returned.Load(); got < n {
			return fmt.Errorf("the tail handed over %d of %d events while one client's offer waited", got, n)
		}
		return nil
	})
	c.mu.Unlock()
	locked = false
	var got []uint64
	testkit.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		batch, err := c.TryNext()
		if err != nil {
			return fmt.Errorf("client: %w", err)
		}
		for _, d := range batch {
			got = append(got, d.Event.Seq)
		}
		if len(got) < n {
			return fmt.Errorf("client got %d of %d events", len(got), n)
		}
		return nil
	})
	for i, seq := range got {
		if seq != uint64(i+1) {
			t.Fatalf("delivery %d is seq %d: out of order or duplicated (%v)", i, seq, got)
		}
	}
	// The first event was offered alone, the other 99 in chunks of
	// chunkEvents, each chunk waking the client at most once.
	if w, most := wakes.Load(), int64(1+(n-1+chunkEvents-1)/chunkEvents); w > most {
		t.Fatalf("client woken %d times for %d events; want at most %d (once per chunk)", w, n, most)
	}
}

// A chunk's live deliveries are queued per client under one lock
// (Client.enqueueStaged); what each client ends with must be exactly what
// offering the events one at a time gives: the same deliveries in the
// same order (events in seq order, a client's subscriptions in routing
// order for each), the same lag point per subscription once the queue is
// full, the same resume points and counts. Three clients: one with room,
// one whose queue fills in the middle of the chunk (two subscriptions,
// one filtered), one closed.
func TestStagedChunkEqualsOneByOne(t *testing.T) {
	type outcome struct {
		queue   []string
		lag     map[string]uint64
		last    map[string]uint64
		lagged  uint64
		byCat   uint64
		depth   int64
		dropped uint64
	}
	admin := &auth.Principal{ID: "test", Role: auth.RoleAdmin, Tenant: auth.AllTenants}
	run := func(chunk int) []outcome {
		h := New(nil, Options{})
		var events []*event.Event
		for i := range 10 {
			sev := event.SeverityLow
			if i%3 == 0 {
				sev = event.SeverityHigh
			}
			e := &event.Event{Type: "authentication.login", Severity: sev, Source: "staged"}
			if _, err := event.Normalize(e, "default", time.Now(), event.DefaultLimits()); err != nil {
				t.Fatal(err)
			}
			e.Seq = uint64(i + 1)
			events = append(events, e)
		}
		high, err := filter.Compile(filter.Filter{MinSeverity: "high"})
		if err != nil {
			t.Fatal(err)
		}
		roomy := h.NewClient(ClientInfo{Transport: "test", Principal: admin, QueueSize: 64, OnReady: func() {}})
		small := h.NewClient(ClientInfo{Transport: "test", Principal: admin, QueueSize: 5, OnReady: func() {}})
		closed := h.NewClient(ClientInfo{Transport: "test", Principal: admin, QueueSize: 64, OnReady: func() {}})
		ctx := context.Background()
		for _, s := range []struct {
			c  *Client
			id string
			m  *filter.Matcher
		}{{roomy, "all", filter.MatchAll()}, {small, "all", filter.MatchAll()}, {small, "high", high}, {closed, "all", filter.MatchAll()}} {
			if _, err := s.c.Subscribe(ctx, s.id, s.m, Latest()); err != nil {
				t.Fatal(err)
			}
		}
		closed.Close()
		for i := 0; i < len(events); i += chunk {
			h.dispatchChunk(events[i:min(i+chunk, len(events))])
		}
		var out []outcome
		for _, c := range []*Client{roomy, small, closed} {
			c.mu.Lock()
			o := outcome{lag: map[string]uint64{}, last: map[string]uint64{}, depth: c.depth.Load()}
			for _, d := range c.queue {
				o.queue = append(o.queue, fmt.Sprintf("%s:%d", d.SubID, d.Event.Seq))
			}
			for k, v := range c.lag {
				o.lag[k] = v
			}
			for id, s := range c.subs {
				o.last[id] = s.lastSeq.Load()
			}
			c.mu.Unlock()
			out = append(out, o)
		}
		st := h.Stats()
		out[0].lagged, out[0].dropped = st.Lagged, st.Dropped
		for i := range h.byCat {
			out[0].byCat += h.byCat[i].Load()
		}
		return out
	}
	one, staged := run(1), run(chunkEvents)
	if fmt.Sprint(one) != fmt.Sprint(staged) {
		t.Fatalf("one event per chunk:\n%+v\nten per chunk:\n%+v", one, staged)
	}
	if len(one[1].lag) != 2 || len(one[1].queue) != 5 || one[0].lagged != 1 {
		t.Fatalf("the small client should have lagged on both subscriptions with a full queue: %+v", one[1])
	}
}
