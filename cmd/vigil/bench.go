package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vigil-sec/vigil/client"
	"github.com/vigil-sec/vigil/internal/demo"
)

func runBench(ctx context.Context, e env, args []string) error {
	fs := e.flagSet()
	var rf remoteFlags
	rf.register(fs)
	total := fs.Int("events", 100_000, "events to publish")
	batch := fs.Int("batch", 1000, "events per request")
	publishers := fs.Int("publishers", 4, "concurrent publishers")
	subscribers := fs.Int("subscribers", 10, "WebSocket subscribers measuring end-to-end latency")
	rate := fs.Float64("rate", 0, "target events/s across publishers (0: as fast as possible)")
	arrivals := fs.String("arrivals", "burst", "with --rate: \"burst\" starts every publisher at once on the same schedule (their requests arrive together, once per interval), \"even\" spreads their starts over one interval (requests arrive evenly)")
	spread := fs.Int("spread", 0, "spread events over this many users and give each subscriber one of them (0: every subscriber gets every event)")
	batchFrames := fs.Bool("batch-frames", false, `subscribers ask for batched frames ({"type":"events"}, docs/protocol.md)`)
	idle := fs.Int("idle", 0, "instead: open this many idle WebSocket connections, report server memory per connection and the fan-out latency of one event to all of them")
	servers := fs.String("servers", "", "with --idle: comma-separated server URLs to spread the connections over round-robin (default: --server)")
	sourceIPs := fs.String("source-ips", "", "with --idle: local addresses to connect from, round-robin, e.g. 127.0.0.2-127.0.0.20 (about 28,000 connections per address)")
	procs := fs.Int("procs", 1, "with --idle: open the connections from this many processes (each may hold only as many as its open-file limit, ulimit -n)")
	probeNode := fs.Int("probe-node", 1, "with --idle: publish the probe event on this server of --servers (1 is the first)")
	probeWait := fs.Duration("probe-wait", time.Minute, "with --idle: how long to wait for every connection to receive the probe event")
	cpuProfile := fs.String("cpuprofile", "", "write the load generator's own CPU profile to this file (it shares the machine with the server)")
	realistic := fs.Bool("realistic", false, "send the demo's realistic mix instead of neutral events: it fires built-in rules and CREATES REAL DETECTIONS")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *total <= 0 || *batch <= 0 || *publishers <= 0 || *subscribers < 0 || *spread < 0 {
		return errors.New("bench: --events, --batch and --publishers must be positive; --subscribers and --spread 0 or more")
	}
	if *arrivals != "burst" && *arrivals != "even" {
		return fmt.Errorf("bench: --arrivals %q: want burst or even", *arrivals)
	}
	worker := e.getenv(idleWorkerEnv)
	if *cpuProfile != "" && worker == "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			_ = f.Close() // the profile failed to start; its error is the one to report
			return fmt.Errorf("bench: cpu profile: %w", err)
		}
		defer func() {
			pprof.StopCPUProfile()
			// The profile is written: a failed close can lose its end.
			if err := f.Close(); err != nil {
				e.warnf("vigil bench: cpu profile %s: %v\n", *cpuProfile, err)
			}
		}()
	}
	c, err := rf.client(e)
	if err != nil {
		return err
	}
	if *idle > 0 {
		cfg, err := idleSetup(c, *idle, *servers, *sourceIPs, *procs, *probeNode, *probeWait, args)
		if err != nil {
			return err
		}
		if worker != "" {
			return runIdleWorker(ctx, e, c, cfg, worker)
		}
		return benchIdle(ctx, e, c, cfg)
	}
	subCtx, stopSubs := context.WithCancel(ctx)
	defer stopSubs()
	var (
		mu        sync.Mutex
		latencies []time.Duration // received_at -> subscriber
		sinceAck  []time.Duration // producer's ack -> subscriber (SPEC 11's definition)
		ackedAt   sync.Map        // event id -> time the producer got its ack
		received  atomic.Int64
		ready     sync.WaitGroup
		subsDone  sync.WaitGroup
	)
	// Every event carries source vigil-bench and tag bench; this run's
	// events also carry its run id as resource, which the subscribers
	// filter on so that concurrent runs do not count each other's.
	runID := fmt.Sprintf("bench-%d", time.Now().UnixNano())
	if *realistic {
		e.printf("vigil bench: --realistic: the demo mix fires built-in rules; this run CREATES REAL DETECTIONS (source %q, resource %q)\n", benchSource, runID)
	} else {
		e.printf("vigil bench: events are labelled source %q, tag %q, resource %q; they match no built-in rule (no detections)\n", benchSource, "bench", runID)
	}
	e.printf("machine load average (1/5/15 min) at start: %s\n", machineLoad())
	for i := 0; i < *subscribers; i++ {
		ready.Add(1)
		subsDone.Add(1)
		f := client.Filter{Sources: []string{benchSource}, Resources: []string{runID}}
		if *spread > 0 {
			f.Users = []string{fmt.Sprintf("bench-user-%d", i%*spread)}
		}
		go func() { // owned by runBench: stopped by stopSubs
			defer subsDone.Done()
			once := sync.Once{}
			_ = c.Subscribe(subCtx, client.SubscribeOptions{
				Filter:  f,
				Batch:   *batchFrames,
				OnState: func(connected bool, _ error) { once.Do(ready.Done) },
			}, func(ev *client.Event) error {
				now := time.Now()
				d := now.Sub(ev.ReceivedAt)
				var a time.Duration // delivered before the producer saw its ack: 0
				if t, ok := ackedAt.Load(ev.ID); ok {
					a = max(0, now.Sub(t.(time.Time)))
				}
				mu.Lock()
				latencies = append(latencies, d)
				sinceAck = append(sinceAck, a)
				mu.Unlock()
				received.Add(1)
				return nil
			})
		}()
	}
	ready.Wait()
	time.Sleep(200 * time.Millisecond) // let subscriptions register before the first event

	e.printf("vigil bench: %d events, batch %d, %d publishers, %d subscribers, arrivals %s\n", *total, *batch, *publishers, *subscribers, *arrivals)
	var published atomic.Int64
	perPub := *total / *publishers
	start := time.Now()
	var pubWG sync.WaitGroup
	errs := make(chan error, *publishers)
	for p := 0; p < *publishers; p++ {
		pubWG.Add(1)
		go func(p int) { // owned by runBench: ends after perPub events
			defer pubWG.Done()
			gen := demo.New(uint64(p + 1))
			var interval time.Duration
			if *rate > 0 {
				interval = time.Duration(float64(time.Second) * float64(*batch) / (*rate / float64(*publishers)))
			}
			next := time.Now()
			if *arrivals == "even" && interval > 0 {
				// Publisher p starts p/publishers of an interval late, so
				// the requests of independent producers arrive evenly
				// instead of all at once (docs/performance.md, "Load
				// shape").
				next = next.Add(interval * time.Duration(p) / time.Duration(*publishers))
				time.Sleep(time.Until(next))
			}
			for sent := 0; sent < perPub; {
				n := min(*batch, perPub-sent)
				evs := make([]*client.Event, n)
				for i := range evs {
					evs[i] = benchEvent(gen, runID, *realistic)
					if *spread > 0 {
						evs[i].User = fmt.Sprintf("bench-user-%d", (sent+i)%*spread)
					}
					evs[i].Time = time.Now()
				}
				acks, err := c.Publish(ctx, evs)
				if err != nil {
					errs <- err
					return
				}
				now := time.Now()
				for _, a := range acks {
					ackedAt.Store(a.ID, now)
				}
				sent += n
				published.Add(int64(n))
				if interval > 0 {
					next = next.Add(interval)
					time.Sleep(time.Until(next))
				}
			}
		}(p)
	}
	progressDone := make(chan struct{})
	go func() { // owned by runBench: ends when publishing ends
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-progressDone:
				return
			case <-t.C:
				e.printf("  %6.1fs published %d, received %d\n", time.Since(start).Seconds(), published.Load(), received.Load())
			}
		}
	}()
	pubWG.Wait()
	elapsed := time.Since(start)
	close(progressDone)
	select {
	case err := <-errs:
		return fmt.Errorf("bench: publish: %w", err)
	default:
	}
	want := published.Load() * int64(*subscribers)
	if *spread > 0 {
		want = published.Load() * int64(*subscribers) / int64(*spread)
	}
	deadline := time.Now().Add(30 * time.Second)
	for received.Load() < want && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	stopSubs()
	subsDone.Wait()
	e.printf("ingest: %d events in %s = %.0f events/s (durable, acknowledged)\n", published.Load(), elapsed.Round(time.Millisecond), float64(published.Load())/elapsed.Seconds())
	e.printf("machine load average (1/5/15 min) at end: %s\n", machineLoad())
	mu.Lock()
	defer mu.Unlock()
	if len(latencies) == 0 {
		e.println("end-to-end: no deliveries measured")
		return nil
	}
	report := func(name string, ds []time.Duration) {
		slices.Sort(ds)
		pct := func(p float64) time.Duration {
			return ds[min(len(ds)-1, int(p*float64(len(ds))))].Round(time.Microsecond)
		}
		e.printf("%s: %d deliveries of %d expected; p50 %s p90 %s p99 %s max %s\n",
			name, len(ds), want, pct(0.50), pct(0.90), pct(0.99), ds[len(ds)-1].Round(time.Microsecond))
	}
	report("end-to-end (ingest ack -> subscriber)", sinceAck)
	report("end-to-end (received_at -> subscriber, includes the append)", latencies)
	return nil
}

// idleSetup checks the --idle flags and makes the run's configuration.
func idleSetup(c *client.Client, n int, servers, sourceIPs string, procs, probeNode int, probeWait time.Duration, args []string) (idleConfig, error) {
	cfg := idleConfig{n: n, procs: procs, probeNode: probeNode - 1, probeWait: probeWait, args: args,
		runID: fmt.Sprintf("bench-idle-%d", time.Now().UnixNano())}
	for s := range strings.SplitSeq(servers, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		if !strings.HasPrefix(s, "http://") && !strings.HasPrefix(s, "https://") {
			return cfg, fmt.Errorf("bench: --servers: %q is not an http:// or https:// URL", s)
		}
		cfg.servers = append(cfg.servers, s)
	}
	if len(cfg.servers) == 0 {
		cfg.servers = []string{c.BaseURL()}
	}
	ips, err := parseSourceIPs(sourceIPs)
	if err != nil {
		return cfg, err
	}
	cfg.sourceIPs = ips
	switch {
	case procs < 1 || procs > n:
		return cfg, fmt.Errorf("bench: --procs %d: want 1 to --idle (%d)", procs, n)
	case probeNode < 1 || probeNode > len(cfg.servers):
		return cfg, fmt.Errorf("bench: --probe-node %d: want 1 to the number of servers (%d)", probeNode, len(cfg.servers))
	case probeWait <= 0:
		return cfg, fmt.Errorf("bench: --probe-wait %s: want a positive duration", probeWait)
	}
	return cfg, nil
}

// benchSource is the source of every event vigil bench publishes.
const benchSource = "vigil-bench"

// benchEvent is one load event: a demo event (for realistic sizes and
// field variety) made neutral — category system, type system.bench,
// action "bench", no outcome or data — so that no built-in rule matches it
// and a benchmark leaves no detections behind (TestBenchEventsMatchNoBuiltinRule).
// With realistic it keeps the demo's type, action, outcome and data.
func benchEvent(gen *demo.Generator, runID string, realistic bool) *client.Event {
	ev := toClientEvent(gen.Next())
	if !realistic {
		ev.Category, ev.Type, ev.Action, ev.Outcome, ev.Data = "system", "system.bench", "bench", "", nil
		ev.MitreTactics, ev.MitreTechniques = nil, nil
	}
	ev.Source, ev.Resource = benchSource, runID
	ev.Tags = append(ev.Tags[:0:0], "bench")
	ev.Time = time.Now()
	return ev
}
