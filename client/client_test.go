package client_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/client"
	"github.com/vigil-sec/vigil/internal/app"
	"github.com/vigil-sec/vigil/internal/config"
)

// node runs a real Vigil node that can be stopped and started again on
// the same address and data directory.
type node struct {
	t       *testing.T
	cfg     config.Config
	cancel  context.CancelFunc
	done    chan error
	running bool
}

func newNode(t *testing.T) *node {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cfg := config.Defaults()
	cfg.Listen, cfg.DataDir = addr, t.TempDir()
	n := &node{t: t, cfg: cfg}
	n.start()
	t.Cleanup(n.stop)
	return n
}

func (n *node) start() {
	n.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel, n.done = cancel, make(chan error, 1)
	ready := make(chan struct{})
	go func() {
		n.done <- app.Run(ctx, n.cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), func(string) { close(ready) })
	}()
	select {
	case <-ready:
	case err := <-n.done:
		n.t.Fatalf("node: %v", err)
	case <-time.After(30 * time.Second):
		n.t.Fatal("node did not start")
	}
	n.running = true
}

func (n *node) stop() {
	if !n.running {
		return
	}
	n.cancel()
	if err := <-n.done; err != nil {
		n.t.Errorf("node: %v", err)
	}
	n.running = false
}

func (n *node) client(opts ...client.Option) *client.Client {
	tok, err := os.ReadFile(filepath.Join(n.cfg.DataDir, "admin.token"))
	if err != nil {
		n.t.Fatal(err)
	}
	c, err := client.New("http://"+n.cfg.Listen, strings.TrimSpace(string(tok)), opts...)
	if err != nil {
		n.t.Fatal(err)
	}
	return c
}

func TestPublishIsIdempotent(t *testing.T) {
	n := newNode(t)
	c := n.client()
	evs := []*client.Event{{Type: "authentication.login", User: "alice"}, {Type: "audit.query"}}
	first, err := c.Publish(context.Background(), evs)
	if err != nil {
		t.Fatal(err)
	}
	if evs[0].ID == "" || first[0].ID != evs[0].ID {
		t.Fatalf("Publish did not assign ids before sending: %+v", first)
	}
	// A retry of the same events (as after a lost answer) is acknowledged
	// with the same seqs and stored once.
	again, err := c.Publish(context.Background(), evs)
	if err != nil {
		t.Fatal(err)
	}
	for i := range again {
		if !again[i].Duplicate || again[i].Seq != first[i].Seq {
			t.Fatalf("retry %d: %+v, want duplicate of seq %d", i, again[i], first[i].Seq)
		}
	}
	got, _, err := c.History(context.Background(), nil)
	if err != nil || len(got) != 2 {
		t.Fatalf("history: %d events, %v", len(got), err)
	}
}

func TestPublishRetriesUntilServerIsBack(t *testing.T) {
	n := newNode(t)
	c := n.client(client.WithRetries(8))
	n.stop()
	restarted := make(chan struct{})
	go func() {
		defer close(restarted)
		time.Sleep(700 * time.Millisecond)
		n.start()
	}()
	acks, err := c.Publish(context.Background(), []*client.Event{{Type: "system.heartbeat"}})
	<-restarted
	if err != nil {
		t.Fatalf("publish while the server restarts: %v", err)
	}
	if acks[0].Seq != 1 {
		t.Fatalf("ack %+v", acks[0])
	}
}

// TestSubscribeResumesAcrossRestart: the subscription sees every event
// exactly once, in order, although the server goes away in the middle.
func TestSubscribeResumesAcrossRestart(t *testing.T) {
	n := newNode(t)
	c := n.client()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	var seqs []uint64
	connected := make(chan struct{}, 16)
	done := make(chan error, 1)
	go func() {
		done <- c.Subscribe(ctx, client.SubscribeOptions{
			Filter:     client.Filter{Categories: []string{"audit"}},
			From:       client.Cursor{Seq: 1},
			MaxBackoff: 200 * time.Millisecond,
			OnState: func(up bool, _ error) {
				if up {
					connected <- struct{}{}
				}
			},
		}, func(e *client.Event) error {
			mu.Lock()
			seqs = append(seqs, e.Seq)
			mu.Unlock()
			return nil
		})
	}()
	<-connected
	publish := func(k int) {
		evs := make([]*client.Event, k)
		for i := range evs {
			evs[i] = &client.Event{Type: "audit.query"}
		}
		if _, err := c.Publish(context.Background(), evs); err != nil {
			t.Fatal(err)
		}
	}
	publish(50)
	time.Sleep(200 * time.Millisecond)
	n.stop()
	n.start()
	publish(50) // some of these may be stored before the subscriber is back
	<-connected
	publish(50)
	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		got := len(seqs)
		mu.Unlock()
		if got >= 150 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	if len(seqs) != 150 {
		t.Fatalf("received %d events, want 150", len(seqs))
	}
	for i, s := range seqs {
		if s != uint64(i+1) {
			t.Fatalf("event %d has seq %d: a gap or a duplicate across the restart", i, s)
		}
	}
}

func TestSubscribeBadFilterIsFinal(t *testing.T) {
	n := newNode(t)
	c := n.client()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := c.Subscribe(ctx, client.SubscribeOptions{Filter: client.Filter{MinSeverity: "hgih"}}, func(*client.Event) error { return nil })
	var se *client.ServerError
	if !errors.As(err, &se) || se.Code != "bad_filter" || !strings.Contains(se.Message, "min_severity") {
		t.Fatalf("err = %v, want a bad_filter error naming min_severity", err)
	}
}
