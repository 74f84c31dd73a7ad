package hostile

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/vigil-sec/vigil/internal/testkit"
	"io"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/vigil-sec/vigil/client"
	"github.com/vigil-sec/vigil/internal/config"
	"github.com/vigil-sec/vigil/internal/testnode"
)

// Helpers of the slow-client tests (issue 8 items 6 and 7).

// slowclientRcvBuf is the receive buffer of a client that stops reading:
// small, so the server's writes stall after a few kilobytes.
const slowclientRcvBuf = 4096

// slowclientBatch is the events per publish request.
const slowclientBatch = 16

// slowclientNode starts a node with a small per-client queue (a client
// lags after 64 deliveries) and the given ping interval, which is also the
// time a stalled socket is tolerated.
func slowclientNode(t *testing.T, ping time.Duration) *testnode.Node {
	t.Helper()
	return testnode.Start(t, func(c *config.Config) {
		c.QueueSize = 64
		c.PingInterval = ping
	})
}

// slowclientPublisher publishes with its own HTTP client, whose idle
// connections the goroutine checks can close.
type slowclientPublisher struct {
	t    *testing.T
	n    *testnode.Node
	http *http.Client
	c    *client.Client
	src  string
	pad  string
	typ  string // event type; default audit.slowclient
	data string // extra members of data, each followed by a comma
}

func newSlowclientPublisher(t *testing.T, n *testnode.Node, src string) *slowclientPublisher {
	t.Helper()
	hc := &http.Client{Transport: &http.Transport{}, Timeout: 30 * time.Second}
	c, err := client.New(n.URL(), n.AdminToken(), client.WithHTTPClient(hc))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hc.CloseIdleConnections)
	// 8 KiB of data per event fills socket buffers quickly.
	return &slowclientPublisher{t: t, n: n, http: hc, c: c, src: src, pad: strings.Repeat("x", 8<<10)}
}

// publish appends count audit events from p.src and returns their seqs in
// log order.
func (p *slowclientPublisher) publish(count int) []uint64 {
	p.t.Helper()
	evs := make([]*client.Event, count)
	for i := range evs {
		typ := p.typ
		if typ == "" {
			typ = "audit.slowclient"
		}
		evs[i] = &client.Event{Type: typ, Severity: client.SeverityLow, Source: p.src, User: "slow@example.com",
			Action: "select", Data: json.RawMessage(`{` + p.data + `"pad":"` + p.pad + `"}`)}
	}
	acks, err := p.c.Publish(context.Background(), evs)
	if err != nil {
		p.t.Fatalf("publish: %v", err)
	}
	seqs := make([]uint64, len(acks))
	for i, a := range acks {
		seqs[i] = a.Seq
	}
	return seqs
}

// untilLagged publishes batches until the node has lagged one more client
// than before, then one more batch (events after the lag point), and
// returns every published seq in order. A batch is smaller than the
// nodes' queue (64): a client that reads keeps up with it, so the lag is
// the stalled socket's doing, not a burst's.
func (p *slowclientPublisher) untilLagged() []uint64 { return p.untilLaggedN(1) }

// untilLaggedN is untilLagged for k clients.
func (p *slowclientPublisher) untilLaggedN(k int) []uint64 {
	p.t.Helper()
	before := slowclientMetric(p.t, p.n, "vigil_clients_lagged_total")
	var seqs []uint64
	deadline := time.Now().Add(15 * time.Second)
	for slowclientMetric(p.t, p.n, "vigil_clients_lagged_total") < before+float64(k) {
		if time.Now().After(deadline) {
			p.t.Fatalf("no client lagged after %d events", len(seqs))
		}
		seqs = append(seqs, p.publish(slowclientBatch)...)
	}
	return append(seqs, p.publish(slowclientBatch)...)
}

// slowclientMetric sums a metric's samples (every label set) from /metrics.
func slowclientMetric(t *testing.T, n *testnode.Node, name string) float64 {
	t.Helper()
	resp, err := http.Get(n.URL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, name)
		if !ok || (rest != "" && rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		sum += v
	}
	return sum
}

// slowclientConnections is the node's count of connected clients of a
// transport (the hub's, exported as vigil_connections).
func slowclientConnections(t *testing.T, n *testnode.Node, transport string) float64 {
	t.Helper()
	return slowclientMetric(t, n, `vigil_connections{transport="`+transport+`"}`)
}

// slowclientDialTCP connects to the node with a receive buffer of rcvbuf
// bytes (0: the system default), set before the handshake so the TCP
// window is small from the start.
func slowclientDialTCP(t *testing.T, n *testnode.Node, rcvbuf int) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	if rcvbuf > 0 {
		d.Control = func(_, _ string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcvbuf)
			})
			if err != nil {
				return err
			}
			return serr
		}
	}
	conn, err := d.Dial("tcp", n.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// slowclientWS is a raw WebSocket client over one TCP connection.
type slowclientWS struct {
	t    *testing.T
	conn net.Conn
	rw   io.ReadWriter
}

// slowclientDial opens a WebSocket to path (the token in the query) with
// the given receive buffer and subprotocols.
func slowclientDial(t *testing.T, n *testnode.Node, path string, rcvbuf int, protocols ...string) *slowclientWS {
	t.Helper()
	conn := slowclientDialTCP(t, n, rcvbuf)
	u, err := url.Parse("ws://" + n.Addr() + path)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("token", n.AdminToken())
	u.RawQuery = q.Encode()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	br, _, err := ws.Dialer{Protocols: protocols}.Upgrade(conn, u)
	if err != nil {
		t.Fatalf("upgrade %s: %v", path, err)
	}
	_ = conn.SetDeadline(time.Time{})
	return newSlowclientWS(t, conn, br)
}

// newSlowclientWS wraps an upgraded connection; br holds what the
// handshake read past the answer (nil: nothing).
func newSlowclientWS(t *testing.T, conn net.Conn, br *bufio.Reader) *slowclientWS {
	c := &slowclientWS{t: t, conn: conn, rw: conn}
	if br != nil {
		c.rw = struct {
			io.Reader
			io.Writer
		}{io.MultiReader(br, conn), conn}
	}
	return c
}

func (c *slowclientWS) send(v any) {
	c.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		c.t.Fatal(err)
	}
	_ = c.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if err := wsutil.WriteClientText(c.conn, b); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

// next reads the next data message; pings are answered. A close frame
// returns its code (and echoes it); any other end of the stream is an
// error.
func (c *slowclientWS) next(timeout time.Duration) (msg []byte, closeCode ws.StatusCode, err error) {
	// The deadline covers the answers to pings and the close echo too.
	_ = c.conn.SetDeadline(time.Now().Add(timeout))
	b, err := wsutil.ReadServerText(c.rw)
	var closed wsutil.ClosedError
	if errors.As(err, &closed) {
		return nil, closed.Code, nil
	}
	return b, 0, err
}

// slowclientMsg is the union of the fields the tests read.
type slowclientMsg struct {
	Type       string          `json:"type"`
	ID         string          `json:"id"`
	Sub        string          `json:"sub"`
	ResumeFrom uint64          `json:"resume_from"`
	Seq        uint64          `json:"seq"`
	Event      json.RawMessage `json:"event"`
	Payload    json.RawMessage `json:"payload"`
	Data       json.RawMessage `json:"data"`
}

func slowclientDecode(t *testing.T, b []byte) slowclientMsg {
	t.Helper()
	var m slowclientMsg
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("message %.200s: %v", b, err)
	}
	return m
}

// slowclientCheckPrefix asserts got is published[:len(got)]: the client
// received a gap-free, duplicate-free prefix of what was published.
func slowclientCheckPrefix(t *testing.T, got, published []uint64) {
	t.Helper()
	if len(got) > len(published) {
		t.Fatalf("received %d events, only %d published", len(got), len(published))
	}
	for i, seq := range got {
		if published[i] != seq {
			t.Fatalf("event %d: seq %d, want %d (a gap or duplicate in the backlog)", i, seq, published[i])
		}
	}
}

// slowclientBaseline is the process's goroutines with the node idle,
// less the NATS server's and Pebble's (they come and go on their own
// schedule; testkit.OwnGoroutines).
func slowclientBaseline(p *slowclientPublisher) []string {
	p.http.CloseIdleConnections()
	http.DefaultClient.CloseIdleConnections()
	runtime.GC()
	return testkit.OwnGoroutines()
}

// slowclientWaitGoroutines waits until the goroutines are back to the
// baseline (the client's handler, writer and reader have ended).
func slowclientWaitGoroutines(t *testing.T, p *slowclientPublisher, baseline []string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		p.http.CloseIdleConnections()
		http.DefaultClient.CloseIdleConnections()
		now := testkit.OwnGoroutines()
		if len(now) <= len(baseline) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines, baseline %d, %v after the client was cut; new ones:\n%s", len(now), len(baseline), within, testkit.NewGoroutines(baseline, now))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// slowclientWaitFor polls cond until it holds or within passes.
func slowclientWaitFor(t *testing.T, within time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > within {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			var gs []string
			for _, g := range strings.Split(string(buf), "\n\n") {
				if strings.Contains(g, "wsconn") || strings.Contains(g, "sse.") {
					gs = append(gs, g)
				}
			}
			t.Fatalf("%s: not within %v; transport goroutines:\n%s", what, within, strings.Join(gs, "\n\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}

// slowclientStall keeps the client silent for d. There is nothing to poll
// for: the point is that the client does not read for that long.
func slowclientStall(d time.Duration) { time.Sleep(d) }

func slowclientSeqString(seqs []uint64) string {
	if len(seqs) == 0 {
		return "none"
	}
	return fmt.Sprintf("%d..%d (%d)", seqs[0], seqs[len(seqs)-1], len(seqs))
}
