// Package wsconn owns the one WebSocket connection implementation every
// WebSocket dialect plugs into: the upgrade (after authentication), the
// reader loop with frame-size limits, the single writer that drains the
// client's hub queue and coalesces it into one socket write, keep-alive
// pings, and the close codes. A dialect only translates: client messages
// into hub subscriptions, hub deliveries into its own message shapes.
package wsconn

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/domain"
	"github.com/vigil-sec/vigil/internal/hub"
)

// Close codes sent by Vigil (also documented in docs/protocol.md).
const (
	CloseNormal        ws.StatusCode = 1000
	CloseGoingAway     ws.StatusCode = 1001 // server shutting down: reconnect and resume
	CloseProtocol      ws.StatusCode = 1002 // RFC 6455 violation (unmasked frame, RSV bits, reserved opcode)
	CloseBadPayload    ws.StatusCode = 1007 // a text message that is not UTF-8
	ClosePolicy        ws.StatusCode = 1008 // not allowed (auth, origin)
	CloseTooBig        ws.StatusCode = 1009 // client frame over the limit
	CloseLagged        ws.StatusCode = 4000 // fell behind: resume from the lagged cursor
	CloseRevoked       ws.StatusCode = 4001 // token revoked or expired
	ClosePingTimeout   ws.StatusCode = 4002 // previous ping not answered
	CloseLimitExceeded ws.StatusCode = 4003 // connection or message-rate limit
	CloseKicked        ws.StatusCode = 4004 // closed by an administrator
)

// Dialect translates between one wire protocol and the hub.
type Dialect interface {
	// Open runs after the upgrade: greetings, default subscriptions.
	Open(s *Session) error
	// Message handles one client text message. A returned error closes the
	// connection; bad input should be answered with the dialect's own error
	// message instead.
	Message(s *Session, payload []byte) error
	// Encode appends the message for one event delivery to dst; returning
	// dst unchanged skips the delivery.
	Encode(dst []byte, d hub.Delivery) []byte
}

// LagReporter is implemented by dialects that tell a lagging client where
// to resume before the connection closes.
type LagReporter interface {
	Lagged(s *Session, lag *hub.LagError) [][]byte
}

// Guard admits connections and client messages (limits, origin checks).
// auth provides the implementation; nil admits everything.
type Guard interface {
	// Admit is called before the upgrade; release is called when the
	// connection ends. A refusal's err carries its kind (auth.LimitError:
	// forbidden or rate limited), which decides the response through the
	// domain table; status repeats that status.
	Admit(r *http.Request, p *auth.Principal) (release func(), status int, err error)
	// AllowMessage rate-limits client messages on one connection.
	AllowMessage(connID string) bool
	// AllowSubscribe decides whether a connection that has current
	// subscriptions may add one more (the error is for the client).
	AllowSubscribe(current int) error
}

// Deps are what every WebSocket endpoint needs.
type Deps struct {
	Hub          *hub.Hub
	Auth         auth.Authenticator
	Guard        Guard
	Logger       *slog.Logger
	PingInterval time.Duration // default 30 s
	MaxMessage   int64         // largest client message; default 64 KiB
	// WriteTimeout is how long one write (a batch of queued messages) may
	// take before the connection is dropped. Default: PingInterval (at
	// least 1 s), the
	// time a silent client is tolerated anyway — so a client that stops
	// reading and resumes within it still reads its backlog and, if it
	// lagged meanwhile, the lag notice and close 4000.
	WriteTimeout time.Duration
	// Delivered observes each written batch (delivery latency metrics).
	Delivered func(batch []hub.Delivery, at time.Time)
	// Poller, when set, waits on idle connections with epoll instead of a
	// reader goroutine each (Linux; see Poller). Nil: one reader goroutine
	// per connection.
	Poller *Poller
}

// Session is one WebSocket connection.
type Session struct {
	conn      net.Conn
	client    *hub.Client
	principal *auth.Principal
	deps      Deps
	dialect   Dialect

	ctx     context.Context // ends with the connection
	cancel  context.CancelFunc
	release func() // returns the Guard's admission

	wmu       sync.Mutex // one writer at a time on the socket
	closeOnce sync.Once
	pongSeen  atomic.Bool
	pinger    *time.Timer
	closeCode atomic.Int32
	// grace ends a connection whose close frame followed a lag notice if
	// the client does not answer it (see closeWithTail). Set by the writer
	// before it returns; read by end after the writers are done.
	grace *time.Timer
	// ending is set once the hub ended the stream (kick, shutdown): writes
	// then get endingWriteTimeout instead of the tolerated silence.
	ending atomic.Bool

	// The writer runs only while there is something to write: an idle
	// connection holds no writer goroutine (SPEC 11 memory per connection).
	writing   atomic.Bool
	ready     atomic.Bool // set once s.client is assigned; wake waits for it
	missed    atomic.Bool // a wake that came before ready
	writers   sync.WaitGroup
	frames    *Frames // the writer's, while it runs
	encodeBuf []byte  // dialects without EncodeFrames encode each message here

	// The reader: a goroutine's loop, or, when polled, a goroutine per
	// readable moment (readReady). The frame reader exists only while a
	// message is being read: between messages it holds no state.
	rd      *wsutil.Reader
	polled  atomic.Bool
	rstate  atomic.Int32 // polled: readActive | readGone
	fd      int32        // the socket, while registered with the poller
	endOnce sync.Once
}

// rstate bits of a polled session. The poller sets readActive (under its
// lock, while the session is registered) before it starts readReady, which
// clears it before re-arming; closeConn sets readGone after leaving the
// poller. Whichever of the two sees the other's bit releases the session,
// so end never runs while a reader goroutine still uses it.
const (
	readActive int32 = 1 << iota
	readGone
)

// ID is the hub client id of this connection.
func (s *Session) ID() string { return s.client.ID() }

// Client is the session's hub client.
func (s *Session) Client() *hub.Client { return s.client }

// Principal is the authenticated caller.
func (s *Session) Principal() *auth.Principal { return s.principal }

// Context ends when the connection does.
func (s *Session) Context() context.Context { return s.ctx }

// Logger is the connection's logger.
func (s *Session) Logger() *slog.Logger { return s.deps.Logger.With("conn", s.ID()) }

// Send queues v, JSON-encoded, behind the deliveries already queued.
func (s *Session) Send(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return s.client.SendRaw(b)
}

// SendRaw queues an already-encoded message.
func (s *Session) SendRaw(b []byte) error { return s.client.SendRaw(b) }

// closeFromReader ends the connection from the reader goroutine: after the
// close frame it shuts down writing and discards what the client is still
// sending (briefly), so the close frame is not lost to a TCP reset caused by
// unread data — the client learns why (e.g. 1009) instead of "reset by peer".
func (s *Session) closeFromReader(code ws.StatusCode, reason string) {
	s.closeOnce.Do(func() {
		s.closeCode.Store(int32(code))
		s.wmu.Lock()
		_ = s.conn.SetWriteDeadline(time.Now().Add(time.Second))
		_ = ws.WriteFrame(s.conn, ws.NewCloseFrame(ws.NewCloseFrameBody(code, reason)))
		s.wmu.Unlock()
		if tc, ok := s.conn.(interface{ CloseWrite() error }); ok {
			_ = tc.CloseWrite()
			_ = s.conn.SetReadDeadline(time.Now().Add(2 * time.Second))
			_, _ = io.Copy(io.Discard, io.LimitReader(s.conn, 4<<20))
		}
		s.closeConn()
		s.client.Kick(hub.ErrClosed)
	})
}

// closeGrace bounds the closing handshake after a lag notice: how long the
// session waits for the client's close frame (or EOF) after sending its own.
const closeGrace = 2 * time.Second

// closeWithTail ends the stream the way a lagging client must see it: the
// already-framed messages of tail (the lag notice), then the close frame,
// written like every delivery — within WriteTimeout, however full the
// socket is now — so a client that resumes reading in time reads the
// whole tail. Then it half-closes (the client reads to the close frame
// instead of losing it to a reset) and leaves the rest of the closing
// handshake to the reader, bounded by closeGrace.
func (s *Session) closeWithTail(code ws.StatusCode, reason string, tail []byte) {
	s.closeOnce.Do(func() {
		s.closeCode.Store(int32(code))
		var buf bytes.Buffer
		buf.Write(tail)
		_ = ws.WriteFrame(&buf, ws.NewCloseFrame(ws.NewCloseFrameBody(code, reason)))
		s.wmu.Lock()
		err := s.writeAll(buf.Bytes())
		s.wmu.Unlock()
		tc, ok := s.conn.(interface{ CloseWrite() error })
		if err == nil && ok && tc.CloseWrite() == nil {
			s.grace = time.AfterFunc(closeGrace, s.closeConn)
		} else {
			s.closeConn()
		}
		s.client.Kick(hub.ErrClosed)
	})
}

// writeAll writes b (one batch: at most the queue's deliveries) under wmu
// within WriteTimeout. The limit is on the whole write, not on progress:
// a socket whose reader has stopped still trickles bytes into kernel
// buffers for a long time, which must not keep a stalled client alive. A
// client that reads takes a batch well within the tolerated time.
func (s *Session) writeAll(b []byte) error {
	s.armWriteDeadline()
	_, err := s.conn.Write(b)
	return err
}

// armWriteDeadline starts the WriteTimeout of one batch (under wmu).
func (s *Session) armWriteDeadline() {
	_ = s.conn.SetWriteDeadline(time.Now().Add(s.deps.WriteTimeout))
	if s.ending.Load() {
		// After the Store above's counterpart in kicked: whichever of the
		// two deadlines is set last, the short one wins.
		_ = s.conn.SetWriteDeadline(time.Now().Add(endingWriteTimeout))
	}
}

// endingWriteTimeout bounds each write once the hub has ended the stream
// (shutdown, revoked token, administrator's kick): what is still queued
// and the close frame get this long, like Close's close frame.
const endingWriteTimeout = time.Second

// kicked runs (once, without a goroutine while it waits) when the hub ends
// the client's stream: a write blocked on a stalled socket, and every
// later one, gets endingWriteTimeout, so a client that stopped reading
// does not hold the connection — and the node's shutdown — for the whole
// tolerated silence.
func (s *Session) kicked() {
	s.ending.Store(true)
	_ = s.conn.SetWriteDeadline(time.Now().Add(endingWriteTimeout))
}

// Close ends the connection with a close frame.
func (s *Session) Close(code ws.StatusCode, reason string) {
	s.closeOnce.Do(func() {
		s.closeCode.Store(int32(code))
		s.wmu.Lock()
		_ = s.conn.SetWriteDeadline(time.Now().Add(time.Second))
		_ = ws.WriteFrame(s.conn, ws.NewCloseFrame(ws.NewCloseFrameBody(code, reason)))
		s.wmu.Unlock()
		s.closeConn()
		s.client.Kick(hub.ErrClosed)
	})
}

// closeConn closes the socket. A polled session may have no reader
// goroutine to notice, so it leaves the poller first (the descriptor may be
// reused at once) and then releases itself, or leaves that to the reader
// goroutine that is running (see rstate).
func (s *Session) closeConn() {
	if !s.polled.Load() {
		_ = s.conn.Close()
		return
	}
	s.deps.Poller.remove(s)
	_ = s.conn.Close()
	if s.rstate.Or(readGone)&(readActive|readGone) == 0 {
		go s.endOnce.Do(s.end) // owned by the session: releases it once
	}
}

// Subprotocol is the subprotocol the server selects when a client offers
// it. A browser that sends its token as an auth.BearerSubprotocol must
// offer it too: a browser fails a handshake whose answer selects none of
// the subprotocols it offered, and the token's is never selected.
const Subprotocol = "vigil"

// selectSubprotocol picks Subprotocol when offered and nothing otherwise.
func selectSubprotocol(p string) bool { return p == Subprotocol }

// Serve authenticates r, upgrades it and runs the connection until it ends.
func Serve(w http.ResponseWriter, r *http.Request, deps Deps, transport string, newDialect func(*Session) Dialect) {
	if deps.PingInterval <= 0 {
		deps.PingInterval = 30 * time.Second
	}
	if deps.MaxMessage <= 0 {
		deps.MaxMessage = 64 << 10
	}
	if deps.WriteTimeout <= 0 {
		// At least a second: a sub-second ping interval (tests) must not
		// make a healthy client's large batch miss its deadline.
		deps.WriteTimeout = max(deps.PingInterval, time.Second)
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	p, ok := auth.FromContext(r.Context())
	if !ok {
		tok := auth.TokenFromRequest(r)
		if tok == "" {
			auth.WriteErr(w, domain.Errorf(domain.KindUnauthenticated, "missing bearer token (Authorization: Bearer <token> or ?token=)"))
			return
		}
		var err error
		if p, err = deps.Auth.Authenticate(r.Context(), tok); err != nil {
			auth.WriteErr(w, domain.Errorf(domain.KindUnauthenticated, "%w", err))
			return
		}
	}
	if !p.CanRead() {
		auth.WriteErr(w, domain.Errorf(domain.KindForbidden, "role %s may not read events", p.Role))
		return
	}
	release := func() {}
	if deps.Guard != nil {
		rel, _, err := deps.Guard.Admit(r, p)
		if err != nil {
			auth.WriteErr(w, err) // its kind decides: origin 403, caps 429
			return
		}
		release = rel
	}
	conn, rw, _, err := ws.HTTPUpgrader{Protocol: selectSubprotocol}.Upgrade(r, w)
	if err != nil {
		release()
		deps.Logger.Debug("websocket upgrade failed", "err", err)
		return
	}
	var src io.Reader = conn
	if rw != nil && rw.Reader.Buffered() > 0 {
		src = io.MultiReader(io.LimitReader(rw.Reader, int64(rw.Reader.Buffered())), conn)
	}
	ctx, cancel := context.WithCancel(context.Background())
	// Nothing of the request is kept past the upgrade (its headers, URL
	// and net/http's buffers are released with the handler).
	s := &Session{conn: conn, principal: p, deps: deps, ctx: ctx, cancel: cancel, release: release}
	s.client = deps.Hub.NewClient(hub.ClientInfo{Transport: transport, Remote: r.RemoteAddr, Principal: p, OnReady: s.wake, OnEnd: s.kicked})
	s.dialect = newDialect(s)
	s.ready.Store(true) // publishes s.client and s.dialect to writers started by wake
	if s.missed.Load() {
		s.wake() // a kick arrived while the session was being built
	}
	s.pongSeen.Store(true)
	s.pinger = time.AfterFunc(deps.PingInterval, s.ping)
	if err := s.dialect.Open(s); err != nil {
		s.Close(ClosePolicy, err.Error())
		s.endOnce.Do(s.end)
		return
	}
	// The HTTP handler returns: its goroutine, its deep stack and
	// net/http's buffers are released for the life of the connection.
	// The socket then waits in the poller (no goroutine at all while the
	// client is quiet) or, without one, in a fresh small reader goroutine.
	if deps.Poller != nil && src == io.Reader(conn) {
		s.polled.Store(true) // before add: readReady may run at once
		if deps.Poller.add(s) {
			return
		}
		s.polled.Store(false)
	}
	go s.readLoop(src) // owned by the session: ends when the socket does
}

// end releases everything the session holds, once the reader has stopped.
func (s *Session) end() {
	s.pinger.Stop()
	if s.polled.Load() {
		s.deps.Poller.remove(s)
	}
	_ = s.conn.Close()
	s.client.Kick(hub.ErrClosed)
	s.writers.Wait()
	if s.grace != nil {
		s.grace.Stop()
	}
	s.client.Close()
	s.cancel()
	s.release()
}

// wake is the hub client's OnReady: start a writer unless one runs.
func (s *Session) wake() {
	if !s.ready.Load() {
		s.missed.Store(true)
		// Serve stores ready and then reads missed; checking ready again
		// after storing missed means one of the two always sees the other.
		if !s.ready.Load() {
			return
		}
	}
	if s.writing.CompareAndSwap(false, true) {
		s.writers.Add(1)
		go s.writeLoop() // owned by the session: ends when the queue is empty
	}
}

func (s *Session) ping() {
	if !s.wmu.TryLock() {
		// A write is under way: a burst to a reading client, or a client
		// that stopped reading, which the write's own deadline
		// (WriteTimeout) cuts. Do not queue behind it: check again an
		// interval later.
		s.pinger.Reset(s.deps.PingInterval)
		return
	}
	if !s.pongSeen.Swap(false) {
		s.wmu.Unlock()
		s.Close(ClosePingTimeout, "ping not answered")
		return
	}
	err := s.writeAll(pingFrame)
	s.wmu.Unlock()
	if err != nil {
		s.closeConn()
		return
	}
	s.pinger.Reset(s.deps.PingInterval)
}

// pingFrame is an empty server ping frame.
var pingFrame = ws.MustCompileFrame(ws.NewPingFrame(nil))

// lockedWriter lets the control-frame handler answer pings and closes
// without interleaving with the writer goroutine's frames.
type lockedWriter struct{ s *Session }

func (w lockedWriter) Write(p []byte) (int, error) {
	w.s.wmu.Lock()
	defer w.s.wmu.Unlock()
	_ = w.s.conn.SetWriteDeadline(time.Now().Add(w.s.deps.WriteTimeout))
	return w.s.conn.Write(p)
}

func (s *Session) newReader(src io.Reader) *wsutil.Reader {
	rd := &wsutil.Reader{Source: src, State: ws.StateServerSide, CheckUTF8: true,
		MaxFrameSize: s.deps.MaxMessage, MaxMessageSize: s.deps.MaxMessage}
	// A control frame between the fragments of a message: its body is r,
	// not the frame reader (which would read on into the next fragment).
	rd.OnIntermediate = func(h ws.Header, r io.Reader) error { return s.handleControl(h, r) }
	return rd
}

// handleControl answers a ping, notes a pong, or echoes a close (then the
// error is a wsutil.ClosedError). body is the frame's payload, already
// unmasked by the frame reader: unmasking again would garble the echoed
// ping and the close code.
func (s *Session) handleControl(h ws.Header, body io.Reader) error {
	if h.OpCode == ws.OpPong {
		s.pongSeen.Store(true)
	}
	err := wsutil.ControlHandler{Src: body, Dst: lockedWriter{s}, State: ws.StateServerSide, DisableSrcCiphering: true}.Handle(h)
	var closed wsutil.ClosedError
	if errors.As(err, &closed) {
		s.closeOnce.Do(func() {}) // the handler already answered the close
	}
	return err
}

// readLoop is the reader goroutine of an unpolled connection.
func (s *Session) readLoop(src io.Reader) {
	defer s.endOnce.Do(s.end)
	s.rd = s.newReader(src)
	for s.readMessage() {
	}
}

// readReady runs when the poller saw the socket readable (and set
// readActive): it reads one client message or control frame, waiting for
// the rest of it if only a part has arrived, and hands the socket back,
// or ends the session. The frame reader is dropped after each message:
// an idle connection keeps none.
func (s *Session) readReady() {
	s.rd = s.newReader(s.conn)
	ok := s.readMessage()
	s.rd = nil
	if !ok {
		s.closeConn() // sees readActive: the release is left to us
	}
	// Clear readActive before re-arming: the next readable moment may
	// start the next readReady at once.
	if s.rstate.And(^readActive)&readGone != 0 {
		s.endOnce.Do(s.end)
		return
	}
	s.deps.Poller.rearm(s) // nothing if the session left the poller meanwhile
}

// readMessage reads and handles one frame or message; false once the
// connection is done.
func (s *Session) readMessage() bool {
	h, err := s.rd.NextFrame()
	if err != nil {
		s.readFailed(err)
		return false
	}
	if h.OpCode.IsControl() {
		return s.handleControl(h, s.rd) == nil
	}
	s.pongSeen.Store(true) // any traffic proves the peer is alive
	payload, err := io.ReadAll(s.rd)
	if err != nil {
		s.readFailed(err)
		return false
	}
	if s.deps.Guard != nil && !s.deps.Guard.AllowMessage(s.ID()) {
		s.closeFromReader(CloseLimitExceeded, "message rate limit exceeded")
		return false
	}
	if err := s.dialect.Message(s, payload); err != nil {
		s.closeFromReader(ClosePolicy, err.Error())
		return false
	}
	return true
}

// readFailed tells the client why its frames ended the connection, with a
// close frame before the TCP close (RFC 6455 7.1.7: _Fail the WebSocket
// Connection_), instead of a reset. Plain I/O errors (EOF, reset, deadline)
// have nobody to tell.
func (s *Session) readFailed(err error) {
	var perr ws.ProtocolError
	switch {
	case errors.Is(err, wsutil.ErrFrameTooLarge), errors.Is(err, wsutil.ErrMessageTooLarge):
		s.closeFromReader(CloseTooBig, "message larger than the limit")
	case errors.As(err, &perr):
		s.closeFromReader(CloseProtocol, string(perr))
	case errors.Is(err, wsutil.ErrInvalidUTF8):
		s.closeFromReader(CloseBadPayload, "text message is not valid UTF-8")
	}
}

// writeLoop drains the hub queue: everything queued since the last write
// goes out as one buffer of frames in one syscall. It exits when the queue
// is empty; the hub's OnReady starts it again.
func (s *Session) writeLoop() {
	defer s.writers.Done()
	for {
		batch, err := s.client.TryNext()
		if err != nil {
			s.finish(err)
			return // the stream ended: s.writing stays set, no new writer
		}
		if batch == nil {
			// Idle again: hand the buffers back, so a quiet connection
			// holds none (they never grow, so any recycled one serves the
			// next burst as it is).
			if s.frames != nil {
				putFrames(s.frames)
			}
			putBuf(s.encodeBuf)
			s.frames, s.encodeBuf = nil, nil
			s.writing.Store(false)
			// A delivery queued between TryNext and the Store above found
			// the writer still running and did not start another: look again.
			if s.client.QueueDepth() == 0 && !s.client.Ended() {
				return
			}
			if !s.writing.CompareAndSwap(false, true) {
				return // another writer took over
			}
			continue
		}
		if !s.write(batch) {
			return
		}
	}
}

// write sends one batch under one WriteTimeout: event bodies shared by
// reference (VectorDialect) and written with writev, in as few system
// calls as the batch needs (see Frames).
func (s *Session) write(batch []hub.Delivery) bool {
	if len(batch) == 1 && batch[0].Raw != nil && len(batch[0].Raw) <= 512 {
		// A lone control message (subscribed, pong, error): the usual
		// write of a connection that is otherwise idle. It is framed in
		// a buffer of its own size instead of taking the pooled 40 KB
		// of Frames, which a storm of new connections would leave in
		// the pool's caches.
		s.wmu.Lock()
		err := s.writeAll(appendFrame(make([]byte, 0, len(batch[0].Raw)+ws.MaxHeaderSize), batch[0].Raw))
		s.wmu.Unlock()
		if err != nil {
			s.closeConn()
			return false
		}
		return true
	}
	if s.frames == nil {
		s.frames = getFrames(s.conn)
	}
	f := s.frames
	f.err, f.frames = nil, 0
	vd, _ := s.dialect.(VectorDialect)
	s.wmu.Lock()
	s.armWriteDeadline()
	for i := 0; i < len(batch) && f.err == nil; {
		d := batch[i]
		switch {
		case d.Raw != nil:
			f.Frame(len(d.Raw))
			f.Share(d.Raw)
			i++
		case vd != nil:
			i += max(1, vd.EncodeFrames(f, batch[i:]))
		default:
			if s.encodeBuf == nil {
				s.encodeBuf = getBuf()
			}
			s.encodeBuf = s.dialect.Encode(s.encodeBuf[:0], d)
			if len(s.encodeBuf) > 0 {
				f.Frame(len(s.encodeBuf))
				f.Copy(s.encodeBuf)
			}
			i++
		}
	}
	f.flush()
	s.wmu.Unlock()
	if f.err != nil {
		putFrames(f) // flushed: holds no reference
		s.frames = nil
		s.closeConn()
		return false
	}
	if f.frames > 0 && s.deps.Delivered != nil {
		s.deps.Delivered(batch, time.Now())
	}
	if cap(s.encodeBuf) > 16<<10 {
		s.encodeBuf = nil // do not keep one exceptional message's capacity
	}
	return true
}

// finish sends what the stream's end means to the client, then closes.
func (s *Session) finish(err error) {
	var lag *hub.LagError
	switch {
	case errors.As(err, &lag):
		// The hub stopped queueing at the lag point and everything queued
		// before it has been written: the notice and the close frame are
		// the tail of the stream, not a write into a full socket.
		var tail []byte
		if lr, ok := s.dialect.(LagReporter); ok {
			for _, m := range lr.Lagged(s, lag) {
				tail = appendFrame(tail, m)
			}
		}
		s.closeWithTail(CloseLagged, "client fell behind; resume from the lagged cursor", tail)
	case errors.Is(err, hub.ErrShutdown):
		s.Close(CloseGoingAway, "server shutting down; reconnect and resume")
	case errors.Is(err, auth.ErrBadToken):
		s.Close(CloseRevoked, "token revoked or expired")
	case errors.Is(err, hub.ErrClosed), errors.Is(err, context.Canceled):
		s.Close(CloseNormal, "")
	default:
		s.Close(CloseKicked, err.Error())
	}
}

func appendFrame(dst, payload []byte) []byte {
	var hdr [ws.MaxHeaderSize]byte
	n := putHeader(hdr[:], len(payload))
	dst = append(dst, hdr[:n]...)
	return append(dst, payload...)
}

// putHeader writes an unmasked, final text frame header (server side).
func putHeader(b []byte, n int) int {
	b[0] = 0x80 | byte(ws.OpText)
	switch {
	case n < 126:
		b[1] = byte(n)
		return 2
	case n <= 0xFFFF:
		b[1] = 126
		b[2], b[3] = byte(n>>8), byte(n)
		return 4
	default:
		b[1] = 127
		for i := 0; i < 8; i++ {
			b[2+i] = byte(uint64(n) >> (56 - 8*i))
		}
		return 10
	}
}

// writeBufs recycles the encode buffers of dialects without EncodeFrames
// between the bursts of all connections: an idle connection keeps none
// (SPEC 11 memory per connection). A sync.Pool is a cache, not state: any
// buffer may be dropped at any time.
var writeBufs = sync.Pool{New: func() any { b := make([]byte, 0, 4<<10); return &b }}

func getBuf() []byte { return (*writeBufs.Get().(*[]byte))[:0] }

func putBuf(b []byte) {
	if b != nil && cap(b) <= 64<<10 {
		writeBufs.Put(&b)
	}
}
