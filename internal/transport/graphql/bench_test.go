package graphql_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"runtime/pprof"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

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
	type arrival struct {
		seq int
		at  time.Time
	}
	arrivals := make(chan arrival, subscribers*4)
	clients := make([]*gqlWS, subscribers)
	for i := range clients {
		c, err := dialGQL(b, g.srv.URL+"/graphql", protoTransportWS, tokenParams)
		if err != nil {
			b.Fatalf("dial %d: %v", i, err)
		}
		c.subscribe("s", `subscription { events(filter: {types: ["bench.tick"]}) { seq } }`, nil)
		clients[i] = c
	}
	g.waitSubs(b, subscribers+1)

	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Add(1)
		go pprof.Do(context.Background(), pprof.Labels("side", "client"), func(context.Context) { // owned by the benchmark: ends when its connection closes
			defer wg.Done()
			_ = c.conn.SetReadDeadline(time.Time{})
			// One reader and buffer per client for the whole run: the
			// clients share the cores with the server, so their cost
			// would otherwise show up as server latency.
			// Buffered: one read syscall per burst, not two per frame.
			rd := &wsutil.Reader{Source: bufio.NewReaderSize(c.r, 4<<10), State: ws.StateClientSide}
			ctl := wsutil.ControlFrameHandler(c.conn, ws.StateClientSide)
			rd.OnIntermediate = ctl
			var buf bytes.Buffer
			for {
				h, err := rd.NextFrame()
				if err != nil {
					return
				}
				if h.OpCode.IsControl() {
					if err := ctl(h, rd); err != nil {
						return
					}
					continue
				}
				buf.Reset()
				if _, err := buf.ReadFrom(rd); err != nil {
					return
				}
				msg := buf.Bytes()
				at := time.Now()
				// Find the seq without a JSON decode: the clients share
				// the cores with the server, so their cost is latency.
				if i := bytes.Index(msg, seqKey); i >= 0 && bytes.Contains(msg, []byte(`"type":"next"`)) {
					rest := msg[i+len(seqKey):]
					end := bytes.IndexAny(rest, ",}")
					if seq, err := strconv.Atoi(string(rest[:end])); err == nil {
						arrivals <- arrival{seq, at}
					}
				}
			}
		})
	}

	samples := make([]time.Duration, 0, b.N*subscribers)
	var cpu0 time.Duration          // the process's CPU time when the measured events start
	var acks, lasts []time.Duration // publish ack time; time until the last subscriber has it
	// Warm-up events (not sampled): first deliveries grow goroutine stacks
	// and fill gqlgen's caches.
	const warmup = 20
	pprof.SetGoroutineLabels(pprof.WithLabels(context.Background(), pprof.Labels("side", "publisher")))
	defer pprof.SetGoroutineLabels(context.Background())
	b.ResetTimer()
	for i := 0; i < b.N+warmup; i++ {
		if i == warmup {
			samples, acks, lasts = samples[:0], acks[:0], lasts[:0]
			cpu0 = processCPU(b)
			b.ResetTimer()
		}
		e := &event.Event{Type: "bench.tick", Category: event.CategorySystem}
		start := time.Now()
		g.Publish(e)
		acks = append(acks, time.Since(start))
		seq := int(e.Seq)
		var last time.Duration
		// One timer per event (not per arrival: 1,000 timers an event
		// were the benchmark's own cost).
		timeout := time.NewTimer(10 * time.Second)
		for got := 0; got < subscribers; {
			select {
			case a := <-arrivals:
				if a.seq != seq {
					b.Fatalf("event seq %d arrived while waiting for %d", a.seq, seq)
				}
				samples = append(samples, a.at.Sub(start))
				last = a.at.Sub(start)
				got++
			case <-timeout.C:
				b.Fatalf("only %d of %d subscribers received seq %d", got, subscribers, seq)
			}
		}
		timeout.Stop()
		lasts = append(lasts, last)
	}
	b.StopTimer()
	cpu := processCPU(b) - cpu0
	for _, c := range clients {
		c.conn.Close()
	}
	wg.Wait()
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
