package graphql

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	gql "github.com/99designs/gqlgen/graphql"
	"github.com/gobwas/ws"

	"github.com/vigil-sec/vigil/internal/event"
)

// writeCountConn counts the writes made to a connection.
type writeCountConn struct {
	net.Conn
	writes atomic.Int32
}

func (w *writeCountConn) Write(p []byte) (int, error) {
	w.writes.Add(1)
	return w.Conn.Write(p)
}

// TestSharedFramesOfOneWakeWrittenTogether: the result messages of the
// deliveries a sharing subscription has at hand (one hub wake-up) go out
// in one write, not one write each — each still its own frame, byte for
// byte gqlgen's message — and what is held is written before the
// subscription waits for another subscriber's execution, not after. Before,
// every message was a write of its own (3 writes for the first 3).
func TestSharedFramesOfOneWakeWrittenTogether(t *testing.T) {
	server, client := net.Pipe()
	defer client.Close()
	wc := &writeCountConn{Conn: server}
	c := &gobwasConn{conn: wc, protocol: protoTransportWS, writeTimeout: 5 * time.Second}
	// Events 1-3 were executed by another subscriber of the group; event
	// 4 is being executed (not ready yet).
	g := &shareGroup{}
	var evs []*event.Event
	var entries []*shareEntry
	for i := range 4 {
		ev := &event.Event{Seq: uint64(i + 1)}
		e, owner := g.claim(ev)
		if !owner {
			t.Fatal("a fresh event was already claimed")
		}
		if i < 3 {
			fill(e, i)
		}
		evs, entries = append(evs, ev), append(entries, e)
	}
	next := 0
	pull := func(ctx context.Context, idle func()) (shareItem, bool) {
		if next < len(evs) { // at hand: one wake-up's batch
			next++
			return shareItem{ev: evs[next-1]}, true
		}
		idle() // the hub has nothing more: the stream ends here
		return shareItem{}, false
	}
	slot := &shareSlot{stats: &shares{}, group: g, pull: pull, end: func() {}, direct: c.resultWriter("op1")}
	slot.direct.written = &slot.stats.written

	frames := make(chan []byte, 8)
	go func() { // owned by the test: ends when client closes
		br := bufio.NewReader(client)
		for {
			h, err := ws.ReadHeader(br)
			if err != nil || h.Length > 1<<20 {
				close(frames)
				return
			}
			payload := make([]byte, h.Length)
			if _, err := io.ReadFull(br, payload); err != nil {
				close(frames)
				return
			}
			frames <- payload
		}
	}()
	done := make(chan *gql.Response, 1)
	go func() { // owned by the test: ends when the pull ends the stream
		done <- slot.respond(context.Background(), func(context.Context) *gql.Response { return nil })
	}()
	for i := range 3 {
		select {
		case f := <-frames:
			checkFrame(t, f, i)
		case <-time.After(5 * time.Second):
			t.Fatalf("frame %d not written while the subscription waits for event 4's execution", i)
		}
	}
	if n := wc.writes.Load(); n != 1 {
		t.Fatalf("%d writes for the 3 messages of one wake-up, want 1", n)
	}
	fill(entries[3], 3)
	select {
	case f := <-frames:
		checkFrame(t, f, 3)
	case <-time.After(5 * time.Second):
		t.Fatal("frame 3 not written")
	}
	if r := <-done; r != nil {
		t.Fatalf("respond returned %v at the end of the stream, want nil", r)
	}
	if n, w := wc.writes.Load(), slot.stats.written.Load(); n != 2 || w != 4 {
		t.Fatalf("%d writes and %d messages counted, want 2 and 4", n, w)
	}
}

// fill completes e as the executing subscriber does, with response i.
func fill(e *shareEntry, i int) {
	e.resp = &gql.Response{Data: json.RawMessage(fmt.Sprintf(`{"events":{"seq":%d}}`, i+1))}
	e.body, _ = json.Marshal(e.resp)
	close(e.ready)
}

// checkFrame: f is gqlgen's "next" message of operation op1 for response i.
func checkFrame(t *testing.T, f []byte, i int) {
	t.Helper()
	payload, _ := json.Marshal(&gql.Response{Data: json.RawMessage(fmt.Sprintf(`{"events":{"seq":%d}}`, i+1))})
	want, _ := json.Marshal(struct {
		Payload json.RawMessage `json:"payload,omitempty"`
		ID      string          `json:"id,omitempty"`
		Type    string          `json:"type"`
	}{payload, "op1", "next"})
	if string(f) != string(want) {
		t.Fatalf("frame %d: %s, want %s", i, f, want)
	}
}
