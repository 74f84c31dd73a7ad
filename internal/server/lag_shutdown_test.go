package server_test

import (
	"context"
	"errors"
	"fmt"
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
	"github.com/vigil-sec/vigil/internal/metrics"
	"github.com/vigil-sec/vigil/internal/server"
	"github.com/vigil-sec/vigil/internal/store"
	"github.com/vigil-sec/vigil/internal/testkit"
)

// smallQueueServer is a node whose clients lag after a few queued events.
func smallQueueServer(t *testing.T, queue int) (*httptest.Server, *hub.Hub, *ingest.Service) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	log, err := store.Open(ctx, store.Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	h := hub.New(log, hub.Options{QueueSize: queue})
	done := make(chan struct{})
	go func() { _ = h.Run(ctx); close(done) }()
	<-h.Started()
	m := metrics.New(h)
	ing := ingest.New(log, event.DefaultLimits(), m)
	admin := auth.Principal{ID: "admin", Role: auth.RoleAdmin, Tenant: auth.AllTenants}
	srv := httptest.NewServer(server.NewServer(server.Deps{Log: log, Hub: h, Ingest: ing,
		Auth: auth.NewStaticToken("tok", admin), Metrics: m, MaxSubs: 10, PingInterval: time.Minute}))
	t.Cleanup(func() { h.Shutdown(); srv.Close(); cancel(); <-done; log.Close() })
	return srv, h, ing
}

func dialNative(t *testing.T, srv *httptest.Server) *wsConn {
	t.Helper()
	d := ws.Dialer{Header: ws.HandshakeHeaderHTTP(map[string][]string{"Authorization": {"Bearer tok"}})}
	conn, _, _, err := d.Dial(context.Background(), "ws"+strings.TrimPrefix(srv.URL, "http")+"/api/v1/stream")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &wsConn{t: t, c: conn}
}

type wsConn struct {
	t *testing.T
	c interface {
		Read([]byte) (int, error)
		Write([]byte) (int, error)
		SetReadDeadline(time.Time) error
	}
}

// readUntilClose returns the text messages received and the close code.
func (w *wsConn) readUntilClose(timeout time.Duration) ([]string, ws.StatusCode) {
	var msgs []string
	_ = w.c.SetReadDeadline(time.Now().Add(timeout))
	for {
		b, err := wsutil.ReadServerText(w.c)
		if err != nil {
			var ce wsutil.ClosedError
			if errors.As(err, &ce) {
				return msgs, ce.Code
			}
			w.t.Fatalf("read: %v (after %d messages)", err, len(msgs))
		}
		msgs = append(msgs, string(b))
	}
}

// TestLaggedClientIsToldWhereToResume: a client that does not read while
// events pile up gets "lagged" with resume_from and close 4000; resuming
// from there delivers the rest without a gap.
func TestLaggedClientIsToldWhereToResume(t *testing.T) {
	srv, h, ing := smallQueueServer(t, 8)
	admin := &auth.Principal{ID: "admin", Role: auth.RoleAdmin, Tenant: auth.AllTenants}
	slow := dialNative(t, srv)
	if err := wsutil.WriteClientText(slow.c, []byte(`{"op":"subscribe","id":"s","filter":{},"from":"latest"}`)); err != nil {
		t.Fatal(err)
	}
	// Subscribed before the events are published.
	testkit.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		for _, c := range h.Clients() {
			if c.HasSubscription("s") {
				return nil
			}
		}
		return errors.New("subscription s not registered")
	})
	// 2,000 events of 6 KB while the client reads nothing: the socket
	// buffers fill, the writer blocks, the queue of 8 overflows.
	pad := strings.Repeat("x", 6000)
	evs := make([]*event.Event, 2000)
	for i := range evs {
		evs[i] = &event.Event{Type: "system.heartbeat", Message: fmt.Sprint(i, pad)}
	}
	if _, err := ing.Publish(context.Background(), admin, evs); err != nil {
		t.Fatal(err)
	}
	// The client starts reading only once the hub has marked it lagged.
	testkit.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		for _, c := range h.Clients() {
			if !c.Ended() {
				return errors.New("client not lagged yet")
			}
		}
		return nil
	})
	msgs, code := slow.readUntilClose(10 * time.Second)
	if code != 4000 {
		t.Fatalf("close code %d, want 4000 (lagged)", code)
	}
	var resume uint64
	events := 0
	for _, m := range msgs {
		if strings.Contains(m, `"type":"event"`) {
			events++
		}
		if strings.Contains(m, `"type":"lagged"`) {
			if _, err := fmt.Sscanf(m[strings.Index(m, `"resume_from":`)+len(`"resume_from":`):], "%d", &resume); err != nil {
				t.Fatalf("lagged message %s: %v", m, err)
			}
		}
	}
	if resume == 0 || resume != uint64(events)+1 {
		t.Fatalf("got %d events then resume_from %d; want resume_from = %d", events, resume, events+1)
	}
	// Resume once the hub has offered all 2,000 events. Resuming earlier
	// makes the new client join live while the hub still dispatches its
	// own backlog, and with a queue of 8 it would lag again on that
	// burst: correct, but not what this test is about (it failed that
	// way in CI once the tail handed events to a dispatching goroutine).
	testkit.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		if head := h.Head(); head < 2000 {
			return fmt.Errorf("hub dispatched up to seq %d of 2000", head)
		}
		return nil
	})
	again := dialNative(t, srv)
	_ = wsutil.WriteClientText(again.c, []byte(fmt.Sprintf(`{"op":"subscribe","id":"s","filter":{},"from":{"seq":%d}}`, resume)))
	_ = again.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	next := resume
	for next <= 2000 {
		b, err := wsutil.ReadServerText(again.c)
		if err != nil {
			t.Fatalf("resumed stream: %v at seq %d", err, next)
		}
		if !strings.Contains(string(b), `"type":"event"`) {
			continue
		}
		want := fmt.Sprintf(`"seq":%d,`, next)
		if !strings.Contains(string(b), want) {
			t.Fatalf("resumed stream: got %s, want seq %d", b, next)
		}
		next++
	}
}

func TestShutdownClosesWithGoingAway(t *testing.T) {
	srv, h, _ := smallQueueServer(t, 64)
	c := dialNative(t, srv)
	if err := wsutil.WriteClientText(c.c, []byte(`{"op":"ping"}`)); err != nil {
		t.Fatal(err)
	}
	// The pong says the connection is up and registered with the hub.
	_ = c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if b, err := wsutil.ReadServerText(c.c); err != nil || !strings.Contains(string(b), "pong") {
		t.Fatalf("ping: %s, %v", b, err)
	}
	h.Shutdown()
	if _, code := c.readUntilClose(5 * time.Second); code != ws.StatusGoingAway {
		t.Fatalf("close code %d on shutdown, want 1001", code)
	}
}
