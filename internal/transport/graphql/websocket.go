package graphql

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	gql "github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/transport/wsconn"
)

// gobwasWebsocket runs gqlgen's GraphQL-over-WebSocket protocols on
// github.com/gobwas/ws, the WebSocket library of every other Vigil stream:
// one syscall per message written, no goroutine or timer per connection.
type gobwasWebsocket struct {
	// originOK decides browser origins; nil accepts only the server's own
	// host or a pattern of originPatterns.
	originOK       func(r *http.Request) bool
	originPatterns []string
	writeTimeout   time.Duration
	// guard rate-limits client messages per connection, as on every
	// other Vigil stream (nil: no limit).
	guard wsconn.Guard
}

var _ transport.WebsocketImplementation = gobwasWebsocket{}

// sameOrigin accepts non-browser clients (no Origin), the server's own
// host, and hosts matching one of patterns (path.Match syntax).
func sameOrigin(r *http.Request, patterns []string) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil {
		return false
	}
	if strings.EqualFold(u.Host, r.Host) {
		return true
	}
	for _, p := range patterns {
		if ok, _ := path.Match(strings.ToLower(p), strings.ToLower(u.Host)); ok {
			return true
		}
	}
	return false
}

func (g gobwasWebsocket) Accept(w http.ResponseWriter, r *http.Request, opts transport.WebsocketAcceptOptions) (transport.WebsocketConn, error) {
	allowed := g.originOK
	if allowed == nil {
		allowed = func(r *http.Request) bool { return sameOrigin(r, g.originPatterns) }
	}
	if !allowed(r) {
		http.Error(w, "origin not allowed", http.StatusForbidden)
		return nil, fmt.Errorf("websocket: origin %q not allowed", r.Header.Get("Origin"))
	}
	u := ws.HTTPUpgrader{
		Header:   opts.ResponseHeader,
		Protocol: func(p string) bool { return slices.Contains(opts.Subprotocols, p) },
	}
	conn, rw, hs, err := u.Upgrade(r, w)
	if err != nil {
		return nil, fmt.Errorf("websocket: upgrade: %w", err)
	}
	var src io.Reader = conn
	if rw != nil && rw.Reader.Buffered() > 0 {
		// Bytes the client sent right behind its handshake.
		src = io.MultiReader(io.LimitReader(rw.Reader, int64(rw.Reader.Buffered())), conn)
	}
	timeout := g.writeTimeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	c := &gobwasConn{conn: conn, protocol: hs.Protocol, writeTimeout: timeout, guard: g.guard, proto: protocolState{protocol: hs.Protocol}}
	c.id = fmt.Sprintf("graphql-%p", c) // unique while the connection lives
	if w, ok := r.Context().Value(connWatchKey{}).(*connWatch); ok {
		w.attach(c)
		c.watch = w
	}
	c.rd = &wsutil.Reader{Source: src, State: ws.StateServerSide, CheckUTF8: true}
	// Src is the frame reader, which has already unmasked the payload.
	c.ctl = wsutil.ControlHandler{Src: c.rd, Dst: lockedConn{c}, State: ws.StateServerSide, DisableSrcCiphering: true}
	// A control frame between the fragments of a message: its body is r,
	// not the frame reader (which would read on into the next fragment).
	c.rd.OnIntermediate = func(h ws.Header, r io.Reader) error {
		return wsutil.ControlHandler{Src: r, Dst: lockedConn{c}, State: ws.StateServerSide, DisableSrcCiphering: true}.Handle(h)
	}
	return c, nil
}

// gobwasConn is one connection. gqlgen reads from one goroutine and writes
// from several (one per active operation), so writes are serialised.
type gobwasConn struct {
	conn         net.Conn
	protocol     string
	writeTimeout time.Duration
	rd           *wsutil.Reader // used only by gqlgen's reading goroutine
	ctl          wsutil.ControlHandler
	wmu          sync.Mutex
	closed       bool // guarded by wmu: a close frame was sent
	broken       bool // guarded by wmu: a write failed, the socket is closed
	guard        wsconn.Guard
	id           string     // the message-rate bucket's key
	watch        *connWatch // the credential watch, if any
	// proto checks client messages against the protocol (issue 8);
	// maxMessage bounds a whole message, fragments included (0: none).
	// Both are used only by gqlgen's reading goroutine.
	proto      protocolState
	maxMessage int64
	// pendingOp is the subscribe message last passed to gqlgen (reading
	// goroutine only) and ops the ids of operations not yet started, for
	// direct writes of shared responses (directwrite.go).
	pendingOp opStart
	opsMu     sync.Mutex
	ops       map[*gql.OperationContext]string

	// deadline is the write deadline last set on conn (guarded by wmu;
	// see armWrite).
	deadline time.Time
}

type connWatchKey struct{}

// connWatch ties one GraphQL WebSocket connection to the credential
// watcher (tokens.Enforcer): ServeHTTP puts it in the request context,
// Accept attaches the connection, initWebsocket registers the principal
// once known, and Close unregisters it.
type connWatch struct {
	mu     sync.Mutex
	conn   *gobwasConn
	stop   func()
	closed bool
}

func (w *connWatch) attach(c *gobwasConn) {
	w.mu.Lock()
	w.conn = c
	w.mu.Unlock()
}

// watch registers p (once; not after the connection has closed).
func (w *connWatch) watch(cw ConnWatcher, p *auth.Principal) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed || w.stop != nil || w.conn == nil {
		return
	}
	w.stop = cw.Watch(p, w.kick)
}

// kick closes the connection with 4001 like every other Vigil WebSocket
// (wsconn.CloseRevoked). It must not block the watcher: the close frame
// is written by a goroutine owned by the closing connection, which ends
// after one write bounded by the write timeout. Closing the socket ends
// gqlgen's read loop, which ends every operation of the connection.
func (w *connWatch) kick(error) {
	w.mu.Lock()
	c := w.conn
	w.mu.Unlock()
	if c == nil {
		return
	}
	go func() {
		_ = c.WriteClose(int(wsconn.CloseRevoked), "token revoked or expired")
		_ = c.conn.Close()
	}()
}

// release unregisters the connection; called from Close.
func (w *connWatch) release() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = true
	if w.stop != nil {
		w.stop()
		w.stop = nil
	}
}

var (
	_ transport.WebsocketConn          = (*gobwasConn)(nil)
	_ transport.WebsocketReadLimiter   = (*gobwasConn)(nil)
	_ transport.WebsocketReadDeadliner = (*gobwasConn)(nil)
)

// lockedConn lets the control handler answer pings and closes without
// interleaving with message writes.
type lockedConn struct{ c *gobwasConn }

func (l lockedConn) Write(p []byte) (int, error) {
	l.c.wmu.Lock()
	defer l.c.wmu.Unlock()
	if l.c.broken {
		return 0, net.ErrClosed
	}
	l.c.armWrite()
	n, err := l.c.conn.Write(p)
	if err != nil {
		// A frame cut short would garble every later one, and gqlgen
		// ignores write errors: end the connection (its reader then ends
		// every operation).
		l.c.broken = true
		_ = l.c.conn.Close()
	}
	return n, err
}

func (c *gobwasConn) NextReader() (int, io.Reader, error) {
	for {
		h, err := c.rd.NextFrame()
		if err != nil {
			if errors.Is(err, wsutil.ErrFrameTooLarge) || errors.Is(err, wsutil.ErrMessageTooLarge) {
				_ = c.WriteClose(int(ws.StatusMessageTooBig), fmt.Sprintf("message larger than %d bytes", c.maxMessage))
				return 0, nil, transport.ErrWebsocketClosed
			}
			return 0, nil, c.readErr(err)
		}
		if h.OpCode.IsControl() {
			if err := c.ctl.Handle(h); err != nil {
				return 0, nil, c.readErr(err)
			}
			continue
		}
		var src io.Reader = c.rd
		if c.maxMessage > 0 {
			src = io.LimitReader(c.rd, c.maxMessage+1)
		}
		b, err := io.ReadAll(src)
		if err != nil {
			return 0, nil, c.readErr(err)
		}
		if c.maxMessage > 0 && int64(len(b)) > c.maxMessage {
			_ = c.WriteClose(int(ws.StatusMessageTooBig), fmt.Sprintf("message larger than %d bytes", c.maxMessage))
			return 0, nil, transport.ErrWebsocketClosed
		}
		if c.guard != nil && !c.guard.AllowMessage(c.id) {
			// The same answer as every other Vigil stream: close 4003.
			_ = c.WriteClose(int(wsconn.CloseLimitExceeded), "message rate limit exceeded")
			return 0, nil, transport.ErrWebsocketClosed
		}
		v := c.proto.check(b)
		switch {
		case v.closeCode != 0:
			_ = c.WriteClose(v.closeCode, v.closeReason)
			return 0, nil, transport.ErrWebsocketClosed
		case v.reply != nil: // legacy protocol: answer, drop, read on
			if err := c.WriteJSON(v.reply); err != nil {
				return 0, nil, err
			}
			continue
		}
		// gqlgen creates this operation's context before it reads again
		// (opIDExt then records the id); any other message clears it.
		c.pendingOp = opStart{id: v.opID, query: v.opQuery}
		return int(h.OpCode), bytes.NewReader(b), nil
	}
}

// readErr maps a peer's close to the transport's "closed normally".
func (c *gobwasConn) readErr(err error) error {
	var closed wsutil.ClosedError
	if errors.As(err, &closed) || errors.Is(err, io.EOF) {
		return transport.ErrWebsocketClosed
	}
	return err
}

// armWrite makes sure the next write has a deadline close to a full
// writeTimeout away; called with wmu held. writeTimeout is the tolerated
// silence (the ping interval): a client that stops reading and resumes in
// time still gets its backlog and the lag error. The deadline is moved
// only once deadlineSlack has passed since it was last set, not before
// every write: setting it modifies the socket's runtime timer, ~1 µs and
// 3-4 % of the CPU per delivery with 1,000 subscribers each sent one
// frame per event. A write still gets at least writeTimeout - deadlineSlack.
func (c *gobwasConn) armWrite() {
	now := time.Now()
	if c.deadline.Sub(now) >= c.writeTimeout-deadlineSlack(c.writeTimeout) {
		return
	}
	c.deadline = now.Add(c.writeTimeout)
	_ = c.conn.SetWriteDeadline(c.deadline)
}

// deadlineSlack is how much of a write timeout t armWrite may have used
// up before it moves the deadline: an eighth, at most a second (29 s of
// the default 30 s ping interval).
func deadlineSlack(t time.Duration) time.Duration { return min(t/8, time.Second) }

// WriteJSON sends v as one text frame, header and payload in one write.
func (c *gobwasConn) WriteJSON(v any) error {
	payload, err := json.Marshal(v)
	if err != nil {
		return err
	}
	h := ws.Header{Fin: true, OpCode: ws.OpText, Length: int64(len(payload))}
	var buf bytes.Buffer
	buf.Grow(ws.HeaderSize(h) + len(payload))
	if err := ws.WriteHeader(&buf, h); err != nil {
		return err
	}
	buf.Write(payload)
	_, err = lockedConn{c}.Write(buf.Bytes())
	return err
}

func (c *gobwasConn) WriteClose(code int, message string) error {
	if c.protocol == protoTransportWS && code == transport.WebsocketCloseProtocolError && message == "connection initialisation timeout" {
		code = CloseInitTimeout // gqlgen's 1002; graphql-transport-ws says 4408
	}
	c.wmu.Lock()
	if c.closed {
		c.wmu.Unlock()
		return nil
	}
	c.closed = true
	c.wmu.Unlock()
	frame := ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusCode(code), message))
	var buf bytes.Buffer
	if err := ws.WriteFrame(&buf, frame); err != nil {
		return err
	}
	_, err := lockedConn{c}.Write(buf.Bytes())
	return err
}

func (c *gobwasConn) Close() error {
	if c.watch != nil {
		c.watch.release()
	}
	if f, ok := c.guard.(interface{ Forget(string) }); ok {
		f.Forget(c.id) // drop the rate bucket now rather than at the next prune
	}
	return c.conn.Close()
}
func (c *gobwasConn) Subprotocol() string               { return c.protocol }
func (c *gobwasConn) SetReadLimit(limit int64)          { c.rd.MaxFrameSize, c.maxMessage = limit, limit }
func (c *gobwasConn) SetReadDeadline(t time.Time) error { return c.conn.SetReadDeadline(t) }
