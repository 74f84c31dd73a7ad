package store_test

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/demo"
	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/store"
)

// BenchmarkReplay measures SPEC 11's "replay from a cursor": reading and
// decoding 50,000 stored events in order from seq 1, as a subscription
// with from.seq does. Reports events/s and the process's CPU time per
// event (user + system, the embedded JetStream server included), which
// stays meaningful when other jobs share the machine. Run:
//
//	go test ./internal/store -run x -bench Replay -benchtime 10x -benchmem
//
// allocs/op and B/op are per 50,000 events. path=direct is ScanRange (the
// batched direct get); path=consumer is the ordered consumer alone, with
// its pull window of 8,192 messages, for comparison.
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
	for _, path := range []struct {
		name string
		scan func(ctx context.Context, from, to uint64, fn func(*event.Event) bool) error
	}{{"direct", log.ScanRange}, {"consumer", log.ConsumerScanForBench}} {
		b.Run("path="+path.name, func(b *testing.B) {
			b.ReportAllocs()
			cpu0 := cpuTime()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				n := 0
				if err := path.scan(ctx, 1, total, func(*event.Event) bool { n++; return true }); err != nil {
					b.Fatal(err)
				}
				if n != total {
					b.Fatalf("replayed %d of %d", n, total)
				}
			}
			events := float64(b.N * total)
			b.ReportMetric(events/time.Since(start).Seconds(), "events/s")
			b.ReportMetric(float64(cpuTime()-cpu0)/float64(time.Microsecond)/events, "cpu-µs/event")
		})
	}
}

// cpuTime is the CPU time (user + system) this process has used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
