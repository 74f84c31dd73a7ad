package client_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/client"
	"github.com/vigil-sec/vigil/internal/testnode"
)

func newClient(t *testing.T, n *testnode.Node, opts ...client.Option) *client.Client {
	c, err := client.New(n.URL(), n.AdminToken(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestPublishIsIdempotent(t *testing.T) {
	n := testnode.Start(t)
	c := newClient(t, n)
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
	n := testnode.Start(t)
	c := newClient(t, n, client.WithRetries(8))
	n.Stop()
	restarted := make(chan struct{})
	go func() {
		defer close(restarted)
		time.Sleep(700 * time.Millisecond)
		n.Restart()
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
	n := testnode.Start(t)
	c := newClient(t, n)
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
	n.Stop()
	n.Restart()
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
	n := testnode.Start(t)
	c := newClient(t, n)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := c.Subscribe(ctx, client.SubscribeOptions{Filter: client.Filter{MinSeverity: "hgih"}}, func(*client.Event) error { return nil })
	var se *client.ServerError
	if !errors.As(err, &se) || se.Code != "bad_filter" || !strings.Contains(se.Message, "min_severity") {
		t.Fatalf("err = %v, want a bad_filter error naming min_severity", err)
	}
}

// Issue 12, item 2: with Batch the server sends {"type":"events"} frames;
// fn still sees every event once, in order.
func TestSubscribeBatch(t *testing.T) {
	n := testnode.Start(t)
	c := newClient(t, n)
	evs := make([]*client.Event, 200)
	for i := range evs {
		evs[i] = &client.Event{Type: "audit.query"}
	}
	if _, err := c.Publish(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
	// A client that ignored "events" frames would see none and time out.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var seqs []uint64
	err := c.Subscribe(ctx, client.SubscribeOptions{
		Filter: client.Filter{Categories: []string{"audit"}}, From: client.Cursor{Seq: 1}, Batch: true,
		OnState: func(up bool, err error) {
			if !up {
				t.Errorf("disconnected: %v", err)
			}
		},
	}, func(e *client.Event) error {
		seqs = append(seqs, e.Seq)
		if len(seqs) == len(evs) {
			return errDone
		}
		return nil
	})
	if !errors.Is(err, errDone) {
		t.Fatalf("Subscribe: %v after %d events", err, len(seqs))
	}
	for i, s := range seqs {
		if s != uint64(i+1) {
			t.Fatalf("event %d has seq %d", i, s)
		}
	}
}

var errDone = errors.New("done")
