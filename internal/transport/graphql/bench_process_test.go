package graphql_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/event"
)

// BenchmarkSubscriptionLatencyProcessClients is BenchmarkSubscriptionLatency
// (1,000 subscribers, one event at a time, the same query and the same
// latency: from the start of the publish call to a subscriber reading the
// message) with the 1,000 clients in a child process (the test binary
// re-executed) instead of goroutines of the server's process. The work is
// the same and the clients still share the two cores, but the process
// CPU time then separates the server (this process: getrusage) from the
// clients (the child: /proc/<pid>/stat), and the clients' reads are
// scheduled by the kernel, not queued behind the server's goroutines in
// the Go scheduler (which polls the network only when it has nothing else
// to run, so an in-process client reads late). Run:
//
//	go test ./internal/transport/graphql -run '^$' -bench SubscriptionLatencyProcessClients -benchtime 200x
func BenchmarkSubscriptionLatencyProcessClients(b *testing.B) {
	const subscribers, warmup = 1000, 20
	g := newGQL(b)
	child := exec.Command(os.Args[0], "-test.run=^TestSubscriptionLatencyClients$")
	child.Env = append(os.Environ(), fmt.Sprintf("%s=%s,%d,%d", latencyChildEnv, g.srv.URL+"/graphql", subscribers, warmup+b.N))
	out, err := child.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	child.Stderr = os.Stderr
	if err := child.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = child.Process.Kill(); _ = child.Wait() }()
	lines := make(chan string, 1024)
	go func() { // owned by the benchmark: ends with the child's output
		defer close(lines)
		sc := bufio.NewScanner(out)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	expect := func(prefix string) string {
		b.Helper()
		select {
		case l, ok := <-lines:
			if !ok || !strings.HasPrefix(l, prefix) {
				b.Fatalf("client process: %q, want %s…", l, prefix)
			}
			return l
		case <-time.After(60 * time.Second):
			b.Fatalf("client process: no %s", prefix)
		}
		return ""
	}
	expect("ready")
	g.waitSubs(b, subscribers+1)

	starts := map[int]time.Time{} // publish start by seq, measured events only
	var acks []time.Duration
	var server0, client0 time.Duration
	var loop0 time.Time
	b.ResetTimer()
	for i := 0; i < b.N+warmup; i++ {
		if i == warmup {
			acks = acks[:0]
			server0, client0, loop0 = processCPU(b), childCPU(b, child.Process.Pid), time.Now()
			b.ResetTimer()
		}
		e := &event.Event{Type: "bench.tick", Category: event.CategorySystem}
		start := time.Now()
		g.Publish(e)
		acks = append(acks, time.Since(start))
		if i >= warmup {
			starts[int(e.Seq)] = start
		}
		if l := expect("all "); l != "all "+strconv.FormatUint(e.Seq, 10) {
			b.Fatalf("client process: %q while waiting for seq %d", l, e.Seq)
		}
	}
	b.StopTimer()
	elapsed := time.Since(loop0)
	server, client := processCPU(b)-server0, childCPU(b, child.Process.Pid)-client0
	var samples, lasts []time.Duration
	last := map[int]time.Duration{}
	for l := range lines {
		if !strings.HasPrefix(l, "a ") {
			continue // the test framework's own output
		}
		var seq int
		var at int64
		if _, err := fmt.Sscanf(l, "a %d %d", &seq, &at); err != nil {
			b.Fatalf("client process: %q: %v", l, err)
		}
		start, ok := starts[seq]
		if !ok {
			continue // warm-up
		}
		d := time.Unix(0, at).Sub(start)
		samples = append(samples, d)
		last[seq] = max(last[seq], d)
	}
	if len(samples) != b.N*subscribers {
		b.Fatalf("%d arrivals reported, want %d", len(samples), b.N*subscribers)
	}
	for _, d := range last {
		lasts = append(lasts, d)
	}
	deliveries := float64(b.N * subscribers)
	b.ReportMetric(pctMS(samples, 0.50), "p50-ms")
	b.ReportMetric(pctMS(samples, 0.99), "p99-ms")
	b.ReportMetric(pctMS(acks, 0.50), "ack-p50-ms")
	b.ReportMetric(pctMS(lasts, 0.50), "all-p50-ms")
	b.ReportMetric(float64(server.Nanoseconds())/1e3/deliveries, "server-cpu-µs/delivery")
	b.ReportMetric(float64(client.Nanoseconds())/1e3/deliveries, "client-cpu-µs/delivery")
	b.ReportMetric(float64(server+client)/float64(elapsed)*100, "cpu-%-of-one-core")
}

const latencyChildEnv = "VIGIL_GQL_LATENCY_CLIENTS"

func pctMS(d []time.Duration, p float64) float64 {
	s := slices.Clone(d)
	slices.Sort(s)
	return float64(s[int(p*float64(len(s)-1))]) / float64(time.Millisecond)
}

// childCPU is process pid's user and system CPU time so far.
func childCPU(b *testing.B, pid int) time.Duration {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatalf("child CPU: %v", err)
	}
	// Fields after the command name (which may hold spaces) in parentheses.
	f := strings.Fields(string(raw[bytes.LastIndexByte(raw, ')')+2:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64) // field 14
	stime, _ := strconv.ParseInt(f[12], 10, 64) // field 15
	const clkTck = 100                          // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / clkTck
}

// TestSubscriptionLatencyClients is BenchmarkSubscriptionLatencyProcessClients's
// client side, run in a child process: it opens the connections and
// subscribes, prints "ready", prints "all <seq>" once every client has
// read event seq, and after the last event one line "a <seq> <unix ns>"
// per arrival. Run directly (without the variable) it does nothing.
func TestSubscriptionLatencyClients(t *testing.T) {
	spec := os.Getenv(latencyChildEnv)
	if spec == "" {
		t.Skip("the client side of BenchmarkSubscriptionLatencyProcessClients; runs only as its child process")
	}
	parts := strings.Split(spec, ",")
	url := parts[0]
	clients, _ := strconv.Atoi(parts[1])
	events, _ := strconv.Atoi(parts[2])
	out := bufio.NewWriterSize(os.Stdout, 64<<10)
	var (
		mu     sync.Mutex
		counts = map[int]int{}
	)
	type arrival struct {
		seq int
		at  int64
	}
	all := make([][]arrival, clients)
	var wg sync.WaitGroup
	for i := range clients {
		c, err := dialGQL(t, url, protoTransportWS, tokenParams)
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		if c.r != io.Reader(c.conn) {
			t.Fatalf("dial %d: bytes buffered behind the handshake", i)
		}
		c.subscribe("s", `subscription { events(filter: {types: ["bench.tick"]}) { seq } }`, nil)
		_ = c.conn.SetReadDeadline(time.Time{})
		wg.Add(1)
		go func() { // owned by the test: ends after the last event
			defer wg.Done()
			// The same reading as the in-process benchmark's clients.
			mine := make([]arrival, 0, events)
			err := readServerFrames(c.conn, func(msg []byte, at time.Time) bool {
				if i := bytes.Index(msg, seqKey); i >= 0 && bytes.Contains(msg, []byte(`"type":"next"`)) {
					rest := msg[i+len(seqKey):]
					end := bytes.IndexAny(rest, ",}")
					if seq, err := strconv.Atoi(string(rest[:end])); err == nil {
						mine = append(mine, arrival{seq, at.UnixNano()})
						mu.Lock()
						counts[seq]++
						if counts[seq] == clients {
							fmt.Fprintf(out, "all %d\n", seq)
							_ = out.Flush()
							delete(counts, seq)
						}
						mu.Unlock()
					}
				}
				return len(mine) < events // the last event: stop reading
			})
			if len(mine) < events {
				t.Errorf("client: %d of %d events, then %v", len(mine), events, err)
				return
			}
			all[i] = mine
		}()
	}
	fmt.Fprintln(out, "ready")
	_ = out.Flush()
	wg.Wait()
	for _, mine := range all {
		for _, a := range mine {
			fmt.Fprintf(out, "a %d %d\n", a.seq, a.at)
		}
	}
	_ = out.Flush()
}
