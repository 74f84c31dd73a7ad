package dbsec_test

import (
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

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/hub"
	"github.com/vigil-sec/vigil/internal/ingest"
	"github.com/vigil-sec/vigil/internal/store"
	"github.com/vigil-sec/vigil/internal/wsconn"
)

const testToken = "test-token"

// env is a real log (embedded JetStream), a running hub and ingest.
type env struct {
	t      *testing.T
	ctx    context.Context
	log    *store.Log
	hub    *hub.Hub
	ingest *ingest.Service
	admin  *auth.Principal
	deps   wsconn.Deps
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	lg, err := store.Open(ctx, store.Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatalf("store.Open: %v", err)
	}
	h := hub.New(lg, hub.Options{})
	done := make(chan struct{})
	go func() { defer close(done); _ = h.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done; lg.Close() })
	select {
	case <-h.Started():
	case <-time.After(10 * time.Second):
		t.Fatal("hub did not start")
	}
	admin := &auth.Principal{ID: "admin", Role: auth.RoleAdmin, Tenant: auth.AllTenants}
	return &env{t: t, ctx: ctx, log: lg, hub: h, ingest: ingest.New(lg, event.DefaultLimits(), nil), admin: admin,
		deps: wsconn.Deps{Hub: h, Auth: auth.NewStaticToken(testToken, *admin)}}
}

func (e *env) publish(evs ...*event.Event) {
	e.t.Helper()
	if _, err := e.ingest.Publish(e.ctx, e.admin, evs); err != nil {
		e.t.Fatalf("publish: %v", err)
	}
}

func (e *env) serve(h http.Handler) *httptest.Server {
	srv := httptest.NewServer(h)
	e.t.Cleanup(srv.Close)
	return srv
}

type wsClient struct {
	t    *testing.T
	conn net.Conn
}

func dial(t *testing.T, srv *httptest.Server, path string) *wsClient {
	t.Helper()
	url := "ws" + strings.TrimPrefix(srv.URL, "http") + path
	conn, br, _, err := ws.Dial(context.Background(), url)
	if err != nil {
		t.Fatalf("dial %s: %v", path, err)
	}
	if br != nil {
		// The server may send its greeting together with the handshake
		// answer: those bytes sit in br and must be read first.
		conn = bufferedConn{Conn: conn, r: io.MultiReader(br, conn)}
	}
	t.Cleanup(func() { conn.Close() })
	return &wsClient{t: t, conn: conn}
}

func (c *wsClient) send(s string) {
	c.t.Helper()
	if err := wsutil.WriteClientText(c.conn, []byte(s)); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

func (c *wsClient) read() map[string]any {
	c.t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := wsutil.ReadServerText(c.conn)
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		c.t.Fatalf("server sent non-JSON %q: %v", b, err)
	}
	return m
}

type bufferedConn struct {
	net.Conn
	r io.Reader
}

func (c bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

func f64(v float64) *float64 { return &v }
