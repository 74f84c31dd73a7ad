package hostile

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/testnode"
)

// Issue 8 item 6 and 7: a client that stops reading is TOLD that it fell
// behind (SPEC 1.6). The node tolerates a stalled socket for the ping
// interval; a client that resumes reading within it reads its backlog, then
// the lag notice with resume_from, then (WebSocket) close 4000, and resuming
// from resume_from continues with no gap. One that never resumes is cut
// after the tolerated time and every server resource of it is released.
//
// The resuming tests stay silent for 11 s after the lag, longer than the
// old fixed 10 s write timeout (which cut such a client with a plain EOF
// and no notice), and less than the ping interval they configure.
const (
	slowclientTolerance = 15 * time.Second // the nodes' ping interval
	slowclientStallFor  = 11 * time.Second // how long the client does not read after it lagged
	slowclientShortPing = 2 * time.Second  // never-resuming clients: cut fast
)

// slowclientResume subscribes on a fresh native connection from seq and
// returns the seqs of the next want events of src.
func slowclientResume(t *testing.T, n *testnode.Node, src string, from uint64, want int) []uint64 {
	t.Helper()
	c := slowclientDial(t, n, "/api/v1/stream", 0)
	c.send(map[string]any{"op": "subscribe", "id": "resume", "filter": map[string]any{"sources": []string{src}},
		"from": map[string]any{"seq": from}})
	var seqs []uint64
	for len(seqs) < want {
		b, code, err := c.next(10 * time.Second)
		if err != nil || code != 0 {
			t.Fatalf("resume from %d: after %d of %d events: close %d, %v", from, len(seqs), want, code, err)
		}
		m := slowclientDecode(t, b)
		if m.Type == "event" {
			var e struct{ Seq uint64 }
			if err := json.Unmarshal(m.Event, &e); err != nil {
				t.Fatal(err)
			}
			seqs = append(seqs, e.Seq)
		}
	}
	return seqs
}

// slowclientCheckResume asserts the lag report: the client got a prefix of
// what was published, not all of it, resume_from is the first event it did
// not get, and resuming there yields the rest with no gap or duplicate.
func slowclientCheckResume(t *testing.T, n *testnode.Node, src string, got, published []uint64, resume uint64) {
	t.Helper()
	slowclientCheckPrefix(t, got, published)
	if len(got) == len(published) {
		t.Fatalf("the client received all %d events: it never lagged", len(got))
	}
	if resume != published[len(got)] {
		t.Fatalf("resume_from %d, want %d (the first event not received; got %s)", resume, published[len(got)], slowclientSeqString(got))
	}
	rest := slowclientResume(t, n, src, resume, len(published)-len(got))
	if !slices.Equal(rest, published[len(got):]) {
		t.Fatalf("resumed stream %s, want %s", slowclientSeqString(rest), slowclientSeqString(published[len(got):]))
	}
	t.Logf("backlog %d events, lagged with resume_from %d, resumed %d events with no gap", len(got), resume, len(rest))
}

func TestSlowClientNativeReadsBacklogThenLaggedThenClose4000(t *testing.T) {
	if testing.Short() {
		t.Skip("stalls a client for 11 s")
	}
	t.Parallel()
	n := slowclientNode(t, slowclientTolerance)
	const src = "slow-native"
	p := newSlowclientPublisher(t, n, src)
	c := slowclientDial(t, n, "/api/v1/stream", slowclientRcvBuf)
	c.send(map[string]any{"op": "subscribe", "id": "s1", "filter": map[string]any{"sources": []string{src}}})
	if b, _, err := c.next(5 * time.Second); err != nil || slowclientDecode(t, b).Type != "subscribed" {
		t.Fatalf("subscribe: %s %v", b, err)
	}

	// The client stops reading; events pile up until its queue overflows,
	// and the client stays silent for a while longer.
	published := p.untilLagged()
	slowclientStall(slowclientStallFor)

	var got []uint64
	var resume uint64
	for {
		b, code, err := c.next(10 * time.Second)
		if err != nil {
			t.Fatalf("after %d events (lagged: %v) the stream ended without close 4000: %v", len(got), resume != 0, err)
		}
		if code != 0 {
			if code != 4000 || resume == 0 {
				t.Fatalf("close %d after %d events, lagged notice seen: %v; want lagged then 4000", code, len(got), resume != 0)
			}
			break
		}
		m := slowclientDecode(t, b)
		switch {
		case m.Type == "event" && resume == 0:
			var e struct{ Seq uint64 }
			if err := json.Unmarshal(m.Event, &e); err != nil {
				t.Fatal(err)
			}
			got = append(got, e.Seq)
		case m.Type == "lagged" && m.ID == "s1" && resume == 0:
			resume = m.ResumeFrom
		default:
			t.Fatalf("unexpected message %.200s (after %d events, lagged: %v)", b, len(got), resume != 0)
		}
	}
	slowclientCheckResume(t, n, src, got, published, resume)
}

// The same for the compatibility dialects (database security streams,
// Phase 8): each its own lagged message, then close 4000.
func TestSlowClientDialectReadsBacklogThenLaggedThenClose4000(t *testing.T) {
	if testing.Short() {
		t.Skip("stalls a client for 11 s")
	}
	t.Parallel()
	for _, tc := range []struct {
		name, path, typ, data string
		// sync returns once the connection's subscription is in force.
		sync func(t *testing.T, c *slowclientWS)
		// seq is the seq of an event message, 0 for anything else.
		seq func(m slowclientMsg) uint64
	}{{
		name: "dbsec", path: "/api/v1/ws/security/audit", typ: "audit.slowclient",
		sync: func(t *testing.T, c *slowclientWS) {
			// The pong follows the subscription made when the connection opened.
			c.send(map[string]any{"type": "ping"})
			if b, _, err := c.next(5 * time.Second); err != nil || slowclientDecode(t, b).Type != "pong" {
				t.Fatalf("ping: %s %v", b, err)
			}
		},
		seq: func(m slowclientMsg) uint64 {
			if m.Type == "audit.slowclient" {
				return m.Seq
			}
			return 0
		},
	}, {
		name: "phase8", path: "/ws/phase8/security", typ: "security.fraud.alert",
		data: `"fraud_details":{"transaction_id":"tx-slow"},`,
		sync: func(t *testing.T, c *slowclientWS) {
			// The greeting follows the subscription.
			if b, _, err := c.next(5 * time.Second); err != nil || slowclientDecode(t, b).Type != "connection_established" {
				t.Fatalf("greeting: %s %v", b, err)
			}
		},
		seq: func(m slowclientMsg) uint64 {
			var d struct{ Seq uint64 }
			if m.Type == "security_event" && json.Unmarshal(m.Data, &d) == nil {
				return d.Seq
			}
			return 0
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			n := slowclientNode(t, slowclientTolerance)
			src := "slow-" + tc.name
			p := newSlowclientPublisher(t, n, src)
			p.typ, p.data = tc.typ, tc.data
			c := slowclientDial(t, n, tc.path, slowclientRcvBuf)
			tc.sync(t, c)

			published := p.untilLagged()
			slowclientStall(slowclientStallFor)

			var got []uint64
			var resume uint64
			for {
				b, code, err := c.next(10 * time.Second)
				if err != nil {
					t.Fatalf("after %d events (lagged: %v) the stream ended without close 4000: %v", len(got), resume != 0, err)
				}
				if code != 0 {
					if code != 4000 || resume == 0 {
						t.Fatalf("close %d after %d events, lagged notice seen: %v; want lagged then 4000", code, len(got), resume != 0)
					}
					break
				}
				m := slowclientDecode(t, b)
				seq := tc.seq(m)
				switch {
				case seq != 0 && resume == 0:
					got = append(got, seq)
				case m.Type == "lagged" && resume == 0:
					resume = m.ResumeFrom
				default:
					t.Fatalf("unexpected message %.200s (after %d events, lagged: %v)", b, len(got), resume != 0)
				}
			}
			slowclientCheckResume(t, n, src, got, published, resume)
		})
	}
}

// GraphQL (graphql-transport-ws): the lagging operation ends with an
// "error" message whose extensions carry code LAGGED and resume_from,
// after the events queued before the lag point; the connection stays
// open, and resubscribing with fromSeq on it continues with no gap.
func TestSlowClientGraphQLReadsBacklogThenLaggedError(t *testing.T) {
	if testing.Short() {
		t.Skip("stalls a client for 11 s")
	}
	t.Parallel()
	n := slowclientNode(t, slowclientTolerance)
	const src = "slow-graphql"
	p := newSlowclientPublisher(t, n, src)
	c := slowclientDial(t, n, "/graphql", slowclientRcvBuf, "graphql-transport-ws")
	c.send(map[string]any{"type": "connection_init", "payload": map[string]any{}})
	if b, _, err := c.next(5 * time.Second); err != nil || slowclientDecode(t, b).Type != "connection_ack" {
		t.Fatalf("connection_init: %s %v", b, err)
	}
	subs := slowclientMetric(t, n, "vigil_subscriptions")
	subscribe := func(id string, from *uint64) {
		vars := map[string]any{"s": []string{src}}
		// data (8 KiB each) fills the socket as fast as the other tests.
		q := `subscription($s: [String!]) { events(filter: {sources: $s}) { seq data } }`
		if from != nil {
			q = `subscription($s: [String!], $f: Int) { events(filter: {sources: $s}, fromSeq: $f) { seq data } }`
			vars["f"] = *from
		}
		c.send(map[string]any{"id": id, "type": "subscribe", "payload": map[string]any{"query": q, "variables": vars}})
	}
	subscribe("1", nil)
	slowclientWaitFor(t, 5*time.Second, "the subscription reaches the hub", func() bool {
		return slowclientMetric(t, n, "vigil_subscriptions") > subs
	})

	published := p.untilLagged()
	slowclientStall(slowclientStallFor)

	// read returns the seq of a "next", or the LAGGED error's resume_from.
	read := func(id string) (seq, resume uint64) {
		for {
			b, code, err := c.next(10 * time.Second)
			if err != nil || code != 0 {
				t.Fatalf("operation %s: stream ended (close %d): %v", id, code, err)
			}
			m := slowclientDecode(t, b)
			switch m.Type {
			case "ping":
				c.send(map[string]any{"type": "pong"})
				continue
			case "next":
				var pl struct {
					Data struct{ Events struct{ Seq uint64 } }
				}
				if err := json.Unmarshal(m.Payload, &pl); err != nil || m.ID != id {
					t.Fatalf("unexpected next %.200s: %v", b, err)
				}
				return pl.Data.Events.Seq, 0
			case "error":
				var errs []struct {
					Message    string
					Extensions struct {
						Code       string
						ResumeFrom uint64 `json:"resume_from"`
					}
				}
				if err := json.Unmarshal(m.Payload, &errs); err != nil || len(errs) != 1 || errs[0].Extensions.Code != "LAGGED" {
					t.Fatalf("error message is not the lag notice: %.300s (%v)", b, err)
				}
				return 0, errs[0].Extensions.ResumeFrom
			default:
				t.Fatalf("unexpected message %.200s", b)
			}
		}
	}
	var got []uint64
	var resume uint64
	for resume == 0 {
		seq, r := read("1")
		if seq != 0 {
			got = append(got, seq)
		}
		resume = r
	}
	slowclientCheckPrefix(t, got, published)
	if len(got) == len(published) {
		t.Fatalf("the client received all %d events: it never lagged", len(got))
	}
	if resume != published[len(got)] {
		t.Fatalf("resume_from %d, want %d (the first event not received)", resume, published[len(got)])
	}
	// The same connection resumes the operation with no gap.
	subscribe("2", &resume)
	var rest []uint64
	for len(rest) < len(published)-len(got) {
		seq, r := read("2")
		if r != 0 {
			t.Fatalf("resumed operation lagged again at %d", r)
		}
		rest = append(rest, seq)
	}
	if !slices.Equal(rest, published[len(got):]) {
		t.Fatalf("resumed operation %s, want %s", slowclientSeqString(rest), slowclientSeqString(published[len(got):]))
	}
	t.Logf("backlog %d events, LAGGED with resume_from %d, resumed %d events with no gap", len(got), resume, len(rest))
}

// A WebSocket client that never reads again is cut once its socket has
// taken nothing for the tolerated time (here a 2 s ping interval; the old
// fixed write timeout held it 10 s), and its connection and goroutines are
// released.
func TestSlowClientNeverReadingWebSocketIsCutAfterToleratedTime(t *testing.T) {
	n := slowclientNode(t, slowclientShortPing)
	const src = "slow-never-ws"
	p := newSlowclientPublisher(t, n, src)
	p.publish(1)
	baseline := slowclientBaseline(p)
	c := slowclientDial(t, n, "/api/v1/stream", slowclientRcvBuf)
	c.send(map[string]any{"op": "subscribe", "id": "s1", "filter": map[string]any{"sources": []string{src}}})
	if b, _, err := c.next(5 * time.Second); err != nil || slowclientDecode(t, b).Type != "subscribed" {
		t.Fatalf("subscribe: %s %v", b, err)
	}
	p.untilLagged()
	took := slowclientWaitFor(t, slowclientShortPing+3*time.Second, "the stalled client is disconnected", func() bool {
		return slowclientConnections(t, n, "websocket") == 0
	})
	t.Logf("cut %v after it lagged (ping interval %v)", took.Round(10*time.Millisecond), slowclientShortPing)
	c.conn.Close()
	slowclientWaitGoroutines(t, p, baseline, 5*time.Second)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// slowclientSSE opens an SSE stream of src over a raw TCP connection with
// the given receive buffer and returns the response body's reader, after
// the ": head" comment (the subscription is registered by then).
func slowclientSSE(t *testing.T, n *testnode.Node, src string, rcvbuf int) (*bufio.Reader, func()) {
	t.Helper()
	conn := slowclientDialTCP(t, n, rcvbuf)
	req, err := http.NewRequest(http.MethodGet, n.URL()+"/api/v1/stream/sse?sources="+src, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+n.AdminToken())
	if err := req.Write(conn); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("sse: %v %v", resp, err)
	}
	body := bufio.NewReader(resp.Body)
	for {
		line, err := body.ReadString('\n')
		if err != nil {
			t.Fatalf("sse preamble: %v", err)
		}
		if strings.HasPrefix(line, ": head") {
			break
		}
	}
	_ = conn.SetReadDeadline(time.Time{})
	return body, func() {
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	}
}

// Item 7: an SSE client that resumes reading in time reads its backlog,
// then "event: lagged" with resume_from, then the response ends.
func TestSlowClientSSEReadsBacklogThenLagged(t *testing.T) {
	if testing.Short() {
		t.Skip("stalls a client for 11 s")
	}
	t.Parallel()
	n := slowclientNode(t, slowclientTolerance)
	const src = "slow-sse"
	p := newSlowclientPublisher(t, n, src)
	body, arm := slowclientSSE(t, n, src, slowclientRcvBuf)

	published := p.untilLagged()
	slowclientStall(slowclientStallFor)

	arm()
	var got []uint64
	var resume uint64
	var event string
	for {
		line, err := body.ReadString('\n')
		if err == io.EOF && resume != 0 {
			break // the response ended after the notice
		}
		if err != nil {
			t.Fatalf("after %d events (lagged: %v): %v", len(got), resume != 0, err)
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case resume != 0 && line != "":
			t.Fatalf("%q after the lag notice", line)
		case strings.HasPrefix(line, "id: "):
			seq, err := strconv.ParseUint(strings.TrimPrefix(line, "id: "), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, seq)
		case strings.HasPrefix(line, "event: "):
			event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: ") && event == "lagged":
			var d struct {
				ResumeFrom uint64 `json:"resume_from"`
			}
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &d); err != nil {
				t.Fatal(err)
			}
			resume = d.ResumeFrom
		case strings.HasPrefix(line, "data: "), line == "", strings.HasPrefix(line, ":"):
		default:
			t.Fatalf("unexpected line %q", line)
		}
	}
	slowclientCheckResume(t, n, src, got, published, resume)
}

// Item 7: a stalled SSE client used to pin its handler (no write deadline,
// and http.Server has no WriteTimeout). It is cut after the tolerated
// time; its handler returns and its connection slot is freed.
func TestSlowClientNeverReadingSSEIsCutAfterToleratedTime(t *testing.T) {
	n := slowclientNode(t, slowclientShortPing)
	const src = "slow-never-sse"
	p := newSlowclientPublisher(t, n, src)
	p.publish(1)
	baseline := slowclientBaseline(p)
	body, arm := slowclientSSE(t, n, src, slowclientRcvBuf)
	if got := slowclientConnections(t, n, "sse"); got != 1 {
		t.Fatalf("%v SSE connections, want 1", got)
	}
	p.untilLagged()
	took := slowclientWaitFor(t, slowclientShortPing+3*time.Second, "the stalled SSE client is disconnected", func() bool {
		return slowclientConnections(t, n, "sse") == 0
	})
	t.Logf("cut %v after it lagged (tolerance %v)", took.Round(10*time.Millisecond), slowclientShortPing)
	// The server closed the connection: what the socket still holds ends
	// in EOF (or an error), not in a read timeout.
	arm()
	if _, err := io.Copy(io.Discard, body); isTimeout(err) {
		t.Fatalf("the server kept the stalled SSE connection open: %v", err)
	}
	slowclientWaitGoroutines(t, p, baseline, 5*time.Second)
}

// Clients that stopped reading must not hold the node's graceful shutdown
// (or its goroutines) for the tolerated silence: once the hub ends their
// streams, what is still queued gets a short deadline. Before, the stalled
// WebSocket and SSE writers kept shutdown waiting for its 10 s drain limit
// and outlived it.
func TestSlowClientStalledClientsDoNotHoldShutdown(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and stops a node with stalled clients")
	}
	baseline := runtime.NumGoroutine()
	n := slowclientNode(t, slowclientTolerance)
	const src = "slow-shutdown"
	p := newSlowclientPublisher(t, n, src)
	ws := slowclientDial(t, n, "/api/v1/stream", slowclientRcvBuf)
	ws.send(map[string]any{"op": "subscribe", "id": "s1", "filter": map[string]any{"sources": []string{src}}})
	if b, _, err := ws.next(5 * time.Second); err != nil || slowclientDecode(t, b).Type != "subscribed" {
		t.Fatalf("subscribe: %s %v", b, err)
	}
	slowclientSSE(t, n, src, slowclientRcvBuf)
	p.untilLaggedN(2)

	start := time.Now()
	n.Stop()
	took := time.Since(start)
	if took > 5*time.Second {
		t.Fatalf("graceful shutdown took %v with two stalled clients (ping interval %v)", took, slowclientTolerance)
	}
	t.Logf("graceful shutdown with two stalled clients took %v", took.Round(10*time.Millisecond))
	p.http.CloseIdleConnections()
	http.DefaultClient.CloseIdleConnections()
	slowclientWaitFor(t, 5*time.Second, "the node's goroutines end", func() bool { return runtime.NumGoroutine() <= baseline })
}
