package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/demo"
	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/store"
)

// BenchmarkReplay measures SPEC 11's "replay from a cursor": reading and
// decoding 50,000 stored events in order from seq 1, as a subscription
// with from.seq does. Reports events/s.
func BenchmarkReplay(b *testing.B) {
	ctx := context.Background()
	log, err := store.Open(ctx, store.Config{DataDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer log.Close()
	const total = 50_000
	gen := demo.New(5)
	for n := 0; n < total; n += 1000 {
		batch := make([]*event.Event, 1000)
		for i := range batch {
			batch[i] = gen.Next()
			if _, err := event.Normalize(batch[i], "default", time.Now(), event.DefaultLimits()); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := log.Append(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		n := 0
		if err := log.ScanRange(ctx, 1, total, func(*event.Event) bool { n++; return true }); err != nil {
			b.Fatal(err)
		}
		if n != total {
			b.Fatalf("replayed %d of %d", n, total)
		}
	}
	b.ReportMetric(float64(b.N*total)/time.Since(start).Seconds(), "events/s")
}
