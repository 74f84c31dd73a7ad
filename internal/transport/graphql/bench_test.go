package graphql_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/event"
)

// BenchmarkSubscriptionLatency measures GraphQL subscription delivery
// latency (SPEC 11: p99 < 20 ms) with 1,000 subscribers, each on its own
// graphql-transport-ws connection over loopback. Every iteration publishes
// one event through the real ingest path (durable append to embedded
// JetStream) and waits until all 1,000 subscribers have it; a sample is
// the time from the start of the publish call to one subscriber reading
// the message, so it includes the durable append, the hub fan-out, gqlgen
// execution and the socket. Run:
//
//	go test ./internal/transport/graphql -run '^$' -bench SubscriptionLatency -benchtime 200x
//
// A smaller fan-out (100) runs as a second sub-benchmark for comparison.
// Client and server share the machine's cores, so the figures include the
// 1,000 reading clients' own CPU. The clients' goroutines carry the pprof
// label side=client (the publishing loop side=publisher), so a CPU profile
// (-cpuprofile) separates their CPU from the server's:
//
//	go tool pprof -tagfocus side=client ... / -tagignore side=client,publisher
func BenchmarkSubscriptionLatency(b *testing.B) {
	for _, n := range []int{1000, 100} {
		b.Run(fmt.Sprintf("subscribers=%d", n), func(b *testing.B) { benchLatency(b, n) })
	}
}

func benchLatency(b *testing.B, subscribers int) {
	g := newGQL(b)
	// Warm-up events (not sampled): first deliveries grow goroutine stacks
	// and fill gqlgen's caches.
	const warmup = 20
	clients := make([]*gqlWS, subscribers)
	for i := range clients {
		c, err := dialGQL(b, g.srv.URL+"/graphql", protoTransportWS, tokenParams)
		if err != nil {
			b.Fatalf("dial %d: %v", i, err)
		}
		if c.r != io.Reader(c.conn) {
			b.Fatalf("dial %d: bytes buffered behind the handshake", i)
		}
		c.subscribe("s", `subscription { events(filter: {types: ["bench.tick"]}) { seq } }`, nil)
		clients[i] = c
	}
	g.waitSubs(b, subscribers+1)

	// Each client keeps its own arrivals; the one that completes an event
	// (got reaches subscribers) tells the publisher. A channel send per
	// arrival, each able to wake the publisher, was the benchmark's own
	// cost in the server's cores.
	type arrival struct {
		seq int
		at  time.Time
	}
	var got atomic.Int64
	complete := make(chan struct{}, 1)
	arrivals := make([][]arrival, subscribers)
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Add(1)
		go pprof.Do(context.Background(), pprof.Labels("side", "client"), func(context.Context) { // owned by the benchmark: ends when its connection closes
			defer wg.Done()
			_ = c.conn.SetReadDeadline(time.Time{})
			mine := make([]arrival, 0, b.N+warmup)
			// Find the seq without a JSON decode: the clients share the
			// cores with the server, so their cost is latency.
			_ = readServerFrames(c.conn, func(msg []byte, at time.Time) bool {
				if j := bytes.Index(msg, seqKey); j >= 0 && bytes.Contains(msg, []byte(`"type":"next"`)) {
					rest := msg[j+len(seqKey):]
					end := bytes.IndexAny(rest, ",}")
					if seq, err := strconv.Atoi(string(rest[:end])); err == nil {
						mine = append(mine, arrival{seq, at})
						if got.Add(1) == int64(subscribers) {
							complete <- struct{}{}
						}
					}
				}
				return true
			})
			arrivals[i] = mine
		})
	}

	starts := make(map[int]time.Time, b.N+warmup) // publish start by seq
	measured := map[int]bool{}
	var cpu0 time.Duration   // the process's CPU time when the measured events start
	var gc0 uint32           // GC cycles completed by then
	var acks []time.Duration // publish ack time
	pprof.SetGoroutineLabels(pprof.WithLabels(context.Background(), pprof.Labels("side", "publisher")))
	defer pprof.SetGoroutineLabels(context.Background())
	b.ResetTimer()
	for i := 0; i < b.N+warmup; i++ {
		if i == warmup {
			acks = acks[:0]
			cpu0, gc0 = processCPU(b), numGC()
			b.ResetTimer()
		}
		e := &event.Event{Type: "bench.tick", Category: event.CategorySystem}
		got.Store(0)
		start := time.Now()
		g.Publish(e)
		acks = append(acks, time.Since(start))
		starts[int(e.Seq)] = start
		measured[int(e.Seq)] = i >= warmup
		// One timer per event (not per arrival: 1,000 timers an event
		// were the benchmark's own cost).
		timeout := time.NewTimer(10 * time.Second)
		select {
		case <-complete:
		case <-timeout.C:
			b.Fatalf("only %d of %d subscribers received seq %d", got.Load(), subscribers, e.Seq)
		}
		timeout.Stop()
	}
	b.StopTimer()
	cpu, gcs := processCPU(b)-cpu0, numGC()-gc0
	for _, c := range clients {
		c.conn.Close()
	}
	wg.Wait()
	samples := make([]time.Duration, 0, b.N*subscribers)
	last := map[int]time.Duration{} // time until the last subscriber has it
	for i, mine := range arrivals {
		if len(mine) != b.N+warmup {
			b.Fatalf("client %d received %d events, want %d", i, len(mine), b.N+warmup)
		}
		for j, a := range mine {
			start, ok := starts[a.seq]
			if !ok || (j > 0 && a.seq <= mine[j-1].seq) {
				b.Fatalf("client %d: event seq %d out of order or never published", i, a.seq)
			}
			if measured[a.seq] {
				d := a.at.Sub(start)
				samples = append(samples, d)
				last[a.seq] = max(last[a.seq], d)
			}
		}
	}
	var lasts []time.Duration
	for _, d := range last {
		lasts = append(lasts, d)
	}
	pct := func(d []time.Duration, p float64) float64 {
		slices.Sort(d)
		return float64(d[int(p*float64(len(d)-1))]) / float64(time.Millisecond)
	}
	b.ReportMetric(pct(samples, 0.50), "p50-ms")
	b.ReportMetric(pct(samples, 0.99), "p99-ms")
	// Context for the figures: the durable append alone, and the time until
	// the last of the N subscribers has the event.
	b.ReportMetric(pct(acks, 0.50), "ack-p50-ms")
	b.ReportMetric(pct(acks, 0.99), "ack-p99-ms")
	b.ReportMetric(pct(lasts, 0.50), "all-p50-ms")
	b.ReportMetric(pct(lasts, 0.99), "all-p99-ms")
	// GC cycles during the measured events: with none, the GC is not
	// what makes the tail.
	b.ReportMetric(float64(gcs), "gc-cycles")
	// CPU time of the whole process (server, clients and the durable
	// append) per delivery: steadier than the latencies on a shared box.
	// The clients' share is in a CPU profile (side=client).
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N*subscribers), "cpu-µs/delivery")
}

// processCPU is the process's user and system CPU time so far.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

var seqKey = []byte(`"seq":`)

// numGC is the number of GC cycles completed so far.
func numGC() uint32 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.NumGC
}
