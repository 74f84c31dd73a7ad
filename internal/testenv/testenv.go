// Package testenv is the in-process test bench shared by the dialect and
// GraphQL tests: a real log (embedded JetStream in a temporary directory), a
// running hub, the ingest service, and a WebSocket client. It is imported
// only by tests.
package testenv

import (
	"context"
	"encoding/json"
	"fmt"
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
	"github.com/vigil-sec/vigil/internal/testkit"
	"github.com/vigil-sec/vigil/internal/transport/wsconn"
)

// Token authenticates as Admin through Deps.Auth.
const Token = "test-token"

// Env is a real log (embedded JetStream), a running hub and ingest.
type Env struct {
	T      testing.TB
	Ctx    context.Context
	Log    *store.Log
	Hub    *hub.Hub
	Ingest *ingest.Service
	Admin  *auth.Principal
	Deps   wsconn.Deps
}

// New starts an Env that stops when the test ends.
func New(t testing.TB) *Env { return NewWithStore(t, store.Config{}) }

// NewWithStore is New with the log opened from cfg (its DataDir defaults
// to a temporary directory of the test).
func NewWithStore(t testing.TB, cfg store.Config) *Env {
	t.Helper()
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	ctx, cancel := context.WithCancel(context.Background())
	lg, err := store.Open(ctx, cfg)
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
	return &Env{T: t, Ctx: ctx, Log: lg, Hub: h, Ingest: ingest.New(lg, event.DefaultLimits(), nil), Admin: admin,
		Deps: wsconn.Deps{Hub: h, Auth: auth.NewStaticToken(Token, *admin)}}
}

// Publish stores events as the admin, failing the test on error.
func (e *Env) Publish(evs ...*event.Event) {
	e.T.Helper()
	if _, err := e.Ingest.Publish(e.Ctx, e.Admin, evs); err != nil {
		e.T.Fatalf("publish: %v", err)
	}
}

// AppendDemo appends n demo events straight to the log and waits until
// the hub has dispatched them, so a replay bounded by the hub's head (and
// the recent-event ring the tail fills) covers all of them.
func (e *Env) AppendDemo(n int) {
	e.T.Helper()
	testkit.AppendDemo(e.T, e.Ctx, e.Log, n)
	testkit.CheckFor(e.T, time.Minute, 10*time.Millisecond, func() error {
		if head := e.Hub.Head(); head < uint64(n) {
			return fmt.Errorf("the hub dispatched up to seq %d of %d", head, n)
		}
		return nil
	})
}

// Serve runs h on a loopback httptest server closed when the test ends.
func (e *Env) Serve(h http.Handler) *httptest.Server {
	srv := httptest.NewServer(h)
	e.T.Cleanup(srv.Close)
	return srv
}

// WSClient is a real WebSocket client (gobwas/ws) for dialect tests.
type WSClient struct {
	T    testing.TB
	Conn net.Conn
}

// Dial opens a WebSocket to path on srv.
func Dial(t testing.TB, srv *httptest.Server, path string) *WSClient {
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
	return &WSClient{T: t, Conn: conn}
}

// Send writes one text message.
func (c *WSClient) Send(s string) {
	c.T.Helper()
	if err := wsutil.WriteClientText(c.Conn, []byte(s)); err != nil {
		c.T.Fatalf("write: %v", err)
	}
}

// Read reads one JSON text message (5 s timeout).
func (c *WSClient) Read() map[string]any {
	c.T.Helper()
	_ = c.Conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := wsutil.ReadServerText(c.Conn)
	if err != nil {
		c.T.Fatalf("read: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		c.T.Fatalf("server sent non-JSON %q: %v", b, err)
	}
	return m
}

type bufferedConn struct {
	net.Conn
	r io.Reader
}

func (c bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// F64 returns a pointer to v (for optional event numbers).
func F64(v float64) *float64 { return &v }
