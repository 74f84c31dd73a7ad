package wsnative_test

import (
	"bytes"
	"context"
	"errors"
	"runtime"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"go.uber.org/goleak"

	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/testenv"
	"github.com/vigil-sec/vigil/internal/testkit"
	"github.com/vigil-sec/vigil/internal/transport/wsconn"
	"github.com/vigil-sec/vigil/internal/transport/wsnative"
)

// TestPolledConnections drives the epoll reader with real sockets: idle
// connections wait in the poller without a goroutine each; a message that
// arrives in two parts with a pause between them, a client ping, and
// events flowing all work; closing connections and stopping the poller
// leaves nothing behind.
func TestPolledConnections(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the epoll reader is Linux-only; elsewhere connections keep a reader goroutine")
	}
	// Registered first, so it runs after the bench's own cleanups (LIFO).
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
	e := testenv.New(t)
	poller, err := wsconn.NewPoller()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	pollerDone := make(chan error, 1)
	go func() { pollerDone <- poller.Run(ctx) }()
	deps := e.Deps
	deps.Poller = poller
	srv := e.Serve(wsnative.Handler(deps, 10))

	const n = 50
	before := runtime.NumGoroutine()
	clients := make([]*testenv.WSClient, n)
	for i := range clients {
		clients[i] = testenv.Dial(t, srv, "/?token="+testenv.Token)
		clients[i].Send(`{"op":"subscribe","id":"s","filter":{"categories":["audit"]}}`)
		if m := clients[i].Read(); m["type"] != "subscribed" {
			t.Fatalf("client %d: %v", i, m)
		}
	}
	waitFor(t, "every idle connection in the poller", func() bool { return poller.Registered() == n })
	if extra := runtime.NumGoroutine() - before; extra > n/5 {
		t.Fatalf("%d idle connections hold %d goroutines; want (almost) none", n, extra)
	}

	// A message in two writes with a pause: the reader waits for the rest.
	c := clients[0]
	var frame bytes.Buffer
	if err := wsutil.WriteClientText(&frame, []byte(`{"op":"ping"}`)); err != nil {
		t.Fatal(err)
	}
	b := frame.Bytes()
	if _, err := c.Conn.Write(b[:5]); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	if _, err := c.Conn.Write(b[5:]); err != nil {
		t.Fatal(err)
	}
	if m := c.Read(); m["type"] != "pong" {
		t.Fatalf("split message: %v", m)
	}
	// A control ping from the client gets a pong frame.
	if err := ws.WriteFrame(c.Conn, ws.MaskFrame(ws.NewPingFrame([]byte("hi")))); err != nil {
		t.Fatal(err)
	}
	_ = c.Conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	//lint:ignore SA1019 the peer is the server under test and its frames are small; the test reads raw frames for their opcode and close code
	f, err := ws.ReadFrame(c.Conn)
	if err != nil || f.Header.OpCode != ws.OpPong || string(f.Payload) != "hi" {
		t.Fatalf("pong: %+v %q %v", f.Header, f.Payload, err)
	}
	// Events reach polled connections.
	e.Publish(&event.Event{Type: "audit.read", Severity: event.SeverityLow})
	for i, c := range clients {
		if m := c.Read(); m["type"] != "event" {
			t.Fatalf("client %d: %v", i, m)
		}
	}

	// Client-side closes end the sessions: they leave the poller and the hub.
	for _, c := range clients {
		c.Conn.Close()
	}
	waitFor(t, "sessions to end", func() bool { return poller.Registered() == 0 && e.Hub.Stats().Clients == 0 })
	srv.Close()
	cancel()
	if err := <-pollerDone; err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testkit.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		if cond() {
			return nil
		}
		return errors.New("waiting for " + what)
	})
}
