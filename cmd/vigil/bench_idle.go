package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/vigil-sec/vigil/client"
)

// idleWorkerEnv marks a child process of `vigil bench --idle --procs P`:
// "I/P/RUN" — it is child I of P of run RUN, opens its share of the
// connections and talks to its parent in JSON lines (idleMsg) on stdout.
// An environment variable rather than a flag keeps the internal mode out
// of `vigil bench -h`.
const idleWorkerEnv = "VIGIL_BENCH_IDLE_WORKER"

// idleConfig is one idle run: n connections spread round-robin over
// servers and over source addresses, opened by procs processes.
type idleConfig struct {
	n         int
	servers   []string     // base URLs; connection k goes to servers[k%len]
	sourceIPs []netip.Addr // local addresses; connection k binds sourceIPs[k%len] (none: the kernel's choice)
	procs     int
	probeNode int           // index into servers of the node the probe event is published on
	probeWait time.Duration // how long to wait for every connection to receive it
	runID     string        // the probe event's resource: the connections count only this run's probe
	args      []string      // the bench's own arguments, given again to each child
}

// idleMsg is a line from a child to its parent.
type idleMsg struct {
	Open   int          `json:"open,omitempty"`  // connections open so far (progress)
	Ready  int          `json:"ready,omitempty"` // all of its share open and subscribed
	Error  string       `json:"error,omitempty"`
	Result *idleOutcome `json:"result,omitempty"`
}

// idleOutcome is what a share of the connections saw of the probe.
type idleOutcome struct {
	Received [][]int64 `json:"received"` // per server: unix ns at which each connection got the probe
	CPU      float64   `json:"cpu"`      // CPU seconds of the process since mark
	Missing  int       `json:"missing"`  // open connections that did not get it within probe-wait
	Closed   int       `json:"closed"`   // connections that ended before the run did
	Errors   []string  `json:"errors,omitempty"`
}

// parseSourceIPs reads "127.0.0.2-127.0.0.20,10.0.0.5": addresses and
// inclusive ranges, in order.
func parseSourceIPs(s string) ([]netip.Addr, error) {
	var out []netip.Addr
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		lo, hi, isRange := strings.Cut(part, "-")
		first, err := netip.ParseAddr(strings.TrimSpace(lo))
		if err != nil {
			return nil, fmt.Errorf("bench: --source-ips %q: %w", part, err)
		}
		if !isRange {
			out = append(out, first)
			continue
		}
		last, err := netip.ParseAddr(strings.TrimSpace(hi))
		if err != nil {
			return nil, fmt.Errorf("bench: --source-ips %q: %w", part, err)
		}
		if first.Is4() != last.Is4() || last.Less(first) {
			return nil, fmt.Errorf("bench: --source-ips %q: not a range from a lower to a higher address of one family", part)
		}
		for a := first; ; a = a.Next() {
			if len(out) >= 65536 {
				return nil, fmt.Errorf("bench: --source-ips %q: more than 65536 addresses", s)
			}
			out = append(out, a)
			if a == last {
				break
			}
		}
	}
	return out, nil
}

// benchIdle opens cfg.n idle native-stream connections, each with one
// subscription, spread over cfg.servers (round-robin) and cfg.sourceIPs,
// in cfg.procs processes. It reports each server's memory per connection
// from its own /metrics (Go heap in use + goroutine stacks), so
// client-side memory does not count, and then the fan-out latency of one
// event published on cfg.probeNode to every connection.
//
// Before each reading the servers collect their garbage (the admin-only
// /debug/pprof/heap?gc=1 runs a GC): otherwise what an earlier run left
// behind counts in "before" and the figure comes out too low, or garbage
// made while connecting counts in "after". With a non-admin token the
// readings are taken without it (run the servers with GOGC=10 then). With
// VIGIL_BENCH_HEAP_PROFILE=FILE the heap profile of the first server
// taken with the connections open is written to FILE (go tool pprof FILE).
func benchIdle(ctx context.Context, e env, c *client.Client, cfg idleConfig) (err error) {
	token, hc := c.Token(), c.HTTPClient()
	// A refused connection is explained with the session's server (the
	// --server one): name the server that refused instead.
	blame := func(server string) {
		if e.session != nil {
			e.session.server = server
		}
	}
	defer func() {
		var de *idleDialError
		if errors.As(err, &de) {
			blame(de.server)
		}
	}()
	nodes := make([]idleNode, len(cfg.servers))
	gc := true
	for i, s := range cfg.servers {
		nodes[i].url = s
		blame(s)
		gc = collectGarbage(ctx, hc, s, token, "", e.warnf) && gc
		m, err := serverMetrics(ctx, hc, s)
		if err != nil {
			return err
		}
		nodes[i].before = m
	}
	if !gc {
		e.println("  (no forced GC: /debug/pprof needs the admin token; run the servers with GOGC=10)")
	}
	for k := range cfg.n {
		nodes[k%len(nodes)].conns++
	}

	start := time.Now()
	var shares []idleShare
	if cfg.procs <= 1 {
		var mu sync.Mutex // progress is called by several dialing goroutines
		g, err := dialIdle(ctx, cfg, token, c.TLSConfig(), 0, cfg.n, func(open int) {
			if open%1000 == 0 {
				mu.Lock()
				defer mu.Unlock()
				e.printf("  %d connections open (%.1fs)\n", open, time.Since(start).Seconds())
			}
		})
		if err != nil {
			return err
		}
		defer g.close()
		shares = append(shares, g)
	} else {
		children, err := startIdleChildren(ctx, e, cfg, start)
		if err != nil {
			return err
		}
		defer children.close()
		shares = children.shares()
	}
	e.printf("  %d connections open and subscribed in %.1fs\n", cfg.n, time.Since(start).Seconds())

	time.Sleep(2 * time.Second) // let the servers settle (sessions finish their first message)
	for i := range nodes {
		blame(nodes[i].url)
		after, err := serverMetrics(ctx, hc, nodes[i].url)
		if err != nil {
			return err
		}
		nodes[i].after = after
		if gc {
			// The first reading includes the garbage the server's GOGC
			// lets live; this one only what the connections hold.
			profile := ""
			if i == 0 {
				profile = e.getenv("VIGIL_BENCH_HEAP_PROFILE")
			}
			collectGarbage(ctx, hc, nodes[i].url, token, profile, e.warnf)
			live, err := serverMetrics(ctx, hc, nodes[i].url)
			if err != nil {
				return err
			}
			nodes[i].live = live
		}
	}
	printIdleMemory(e, nodes, cfg.n, gc)

	return probeIdle(ctx, e, c, cfg, shares, blame)
}

// idleNode is one server's readings.
type idleNode struct {
	url                 string
	conns               int // connections the bench opened to it
	before, after, live idleMetrics
}

// printIdleMemory prints the memory per connection: one line for one
// server (the form docs/performance.md quotes), a table for several.
func printIdleMemory(e env, nodes []idleNode, n int, gc bool) {
	if len(nodes) == 1 {
		d := nodes[0]
		if gc {
			e.printf("idle connections: %d open; server memory (heap in use + stacks) grew %.1f MiB = %.0f bytes per connection; %.0f before the forced GC\n",
				n, float64(d.live.mem-d.before.mem)/(1<<20), float64(d.live.mem-d.before.mem)/float64(n), float64(d.after.mem-d.before.mem)/float64(n))
			return
		}
		e.printf("idle connections: %d open; server memory (heap in use + stacks) grew %.1f MiB = %.0f bytes per connection\n",
			n, float64(d.after.mem-d.before.mem)/(1<<20), float64(d.after.mem-d.before.mem)/float64(n))
		return
	}
	e.printf("idle connections: %d open on %d nodes; per node, server memory (heap in use + stacks) after a forced GC:\n", n, len(nodes))
	e.printf("  %-28s %8s %12s %10s %11s %11s\n", "node", "opened", "connections", "grew MiB", "bytes/conn", "goroutines")
	worst := math.Inf(-1)
	for _, d := range nodes {
		end := d.live
		if !gc {
			end = d.after
		}
		per := float64(end.mem-d.before.mem) / float64(max(d.conns, 1))
		worst = max(worst, per)
		e.printf("  %-28s %8d %12.0f %10.1f %11.0f %11.0f\n", d.url, d.conns, end.conns, float64(end.mem-d.before.mem)/(1<<20), per, end.goroutines)
	}
	e.printf("  highest bytes per connection on a node: %.0f\n", worst)
}

// probeIdle publishes one event on the probe node and waits until every
// connection has it (or probe-wait passes), then prints the latencies
// from just before the publish request to each connection's receipt,
// overall and per node, and the CPU time the servers and the load
// processes spent meanwhile (the wall-clock figures depend on what else
// the box runs; the CPU time much less).
func probeIdle(ctx context.Context, e env, c *client.Client, cfg idleConfig, shares []idleShare, blame func(string)) error {
	var opts []client.Option
	if tc := c.TLSConfig(); tc != nil {
		opts = append(opts, client.WithTLSConfig(tc))
	}
	pc, err := client.New(cfg.servers[cfg.probeNode], c.Token(), opts...)
	if err != nil {
		return fmt.Errorf("bench: probe node: %w", err)
	}
	cpuBefore := make([]float64, len(cfg.servers))
	for i, s := range cfg.servers {
		blame(s)
		m, err := serverMetrics(ctx, c.HTTPClient(), s)
		if err != nil {
			return err
		}
		cpuBefore[i] = m.cpu
	}
	for _, s := range shares {
		if err := s.mark(); err != nil {
			return err
		}
	}
	ev := &client.Event{Category: "system", Type: "system.bench", Action: "bench", Severity: client.SeverityInfo,
		Source: benchSource, Resource: cfg.runID, Tags: []string{"bench"}, Time: time.Now()}
	blame(cfg.servers[cfg.probeNode])
	t0 := time.Now()
	if _, err := pc.Publish(ctx, []*client.Event{ev}); err != nil {
		return fmt.Errorf("bench: publishing the probe on %s: %w", cfg.servers[cfg.probeNode], err)
	}
	acked := time.Since(t0)
	all := idleOutcome{Received: make([][]int64, len(cfg.servers))}
	for _, s := range shares {
		o, err := s.probe(ctx, cfg.probeWait)
		if err != nil {
			return err
		}
		for node, ts := range o.Received {
			all.Received[node] = append(all.Received[node], ts...)
		}
		all.Missing += o.Missing
		all.Closed += o.Closed
		all.Errors = append(all.Errors, o.Errors...)
		all.CPU += o.CPU
	}
	serverCPU := 0.0
	for i, s := range cfg.servers {
		blame(s)
		m, err := serverMetrics(ctx, c.HTTPClient(), s)
		if err != nil {
			return err
		}
		serverCPU += m.cpu - cpuBefore[i]
	}
	since := func(ts []int64) []time.Duration {
		ds := make([]time.Duration, len(ts))
		for i, ns := range ts {
			ds[i] = time.Duration(ns - t0.UnixNano())
		}
		slices.Sort(ds)
		return ds
	}
	pct := func(ds []time.Duration, p float64) time.Duration {
		return ds[min(len(ds)-1, int(p*float64(len(ds))))].Round(time.Millisecond / 10)
	}
	ds := since(slices.Concat(all.Received...))
	e.printf("fan-out: one event published on %s (acknowledged in %s) reached %d of %d connections",
		cfg.servers[cfg.probeNode], acked.Round(time.Microsecond), len(ds), cfg.n)
	if len(ds) > 0 {
		e.printf("; publish -> connection p50 %s p90 %s p99 %s, last one after %s", pct(ds, 0.50), pct(ds, 0.90), pct(ds, 0.99), ds[len(ds)-1].Round(time.Millisecond/10))
	}
	e.println()
	if len(cfg.servers) > 1 {
		e.printf("  %-28s %8s %10s %10s %10s %10s\n", "node", "received", "first", "p50", "p99", "last")
		for i, s := range cfg.servers {
			nd := since(all.Received[i])
			if len(nd) == 0 {
				e.printf("  %-28s %8d\n", s, 0)
				continue
			}
			e.printf("  %-28s %8d %10s %10s %10s %10s\n", s, len(nd), nd[0].Round(time.Millisecond/10), pct(nd, 0.5), pct(nd, 0.99), nd[len(nd)-1].Round(time.Millisecond/10))
		}
	}
	if len(ds) > 0 {
		e.printf("  CPU time meanwhile: servers %.2f s (%.1f µs per delivery), load processes %.2f s (every process on the box shares its 2 cores)\n",
			serverCPU, serverCPU*1e6/float64(len(ds)), all.CPU)
	}
	if all.Closed > 0 || all.Missing > 0 {
		e.printf("  %d connections ended before the probe, %d open ones did not get it within %s\n", all.Closed, all.Missing, cfg.probeWait)
		for _, s := range all.Errors[:min(len(all.Errors), 5)] {
			e.printf("  connection ended: %s\n", s)
		}
		return fmt.Errorf("bench: %d of %d connections did not receive the probe event", cfg.n-len(ds), cfg.n)
	}
	return nil
}

// idleShare is one part of the connections: held in this process or by a
// child process.
type idleShare interface {
	mark() error // note the CPU time used so far (just before the probe is published)
	probe(ctx context.Context, wait time.Duration) (*idleOutcome, error)
}

// idleGroup holds connections [from, to) of a run in this process. Each
// connection has a reader goroutine that answers the server's pings
// (unanswered, the server closes the connection after two intervals) and
// notes when the probe arrives.
type idleGroup struct {
	conns    []*idleConn
	servers  int
	runID    []byte  // in the probe event (its resource)
	cpuMark  float64 // processCPU at mark
	received atomic.Int64
	closed   atomic.Int64
	closing  atomic.Bool
	mu       sync.Mutex
	errs     []string // why connections ended, the first few
	readers  sync.WaitGroup
}

type idleConn struct {
	conn net.Conn
	rw   io.ReadWriter // conn, or the dialer's buffered reader in front of it
	node int           // index of its server
	got  atomic.Int64  // unix ns of the first event; 0 before
}

// dialIdle opens connections [from, to) of cfg, a few at a time, and
// subscribes each; progress is called with the number open so far.
func dialIdle(ctx context.Context, cfg idleConfig, token string, tc *tls.Config, from, to int, progress func(int)) (*idleGroup, error) {
	g := &idleGroup{conns: make([]*idleConn, to-from), servers: len(cfg.servers), runID: []byte(cfg.runID)}
	header := ws.HandshakeHeaderHTTP(http.Header{"Authorization": []string{"Bearer " + token}})
	urls := make([]string, len(cfg.servers))
	for i, s := range cfg.servers {
		urls[i] = strings.Replace(strings.Replace(strings.TrimSuffix(s, "/"), "https://", "wss://", 1), "http://", "ws://", 1) + "/api/v1/stream"
	}
	dialers := []ws.Dialer{{Header: header, Timeout: 10 * time.Second, TLSConfig: tc}}
	if len(cfg.sourceIPs) > 0 {
		dialers = dialers[:0]
		for _, ip := range cfg.sourceIPs {
			nd := &net.Dialer{Timeout: 10 * time.Second, LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(ip, 0))}
			dialers = append(dialers, ws.Dialer{Header: header, Timeout: 10 * time.Second, TLSConfig: tc, NetDial: nd.DialContext})
		}
	}
	// The filter of the single-server figures in docs/performance.md (one
	// category), so that they compare; the reader tells this run's probe
	// from any other system event by its run id.
	sub, err := json.Marshal(map[string]any{"op": "subscribe", "id": "idle", "from": "latest",
		"filter": client.Filter{Categories: []string{"system"}}})
	if err != nil {
		return nil, err
	}
	// A few dials in flight: one at a time, a round trip each, 100,000
	// connections would take minutes; many more only queue in the
	// servers' accept backlogs.
	const inFlight = 8
	dctx, cancel := context.WithCancel(ctx)
	defer cancel()
	next := make(chan int)
	var (
		wg       sync.WaitGroup
		firstErr error
		errOnce  sync.Once
		open     atomic.Int64
	)
	for range inFlight {
		wg.Add(1)
		go func() { // owned by dialIdle: ends when next is closed
			defer wg.Done()
			for k := range next {
				ic, err := dialOneIdle(dctx, dialers[k%len(dialers)], urls[k%len(urls)], sub)
				if err != nil {
					errOnce.Do(func() {
						firstErr = &idleDialError{server: cfg.servers[k%len(urls)],
							err: fmt.Errorf("bench: connection %d to %s%s: %w%s", k, cfg.servers[k%len(urls)], fromAddr(cfg.sourceIPs, k), err, idleHint(err))}
						cancel()
					})
					continue
				}
				ic.node = k % len(urls)
				g.conns[k-from] = ic
				g.readers.Add(1)
				go g.read(ic) // owned by g: ends when g.close closes the connection
				if o := int(open.Add(1)); progress != nil {
					progress(o)
				}
			}
		}()
	}
	for k := from; k < to && dctx.Err() == nil; k++ {
		select {
		case next <- k:
		case <-dctx.Done():
		}
	}
	close(next)
	wg.Wait()
	if firstErr == nil && ctx.Err() != nil {
		firstErr = ctx.Err()
	}
	if firstErr != nil {
		g.close()
		return nil, firstErr
	}
	return g, nil
}

// idleDialError is a failed connection and the server it was made to.
type idleDialError struct {
	server string
	err    error
}

func (e *idleDialError) Error() string { return e.err.Error() }
func (e *idleDialError) Unwrap() error { return e.err }

func fromAddr(ips []netip.Addr, k int) string {
	if len(ips) == 0 {
		return ""
	}
	return " from " + ips[k%len(ips)].String()
}

// idleHint says what to change when the machine ran out of something.
func idleHint(err error) string {
	switch {
	case errors.Is(err, syscall.EMFILE):
		return " (this process may open no more files: raise ulimit -n or spread the connections over more --procs)"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return " (that source address is not on this machine, or it has no local port left: check --source-ips, give more)"
	}
	return ""
}

// dialOneIdle opens one connection, subscribes, and waits for "subscribed".
func dialOneIdle(ctx context.Context, d ws.Dialer, url string, sub []byte) (*idleConn, error) {
	conn, br, _, err := d.Dial(ctx, url)
	if err != nil {
		return nil, err
	}
	ic := &idleConn{conn: conn, rw: conn}
	if br != nil { // the server wrote past the handshake: read that first
		ic.rw = struct {
			io.Reader
			io.Writer
		}{io.MultiReader(br, conn), conn}
	}
	if err := wsutil.WriteClientText(conn, sub); err != nil {
		_ = conn.Close() // failed connection: its close error adds nothing
		return nil, err
	}
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	for {
		msg, err := wsutil.ReadServerText(ic.rw)
		if err != nil {
			_ = conn.Close() // failed connection: its close error adds nothing
			return nil, fmt.Errorf("waiting for subscribed: %w", err)
		}
		if bytes.Contains(msg, []byte(`"subscribed"`)) {
			break
		}
		if bytes.Contains(msg, []byte(`"error"`)) {
			_ = conn.Close() // refused: its close error adds nothing
			return nil, fmt.Errorf("subscribe refused: %s", msg)
		}
	}
	_ = conn.SetReadDeadline(time.Time{})
	return ic, nil
}

// read answers pings and notes the first event until the connection ends.
func (g *idleGroup) read(c *idleConn) {
	defer g.readers.Done()
	for {
		msg, _, err := wsutil.ReadServerData(c.rw)
		if err != nil {
			if !g.closing.Load() {
				g.closed.Add(1)
				g.mu.Lock()
				if len(g.errs) < 5 {
					g.errs = append(g.errs, err.Error())
				}
				g.mu.Unlock()
			}
			return
		}
		if bytes.Contains(msg, []byte(`"type":"event`)) && bytes.Contains(msg, g.runID) && c.got.CompareAndSwap(0, time.Now().UnixNano()) {
			g.received.Add(1)
		}
	}
}

func (g *idleGroup) mark() error {
	g.cpuMark = processCPU()
	return nil
}

// probe waits until every open connection got the probe or wait passes.
func (g *idleGroup) probe(ctx context.Context, wait time.Duration) (*idleOutcome, error) {
	deadline := time.Now().Add(wait)
	for g.received.Load()+g.closed.Load() < int64(len(g.conns)) && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(10 * time.Millisecond): // the receipt times are the connections' own: polling adds nothing to them
		}
	}
	o := &idleOutcome{Received: make([][]int64, g.servers), CPU: processCPU() - g.cpuMark}
	got := 0
	for _, c := range g.conns {
		if t := c.got.Load(); t != 0 {
			o.Received[c.node] = append(o.Received[c.node], t)
			got++
		}
	}
	o.Closed = int(g.closed.Load())
	o.Missing = max(0, len(g.conns)-got-o.Closed)
	g.mu.Lock()
	o.Errors = slices.Clone(g.errs)
	g.mu.Unlock()
	return o, nil
}

// close closes every connection and waits for the readers.
func (g *idleGroup) close() {
	g.closing.Store(true)
	for _, c := range g.conns {
		if c != nil {
			_ = c.conn.Close() // tearing down idle test connections: nothing to do about a failure
		}
	}
	g.readers.Wait()
}

// runIdleWorker is a child process's side (idleWorkerEnv = "I/P/RUN"): it
// opens its share, says {"ready":n}, waits for "probe" on stdin, answers
// {"result":...}, and closes its connections when stdin ends.
func runIdleWorker(ctx context.Context, e env, c *client.Client, cfg idleConfig, spec string) error {
	var i, p int
	var run string
	if parts := strings.SplitN(spec, "/", 3); len(parts) == 3 {
		i, _ = strconv.Atoi(parts[0])
		p, _ = strconv.Atoi(parts[1])
		run = parts[2]
	}
	if p <= 0 || i < 0 || i >= p || run == "" {
		return fmt.Errorf("bench: %s=%q: want I/P/RUN", idleWorkerEnv, spec)
	}
	cfg.runID = run
	enc := json.NewEncoder(e.stdout)
	var mu sync.Mutex
	say := func(m idleMsg) {
		mu.Lock()
		defer mu.Unlock()
		_ = enc.Encode(m) // the parent reads it; if it is gone, stdin ends too
	}
	from, to := i*cfg.n/p, (i+1)*cfg.n/p
	g, err := dialIdle(ctx, cfg, c.Token(), c.TLSConfig(), from, to, func(open int) {
		if open%1000 == 0 {
			say(idleMsg{Open: open})
		}
	})
	if err != nil {
		say(idleMsg{Error: err.Error()})
		return err
	}
	defer g.close()
	say(idleMsg{Ready: to - from})
	in := bufio.NewScanner(e.stdin)
	for in.Scan() {
		switch in.Text() {
		case "mark":
			_ = g.mark() // in-process: cannot fail
		case "probe":
			o, err := g.probe(ctx, cfg.probeWait)
			if err != nil {
				return err
			}
			say(idleMsg{Result: o})
		}
	}
	return nil
}

// idleChildren are the child processes of a run with --procs.
type idleChildren struct {
	kids []*idleChild
}

type idleChild struct {
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	results chan idleMsg // its {"result"} lines; closed when its stdout ends
}

// idleEvent is a line of child i for the parent's connect phase.
type idleEvent struct {
	child int
	msg   idleMsg
	eof   bool
}

// startIdleChildren runs cfg.procs copies of this command (same
// arguments, idleWorkerEnv naming each one's share) and waits until every
// one has its share open and subscribed.
func startIdleChildren(ctx context.Context, e env, cfg idleConfig, start time.Time) (*idleChildren, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("bench: --procs: finding this program to run it again: %w", err)
	}
	ch := &idleChildren{}
	// Room for every line a child sends besides its result (a progress
	// line per 1,000 connections, ready or error, EOF), so that no reader
	// blocks once the connect phase is over or was given up.
	events := make(chan idleEvent, cfg.n/1000+4*cfg.procs)
	for i := range cfg.procs {
		cmd := exec.CommandContext(ctx, exe, append([]string{"bench"}, cfg.args...)...)
		cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%d/%d/%s", idleWorkerEnv, i, cfg.procs, cfg.runID))
		cmd.Stderr = e.stderr
		stdin, err := cmd.StdinPipe()
		if err != nil {
			ch.close()
			return nil, err
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			ch.close()
			return nil, err
		}
		if err := cmd.Start(); err != nil {
			ch.close()
			return nil, fmt.Errorf("bench: starting child %d: %w", i, err)
		}
		kid := &idleChild{cmd: cmd, stdin: stdin, results: make(chan idleMsg, 1)}
		ch.kids = append(ch.kids, kid)
		go func() { // owned by the child: ends when its stdout does (it exits or is killed by close)
			defer close(kid.results)
			sc := bufio.NewScanner(stdout)
			sc.Buffer(make([]byte, 64<<10), 64<<20) // a result holds a timestamp per connection
			for sc.Scan() {
				var m idleMsg
				if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
					m = idleMsg{Error: fmt.Sprintf("unreadable line %q: %v", sc.Text(), err)}
				}
				if m.Result != nil {
					kid.results <- m
					continue
				}
				events <- idleEvent{child: i, msg: m}
			}
			events <- idleEvent{child: i, eof: true}
		}()
	}
	open := make([]int, cfg.procs)
	ready, printed := 0, 0
	for ready < cfg.procs {
		var ev idleEvent
		select {
		case ev = <-events:
		case <-ctx.Done():
			ch.close()
			return nil, ctx.Err()
		}
		switch {
		case ev.msg.Error != "":
			ch.close()
			return nil, fmt.Errorf("bench: child %d: %s", ev.child, ev.msg.Error)
		case ev.eof:
			ch.close()
			return nil, fmt.Errorf("bench: child %d ended before its connections were open (its errors are above)", ev.child)
		case ev.msg.Ready > 0:
			open[ev.child] = ev.msg.Ready
			ready++
		case ev.msg.Open > 0:
			open[ev.child] = ev.msg.Open
		}
		if total := sumInts(open); total >= printed+5000 {
			printed = total - total%5000
			e.printf("  %d connections open (%.1fs)\n", total, time.Since(start).Seconds())
		}
	}
	return ch, nil
}

func sumInts(xs []int) int {
	t := 0
	for _, x := range xs {
		t += x
	}
	return t
}

func (ch *idleChildren) shares() []idleShare {
	out := make([]idleShare, len(ch.kids))
	for i, k := range ch.kids {
		out[i] = k
	}
	return out
}

func (k *idleChild) mark() error {
	if _, err := io.WriteString(k.stdin, "mark\n"); err != nil {
		return fmt.Errorf("bench: child %d: %w", k.cmd.Process.Pid, err)
	}
	return nil
}

// probe asks the child for its outcome and waits for it.
func (k *idleChild) probe(ctx context.Context, wait time.Duration) (*idleOutcome, error) {
	if _, err := io.WriteString(k.stdin, "probe\n"); err != nil {
		return nil, fmt.Errorf("bench: child %d: %w", k.cmd.Process.Pid, err)
	}
	select {
	case m, ok := <-k.results:
		if !ok {
			return nil, fmt.Errorf("bench: child %d ended without its result", k.cmd.Process.Pid)
		}
		return m.Result, nil
	case <-time.After(wait + 30*time.Second):
		return nil, fmt.Errorf("bench: child %d sent no result within %s", k.cmd.Process.Pid, wait+30*time.Second)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// close ends every child: its stdin closes, it closes its connections and
// exits; one still running after 30 s is killed.
func (ch *idleChildren) close() {
	for _, k := range ch.kids {
		_ = k.stdin.Close() // the child sees EOF either way
	}
	for _, k := range ch.kids {
		done := make(chan struct{})
		go func() { // owned by close: ends when the child has exited
			_ = k.cmd.Wait() // its errors went to stderr
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = k.cmd.Process.Kill() // it did not exit on its own
			<-done
		}
	}
}

// collectGarbage asks the server for a heap profile with gc=1, which runs
// a GC first; the profile is saved to file unless file is empty. False if
// the server refused (not an admin token).
func collectGarbage(ctx context.Context, hc *http.Client, server, token, file string, warnf func(string, ...any)) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(server, "/")+"/debug/pprof/heap?gc=1", nil)
	if err != nil {
		return false
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := hc.Do(req)
	if err != nil {
		return false
	}
	defer func() { _ = resp.Body.Close() }() // read to the end or discarded; a close error changes nothing
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, resp.Body)
		return false
	}
	if file == "" {
		_, err = io.Copy(io.Discard, resp.Body)
		return err == nil
	}
	// The GC ran; the profile is optional, but a failure to save it is
	// said, not swallowed.
	f, err := os.Create(file)
	if err != nil {
		warnf("vigil bench: heap profile: %v\n", err)
		return true
	}
	_, err = io.Copy(f, resp.Body)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		warnf("vigil bench: heap profile %s: %v\n", file, err)
	}
	return true
}

// idleMetrics is what the bench reads of a server's /metrics.
type idleMetrics struct {
	mem        int64   // go_memstats_heap_inuse_bytes + go_memstats_stack_inuse_bytes
	conns      float64 // vigil_connections, every transport
	goroutines float64 // go_goroutines
	cpu        float64 // process_cpu_seconds_total
}

// serverMetrics reads a server's /metrics.
func serverMetrics(ctx context.Context, hc *http.Client, server string) (idleMetrics, error) {
	var m idleMetrics
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(server, "/")+"/metrics", nil)
	if err != nil {
		return m, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return m, fmt.Errorf("bench: metrics of %s: %w", server, err)
	}
	defer func() { _ = resp.Body.Close() }() // read-only answer: a close error changes nothing
	if resp.StatusCode != http.StatusOK {
		return m, fmt.Errorf("bench: metrics of %s: HTTP %d", server, resp.StatusCode)
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		name, value, ok := strings.Cut(line, " ")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		var dst *float64
		var mem bool
		switch {
		case name == "go_memstats_heap_inuse_bytes" || name == "go_memstats_stack_inuse_bytes":
			mem = true
		case name == "go_goroutines":
			dst = &m.goroutines
		case name == "process_cpu_seconds_total":
			dst = &m.cpu
		case strings.HasPrefix(name, "vigil_connections{"):
			dst = &m.conns
		default:
			continue
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil {
			return m, fmt.Errorf("bench: metrics of %s: %q: %w", server, line, err)
		}
		if mem {
			m.mem += int64(f)
		} else {
			*dst += f
		}
	}
	return m, sc.Err()
}
