// Package sse owns the Server-Sent Events transport (SPEC 5): a filter in
// the query string, one hub subscription per request, each event's seq as
// the SSE id, and Last-Event-ID resume.
package sse

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/domain"
	"github.com/vigil-sec/vigil/internal/filter"
	"github.com/vigil-sec/vigil/internal/hub"
)

// Admitter admits a streaming connection (limits); nil admits all. A
// refusal's err carries its kind, which decides the response status
// (domain table); status repeats it.
type Admitter interface {
	Admit(r *http.Request, p *auth.Principal) (release func(), status int, err error)
}

// Handler serves GET /api/v1/stream/sse. The route must be wrapped by
// auth.Require. ?from_seq=N starts at N; Last-Event-ID: N resumes at N+1.
// heartbeat is the keep-alive comment interval (default 15 s); stall is how
// long a write may wait for a client that stopped reading before the
// stream ends (default 30 s, the ping interval of the WebSocket streams):
// a client that resumes in time reads its backlog and, if its queue
// overflowed meanwhile, "event: lagged" with resume_from.
func Handler(h *hub.Hub, guard Admitter, heartbeat, stall time.Duration) http.HandlerFunc {
	if heartbeat <= 0 {
		heartbeat = 15 * time.Second
	}
	if stall <= 0 {
		stall = 30 * time.Second
	}
	stall = max(stall, time.Second) // as the WebSocket streams' write limit
	return func(w http.ResponseWriter, r *http.Request) {
		p, _ := auth.FromContext(r.Context())
		if !p.CanRead() {
			auth.WriteErr(w, domain.Errorf(domain.KindForbidden, "role %s may not read events", p.Role))
			return
		}
		f, err := filter.FromQuery(r.URL.Query(), "from_seq")
		if err != nil {
			auth.WriteErr(w, domain.Errorf(domain.KindInvalid, "%w", err))
			return
		}
		m, err := filter.Compile(f)
		if err != nil {
			auth.WriteErr(w, domain.Errorf(domain.KindInvalid, "%w", err))
			return
		}
		cursor := hub.Latest()
		if v := r.URL.Query().Get("from_seq"); v != "" {
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				auth.WriteErr(w, domain.Errorf(domain.KindInvalid, "from_seq: not a non-negative integer"))
				return
			}
			cursor = hub.FromSeq(n)
		}
		if v := r.Header.Get("Last-Event-ID"); v != "" {
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				auth.WriteErr(w, domain.Errorf(domain.KindInvalid, "Last-Event-ID: not a seq"))
				return
			}
			cursor = hub.FromSeq(n + 1)
		}
		c := &conn{w: w, rc: http.NewResponseController(w), stall: stall}
		if guard != nil {
			release, _, err := guard.Admit(r, p)
			if err != nil {
				auth.WriteErr(w, err) // its kind decides: origin 403, caps 429
				return
			}
			defer release()
		}
		client := h.NewClient(hub.ClientInfo{Transport: "sse", Remote: r.RemoteAddr, Principal: p})
		defer client.Close()
		if _, err := client.Subscribe(r.Context(), "sse", m, cursor); err != nil {
			if errors.Is(err, auth.ErrLimit) {
				auth.WriteErr(w, err) // the token's filter budget: 429
				return
			}
			auth.WriteErr(w, domain.Errorf(domain.KindInternal, "%w", err))
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("X-Accel-Buffering", "no")
		if r.ProtoMajor == 1 {
			// The stream's write deadlines stay on the connection (net/http
			// resets them only with a server WriteTimeout, which would end
			// every stream): never reuse it for another request. EventSource
			// reconnects with a new connection anyway.
			w.Header().Set("Connection", "close")
		}
		stopKick := context.AfterFunc(client.Context(), c.kicked)
		defer func() { // before client.Close: kicked must not run after this
			stopKick()
			c.done()
		}()
		w.WriteHeader(http.StatusOK)
		if c.write(fmt.Appendf(nil, "retry: 2000\n: head %d\n\n", client.HubHead())) != nil {
			return
		}
		stream(r.Context(), c, client, heartbeat)
	}
}

// chunk is how much of a burst is buffered between flushes.
const chunk = 16 << 10

// conn writes to the response with a deadline per batch (net/http's
// server has no WriteTimeout: it would end every long-lived stream).
type conn struct {
	w     http.ResponseWriter
	rc    *http.ResponseController
	stall time.Duration

	// Once the hub ends the stream (shutdown, revoked token, kick), a
	// write blocked on a stalled client gets endingWriteTimeout instead of
	// stall (kicked). mu orders kicked against the handler's return: the
	// response must not be touched after it.
	mu       sync.Mutex
	ending   bool
	returned bool
}

// endingWriteTimeout bounds each write once the hub has ended the stream.
const endingWriteTimeout = time.Second

// kicked runs when the hub ends the client's stream.
func (c *conn) kicked() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.returned {
		c.ending = true
		_ = c.rc.SetWriteDeadline(time.Now().Add(endingWriteTimeout))
	}
}

// done is the handler's last use of the response: net/http still writes
// the end of the chunked body, which a stalled client must not block for
// longer than endingWriteTimeout (the HTTP/1 connection is not reused:
// "Connection: close"); and kicked does nothing more.
func (c *conn) done() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.returned = true
	_ = c.rc.SetWriteDeadline(time.Now().Add(endingWriteTimeout))
}

// arm gives the client stall to take what is written until the next arm:
// one batch (at most the queue's deliveries), or one message.
func (c *conn) arm() error {
	c.mu.Lock()
	d := c.stall
	if c.ending {
		d = endingWriteTimeout
	}
	err := c.rc.SetWriteDeadline(time.Now().Add(d))
	c.mu.Unlock()
	if err != nil && !errors.Is(err, http.ErrNotSupported) {
		// ErrNotSupported: a writer without deadlines (a test recorder, a
		// middleware that hides the connection) streams without one.
		return fmt.Errorf("sse: write deadline: %w", err)
	}
	return nil
}

// put sends b and flushes, under the deadline of the last arm.
func (c *conn) put(b []byte) error {
	if _, err := c.w.Write(b); err != nil {
		return err
	}
	return c.rc.Flush()
}

// write arms the deadline and sends one message.
func (c *conn) write(b []byte) error {
	if err := c.arm(); err != nil {
		return err
	}
	return c.put(b)
}

func stream(ctx context.Context, c *conn, client *hub.Client, heartbeat time.Duration) {
	var buf []byte
	for {
		wait, cancel := context.WithTimeout(ctx, heartbeat)
		batch, err := client.Next(wait)
		cancel()
		if err != nil {
			if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
				if c.write([]byte(": keep-alive\n\n")) != nil {
					return
				}
				continue
			}
			var lag *hub.LagError
			if errors.As(err, &lag) {
				// Everything queued before the lag point has been written;
				// the notice is the stream's last message.
				_ = c.write(fmt.Appendf(nil, "event: lagged\ndata: {\"resume_from\":%d}\n\n", lag.Resume["sse"]))
			}
			if errors.Is(err, hub.ErrShutdown) {
				_ = c.write([]byte("event: shutdown\ndata: {\"reason\":\"server shutting down; reconnect\"}\n\n"))
			}
			return
		}
		if c.arm() != nil {
			return
		}
		buf = buf[:0]
		for _, d := range batch {
			if d.Event == nil {
				continue
			}
			buf = append(buf, "id: "...)
			buf = strconv.AppendUint(buf, d.Event.Seq, 10)
			buf = append(buf, "\ndata: "...)
			buf = append(buf, d.Event.JSON()...)
			buf = append(buf, "\n\n"...)
			if len(buf) >= chunk {
				if c.put(buf) != nil {
					return
				}
				buf = buf[:0]
			}
		}
		if len(buf) > 0 && c.put(buf) != nil {
			return
		}
		if cap(buf) > 4*chunk {
			buf = nil // do not keep a burst's buffer for an idle stream
		}
	}
}
