package graphql_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/vigil-sec/vigil/internal/hub"
	"github.com/vigil-sec/vigil/internal/stats"
	"github.com/vigil-sec/vigil/internal/transport/graphql"
	"github.com/vigil-sec/vigil/internal/transport/rest"
)

// gqlEnv is a real GraphQL server over the real hub and log.
type gqlEnv struct {
	*env
	srv   *httptest.Server
	stats *stats.Stats
	gql   *graphql.Server
}

func newGQL(t testing.TB) *gqlEnv { return newGQLWith(t, nil) }

// newGQLWith lets a test adjust the GraphQL dependencies.
func newGQLWith(t testing.TB, adjust func(*env, *graphql.Deps)) *gqlEnv {
	e := newEnv(t)
	st := stats.New(nil)
	go func() { _ = st.Run(e.Ctx, e.Hub) }()
	rep := &stats.Reporter{Stats: st, Hub: e.Hub, Checks: []stats.Check{{Name: "event_log", Probe: e.Log.Ready}}}
	events := &rest.Events{Ingest: e.Ingest, Log: e.Log, Policy: hub.DefaultPolicy}
	waitHubSubs(t, e, 1) // the stats client: events before it subscribed could be missed
	deps := graphql.Deps{Hub: e.Hub, Auth: e.Deps.Auth, Ingest: e.Ingest, History: events,
		Events: e.Log, Stats: st, Status: rep.Status}
	if adjust != nil {
		adjust(e, &deps)
	}
	g := graphql.New(deps)
	mux := http.NewServeMux()
	mux.Handle("/graphql", g)
	mux.Handle("GET /graphql/schema.graphql", graphql.SchemaHandler())
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return &gqlEnv{env: e, srv: srv, stats: st, gql: g}
}

// post runs one query or mutation over HTTP.
func (g *gqlEnv) post(t testing.TB, query string, vars map[string]any) (map[string]any, []any) {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	req, _ := http.NewRequest("POST", g.srv.URL+"/graphql", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Data   map[string]any `json:"data"`
		Errors []any          `json:"errors"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("decode: %v", err)
	}
	return out.Data, out.Errors
}

// waitSubs waits until the hub has n subscriptions: GraphQL subscribe
// messages have no acknowledgement, so a test must not publish before the
// subscription exists.
func (g *gqlEnv) waitSubs(t testing.TB, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for g.Hub.Stats().Subscriptions < n {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d subscriptions registered", g.Hub.Stats().Subscriptions, n)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func waitHubSubs(t testing.TB, e *env, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for e.Hub.Stats().Subscriptions < n {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d subscriptions registered", e.Hub.Stats().Subscriptions, n)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// gqlWS is a minimal GraphQL-over-WebSocket client for both protocols:
// graphql-transport-ws ("subscribe"/"next"/"complete", ping/pong) and the
// legacy graphql-ws ("start"/"data"/"complete", "ka").
type gqlWS struct {
	t      testing.TB
	conn   net.Conn
	r      io.Reader
	proto  string
	queued map[string][]map[string]any
}

const (
	protoTransportWS = "graphql-transport-ws"
	protoLegacyWS    = "graphql-ws"
)

func dialGQL(t testing.TB, url, proto string, params map[string]any) (*gqlWS, error) {
	t.Helper()
	d := ws.Dialer{Protocols: []string{proto}, Timeout: 5 * time.Second}
	conn, br, _, err := d.Dial(context.Background(), "ws"+strings.TrimPrefix(url, "http"))
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { conn.Close() })
	c := &gqlWS{t: t, conn: conn, r: conn, proto: proto, queued: map[string][]map[string]any{}}
	if br != nil {
		c.r = io.MultiReader(br, conn)
	}
	c.write(map[string]any{"type": "connection_init", "payload": params})
	for {
		m, err := c.readRaw()
		if err != nil {
			return nil, err
		}
		switch m["type"] {
		case "connection_ack":
			return c, nil
		case "ka":
			continue
		default:
			return nil, &initError{m}
		}
	}
}

type initError struct{ msg map[string]any }

func (e *initError) Error() string { b, _ := json.Marshal(e.msg); return string(b) }

func (c *gqlWS) write(v any) {
	c.t.Helper()
	b, _ := json.Marshal(v)
	if err := wsutil.WriteClientText(c.conn, b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

func (c *gqlWS) readRaw() (map[string]any, error) {
	_ = c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	rw := struct {
		io.Reader
		io.Writer
	}{c.r, c.conn}
	b, err := wsutil.ReadServerText(rw)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	return m, nil
}

func (c *gqlWS) subscribe(id, query string, vars map[string]any) {
	typ := "subscribe"
	if c.proto == protoLegacyWS {
		typ = "start"
	}
	c.write(map[string]any{"id": id, "type": typ, "payload": map[string]any{"query": query, "variables": vars}})
}

func (c *gqlWS) stop(id string) {
	typ := "complete"
	if c.proto == protoLegacyWS {
		typ = "stop"
	}
	c.write(map[string]any{"id": id, "type": typ})
}

// next returns the next message for subscription id: a "next"/"data"
// payload, or an "error"/"complete" message (returned whole).
func (c *gqlWS) next(id string) map[string]any {
	c.t.Helper()
	if q := c.queued[id]; len(q) > 0 {
		c.queued[id] = q[1:]
		return q[0]
	}
	for {
		m, err := c.readRaw()
		if err != nil {
			c.t.Fatalf("read (waiting for %s): %v", id, err)
		}
		switch m["type"] {
		case "ka", "pong":
			continue
		case "ping":
			c.write(map[string]any{"type": "pong"})
			continue
		}
		if m["id"] != id {
			mid, _ := m["id"].(string)
			c.queued[mid] = append(c.queued[mid], m)
			continue
		}
		return m
	}
}

// data returns the data object of the next result of subscription id.
func (c *gqlWS) data(id, field string) map[string]any {
	c.t.Helper()
	m := c.next(id)
	if m["type"] != "next" && m["type"] != "data" {
		c.t.Fatalf("%s: want a result, got %v", id, m)
	}
	p := m["payload"].(map[string]any)
	if errs, ok := p["errors"]; ok && errs != nil {
		c.t.Fatalf("%s: errors %v", id, errs)
	}
	return p["data"].(map[string]any)[field].(map[string]any)
}
