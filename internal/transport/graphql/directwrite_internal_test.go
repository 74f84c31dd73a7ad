package graphql

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"

	gql "github.com/99designs/gqlgen/graphql"
	"github.com/gobwas/ws"
)

// TestFrameHeaderMatchesGobwas: the direct writer's frame header is the
// one gobwas/ws writes for a final unmasked text frame, at every length
// encoding boundary (7-bit, 16-bit and 64-bit lengths).
func TestFrameHeaderMatchesGobwas(t *testing.T) {
	for _, n := range []int{0, 1, 125, 126, 127, 65535, 65536, 1 << 20} {
		var want bytes.Buffer
		if err := ws.WriteHeader(&want, ws.Header{Fin: true, OpCode: ws.OpText, Length: int64(n)}); err != nil {
			t.Fatal(err)
		}
		if got := frameHeader(nil, n); !bytes.Equal(got, want.Bytes()) {
			t.Fatalf("length %d: header % x, want % x", n, got, want.Bytes())
		}
	}
}

// TestPendingOperationIDsBounded: ids recorded for operations that never
// start (a client could send subscribe messages faster than their
// operations run) are bounded per connection, and one is recorded only
// for the operation whose query is the subscribe message's.
func TestPendingOperationIDsBounded(t *testing.T) {
	c := &gobwasConn{}
	for range 3 * maxPendingOps {
		c.pendingOp = opStart{id: "x", query: "subscription { a }"}
		c.noteOperation(&gql.OperationContext{RawQuery: "subscription { a }"})
	}
	if len(c.ops) != maxPendingOps {
		t.Fatalf("%d ids pending, want the bound %d", len(c.ops), maxPendingOps)
	}
	c = &gobwasConn{}
	c.pendingOp = opStart{id: "x", query: "subscription { a }"}
	rc := &gql.OperationContext{RawQuery: "subscription { b }"}
	c.noteOperation(rc)
	if id := c.takeOperation(rc); id != "" {
		t.Fatalf("an operation of another query took id %q", id)
	}
	if c.pendingOp != (opStart{}) {
		t.Fatalf("the pending id outlived the next operation: %+v", c.pendingOp)
	}
}

// deadlineConn counts the write deadlines set on a connection.
type deadlineConn struct {
	net.Conn
	set []time.Time
}

func (d *deadlineConn) SetWriteDeadline(t time.Time) error {
	d.set = append(d.set, t)
	return d.Conn.SetWriteDeadline(t)
}

// TestWriteDeadlineArmedOncePerSlack: frames written in quick succession
// share one write deadline instead of moving the socket's timer before
// every write (which cost ~1 µs per delivery); a write still never starts
// with less than the write timeout minus an eighth (at most 1 s) ahead,
// and a peer that stops reading is still cut off by the deadline.
func TestWriteDeadlineArmedOncePerSlack(t *testing.T) {
	if s := deadlineSlack(30 * time.Second); s != time.Second {
		t.Fatalf("slack of a 30 s timeout: %v, want 1s", s)
	}
	server, client := net.Pipe()
	defer client.Close()
	dc := &deadlineConn{Conn: server}
	c := &gobwasConn{conn: dc, protocol: protoTransportWS, writeTimeout: 200 * time.Millisecond}
	fw := c.resultWriter("1")
	go func() { _, _ = io.Copy(io.Discard, client) }() // owned by the test: ends when server closes
	for range 100 {
		if err := fw.write([]byte(`{"data":{}}`)); err != nil {
			t.Fatal(err)
		}
		if _, err := (lockedConn{c}).Write([]byte{0x8a, 0}); err != nil { // a pong, as the control handler writes
			t.Fatal(err)
		}
	}
	if len(dc.set) != 1 {
		t.Fatalf("%d write deadlines set for 200 writes in quick succession, want 1", len(dc.set))
	}
	// Once a quarter of the timeout has passed, the next write moves it.
	c.deadline = time.Now().Add(c.writeTimeout / 2)
	if err := fw.write([]byte(`{"data":{}}`)); err != nil {
		t.Fatal(err)
	}
	if len(dc.set) != 2 || time.Until(dc.set[1]) < c.writeTimeout*3/4 {
		t.Fatalf("deadlines %v: the write after half the timeout did not get a fresh one", dc.set)
	}
	// A peer that stops reading: the write fails at the deadline and the
	// connection is closed.
	client.Close()
	server2, client2 := net.Pipe()
	defer client2.Close()
	c = &gobwasConn{conn: server2, protocol: protoTransportWS, writeTimeout: 100 * time.Millisecond}
	start := time.Now()
	if err := c.resultWriter("1").write([]byte(`{"data":{}}`)); err == nil {
		t.Fatal("a write to a peer that never reads succeeded")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("the write to a stalled peer took %v, past its deadline", d)
	}
	if !c.broken {
		t.Fatal("the connection was not marked broken after the failed write")
	}
}
