package wsnative_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/demo"
	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/hub"
	"github.com/vigil-sec/vigil/internal/transport/wsconn"
	"github.com/vigil-sec/vigil/internal/transport/wsnative"
)

// feedSource is a log whose tail is a channel: the benchmark hands the hub
// already-encoded events without JetStream in the measured process.
type feedSource struct{ feed chan *event.Event }

func (feedSource) Head(context.Context) (uint64, error) { return 0, nil }
func (s feedSource) Tail(ctx context.Context, _ uint64, fn func(*event.Event)) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case e := <-s.feed:
			fn(e)
		}
	}
}
func (feedSource) ScanRange(context.Context, uint64, uint64, func(*event.Event) bool) error {
	return nil
}
func (feedSource) SeqForTime(context.Context, time.Time) (uint64, error) { return 0, nil }

// fanoutChildEnv names the environment variable that turns this test
// binary into the benchmark's load generator (see
// TestFanoutSocketsLoadGenerator).
const fanoutChildEnv = "VIGIL_FANOUT_CHILD"

// BenchmarkFanoutSockets is the fan-out over real loopback sockets: 1,000
// native WebSocket clients subscribed to every event, the hub and the
// WebSocket writers (epoll reader, writev) in this process, the clients
// in a child process (this test binary again, see
// TestFanoutSocketsLoadGenerator), so that this process's CPU time
// (getrusage RUSAGE_SELF) is the server's alone. b.N events are handed
// to the hub, already encoded, as fast as it takes them; each is
// delivered to every client. Reports deliveries per second of server CPU
// (server-deliveries/cpu-s), the client's CPU per delivery, and wall
// deliveries/s (which depends on the clients sharing the machine).
func BenchmarkFanoutSockets(b *testing.B) {
	for _, batch := range []bool{false, true} {
		b.Run("batch="+strconv.FormatBool(batch), func(b *testing.B) { benchFanoutSockets(b, batch) })
	}
}

func benchFanoutSockets(b *testing.B, batch bool) {
	const clients = 1000
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	src := feedSource{feed: make(chan *event.Event, 1024)}
	h := hub.New(src, hub.Options{QueueSize: 1 << 16})
	hubDone := make(chan struct{})
	go func() { defer close(hubDone); _ = h.Run(ctx) }()
	defer func() { cancel(); <-hubDone }()
	<-h.Started()
	poller, err := wsconn.NewPoller()
	if err != nil {
		b.Fatal(err)
	}
	pollerDone := make(chan error, 1)
	go func() { pollerDone <- poller.Run(ctx) }()
	defer func() { cancel(); <-pollerDone }()
	admin := auth.Principal{ID: "admin", Role: auth.RoleAdmin, Tenant: auth.AllTenants}
	srv := httptest.NewServer(wsnative.Handler(wsconn.Deps{Hub: h, Auth: auth.NewStaticToken("bench", admin), Poller: poller}, 10))
	defer srv.Close()

	events := make([]*event.Event, b.N)
	gen := demo.New(7)
	for i := range events {
		e := gen.Next()
		if _, err := event.Normalize(e, "default", time.Now(), event.DefaultLimits()); err != nil {
			b.Fatal(err)
		}
		e.Seq = uint64(i + 1)
		e.JSON() // encoded once, as the store's tail does
		events[i] = e
	}

	child := exec.Command(os.Args[0], "-test.run=^TestFanoutSocketsLoadGenerator$", "-test.v")
	child.Env = append(os.Environ(), fmt.Sprintf("%s=%s,%d,%d,%t", fanoutChildEnv,
		"ws"+strings.TrimPrefix(srv.URL, "http"), clients, b.N, batch))
	out, err := child.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	child.Stderr = os.Stderr
	if err := child.Start(); err != nil {
		b.Fatal(err)
	}
	childDone := make(chan error, 1)
	go func() { // owned by the benchmark: ends with the child
		_, _ = io.Copy(io.Discard, out)
		childDone <- child.Wait()
	}()

	deadline := time.Now().Add(60 * time.Second)
	for h.Stats().Subscriptions < clients {
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d clients subscribed", h.Stats().Subscriptions, clients)
		}
		time.Sleep(10 * time.Millisecond)
	}
	b.ResetTimer()
	var before, after syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &before)
	start := time.Now()
	for _, e := range events {
		src.feed <- e
	}
	if err := <-childDone; err != nil {
		b.Fatalf("load generator: %v", err)
	}
	elapsed := time.Since(start)
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &after)
	b.StopTimer()
	cpu := rusageCPU(after) - rusageCPU(before)
	deliveries := float64(b.N) * clients
	b.ReportMetric(deliveries/cpu.Seconds(), "server-deliveries/cpu-s")
	b.ReportMetric(float64(cpu.Nanoseconds())/deliveries, "server-cpu-ns/delivery")
	b.ReportMetric(deliveries/elapsed.Seconds(), "deliveries/s")
	if st := child.ProcessState; st != nil {
		ccpu := st.UserTime() + st.SystemTime()
		b.ReportMetric(float64(ccpu.Nanoseconds())/deliveries, "client-cpu-ns/delivery")
	}
	if st := h.Stats(); st.Lagged != 0 {
		b.Fatalf("%d clients lagged", st.Lagged)
	}
}

func rusageCPU(r syscall.Rusage) time.Duration {
	return time.Duration(r.Utime.Nano() + r.Stime.Nano())
}

// TestFanoutSocketsLoadGenerator is BenchmarkFanoutSockets's client side,
// run in a child process: it opens the connections, subscribes each to
// every event, reads until each has received its events and exits. Run
// directly (without the variable) it does nothing.
func TestFanoutSocketsLoadGenerator(t *testing.T) {
	spec := os.Getenv(fanoutChildEnv)
	if spec == "" {
		t.Skip("the load generator of BenchmarkFanoutSockets; runs only as its child process")
	}
	parts := strings.Split(spec, ",")
	url := parts[0]
	clients, _ := strconv.Atoi(parts[1])
	want, _ := strconv.Atoi(parts[2])
	batch := parts[3] == "true"
	sub := `{"op":"subscribe","id":"s","filter":{}}` // also understood by builds before "batch"
	if batch {
		sub = `{"op":"subscribe","id":"s","filter":{},"batch":true}`
	}
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for range clients {
		dialer := ws.Dialer{Header: ws.HandshakeHeaderHTTP(map[string][]string{"Authorization": {"Bearer bench"}})}
		conn, br, _, err := dialer.Dial(context.Background(), url)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if err := wsutil.WriteClientText(conn, []byte(sub)); err != nil {
			t.Fatal(err)
		}
		var rd io.Reader = bufio.NewReaderSize(conn, 64<<10)
		if br != nil {
			rd = io.MultiReader(br, rd)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- fanoutRead(rd, want)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	fmt.Println("fanout-child: done")
}

// countBatch counts the elements of the one array in a {"type":"events"}
// message (the commas at depth 2, outside strings, plus one) without
// decoding it: the load generator's CPU is not what is measured, but it
// paces the writes.
func countBatch(b []byte) int {
	n, depth, inStr, esc := 1, 0, false, false
	for _, c := range b {
		switch {
		case esc:
			esc = false
		case inStr:
			if c == '\\' {
				esc = true
			} else if c == '"' {
				inStr = false
			}
		case c == '"':
			inStr = true
		case c == '{' || c == '[':
			depth++
		case c == '}' || c == ']':
			depth--
		case c == ',' && depth == 2:
			n++
		}
	}
	return n
}

// fanoutRead reads frames until want events arrived.
func fanoutRead(r io.Reader, want int) error {
	rd := &wsutil.Reader{Source: r, State: ws.StateClientSide}
	got := 0
	for got < want {
		hdr, err := rd.NextFrame()
		if err != nil {
			return err
		}
		body, err := io.ReadAll(rd)
		if err != nil {
			return err
		}
		if hdr.OpCode != ws.OpText {
			continue
		}
		switch {
		case strings.HasPrefix(string(body), `{"type":"event",`):
			got++
		case strings.HasPrefix(string(body), `{"type":"events",`):
			got += countBatch(body)
		}
	}
	return nil
}
