package client

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	gojson "github.com/goccy/go-json"
)

// Cursor is where a subscription starts: zero value is "latest".
type Cursor struct {
	Seq  uint64
	Time time.Time
}

// SubscribeOptions configure Subscribe.
type SubscribeOptions struct {
	Filter Filter
	From   Cursor
	// OnState is told about connects and disconnects (for logs and UIs).
	OnState func(connected bool, err error)
	// MaxBackoff caps the reconnect delay (default 10 s).
	MaxBackoff time.Duration
	// Batch asks the server for batched frames ({"type":"events"}: every
	// event of a burst in one message, docs/protocol.md): fewer frames to
	// parse under load. fn is still called once per event, in order.
	Batch bool
}

// ServerError is a {"type":"error"} message, e.g. a filter that does not
// compile; it ends Subscribe since retrying cannot fix it.
type ServerError struct {
	Code, Message string
}

func (e *ServerError) Error() string { return fmt.Sprintf("server refused: %s: %s", e.Code, e.Message) }

// Subscribe streams matching events to fn until ctx ends, fn returns an
// error, or the server rejects the subscription. It reconnects on any
// connection loss (and after being lagged), resuming from the seq after
// the last one delivered, so fn sees every matching event once, in order.
func (c *Client) Subscribe(ctx context.Context, opts SubscribeOptions, fn func(*Event) error) error {
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 10 * time.Second
	}
	var last uint64
	from := opts.From
	backoff := 100 * time.Millisecond
	for {
		if last > 0 {
			from = Cursor{Seq: last + 1}
		}
		delivered, err := c.streamOnce(ctx, opts.Filter, from, opts.Batch, func(e *Event) error {
			last = e.Seq
			return fn(e)
		}, opts.OnState)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var se *ServerError
		var fnErr *callbackError
		switch {
		case errors.As(err, &se):
			return err
		case errors.As(err, &fnErr):
			return fnErr.err
		}
		var he *Error
		if errors.As(err, &he) && (he.Status == http.StatusUnauthorized || he.Status == http.StatusForbidden) {
			return err
		}
		if tlsRefused(err) {
			return err
		}
		if delivered {
			backoff = 100 * time.Millisecond
		}
		if opts.OnState != nil {
			opts.OnState(false, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, opts.MaxBackoff)
	}
}

type callbackError struct{ err error }

func (e *callbackError) Error() string { return e.err.Error() }

type serverMsg struct {
	Type       string            `json:"type"`
	ID         string            `json:"id"`
	Sub        string            `json:"sub"`
	Head       uint64            `json:"head"`
	Code       string            `json:"code"`
	Message    string            `json:"message"`
	ResumeFrom uint64            `json:"resume_from"`
	Event      json.RawMessage   `json:"event"`
	Events     []json.RawMessage `json:"events"`
}

func (c *Client) streamOnce(ctx context.Context, f Filter, from Cursor, batch bool, fn func(*Event) error, onState func(bool, error)) (delivered bool, err error) {
	dialer := ws.Dialer{Header: ws.HandshakeHeaderHTTP(http.Header{"Authorization": []string{"Bearer " + c.token}}), Timeout: 10 * time.Second,
		TLSConfig: c.tlsConfig}
	conn, br, _, err := dialer.Dial(ctx, c.wsURL("/api/v1/stream"))
	if err != nil {
		var se ws.StatusError
		if errors.As(err, &se) {
			return false, &Error{Status: int(se), Message: "websocket handshake refused"}
		}
		return false, fmt.Errorf("client: dial: %w", err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()

	sub := map[string]any{"op": "subscribe", "id": "client", "filter": f}
	if batch {
		sub["batch"] = true
	}
	switch {
	case from.Seq > 0:
		sub["from"] = map[string]uint64{"seq": from.Seq}
	case !from.Time.IsZero():
		sub["from"] = map[string]string{"time": from.Time.UTC().Format(time.RFC3339Nano)}
	default:
		sub["from"] = "latest"
	}
	b, _ := json.Marshal(sub)
	if err := wsutil.WriteClientText(conn, b); err != nil {
		return false, fmt.Errorf("client: subscribe: %w", err)
	}
	if onState != nil {
		onState(true, nil)
	}
	// Read through a buffer (the handshake's, if the server's first frames
	// came with it): one syscall per burst instead of two per frame.
	var src io.Reader = br
	if br == nil {
		src = bufio.NewReaderSize(conn, 16<<10)
	}
	control := wsutil.ControlFrameHandler(conn, ws.StateClientSide)
	rd := &wsutil.Reader{Source: src, State: ws.StateClientSide, OnIntermediate: control}
	for {
		hdr, err := rd.NextFrame()
		if err != nil {
			return delivered, fmt.Errorf("client: read: %w", err)
		}
		if hdr.OpCode.IsControl() {
			if err := control(hdr, rd); err != nil {
				return delivered, fmt.Errorf("client: read: %w", err)
			}
			continue
		}
		if hdr.OpCode != ws.OpText {
			if err := rd.Discard(); err != nil {
				return delivered, fmt.Errorf("client: read: %w", err)
			}
			continue
		}
		data, err := io.ReadAll(rd)
		if err != nil {
			return delivered, fmt.Errorf("client: read: %w", err)
		}
		// goccy/go-json: the stream is the client's hot path, and
		// encoding/json's validate-then-decode was most of a subscriber's CPU.
		var m serverMsg
		if err := gojson.Unmarshal(data, &m); err != nil {
			return delivered, fmt.Errorf("client: bad server message: %w", err)
		}
		switch m.Type {
		case "event":
			var e Event
			if err := gojson.Unmarshal(m.Event, &e); err != nil {
				return delivered, fmt.Errorf("client: bad event: %w", err)
			}
			delivered = true
			if err := fn(&e); err != nil {
				return delivered, &callbackError{err}
			}
		case "events":
			for _, raw := range m.Events {
				var e Event
				if err := gojson.Unmarshal(raw, &e); err != nil {
					return delivered, fmt.Errorf("client: bad event: %w", err)
				}
				delivered = true
				if err := fn(&e); err != nil {
					return delivered, &callbackError{err}
				}
			}
		case "error":
			return delivered, &ServerError{Code: m.Code, Message: m.Message}
		case "lagged":
			return delivered, fmt.Errorf("client: lagged; resuming from %d", m.ResumeFrom)
		}
	}
}
