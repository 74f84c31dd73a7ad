package hub

import (
	"context"
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
	for i := 0; i < b.N; i++ {
		e := events[i%len(events)]
		e.Seq = uint64(i + 1)
		h.dispatch(e)
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
