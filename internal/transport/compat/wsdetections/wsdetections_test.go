package wsdetections_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"go.uber.org/goleak"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/detect"
	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/hub"
	"github.com/vigil-sec/vigil/internal/server"
	"github.com/vigil-sec/vigil/internal/store"
	"github.com/vigil-sec/vigil/internal/testkit"
	"github.com/vigil-sec/vigil/internal/transport/compat/wsdetections"
	"github.com/vigil-sec/vigil/internal/transport/wsconn"
)

// TestMain checks that the connections, the hub, the engine and the log
// leave no goroutine behind.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type env struct {
	srv *httptest.Server
	log *store.Log
	hub *hub.Hub
	eng *detect.Engine
}

// newEnv runs a real embedded JetStream log, the hub, the detection
// engine and the HTTP routes of this package on a loopback server.
func newEnv(t *testing.T, ping time.Duration) *env {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	l, err := store.Open(ctx, store.Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	h := hub.New(l, hub.Options{})
	eng, err := detect.New(ctx, detect.Options{Source: l, Appender: l, JetStream: l.JetStream(), FlushInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = h.Run(ctx) }()
	go func() { defer wg.Done(); _ = eng.Run(ctx) }()
	<-h.Started()
	<-eng.Started()
	authn := auth.Chain{
		auth.NewStaticToken("admintok", auth.Principal{ID: "admin", Role: auth.RoleAdmin, Tenant: auth.AllTenants}),
		auth.NewStaticToken("anatok", auth.Principal{ID: "ana", Role: auth.RoleAnalyst, Tenant: "default"}),
		auth.NewStaticToken("acmetok", auth.Principal{ID: "acme", Role: auth.RoleAnalyst, Tenant: "acme"}),
	}
	mux := http.NewServeMux()
	mux.Handle("GET /ws/detections", wsdetections.Handler(wsconn.Deps{Hub: h, Auth: authn, PingInterval: ping}))
	mux.Handle("GET /api/v1/connections", auth.Require(authn, server.ListConnections(h)))
	mux.Handle("POST /api/v1/connections/{id}/messages", auth.Require(authn, server.SendMessage(h)))
	srv := httptest.NewServer(mux)
	t.Cleanup(func() {
		srv.CloseClientConnections()
		h.Shutdown()
		cancel()
		wg.Wait()
		srv.Close()
		l.Close()
		http.DefaultClient.CloseIdleConnections()
	})
	return &env{srv: srv, log: l, hub: h, eng: eng}
}

func (e *env) dial(t *testing.T, token string) net.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	url := "ws" + strings.TrimPrefix(e.srv.URL, "http") + "/ws/detections?token=" + token
	conn, _, _, err := ws.Dial(ctx, url)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	// The server registers the connection with the hub just after the
	// handshake response; wait for it so tests that list connections see it.
	for ctx.Err() == nil {
		for _, c := range e.hub.Clients() {
			if c.Info().Remote == conn.LocalAddr().String() && len(c.Filters()) > 0 {
				return conn
			}
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("connection from %s never registered with the hub", conn.LocalAddr())
	return nil
}

type msg struct {
	Type      string          `json:"type"`
	Data      json.RawMessage `json:"data"`
	Timestamp string          `json:"timestamp"`
}

// read returns the next text message, answering pings on the way.
func read(t *testing.T, c net.Conn, timeout time.Duration) (msg, error) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	b, err := wsutil.ReadServerText(c)
	if err != nil {
		return msg{}, err
	}
	var m msg
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("server sent invalid JSON %s: %v", b, err)
	}
	if _, err := time.Parse(time.RFC3339Nano, m.Timestamp); err != nil {
		t.Fatalf("timestamp %q: %v", m.Timestamp, err)
	}
	return m, nil
}

func mustRead(t *testing.T, c net.Conn) msg {
	t.Helper()
	m, err := read(t, c, 10*time.Second)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return m
}

func send(t *testing.T, c net.Conn, s string) {
	t.Helper()
	if err := wsutil.WriteClientText(c, []byte(s)); err != nil {
		t.Fatal(err)
	}
}

func publish(t *testing.T, l *store.Log, tenant string, js ...string) {
	t.Helper()
	var evs []*event.Event
	now := time.Now().UTC()
	for i, s := range js {
		e, err := event.DecodeOne([]byte(s))
		if err != nil {
			t.Fatal(err)
		}
		e.Time = now.Add(time.Duration(i) * time.Millisecond)
		if _, err := event.Normalize(e, tenant, now, event.DefaultLimits()); err != nil {
			t.Fatal(err)
		}
		evs = append(evs, e)
	}
	if _, err := l.Append(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
}

func bruteForce(user string, n int) []string {
	var out []string
	for i := 0; i < n; i++ {
		out = append(out, fmt.Sprintf(`{"type":"authentication.login_failed","action":"login_failed","outcome":"failure","user":%q,"src_ip":"203.0.113.7"}`, user))
	}
	return out
}

func httpDo(t *testing.T, method, url, token, body string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// TestBruteForceOverWebSocket is the end-to-end scenario: failed logins
// go into the log, the engine detects the brute force, and connected
// detection-stream clients get it in the SPEC 7.1 shape, filtered and
// tenant-isolated.
func TestBruteForceOverWebSocket(t *testing.T) {
	e := newEnv(t, 0)
	all := e.dial(t, "anatok")
	critical := e.dial(t, "anatok")
	other := e.dial(t, "acmetok")

	// Bad client messages get error messages and keep the connection.
	send(t, all, `{not json`)
	if m := mustRead(t, all); m.Type != "error" || !strings.Contains(string(m.Data), "invalid JSON") {
		t.Fatalf("got %+v", m)
	}
	send(t, all, `{"action":"subscribe"}`)
	if m := mustRead(t, all); m.Type != "error" || !strings.Contains(string(m.Data), "unknown action") {
		t.Fatalf("got %+v", m)
	}
	send(t, all, `{"action":"filter","filters":{"severity":["hgih"]}}`)
	if m := mustRead(t, all); m.Type != "error" || !strings.Contains(string(m.Data), "severity") {
		t.Fatalf("got %+v", m)
	}
	send(t, critical, `{"action":"filter","filters":{"severity":["critical"],"status":["active"],"mitre_tactics":["TA0002"]}}`)
	if m := mustRead(t, critical); m.Type != "filter_applied" {
		t.Fatalf("got %+v", m)
	}

	// The admin connections API lists the three clients with filters.
	code, body := httpDo(t, http.MethodGet, e.srv.URL+"/api/v1/connections", "admintok", "")
	var list struct {
		Count       int                 `json:"count"`
		Connections []server.Connection `json:"connections"`
	}
	if err := json.Unmarshal(body, &list); code != 200 || err != nil || list.Count != 3 {
		t.Fatalf("connections: %d %s", code, body)
	}
	var allID string
	for _, c := range list.Connections {
		if c.Dialect != wsdetections.Transport || c.RemoteAddress == "" || len(c.Filters) != 1 {
			t.Fatalf("connection %+v", c)
		}
		if c.RemoteAddress == all.LocalAddr().String() {
			allID = c.ID
		}
		for _, f := range c.Filters {
			if c.RemoteAddress == critical.LocalAddr().String() && !slices.Equal(f.Severities, []string{"critical"}) {
				t.Fatalf("filter of the critical client = %+v", f)
			}
		}
	}
	if code, _ := httpDo(t, http.MethodGet, e.srv.URL+"/api/v1/connections", "anatok", ""); code != http.StatusForbidden {
		t.Fatalf("analyst listed connections: %d", code)
	}
	code, body = httpDo(t, http.MethodPost, e.srv.URL+"/api/v1/connections/"+allID+"/messages", "admintok", `{"type":"notice","data":{"text":"maintenance at 02:00"},"timestamp":"2026-11-22T10:00:00Z"}`)
	if code != http.StatusAccepted {
		t.Fatalf("send message: %d %s", code, body)
	}
	if m := mustRead(t, all); m.Type != "notice" || !strings.Contains(string(m.Data), "maintenance") {
		t.Fatalf("got %+v", m)
	}
	if code, _ := httpDo(t, http.MethodPost, e.srv.URL+"/api/v1/connections/nope/messages", "admintok", `{}`); code != http.StatusNotFound {
		t.Fatalf("unknown id: %d", code)
	}

	// Six failed logins: the brute-force detection reaches the
	// unfiltered client as detection.created, then detection.updated.
	publish(t, e.log, "default", bruteForce("alice", 6)...)
	m := mustRead(t, all)
	if m.Type != "detection.created" {
		t.Fatalf("got %+v", m)
	}
	var d detect.Detection
	if err := json.Unmarshal(m.Data, &d); err != nil {
		t.Fatal(err)
	}
	if d.RuleID != "SEC-AUTH-002" || d.Title != "Brute Force Attack Detected" || d.Status != "active" ||
		!slices.Contains(d.MitreTactics, "TA0006") || !slices.Contains(d.MitreTechniques, "T1110.001") ||
		d.GroupKey != "user=alice" || d.Count < 5 || len(d.EventIDs) < 5 || d.CreatedAt.IsZero() {
		t.Fatalf("detection = %+v", d)
	}
	m = mustRead(t, all)
	var upd map[string]any
	_ = json.Unmarshal(m.Data, &upd)
	if m.Type != "detection.updated" || upd["id"] != d.ID || upd["status"] != "active" || upd["updated_at"] == nil {
		t.Fatalf("got %+v", m)
	}
	if _, ok := upd["notes"]; !ok {
		t.Fatalf("update lacks notes: %s", m.Data)
	}

	// An analyst's change streams as detection.updated too.
	if _, err := e.eng.Update(context.Background(), &auth.Principal{ID: "ana", Role: auth.RoleAnalyst, Tenant: "default"},
		d.ID, detect.Patch{Status: ptr("investigating"), Notes: ptr("on it")}); err != nil {
		t.Fatal(err)
	}
	for {
		m = mustRead(t, all)
		_ = json.Unmarshal(m.Data, &upd)
		if upd["status"] == "investigating" {
			break
		}
	}
	if upd["notes"] != "on it" {
		t.Fatalf("update = %v", upd)
	}

	// The filtered client saw nothing of that: its first message is the
	// critical memory-safety detection.
	publish(t, e.log, "default", `{"type":"memory.buffer_overflow_detected","action":"buffer_overflow_detected","source":"db-1","data":{"component":"executor"}}`)
	m = mustRead(t, critical)
	if err := json.Unmarshal(m.Data, &d); err != nil || m.Type != "detection.created" || d.RuleID != "SEC-MEM-001" || d.Severity != "critical" {
		t.Fatalf("critical client got %+v", m)
	}
	// The other tenant's client saw none of it.
	if m, err := read(t, other, 300*time.Millisecond); err == nil {
		t.Fatalf("other tenant received %+v", m)
	}
}

// TestDeadClientTerminated checks the keep-alive: a client that does not
// answer pings is closed with the ping-timeout code.
func TestDeadClientTerminated(t *testing.T) {
	e := newEnv(t, 100*time.Millisecond)
	dead := e.dial(t, "anatok")
	alive := e.dial(t, "anatok")
	done := make(chan error, 1)
	go func() { // answers pings (wsutil does) until the test ends
		for {
			_ = alive.SetReadDeadline(time.Now().Add(2 * time.Second))
			if _, err := wsutil.ReadServerText(alive); err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					done <- nil
				} else {
					done <- err
				}
				return
			}
		}
	}()
	// Wait until the server has given up on the dead client (it answers
	// no ping), instead of sleeping a few ping intervals.
	testkit.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		for _, c := range e.hub.Clients() {
			if c.Info().Remote == dead.LocalAddr().String() && !c.Ended() {
				return errors.New("the dead client is still connected")
			}
		}
		return nil
	})
	// Now read the dead client's frames raw: pings, then a close frame.
	_ = dead.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		//lint:ignore SA1019 the peer is the server under test and its frames are small; the test reads raw frames for their opcode and close code
		f, err := ws.ReadFrame(dead)
		if err != nil {
			t.Fatalf("no close frame: %v", err)
		}
		if f.Header.OpCode == ws.OpClose {
			if f.Header.Masked {
				ws.Cipher(f.Payload, f.Header.Mask, 0)
			}
			code, _ := ws.ParseCloseFrameData(f.Payload)
			if code != wsconn.ClosePingTimeout {
				t.Fatalf("close code %d, want %d", code, wsconn.ClosePingTimeout)
			}
			break
		}
	}
	if err := <-done; err != nil {
		t.Fatalf("the responsive client was closed: %v", err)
	}
}

func ptr(s string) *string { return &s }
