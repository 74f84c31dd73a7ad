package ingest_test

import (
	"context"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/demo"
	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/ingest"
	"github.com/vigil-sec/vigil/internal/store"
)

// BenchmarkDurableIngest measures SPEC 11's "durable ingest, batched":
// validation, hashing and the JetStream append, acknowledged, in batches
// of 1,000 demo events. Reports events/s.
func BenchmarkDurableIngest(b *testing.B) {
	b.Run("sync=default", func(b *testing.B) { benchIngest(b, false) })
	// --sync always: every write is fsynced (survives power loss).
	b.Run("sync=always", func(b *testing.B) { benchIngest(b, true) })
}

func benchIngest(b *testing.B, syncAlways bool) {
	ctx := context.Background()
	log, err := store.Open(ctx, store.Config{DataDir: b.TempDir(), SyncAlways: syncAlways})
	if err != nil {
		b.Fatal(err)
	}
	defer log.Close()
	svc := ingest.New(log, event.DefaultLimits(), nil)
	admin := &auth.Principal{ID: "admin", Role: auth.RoleAdmin, Tenant: auth.AllTenants}
	gen := demo.New(1)
	const batch = 1000
	pool := make([][]*event.Event, 16)
	for i := range pool {
		pool[i] = make([]*event.Event, batch)
	}
	b.ResetTimer()
	var elapsed time.Duration // in Publish only: generating the events is the producer's work
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		evs := pool[i%len(pool)]
		for j := range evs {
			evs[j] = gen.Next()
		}
		b.StartTimer()
		t0 := time.Now()
		if _, err := svc.Publish(ctx, admin, evs); err != nil {
			b.Fatal(err)
		}
		elapsed += time.Since(t0)
	}
	b.ReportMetric(float64(b.N*batch)/elapsed.Seconds(), "events/s")
}
