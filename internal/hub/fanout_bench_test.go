package hub

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/demo"
	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/filter"
)

// BenchmarkFanout measures the hub alone: one dispatching goroutine offers
// each event to 1,000 subscriptions (each its own client, half of them
// filtering on severity), and one drain goroutine per client takes batches
// from its queue as a socket writer would. Reports deliveries/s summed over
// clients (SPEC 11: >= 1,000,000). Socket writes are measured end to end by
// `vigil bench` (docs/performance.md).
func BenchmarkFanout(b *testing.B) {
	// chunk=1 is an idle hub (one event per dispatch); chunk=16 a hub
	// with a backlog, which offers chunkEvents at a time.
	for _, chunk := range []int{1, chunkEvents} {
		b.Run(fmt.Sprintf("chunk=%d", chunk), func(b *testing.B) { benchmarkFanout(b, chunk) })
	}
}

func benchmarkFanout(b *testing.B, chunk int) {
	const clients = 1000
	h := New(nil, Options{QueueSize: 1 << 16})
	admin := &auth.Principal{ID: "bench", Role: auth.RoleAdmin, Tenant: auth.AllTenants}
	all := filter.MatchAll()
	lowPlus, err := filter.Compile(filter.Filter{MinSeverity: "info", Categories: []string{"authentication", "audit", "rate_limit", "fraud", "analysis", "threat_intel", "authorization", "encryption", "insider_threat", "memory", "circuit_breaker", "response", "orchestration", "system"}})
	if err != nil {
		b.Fatal(err)
	}
	var delivered atomic.Int64
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	cs := make([]*Client, clients)
	for i := range cs {
		cs[i] = h.NewClient(ClientInfo{Transport: "bench", Principal: admin})
		m := all
		if i%2 == 1 {
			m = lowPlus
		}
		if _, err := cs[i].Subscribe(ctx, "s", m, Latest()); err != nil {
			b.Fatal(err)
		}
		wg.Add(1)
		go func(c *Client) {
			defer wg.Done()
			for {
				batch, err := c.Next(ctx)
				if err != nil {
					return
				}
				delivered.Add(int64(len(batch)))
			}
		}(cs[i])
	}
	gen := demo.New(7)
	events := make([]*event.Event, 4096)
	for i := range events {
		events[i] = gen.Next()
		if _, err := event.Normalize(events[i], "default", time.Now(), event.DefaultLimits()); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	start := time.Now()
	batch := make([]*event.Event, 0, chunk)
	for i := 0; i < b.N; i++ {
		e := events[i%len(events)]
		e.Seq = uint64(i + 1)
		if batch = append(batch, e); len(batch) == chunk || i == b.N-1 {
			h.dispatchChunk(batch)
			batch = batch[:0]
		}
	}
	want := int64(b.N) * clients
	for delivered.Load() < want {
		time.Sleep(time.Millisecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(want)/elapsed.Seconds(), "deliveries/s")
	cancel()
	for _, c := range cs {
		c.Close()
	}
	wg.Wait()
	if st := h.Stats(); st.Lagged != 0 {
		b.Fatalf("%d clients lagged", st.Lagged)
	}
}

// BenchmarkDispatchSelective measures what one event costs the dispatching
// goroutine when 1,000 subscriptions each ask for one of 100 users (the
// `vigil bench --spread 100` shape): each event is for 10 of them.
func BenchmarkDispatchSelective(b *testing.B) {
	const clients, users = 1000, 100
	h := New(nil, Options{QueueSize: 1 << 20})
	admin := &auth.Principal{ID: "bench", Role: auth.RoleAdmin, Tenant: auth.AllTenants}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cs := make([]*Client, clients)
	for i := range cs {
		cs[i] = h.NewClient(ClientInfo{Transport: "bench", Principal: admin, OnReady: func() {}})
		m, err := filter.Compile(filter.Filter{Users: []string{fmt.Sprintf("user-%d", i%users)}})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := cs[i].Subscribe(ctx, "s", m, Latest()); err != nil {
			b.Fatal(err)
		}
	}
	events := make([]*event.Event, users)
	for i := range events {
		events[i] = &event.Event{Type: "auth.login.failure", Category: event.CategoryAuthentication,
			Severity: event.SeverityMedium, User: fmt.Sprintf("user-%d", i), Tenant: "default"}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		e := events[i%len(events)]
		e.Seq = uint64(i + 1)
		h.dispatch(e)
		if i%1000 == 999 { // drain, as the writers would
			for _, c := range cs {
				_, _ = c.TryNext()
			}
		}
	}
	b.StopTimer()
	for _, c := range cs {
		c.Close()
	}
}
