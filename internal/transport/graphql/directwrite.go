package graphql

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"net"
	"sync"
	"sync/atomic"

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
// response bytes. Only the operation's goroutine uses it.
type frameWriter struct {
	c          *gobwasConn
	head, tail []byte // `{"payload":` and `,"id":"<id>","type":"next"}`
	// held are responses added and not yet written, size their frames'
	// total length.
	held [][]byte
	size int
	// written, when not nil, counts the messages written.
	written *atomic.Uint64
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

// maxFrameBuf is the largest frame buffer kept in frameBufs, and the most
// bytes of held frames (flush writes them all with one system call).
const maxFrameBuf = 16 << 10

// frameBufs holds frame buffers between writes. A sync.Pool is a cache,
// not state.
var frameBufs = sync.Pool{New: func() any { b := make([]byte, 0, 1<<10); return &b }}

// write sends one result message carrying body (a marshalled response)
// as one text frame, with the frames held before it.
func (w *frameWriter) write(body []byte) error {
	if err := w.add(body); err != nil {
		return err
	}
	_, err := w.flush()
	return err
}

// add holds a result message carrying body (a marshalled response) for
// the next flush, so that the messages of one wake-up go out in one
// system call (one write per delivery and socket was the server's largest
// cost with many subscribers). It writes what is held first when body
// would take the held frames past maxFrameBuf, and a response from
// vectorMin on right away, by reference.
func (w *frameWriter) add(body []byte) error {
	n := frameLen(len(w.head) + len(body) + len(w.tail))
	if len(w.held) > 0 && (w.size+n > maxFrameBuf || len(body) >= vectorMin) {
		if _, err := w.flush(); err != nil {
			return err
		}
	}
	w.held = append(w.held, body)
	w.size += n
	if len(body) >= vectorMin {
		_, err := w.flush()
		return err
	}
	return nil
}

// flush writes the held messages, each one text frame, with one system
// call, and reports how many it wrote. It does nothing once the connection
// has sent its close frame or failed; a failed write closes the socket,
// which ends every operation of the connection (as lockedConn.Write).
func (w *frameWriter) flush() (int, error) {
	if len(w.held) == 0 {
		return 0, nil
	}
	held := w.held
	defer func() {
		clear(held) // the shared responses are not pinned by an idle operation
		w.held, w.size = held[:0], 0
	}()
	c := w.c
	bp := frameBufs.Get().(*[]byte)
	b := (*bp)[:0]
	var big []byte // a response from vectorMin on, written by reference
	for _, body := range held {
		b = append(frameHeader(b, len(w.head)+len(body)+len(w.tail)), w.head...)
		if len(body) >= vectorMin { // alone (add): header, body, tail
			big = body
			break
		}
		b = append(append(b, body...), w.tail...)
	}
	c.wmu.Lock()
	var err error
	if c.closed || c.broken {
		err = net.ErrClosed
	} else {
		c.armWrite()
		tcp, ok := c.conn.(*net.TCPConn)
		switch {
		case big != nil && ok:
			bufs := net.Buffers{b, big, w.tail}
			_, err = bufs.WriteTo(tcp)
		case big != nil: // no writev: one buffer
			b = append(append(b, big...), w.tail...)
			_, err = c.conn.Write(b)
		default:
			_, err = c.conn.Write(b)
		}
		if err != nil {
			c.broken = true
			_ = c.conn.Close()
		}
	}
	c.wmu.Unlock()
	if cap(b) <= maxFrameBuf {
		*bp = b[:0]
		frameBufs.Put(bp)
	}
	if err != nil {
		return 0, err
	}
	if w.written != nil {
		w.written.Add(uint64(len(held)))
	}
	return len(held), nil
}

// frameLen is the length of a text frame of n payload bytes.
func frameLen(n int) int {
	switch {
	case n < 126:
		return 2 + n
	case n <= 0xFFFF:
		return 4 + n
	default:
		return 10 + n
	}
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
