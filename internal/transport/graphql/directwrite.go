package graphql

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"net"
	"sync"

	gql "github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/gqlerror"
)

// Direct writes of shared subscription responses (issue 12, item 6).
//
// gqlgen sends every subscription response itself: it marshals the
// response (sendResponse), wraps it in the protocol's message, and the
// WebSocket implementation marshals that again (WriteJSON) before the
// frame is copied into a buffer and written — per subscriber, although
// subscriptions that share an execution (share.go) send the same response.
// A sharing subscription therefore writes its "next" (graphql-ws: "data")
// frames itself: the response is marshalled once per event and group,
// exactly as gqlgen would (json.Marshal of the *graphql.Response), and
// each subscriber only adds its frame header and the message envelope
// around it:
//
//	{"payload":<shared response>,"id":<the operation's id>,"type":"next"}
//
// byte for byte what gqlgen's message types marshal to (field order
// payload, id, type; the id JSON-encoded once per operation). The frame
// goes out under the connection's write lock like every other message, so
// frames never interleave, and from the operation's own goroutine (the one
// that asks for its next response), so the operation's messages keep their
// order: its "complete" or "error" still comes from gqlgen, after the last
// response.
//
// gqlgen does not tell an operation its id, so the connection learns it:
// its reader sees the subscribe (graphql-ws: start) message, gqlgen then
// creates the operation's context synchronously on that same goroutine,
// and opIDExt — the last operation-context mutator, so no later one can
// refuse the operation — records the id for that operation context if its
// query is the one of the message just read. The operation's interceptor
// (shareExt) takes it out again. An operation whose id is not known this
// way is sent by gqlgen, as before.

// maxPendingOps bounds the ids recorded and not yet taken per connection
// (each is taken when its operation starts, right after): a defensive
// bound, not a limit a client meets.
const maxPendingOps = 1024

// opStart is a subscribe (graphql-ws: start) message's id and query.
type opStart struct{ id, query string }

// opIDExt records the id of each WebSocket operation (see above). It must
// be the last extension that mutates operation contexts.
type opIDExt struct{}

var _ interface {
	gql.HandlerExtension
	gql.OperationContextMutator
} = opIDExt{}

func (opIDExt) ExtensionName() string               { return "VigilOperationIDs" }
func (opIDExt) Validate(gql.ExecutableSchema) error { return nil }

func (opIDExt) MutateOperationContext(ctx context.Context, rc *gql.OperationContext) *gqlerror.Error {
	if c := wsConnOf(ctx); c != nil {
		c.noteOperation(rc)
	}
	return nil
}

// wsConnOf is the GraphQL WebSocket connection ctx belongs to, or nil.
func wsConnOf(ctx context.Context) *gobwasConn {
	w, _ := ctx.Value(connWatchKey{}).(*connWatch)
	if w == nil {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.conn
}

// noteOperation records rc's id, from the subscribe message the reader
// has just passed to gqlgen. Called on the reading goroutine.
func (c *gobwasConn) noteOperation(rc *gql.OperationContext) {
	p := c.pendingOp
	c.pendingOp = opStart{}
	if p.id == "" || p.query != rc.RawQuery {
		return
	}
	c.opsMu.Lock()
	defer c.opsMu.Unlock()
	if c.ops == nil {
		c.ops = map[*gql.OperationContext]string{}
	}
	if len(c.ops) < maxPendingOps {
		c.ops[rc] = p.id
	}
}

// takeOperation returns and forgets rc's id ("" when not known).
func (c *gobwasConn) takeOperation(rc *gql.OperationContext) string {
	c.opsMu.Lock()
	defer c.opsMu.Unlock()
	id, ok := c.ops[rc]
	if ok {
		delete(c.ops, rc)
	}
	return id
}

// frameWriter writes one operation's result messages around shared
// response bytes.
type frameWriter struct {
	c          *gobwasConn
	head, tail []byte // `{"payload":` and `,"id":"<id>","type":"next"}`
}

// resultWriter is the frameWriter of operation id, or nil when the
// connection's protocol is not one it knows the result message of.
func (c *gobwasConn) resultWriter(id string) *frameWriter {
	var typ string
	switch c.protocol {
	case protoTransportWS:
		typ = "next"
	case protoLegacyWS:
		typ = "data"
	default:
		return nil
	}
	qid, err := json.Marshal(id) // as gqlgen's message marshals it
	if err != nil {
		return nil
	}
	tail := append(append(append([]byte(`,"id":`), qid...), `,"type":"`...), typ...)
	return &frameWriter{c: c, head: []byte(`{"payload":`), tail: append(tail, `"}`...)}
}

// vectorMin is the response size from which a frame is written with
// writev, the shared response by reference, rather than copied into one
// buffer with its header (below it the copy costs less than the iovecs).
const vectorMin = 8 << 10

// maxFrameBuf is the largest frame buffer kept in frameBufs.
const maxFrameBuf = 16 << 10

// frameBufs holds frame buffers between writes. A sync.Pool is a cache,
// not state.
var frameBufs = sync.Pool{New: func() any { b := make([]byte, 0, 1<<10); return &b }}

// write sends one result message carrying body (a marshalled response)
// as one text frame. It does nothing once the connection has sent its
// close frame or failed; a failed write closes the socket, which ends
// every operation of the connection (as lockedConn.Write).
func (w *frameWriter) write(body []byte) error {
	c := w.c
	n := len(w.head) + len(body) + len(w.tail)
	var hdr [10]byte
	h := frameHeader(hdr[:0], n)
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closed || c.broken {
		return net.ErrClosed
	}
	c.armWrite()
	var err error
	if tcp, ok := c.conn.(*net.TCPConn); ok && len(body) >= vectorMin {
		pre := append(h, w.head...)
		bufs := net.Buffers{pre, body, w.tail}
		_, err = bufs.WriteTo(tcp)
	} else {
		bp := frameBufs.Get().(*[]byte)
		b := append(append(append(append((*bp)[:0], h...), w.head...), body...), w.tail...)
		_, err = c.conn.Write(b)
		if cap(b) <= maxFrameBuf {
			*bp = b[:0]
			frameBufs.Put(bp)
		}
	}
	if err != nil {
		c.broken = true
		_ = c.conn.Close()
	}
	return err
}

// frameHeader appends the header of a final, unmasked text frame of n
// payload bytes (RFC 6455 section 5.2) to b.
func frameHeader(b []byte, n int) []byte {
	b = append(b, 0x81) // FIN, text
	switch {
	case n < 126:
		return append(b, byte(n))
	case n <= 0xFFFF:
		return binary.BigEndian.AppendUint16(append(b, 126), uint16(n))
	default:
		return binary.BigEndian.AppendUint64(append(b, 127), uint64(n))
	}
}
