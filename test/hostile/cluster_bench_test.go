package hostile

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/store"
)

// BenchmarkClusterAppend measures store.Log.Append on a three-server
// JetStream cluster (three replicas): concurrent producers of 25-event
// batches, as the ingest path sees them. docs/operations.md quotes it.
func BenchmarkClusterAppend(b *testing.B) {
	cl := clusterStartNATS(b, 3)
	ctx := context.Background()
	l, err := store.Open(ctx, store.Config{NATSURL: cl.url(0), NodeID: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	var n atomic.Uint64
	b.SetParallelism(4)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			k := n.Add(1)
			evs := make([]*event.Event, 25)
			for i := range evs {
				evs[i] = &event.Event{ID: fmt.Sprintf("b%d-%d", k, i), Type: "authentication.login", User: "u"}
				if _, err := event.Normalize(evs[i], "default", time.Now(), event.DefaultLimits()); err != nil {
					b.Fatal(err)
				}
			}
			if _, err := l.Append(ctx, evs); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.ReportMetric(float64(n.Load()*25)/time.Since(start).Seconds(), "events/s")
}
