package graphql

import (
	"bytes"
	"testing"

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
