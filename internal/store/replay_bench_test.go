package store_test

import (
	"context"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/store"
	"github.com/vigil-sec/vigil/internal/testkit"
)

// BenchmarkReplay measures SPEC 11's "replay from a cursor": reading and
// decoding stored events in order, as a subscription with from.seq does.
// Reports events/s and the process's CPU time per event (user + system,
// the embedded JetStream server included), which stays meaningful when
// other jobs share the machine. Run:
//
//	go test ./internal/store -run x -bench Replay -benchtime 10x -benchmem
//
// allocs/op and B/op are per replay. The paths:
//   - direct: 50,000 events from seq 1 from JetStream (batched direct get;
//     the path before the recent-event ring, and the one below it);
//   - consumer: the same through the ordered consumer alone (pull window
//     8,192), for comparison;
//   - ring: ScanRange over the newest events the recent-event ring holds
//     (issue 12 item 5; the default 64 MiB ring, filled by a tail as the
//     hub's is), all served from memory;
//   - ring-off: the same range from JetStream, as without the ring;
//   - straddle: ScanRange over all 50,000 events: below the ring from
//     the replay spill (spill.go), then on from the ring;
//   - spill: ScanRange over the events below the ring, all from the
//     replay spill on disk;
//   - gap: direct, after seq 10 was deleted (a gap in the first batch,
//     as a replay from the front of a log that retention trims meets);
//     it runs last, the deletion stays;
//   - raw-direct, raw-consumer-8192, raw-consumer-32768: the JetStream
//     transport alone over the same 50,000 events (the direct path's
//     requests, or an ordered consumer with that pull window), bodies
//     counted but not decoded: the floor under the direct and consumer
//     paths (issue 12 item 5, second pass).
func BenchmarkReplay(b *testing.B) {
	ctx := context.Background()
	log, err := store.Open(ctx, store.Config{DataDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer log.Close()
	const total = 50_000
	testkit.AppendDemo(b, ctx, log, total)
	// The hub's tail fills the ring: run one until it has read the log.
	tctx, stopTail := context.WithCancel(ctx)
	tailDone := make(chan error, 1)
	go func() { tailDone <- log.Tail(tctx, 1, func(*event.Event) {}) }() // stopped below
	defer func() { stopTail(); <-tailDone }()
	for deadline := time.Now().Add(time.Minute); log.ReplayCacheStats().Last < total; {
		if time.Now().After(deadline) {
			b.Fatalf("the tail did not fill the ring: %+v", log.ReplayCacheStats())
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The id index reads the log in the background after the appends: let
	// it finish, or its catching up is counted in the first path's CPU
	// (a few hundred thousand allocations more; seen when the appends
	// ran fast on a quiet box).
	for deadline := time.Now().Add(time.Minute); log.IDIndex().Watermark < total; {
		if time.Now().After(deadline) {
			b.Fatalf("the id index did not read the log: %+v", log.IDIndex())
		}
		time.Sleep(10 * time.Millisecond)
	}
	// And the spill has flushed them.
	for deadline := time.Now().Add(time.Minute); log.ReplaySpillStats().Last < total; {
		if time.Now().After(deadline) {
			b.Fatalf("the spill did not take the log: %+v", log.ReplaySpillStats())
		}
		time.Sleep(10 * time.Millisecond)
	}
	rs := log.ReplayCacheStats()
	b.Logf("ring: seqs %d..%d (%d events, %d MiB accounted)", rs.First, rs.Last, rs.Events, rs.Bytes>>20)
	gapMade := false
	type path struct {
		name     string
		from, to uint64
		scan     func(ctx context.Context, from, to uint64, fn func(*event.Event) bool) error
	}
	for _, p := range []path{
		{"direct", 1, total, log.StoredScanForBench},
		{"consumer", 1, total, log.ConsumerScanForBench},
		{"ring", rs.First, total, log.ScanRange},
		{"ring-off", rs.First, total, log.StoredScanForBench},
		{"straddle", 1, total, log.ScanRange},
		{"spill", 1, rs.First - 1, log.ScanRange},
		{"raw-direct", 1, total, counted(log.RawDirectForBench)},
		{"raw-consumer-8192", 1, total, counted(func(ctx context.Context, from, to uint64) (int, error) {
			return log.RawConsumerForBench(ctx, from, to, 8192)
		})},
		{"raw-consumer-32768", 1, total, counted(func(ctx context.Context, from, to uint64) (int, error) {
			return log.RawConsumerForBench(ctx, from, to, 32768)
		})},
		{"gap", 1, total, log.StoredScanForBench}, // seq 10 deleted first (last: the deletion stays)
	} {
		b.Run("path="+p.name, func(b *testing.B) {
			b.ReportAllocs()
			want := int(p.to - p.from + 1)
			if p.name == "gap" {
				if !gapMade { // b.Run calls this more than once
					if err := log.DeleteForBench(ctx, 10); err != nil {
						b.Fatal(err)
					}
					gapMade = true
				}
				want--
			}
			cpu0 := cpuTime()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				n := 0
				if err := p.scan(ctx, p.from, p.to, func(*event.Event) bool { n++; return true }); err != nil {
					b.Fatal(err)
				}
				if n != want {
					b.Fatalf("replayed %d of %d", n, want)
				}
			}
			events := float64(b.N * want)
			b.ReportMetric(events/time.Since(start).Seconds(), "events/s")
			b.ReportMetric(float64(cpuTime()-cpu0)/float64(time.Microsecond)/events, "cpu-µs/event")
		})
	}
}

// counted adapts a raw transport read, which only counts the messages it
// got, to the scan signature: fn is called once per message, with nil.
func counted(read func(ctx context.Context, from, to uint64) (int, error)) func(context.Context, uint64, uint64, func(*event.Event) bool) error {
	return func(ctx context.Context, from, to uint64, fn func(*event.Event) bool) error {
		n, err := read(ctx, from, to)
		for range n {
			fn(nil)
		}
		return err
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

// BenchmarkReplayAfterRestart: the replays right after a clean restart (a
// deploy: every client resumes from its cursor at once), when the ring is
// empty. path=spill reads all 50,000 events from the replay spill the
// previous run left (spill_restart.go); path=jetstream the same range
// from the log, as every such replay did before. Run:
//
//	go test ./internal/store -run '^$' -bench ReplayAfterRestart -benchtime 10x
//
// With VIGIL_BENCH_DROP_CACHES=1 (root only) each replay starts with the
// page cache dropped, as after a reboot or once other files evicted the
// spill's.
func BenchmarkReplayAfterRestart(b *testing.B) {
	ctx := context.Background()
	dir := b.TempDir()
	const total = 50_000
	log, err := store.Open(ctx, store.Config{DataDir: dir})
	if err != nil {
		b.Fatal(err)
	}
	testkit.AppendDemo(b, ctx, log, total)
	tctx, stopTail := context.WithCancel(ctx)
	tailDone := make(chan error, 1)
	go func() { tailDone <- log.Tail(tctx, 1, func(*event.Event) {}) }() // stopped below
	for deadline := time.Now().Add(time.Minute); log.ReplaySpillStats().Last < total || log.IDIndex().Watermark < total; {
		if time.Now().After(deadline) {
			b.Fatalf("the tail did not fill the spill: %+v", log.ReplaySpillStats())
		}
		time.Sleep(10 * time.Millisecond)
	}
	stopTail()
	<-tailDone
	log.Close()
	if log, err = store.Open(ctx, store.Config{DataDir: dir}); err != nil {
		b.Fatal(err)
	}
	defer log.Close()
	if st := log.ReplaySpillStats(); st.Recovered != total {
		b.Fatalf("the restart kept %+v of the spill", st)
	}
	drop := os.Getenv("VIGIL_BENCH_DROP_CACHES") == "1"
	for _, p := range []struct {
		name string
		scan func(ctx context.Context, from, to uint64, fn func(*event.Event) bool) error
	}{
		{"spill", log.ScanRange},
		{"jetstream", log.StoredScanForBench},
	} {
		b.Run("path="+p.name, func(b *testing.B) {
			b.ReportAllocs()
			var elapsed, cpu time.Duration
			for i := 0; i < b.N; i++ {
				if drop {
					b.StopTimer()
					syscall.Sync()
					if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("1"), 0); err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
				}
				cpu0, start := cpuTime(), time.Now()
				n := 0
				if err := p.scan(ctx, 1, total, func(*event.Event) bool { n++; return true }); err != nil {
					b.Fatal(err)
				}
				elapsed, cpu = elapsed+time.Since(start), cpu+cpuTime()-cpu0
				if n != total {
					b.Fatalf("replayed %d of %d", n, total)
				}
			}
			events := float64(b.N * total)
			b.ReportMetric(events/elapsed.Seconds(), "events/s")
			b.ReportMetric(float64(cpu)/float64(time.Microsecond)/events, "cpu-µs/event")
		})
	}
	if st := log.ReplaySpillStats(); st.Served == 0 {
		b.Fatalf("no replay came from the spill: %+v", st)
	}
}
