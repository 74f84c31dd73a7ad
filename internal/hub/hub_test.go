package hub_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/domain"
	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/filter"
	"github.com/vigil-sec/vigil/internal/hub"
	"github.com/vigil-sec/vigil/internal/store"
)

var admin = &auth.Principal{ID: "test", Role: auth.RoleAdmin, Tenant: auth.AllTenants}

// node is a real log and a running hub.
type node struct {
	log  *store.Log
	hub  *hub.Hub
	stop func()
}

func startNode(t *testing.T, opts hub.Options) *node {
	t.Helper()
	ctx := context.Background()
	log, err := store.Open(ctx, store.Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	h := hub.New(log, opts)
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- h.Run(runCtx) }()
	select {
	case <-h.Started():
	case err := <-done:
		t.Fatal(err)
	}
	n := &node{log: log, hub: h}
	n.stop = func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("hub run: %v", err)
		}
		log.Close()
	}
	return n
}

func (n *node) append(t *testing.T, events ...*event.Event) []domain.Ack {
	t.Helper()
	for _, e := range events {
		if _, err := event.Normalize(e, "default", time.Now(), event.DefaultLimits()); err != nil {
			t.Fatal(err)
		}
	}
	acks, err := n.log.Append(context.Background(), events)
	if err != nil {
		t.Fatal(err)
	}
	return acks
}

func ev(typ string, sev event.Severity) *event.Event { return &event.Event{Type: typ, Severity: sev} }

// collect drains a client until want events arrived or the timeout.
func collect(t *testing.T, c *hub.Client, want int, timeout time.Duration) []hub.Delivery {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var out []hub.Delivery
	for len(out) < want {
		batch, err := c.Next(ctx)
		if err != nil {
			t.Fatalf("after %d of %d deliveries: %v", len(out), want, err)
		}
		for _, d := range batch {
			if d.Event != nil {
				out = append(out, d)
			}
		}
	}
	return out
}

func TestLiveDeliveryAndFilters(t *testing.T) {
	defer goleak.VerifyNone(t)
	n := startNode(t, hub.Options{})
	defer n.stop()
	c := n.hub.NewClient(hub.ClientInfo{Transport: "test", Principal: admin})
	defer c.Close()
	high, err := filter.Compile(filter.Filter{MinSeverity: "high"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Subscribe(context.Background(), "all", filter.MatchAll(), hub.Latest()); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Subscribe(context.Background(), "high", high, hub.Latest()); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Subscribe(context.Background(), "all", filter.MatchAll(), hub.Latest()); !errors.As(err, new(hub.ErrDuplicateSub)) {
		t.Fatalf("duplicate subscription id: err = %v", err)
	}
	n.append(t, ev("audit.query", event.SeverityInfo), ev("authentication.login", event.SeverityHigh))
	got := collect(t, c, 3, 10*time.Second)
	perSub := map[string][]uint64{}
	for _, d := range got {
		perSub[d.SubID] = append(perSub[d.SubID], d.Event.Seq)
	}
	if fmt.Sprint(perSub["all"]) != "[1 2]" || fmt.Sprint(perSub["high"]) != "[2]" {
		t.Fatalf("deliveries per subscription = %v", perSub)
	}
	if !c.Unsubscribe("high") || c.Unsubscribe("high") {
		t.Fatal("unsubscribe should succeed once")
	}
	n.append(t, ev("authentication.login", event.SeverityCritical))
	got = collect(t, c, 1, 10*time.Second)
	if got[0].SubID != "all" || got[0].Event.Seq != 3 {
		t.Fatalf("after unsubscribe got %s seq %d", got[0].SubID, got[0].Event.Seq)
	}
}

// TestResumeNoGapNoDuplicate is the core guarantee: subscriptions from a
// seq in the past, started while events are being appended, see every
// event exactly once, in order, across the replay/live boundary. Clients
// start at staggered moments, with a pending buffer small enough to
// overflow and a large one, so both paths of the catch-up are crossed.
func TestResumeNoGapNoDuplicate(t *testing.T) {
	defer goleak.VerifyNone(t)
	for _, pending := range []int{64, 1 << 16} {
		t.Run(fmt.Sprintf("pending=%d", pending), func(t *testing.T) {
			n := startNode(t, hub.Options{PendingSize: pending})
			defer n.stop()
			const before, rounds, per = 1000, 40, 50
			batch := func(k int) []*event.Event {
				out := make([]*event.Event, k)
				for i := range out {
					out[i] = ev("system.heartbeat", event.SeverityInfo)
				}
				return out
			}
			n.append(t, batch(before)...)
			var wg sync.WaitGroup
			wg.Add(1)
			go func() { // the concurrent writer
				defer wg.Done()
				for i := 0; i < rounds; i++ {
					n.append(t, batch(per)...)
					time.Sleep(time.Millisecond)
				}
			}()
			const total = before + rounds*per
			var clients []*hub.Client
			for k := 0; k < 8; k++ {
				time.Sleep(3 * time.Millisecond)
				c := n.hub.NewClient(hub.ClientInfo{Transport: "test", Principal: admin, QueueSize: 1 << 16})
				defer c.Close()
				from := uint64(1 + k*100)
				if _, err := c.Subscribe(context.Background(), "r", filter.MatchAll(), hub.FromSeq(from)); err != nil {
					t.Fatal(err)
				}
				clients = append(clients, c)
			}
			wg.Wait()
			for k, c := range clients {
				from := uint64(1 + k*100)
				got := collect(t, c, int(total-from+1), 60*time.Second)
				for i, d := range got {
					if d.Event.Seq != from+uint64(i) {
						t.Fatalf("client %d: delivery %d has seq %d, want %d (a gap or a duplicate)", k, i, d.Event.Seq, from+uint64(i))
					}
				}
				ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
				extra, err := c.Next(ctx)
				cancel()
				if err == nil {
					t.Fatalf("client %d: %d extra deliveries after the last event (duplicates)", k, len(extra))
				}
			}
		})
	}
}

func TestFromTime(t *testing.T) {
	defer goleak.VerifyNone(t)
	n := startNode(t, hub.Options{})
	defer n.stop()
	n.append(t, ev("audit.query", 0), ev("audit.query", 0))
	time.Sleep(20 * time.Millisecond)
	mark := time.Now()
	time.Sleep(20 * time.Millisecond)
	n.append(t, ev("audit.query", 0))
	c := n.hub.NewClient(hub.ClientInfo{Transport: "test", Principal: admin})
	defer c.Close()
	if _, err := c.Subscribe(context.Background(), "t", filter.MatchAll(), hub.FromTime(mark)); err != nil {
		t.Fatal(err)
	}
	got := collect(t, c, 1, 10*time.Second)
	if got[0].Event.Seq != 3 {
		t.Fatalf("from time started at seq %d, want 3", got[0].Event.Seq)
	}
}

// TestLaggedClientDoesNotSlowOthers: a client that never reads is marked
// lagged with a resume point, while a reading client gets everything.
func TestLaggedClientDoesNotSlowOthers(t *testing.T) {
	defer goleak.VerifyNone(t)
	n := startNode(t, hub.Options{})
	defer n.stop()
	slow := n.hub.NewClient(hub.ClientInfo{Transport: "test", Principal: admin, QueueSize: 10})
	defer slow.Close()
	fast := n.hub.NewClient(hub.ClientInfo{Transport: "test", Principal: admin, QueueSize: 1 << 14})
	defer fast.Close()
	for _, c := range []*hub.Client{slow, fast} {
		if _, err := c.Subscribe(context.Background(), "s", filter.MatchAll(), hub.Latest()); err != nil {
			t.Fatal(err)
		}
	}
	var evs []*event.Event
	for i := 0; i < 100; i++ {
		evs = append(evs, ev("system.heartbeat", 0))
	}
	n.append(t, evs...)
	if got := collect(t, fast, 100, 10*time.Second); got[99].Event.Seq != 100 {
		t.Fatalf("fast client: last seq %d", got[99].Event.Seq)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var lag *hub.LagError
	delivered := 0
	for {
		batch, err := slow.Next(ctx)
		if err != nil {
			if !errors.As(err, &lag) {
				t.Fatalf("slow client: %v, want a LagError", err)
			}
			break
		}
		delivered += len(batch)
	}
	if delivered != 10 || lag.Resume["s"] != 11 {
		t.Fatalf("slow client got %d then resume_from %d; want 10 then 11", delivered, lag.Resume["s"])
	}
	if st := n.hub.Stats(); st.Lagged != 1 {
		t.Fatalf("lagged clients = %d, want 1", st.Lagged)
	}
}

func TestTenantIsolationInHub(t *testing.T) {
	defer goleak.VerifyNone(t)
	n := startNode(t, hub.Options{})
	defer n.stop()
	acme := &auth.Principal{ID: "a", Role: auth.RoleAnalyst, Tenant: "acme"}
	c := n.hub.NewClient(hub.ClientInfo{Transport: "test", Principal: acme})
	defer c.Close()
	if _, err := c.Subscribe(context.Background(), "s", filter.MatchAll(), hub.FromSeq(1)); err != nil {
		t.Fatal(err)
	}
	other := ev("audit.query", 0)
	mine := ev("audit.query", 0)
	if _, err := event.Normalize(other, "globex", time.Now(), event.DefaultLimits()); err != nil {
		t.Fatal(err)
	}
	if _, err := event.Normalize(mine, "acme", time.Now(), event.DefaultLimits()); err != nil {
		t.Fatal(err)
	}
	if _, err := n.log.Append(context.Background(), []*event.Event{other, mine}); err != nil {
		t.Fatal(err)
	}
	got := collect(t, c, 1, 10*time.Second)
	if got[0].Event.Tenant != "acme" {
		t.Fatalf("delivered tenant %q", got[0].Event.Tenant)
	}
}

func TestShutdownEndsClients(t *testing.T) {
	defer goleak.VerifyNone(t)
	n := startNode(t, hub.Options{})
	c := n.hub.NewClient(hub.ClientInfo{Transport: "test", Principal: admin})
	if _, err := c.Subscribe(context.Background(), "s", filter.MatchAll(), hub.Latest()); err != nil {
		t.Fatal(err)
	}
	n.hub.Shutdown()
	if _, err := c.Next(context.Background()); !errors.Is(err, hub.ErrShutdown) {
		t.Fatalf("after shutdown Next = %v, want ErrShutdown", err)
	}
	c.Close()
	n.stop()
}

// TestOnEndCalledOnceOnKickAndClose: transports learn of a kick through
// ClientInfo.OnEnd (instead of registering on the client's context), so it
// must run for a kick and exactly once however the stream ends.
func TestOnEndCalledOnceOnKickAndClose(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	n := startNode(t, hub.Options{})
	defer n.stop()
	for _, kick := range []bool{true, false} {
		var calls sync.WaitGroup
		calls.Add(1)
		count := 0
		c := n.hub.NewClient(hub.ClientInfo{Transport: "test", Principal: admin, OnEnd: func() { count++; calls.Done() }})
		if kick {
			c.Kick(errors.New("token revoked"))
		}
		c.Close()
		calls.Wait() // a missing call hangs the test (go test -timeout)
		if count != 1 {
			t.Fatalf("kick=%v: OnEnd called %d times, want 1", kick, count)
		}
	}
}
