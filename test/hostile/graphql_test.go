package hostile

// GraphQL is bounded (issue 8, item 8): every resource one GraphQL request
// can make the server spend has a limit, refused fast with an error naming
// the limit, over HTTP and over both WebSocket protocols; and the
// WebSocket protocols close (or answer) the way their clients expect.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/vigil-sec/vigil/internal/auth/tokens"
	"github.com/vigil-sec/vigil/internal/config"
	"github.com/vigil-sec/vigil/internal/testnode"
	"github.com/vigil-sec/vigil/internal/transport/graphql"
)

// gqlNode is a real node with a publisher and a viewer of tenant acme.
type gqlNode struct {
	t         *testing.T
	n         *testnode.Node
	publisher string
	viewer    string
}

func gqlStart(t *testing.T, configure ...func(*config.Config)) *gqlNode {
	t.Helper()
	n := testnode.Start(t, configure...)
	g := &gqlNode{t: t, n: n}
	g.publisher = g.token(tokens.CreateRequest{Role: "publisher", Tenant: "acme"})
	g.viewer = g.token(tokens.CreateRequest{Role: "viewer", Tenant: "acme"})
	return g
}

// token creates a token through the admin API.
func (g *gqlNode) token(req tokens.CreateRequest) string {
	g.t.Helper()
	var out tokens.CreateResponse
	if st, body := g.do("POST", "/api/v1/tokens", g.n.AdminToken(), "application/json", gqlJSON(req), &out); st != http.StatusCreated {
		g.t.Fatalf("create token: HTTP %d: %s", st, body)
	}
	return out.Token
}

// publish stores n events of tenant acme, 1,000 per request.
func (g *gqlNode) publish(n int) {
	g.t.Helper()
	for done := 0; done < n; {
		batch := min(1000, n-done)
		evs := make([]map[string]any, batch)
		for i := range evs {
			evs[i] = map[string]any{"type": "authentication.login", "severity": "info", "user": fmt.Sprintf("user%d", done+i), "message": "hostile graphql"}
		}
		if st, body := g.do("POST", "/api/v1/events", g.publisher, "application/json", gqlJSON(evs), nil); st != http.StatusOK {
			g.t.Fatalf("publish: HTTP %d: %s", st, body)
		}
		done += batch
	}
}

func (g *gqlNode) do(method, path, tok, contentType string, body []byte, out any) (int, string) {
	g.t.Helper()
	req, err := http.NewRequest(method, g.n.URL()+path, bytes.NewReader(body))
	if err != nil {
		g.t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("Authorization", "Bearer "+tok)
	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		g.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode/100 == 2 {
		if err := json.Unmarshal(b, out); err != nil {
			g.t.Fatalf("%s %s: decode: %v", method, path, err)
		}
	}
	return resp.StatusCode, string(b)
}

type gqlResponse struct {
	Data   json.RawMessage `json:"data"`
	Errors []struct {
		Message    string         `json:"message"`
		Extensions map[string]any `json:"extensions"`
	} `json:"errors"`
}

// query POSTs a GraphQL query as the viewer, with a client deadline: a
// refusal must come fast, an unbounded query would not answer in time.
func (g *gqlNode) query(q string, within time.Duration) (int, gqlResponse, time.Duration) {
	g.t.Helper()
	body := gqlJSON(map[string]any{"query": q})
	req, _ := http.NewRequest("POST", g.n.URL()+"/graphql", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+g.viewer)
	start := time.Now()
	resp, err := (&http.Client{Timeout: within}).Do(req)
	if err != nil {
		g.t.Fatalf("query (%d bytes) not answered within %s: %v", len(q), within, err)
	}
	defer resp.Body.Close()
	var out gqlResponse
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &out); err != nil {
		g.t.Fatalf("query: HTTP %d, not a GraphQL response: %.300s", resp.StatusCode, b)
	}
	return resp.StatusCode, out, time.Since(start)
}

// refused asserts that a response is an error naming want, with no data.
func gqlRefused(t *testing.T, what string, out gqlResponse, want string) {
	t.Helper()
	if len(out.Errors) == 0 {
		t.Fatalf("%s: accepted (data %.200s), want an error naming the limit", what, out.Data)
	}
	if !strings.Contains(out.Errors[0].Message, want) {
		t.Fatalf("%s: error %q does not name the limit (%q)", what, out.Errors[0].Message, want)
	}
	if d := string(out.Data); d != "" && d != "null" && !strings.Contains(want, "time limit") {
		t.Fatalf("%s: refused operation returned data %.200s", what, d)
	}
}

// gqlShow prints a server message for a failure, shortened.
func gqlShow(m map[string]json.RawMessage) string {
	b, _ := json.Marshal(m)
	if len(b) > 300 {
		return string(b[:300]) + "…"
	}
	return string(b)
}

func gqlJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// TestGraphQLAliasBombRefused is the attack: one 50 KB query of
// 1,000 aliases of events(limit:1000), from a viewer. Before the limits it
// ran for 106 s in 2.7 GB; now it is refused before any resolver runs.
func TestGraphQLAliasBombRefused(t *testing.T) {
	g := gqlStart(t)
	g.publish(1000) // every alias would read all of them
	var q strings.Builder
	q.WriteString("{")
	for i := range 1000 {
		fmt.Fprintf(&q, " a%d: events(limit: 1000) { events { id } }", i)
	}
	q.WriteString(" }")
	st, out, took := g.query(q.String(), 10*time.Second)
	gqlRefused(t, "1,000 aliases", out, "the limit is 500")
	if st != http.StatusUnprocessableEntity {
		t.Errorf("HTTP %d, want 422", st)
	}
	if took > 2*time.Second {
		t.Errorf("refusal took %s", took)
	}
	t.Logf("%d-byte query refused in %s: %s", q.Len(), took, out.Errors[0].Message)
}

// TestGraphQLComplexityRefused: few fields, but each list asks for 10,000
// events: the complexity limit prices a list by its limit argument.
func TestGraphQLComplexityRefused(t *testing.T) {
	g := gqlStart(t)
	g.publish(1000)
	var q strings.Builder
	q.WriteString("{")
	for i := range 20 {
		fmt.Fprintf(&q, " a%d: events(limit: 10000) { events { id type } }", i)
	}
	q.WriteString(" }")
	st, out, took := g.query(q.String(), 10*time.Second)
	gqlRefused(t, "20 × events(limit: 10000)", out, "exceeds the limit of 50000")
	if st != http.StatusUnprocessableEntity || took > 2*time.Second {
		t.Errorf("HTTP %d in %s, want 422 at once", st, took)
	}
	// One ordinary page stays well inside the limit.
	_, ok, _ := g.query("{ events(limit: 1000) { events { id seq time type category severity user message } next } }", 10*time.Second)
	if len(ok.Errors) > 0 {
		t.Fatalf("an ordinary page was refused: %s", ok.Errors[0].Message)
	}
}

// TestGraphQLDepthRefused: the only recursive types are introspection's;
// a deep ofType chain is refused by depth, as is one hidden in fragments.
func TestGraphQLDepthRefused(t *testing.T) {
	g := gqlStart(t)
	deep := "{ __schema { types { fields { type " + strings.Repeat("{ ofType ", 20) + "{ name }" + strings.Repeat(" }", 20) + " } } } }"
	st, out, _ := g.query(deep, 10*time.Second)
	gqlRefused(t, "depth 25", out, "exceeds the limit of 15")
	if st != http.StatusUnprocessableEntity {
		t.Errorf("HTTP %d, want 422", st)
	}
	// A fragment bomb: each fragment spreads the next twice, so 30
	// fragments expand to 2^30 fields. It must be refused at the field
	// limit, not walked.
	var q strings.Builder
	q.WriteString("{ __schema { types { ...F0 } } }\n")
	for i := range 30 {
		fmt.Fprintf(&q, "fragment F%d on __Type { ...F%d ...F%d }\n", i, i+1, i+1)
	}
	q.WriteString("fragment F30 on __Type { name }\n")
	_, out, took := g.query(q.String(), 10*time.Second)
	gqlRefused(t, "fragment bomb", out, "the limit is 500")
	if took > 2*time.Second {
		t.Errorf("fragment bomb refused in %s", took)
	}
	// The standard introspection shape stays allowed.
	_, ok, _ := g.query("{ __schema { queryType { name } types { name kind fields { name type { name kind ofType { name kind ofType { name kind ofType { name kind } } } } } } } }", 10*time.Second)
	if len(ok.Errors) > 0 {
		t.Fatalf("introspection refused: %s", ok.Errors[0].Message)
	}
}

// TestGraphQLBodyLimit: a 100 MB body is refused with 413 after at most the
// limit is read, whether its length is declared or it is chunked.
func TestGraphQLBodyLimit(t *testing.T) {
	g := gqlStart(t)
	const total = 100 << 20
	for _, chunked := range []bool{false, true} {
		t.Run(fmt.Sprintf("chunked=%v", chunked), func(t *testing.T) {
			conn, err := net.DialTimeout("tcp", g.n.Addr(), 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			hdr := "POST /graphql HTTP/1.1\r\nHost: " + g.n.Addr() + "\r\nAuthorization: Bearer " + g.viewer + "\r\nContent-Type: application/json\r\n"
			if chunked {
				hdr += "Transfer-Encoding: chunked\r\n\r\n"
			} else {
				hdr += fmt.Sprintf("Content-Length: %d\r\n\r\n", total)
			}
			if _, err := conn.Write([]byte(hdr)); err != nil {
				t.Fatal(err)
			}
			// The client streams the body; the response is read
			// concurrently, as soon as the server sends it.
			var written atomic.Int64
			stop := make(chan struct{})
			writerDone := make(chan struct{})
			go func() { // owned by this subtest: ends on a write error or stop
				defer close(writerDone)
				chunk := bytes.Repeat([]byte(" "), 64<<10)
				chunk[0] = '{'
				for written.Load() < total {
					select {
					case <-stop:
						return
					default:
					}
					b := chunk
					if chunked {
						b = append([]byte(fmt.Sprintf("%x\r\n", len(chunk))), append(chunk, '\r', '\n')...)
					}
					_ = conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
					if _, err := conn.Write(b); err != nil {
						return
					}
					written.Add(int64(len(chunk)))
				}
			}()
			defer func() { close(stop); conn.Close(); <-writerDone }()
			start := time.Now()
			_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatalf("no response (client had written %d bytes): %v", written.Load(), err)
			}
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			sent := written.Load()
			t.Logf("HTTP %d after %s, client had written %d of %d bytes: %s", resp.StatusCode, time.Since(start), sent, total, bytes.TrimSpace(b))
			if resp.StatusCode != http.StatusRequestEntityTooLarge {
				t.Fatalf("HTTP %d, want 413", resp.StatusCode)
			}
			if !strings.Contains(string(b), "larger than 1048576 bytes") {
				t.Errorf("413 body does not name the limit: %s", b)
			}
			if sent > 32<<20 {
				t.Errorf("the server answered only after %d bytes: it read far past the 1 MiB limit", sent)
			}
		})
	}
}

// TestGraphQLTimeLimit: a query cheap by complexity but slow to answer
// (filters that match nothing scan the whole log) ends at the time limit
// with an error naming it.
func TestGraphQLTimeLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("publishes 10,000 events")
	}
	const limit = 200 * time.Millisecond
	// The scans must be slow: from JetStream, not from the replay cache
	// (issue 12 item 5), which answers these 50 in well under the limit.
	g := gqlStart(t, func(c *config.Config) { c.GraphQL.Timeout = limit; c.ReplayCacheMB = 0 })
	g.publish(10_000)
	var q strings.Builder
	q.WriteString("{")
	for i := range 50 {
		fmt.Fprintf(&q, ` a%d: events(limit: 1, filter: {types: ["no.such.type.%d"]}) { events { id } }`, i, i)
	}
	q.WriteString(" }")
	_, out, took := g.query(q.String(), 30*time.Second)
	gqlRefused(t, "50 full scans", out, "query exceeded the time limit of 200ms")
	// The store checks the deadline between read batches: one batch per
	// alias may finish after it, and on a loaded 2-core box (CI) a batch
	// took seconds. The refusal naming the limit above is the proof; this
	// bound only catches a limit that is not applied at all.
	slack := 10 * time.Second
	if gqlRace {
		slack = 15 * time.Second
	}
	if took > limit+slack {
		t.Errorf("answered after %s, limit %s", took, limit)
	}
	t.Logf("answered in %s: %s (%d errors)", took, out.Errors[0].Message, len(out.Errors))
}

// --- WebSocket ---

// gqlDial opens /graphql with a subprotocol.
func (g *gqlNode) gqlDial(t *testing.T, protocol string) net.Conn {
	t.Helper()
	d := ws.Dialer{Protocols: []string{protocol}, Timeout: 5 * time.Second}
	conn, _, hs, err := d.Dial(context.Background(), "ws://"+g.n.Addr()+"/graphql")
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	if hs.Protocol != protocol {
		t.Fatalf("negotiated %q, want %q", hs.Protocol, protocol)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func gqlSend(t *testing.T, c net.Conn, v any) {
	t.Helper()
	b, ok := v.([]byte)
	if !ok {
		b = gqlJSON(v)
	}
	if err := wsutil.WriteClientText(c, b); err != nil {
		t.Fatal(err)
	}
}

// gqlNext reads the next server message, skipping keep-alives; a close
// frame is returned as a wsutil.ClosedError.
func gqlNext(c net.Conn) (map[string]json.RawMessage, error) {
	for {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		b, err := wsutil.ReadServerText(c)
		if err != nil {
			return nil, err
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(b, &m); err != nil {
			return nil, fmt.Errorf("server sent non-JSON %q", b)
		}
		if t := string(m["type"]); t == `"ka"` || t == `"ping"` {
			continue
		}
		return m, nil
	}
}

// gqlExpectClose reads until the server closes and asserts the code.
func gqlExpectClose(t *testing.T, c net.Conn, code ws.StatusCode) string {
	t.Helper()
	for {
		m, err := gqlNext(c)
		if err == nil {
			continue // e.g. a connection_error before the close
		}
		var closed wsutil.ClosedError
		if !errors.As(err, &closed) {
			t.Fatalf("want close %d, got %v (last message %s)", code, err, gqlShow(m))
		}
		if closed.Code != code {
			t.Fatalf("closed with %d %q, want %d", closed.Code, closed.Reason, code)
		}
		return closed.Reason
	}
}

func (g *gqlNode) gqlInit(t *testing.T, c net.Conn, tok string) {
	t.Helper()
	gqlSend(t, c, map[string]any{"type": "connection_init", "payload": map[string]any{"Authorization": "Bearer " + tok}})
	m, err := gqlNext(c)
	if err != nil || string(m["type"]) != `"connection_ack"` {
		t.Fatalf("connection_init: %s %v", gqlShow(m), err)
	}
}

// TestGraphQLWSWrongTokenCloses4403: graphql-transport-ws refuses a bad
// token in connection_init with 4403 Forbidden — a 1000 made the standard
// graphql-ws client reconnect at once, 1,237 times in 3 s.
func TestGraphQLWSWrongTokenCloses4403(t *testing.T) {
	g := gqlStart(t)
	for name, payload := range map[string]any{
		"wrong token": map[string]any{"Authorization": "Bearer vgt_0000000000000000_" + strings.Repeat("0", 64)},
		"no token":    map[string]any{},
	} {
		t.Run(name, func(t *testing.T) {
			c := g.gqlDial(t, "graphql-transport-ws")
			gqlSend(t, c, map[string]any{"type": "connection_init", "payload": payload})
			if reason := gqlExpectClose(t, c, graphql.CloseForbidden); reason != "Forbidden" {
				t.Errorf("reason %q", reason)
			}
		})
	}
}

// TestGraphQLWSMalformedCloses4400: graphql-transport-ws closes on a
// message the protocol does not specify with 4400, and on its other
// violations with their codes.
func TestGraphQLWSMalformedCloses4400(t *testing.T) {
	g := gqlStart(t)
	for _, tc := range []struct {
		name    string
		init    bool // after a successful connection_init
		message any
		code    ws.StatusCode
	}{
		{"not JSON", true, []byte("hello"), 4400},
		{"JSON array", true, []byte(`[1,2,3]`), 4400},
		{"unknown type", true, map[string]any{"type": "bogus"}, 4400},
		{"type not a string", true, map[string]any{"type": 7}, 4400},
		{"subscribe without id", true, map[string]any{"type": "subscribe", "payload": map[string]any{"query": "{ __typename }"}}, 4400},
		{"subscribe without payload", true, map[string]any{"type": "subscribe", "id": "1"}, 4400},
		{"subscribe with a non-string query", true, map[string]any{"type": "subscribe", "id": "1", "payload": map[string]any{"query": 5}}, 4400},
		{"server message from the client", true, map[string]any{"type": "next", "id": "1", "payload": map[string]any{}}, 4400},
		{"malformed before init", false, []byte("{"), 4400},
		{"init payload not an object", false, map[string]any{"type": "connection_init", "payload": []int{1}}, 4400},
		{"second connection_init", true, map[string]any{"type": "connection_init", "payload": map[string]any{"token": g.viewer}}, 4429},
		{"subscribe before connection_init", false, map[string]any{"type": "subscribe", "id": "1", "payload": map[string]any{"query": "{ __typename }"}}, 4401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := g.gqlDial(t, "graphql-transport-ws")
			if tc.init {
				g.gqlInit(t, c, g.viewer)
			}
			gqlSend(t, c, tc.message)
			gqlExpectClose(t, c, tc.code)
		})
	}
}

// TestGraphQLLegacyMalformedAnswered: the legacy graphql-ws protocol
// answers malformed messages with connection_error / error messages and
// keeps the connection.
func TestGraphQLLegacyMalformedAnswered(t *testing.T) {
	g := gqlStart(t)
	c := g.gqlDial(t, "graphql-ws")
	gqlSend(t, c, []byte("not json")) // before connection_init
	if m, err := gqlNext(c); err != nil || string(m["type"]) != `"connection_error"` {
		t.Fatalf("not JSON before init: %s %v, want connection_error", gqlShow(m), err)
	}
	g.gqlInit(t, c, g.viewer)
	for _, tc := range []struct {
		name, message, wantType, wantID string
	}{
		{"not JSON", `{"type":`, "connection_error", ""},
		{"unknown type", `{"type":"bogus","id":"7"}`, "error", "7"},
		{"start without payload", `{"type":"start","id":"8"}`, "error", "8"},
		{"stop without id", `{"type":"stop"}`, "error", ""},
	} {
		gqlSend(t, c, []byte(tc.message))
		m, err := gqlNext(c)
		if err != nil {
			t.Fatalf("%s: %v, want a %s message and the connection kept", tc.name, err, tc.wantType)
		}
		var typ, id string
		_ = json.Unmarshal(m["type"], &typ)
		_ = json.Unmarshal(m["id"], &id)
		if typ != tc.wantType || id != tc.wantID || !strings.Contains(string(m["payload"]), "message") {
			t.Fatalf("%s: got %s, want type %s id %q with a message", tc.name, gqlShow(m), tc.wantType, tc.wantID)
		}
	}
	// Still open and working.
	gqlSend(t, c, map[string]any{"type": "start", "id": "9", "payload": map[string]any{"query": "{ __typename }"}})
	m, err := gqlNext(c)
	if err != nil || string(m["type"]) != `"data"` || !strings.Contains(string(m["payload"]), "Query") {
		t.Fatalf("after malformed messages: %s %v, want the query's data", gqlShow(m), err)
	}
}

// TestGraphQLWSLimits: the query limits apply to operations sent over the
// WebSocket too (a subscribe's payload), and an oversized message closes
// the connection with 1009.
func TestGraphQLWSLimits(t *testing.T) {
	g := gqlStart(t)
	c := g.gqlDial(t, "graphql-transport-ws")
	g.gqlInit(t, c, g.viewer)
	// A query may be sent over the socket too; only introspection nests.
	deep := "{ __schema { types { fields { type " + strings.Repeat("{ ofType ", 20) + "{ name }" + strings.Repeat(" }", 20) + " } } } }"
	var aliases strings.Builder
	aliases.WriteString("subscription {")
	for i := range 600 {
		fmt.Fprintf(&aliases, " a%d: events { id }", i)
	}
	aliases.WriteString(" }")
	for i, tc := range []struct{ name, query, want string }{
		{"depth", deep, "exceeds the limit of 15"},
		{"fields", aliases.String(), "the limit is 500"},
	} {
		id := fmt.Sprint(i + 1)
		gqlSend(t, c, map[string]any{"type": "subscribe", "id": id, "payload": map[string]any{"query": tc.query}})
		m, err := gqlNext(c)
		for err == nil && string(m["type"]) == `"complete"` { // gqlgen completes the previous refusal
			m, err = gqlNext(c)
		}
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if string(m["type"]) != `"error"` || !strings.Contains(string(m["payload"]), tc.want) {
			t.Fatalf("%s: got %s, want an error naming the limit (%q)", tc.name, gqlShow(m), tc.want)
		}
	}
	// A message of two fragments, 1 MiB and 1 byte: each frame fits the
	// 1 MiB limit, the message does not. (The whole message is sent, so
	// that the server has read everything when it closes: a close with
	// unread data resets the connection, losing the close frame.)
	first := ws.NewFrame(ws.OpText, false, bytes.Repeat([]byte(" "), 1<<20))
	last := ws.NewFrame(ws.OpContinuation, true, []byte(" "))
	for _, f := range []ws.Frame{first, last} {
		if err := ws.WriteFrame(c, ws.MaskFrameInPlace(f)); err != nil {
			t.Fatal(err)
		}
	}
	gqlExpectClose(t, c, ws.StatusMessageTooBig)
}
