package ingest_test

import (
	"context"
	"sync"
	"sync/atomic"
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
	// Several producers at once, as behind the REST endpoint: one batch
	// is validated while the previous one is being stored.
	b.Run("sync=default/producers=4", func(b *testing.B) { benchIngestConcurrent(b, 4) })
}

// benchIngestConcurrent publishes b.N batches of 1,000 demo events from
// producers goroutines and reports events/s over the wall time. The events
// are copies of pre-generated ones without ids (the service gives each a
// new UUIDv7, as for the demo events of benchIngest); making the copies is
// counted, generating the originals is not.
func benchIngestConcurrent(b *testing.B, producers int) {
	ctx := context.Background()
	log, err := store.Open(ctx, store.Config{DataDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer log.Close()
	svc := ingest.New(log, event.DefaultLimits(), nil)
	admin := &auth.Principal{ID: "admin", Role: auth.RoleAdmin, Tenant: auth.AllTenants}
	const batch = 1000
	templates := make([][]event.Event, producers*4)
	gen := demo.New(1)
	for i := range templates {
		templates[i] = make([]event.Event, batch)
		for j := range templates[i] {
			templates[i][j] = *gen.Next()
		}
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, producers)
	b.ResetTimer()
	start := time.Now()
	for p := 0; p < producers; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1))
				if i > b.N {
					return
				}
				tmpl := templates[i%len(templates)]
				evs := make([]*event.Event, batch)
				for j := range evs {
					e := tmpl[j].Clone()
					e.ID, e.Seq = "", 0
					evs[j] = e
				}
				if _, err := svc.Publish(ctx, admin, evs); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	select {
	case err := <-errs:
		b.Fatal(err)
	default:
	}
	b.ReportMetric(float64(b.N*batch)/elapsed.Seconds(), "events/s")
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
