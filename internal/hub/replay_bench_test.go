package hub_test

import (
	"syscall"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/filter"
	"github.com/vigil-sec/vigil/internal/hub"
	"github.com/vigil-sec/vigil/internal/store"
	"github.com/vigil-sec/vigil/internal/testenv"
)

// BenchmarkHubReplay measures a subscription's replay from a cursor
// through the hub, as a WebSocket client resuming with from.seq gets it
// (issue 12 item 5): the catch-up reads the log, offers each event to the
// subscription (policy, filter) and queues it; one goroutine drains the
// client's queue as a socket writer would (no socket: `vigil bench`
// measures those). The cursor is 20,000 events back, inside the recent-event
// ring, so with ring=on every event comes from memory; ring=off reads the
// same range from JetStream (the store without the ring). Reports
// events/s and the process's CPU time per event. Run:
//
//	go test ./internal/hub -run x -bench HubReplay -benchtime 10x
func BenchmarkHubReplay(b *testing.B) {
	for _, ring := range []struct {
		name  string
		bytes int64
	}{{"on", 0}, {"off", -1}} {
		b.Run("ring="+ring.name, func(b *testing.B) {
			e := testenv.NewWithStore(b, store.Config{ReplayCacheBytes: ring.bytes})
			ctx, lg, h := e.Ctx, e.Log, e.Hub
			const total = 30_000 // fits the default 64 MiB ring
			e.AppendDemo(total)
			const want = 20_000 // the newest: inside the ring (~25,000 of these events)
			from := uint64(total - want + 1)
			if rs := lg.ReplayCacheStats(); ring.bytes == 0 && (rs.First > from || rs.Last != total) {
				b.Fatalf("ring %+v does not hold %d..%d", rs, from, total)
			}
			b.Logf("replaying seqs %d..%d (%d events)", from, total, want)
			admin := &auth.Principal{ID: "bench", Role: auth.RoleAdmin, Tenant: auth.AllTenants}
			served0 := lg.ReplayCacheStats().Served
			b.ResetTimer()
			cpu0 := benchCPUTime()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				c := h.NewClient(hub.ClientInfo{Transport: "bench", Principal: admin})
				if _, err := c.Subscribe(ctx, "s", filter.MatchAll(), hub.FromSeq(from)); err != nil {
					b.Fatal(err)
				}
				for n := 0; n < want; {
					batch, err := c.Next(ctx)
					if err != nil {
						b.Fatal(err)
					}
					n += len(batch)
				}
				c.Close()
			}
			events := float64(b.N * want)
			b.ReportMetric(events/time.Since(start).Seconds(), "events/s")
			b.ReportMetric(float64(benchCPUTime()-cpu0)/float64(time.Microsecond)/events, "cpu-µs/event")
			b.StopTimer()
			if served := lg.ReplayCacheStats().Served - served0; ring.bytes == 0 && served != uint64(b.N*want) {
				b.Fatalf("the ring served %d of %d events", served, b.N*want)
			}
		})
	}
}

// benchCPUTime is the CPU time (user + system) this process has used.
func benchCPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
