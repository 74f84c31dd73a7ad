// Package wsnative owns Vigil's native stream protocol (SPEC 5): subscribe,
// unsubscribe and ping over one WebSocket, any number of subscriptions per
// connection, each resumable from a seq or a time.
package wsnative

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/filter"
	"github.com/vigil-sec/vigil/internal/hub"
	"github.com/vigil-sec/vigil/internal/transport/wsconn"
)

// Handler serves GET /api/v1/stream.
// The subscription cap is the Guard's (counted in vigil_limit_rejections_total
// with the other limits); without a Guard, maxSubs applies.
func Handler(deps wsconn.Deps, maxSubs int) http.Handler {
	allow := func(current int) error {
		if maxSubs > 0 && current >= maxSubs {
			return fmt.Errorf("at most %d subscriptions per connection", maxSubs)
		}
		return nil
	}
	if deps.Guard != nil {
		allow = deps.Guard.AllowSubscribe
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		wsconn.Serve(w, r, deps, "websocket", func(*wsconn.Session) wsconn.Dialect {
			return &dialect{allowSub: allow}
		})
	})
}

// ClientMessage is what a client sends.
type ClientMessage struct {
	Op     string          `json:"op"`
	ID     string          `json:"id,omitempty"`
	Filter json.RawMessage `json:"filter,omitempty"`
	From   json.RawMessage `json:"from,omitempty"`
	// Batch asks for {"type":"events","sub":...,"events":[...]} messages
	// carrying every event of the subscription queued at that moment (up
	// to maxBatchEvents), instead of one {"type":"event"} message each.
	Batch bool `json:"batch,omitempty"`
}

// ServerMessage is every control message the server sends (events are
// encoded directly, see Encode).
type ServerMessage struct {
	Type       string `json:"type"`
	ID         string `json:"id,omitempty"`
	Head       uint64 `json:"head,omitempty"`
	Code       string `json:"code,omitempty"`
	Message    string `json:"message,omitempty"`
	ResumeFrom uint64 `json:"resume_from,omitempty"`
}

// Error codes of {"type":"error"} messages.
const (
	CodeBadMessage   = "bad_message"
	CodeBadFilter    = "bad_filter"
	CodeBadCursor    = "bad_cursor"
	CodeDuplicateSub = "duplicate_subscription"
	CodeUnknownSub   = "unknown_subscription"
	CodeTooManySubs  = "too_many_subscriptions"
	CodeInternal     = "internal"
)

type dialect struct {
	allowSub func(current int) error
	mu       sync.Mutex
	// prefixes holds `{"type":"event","sub":"<id>","event":` per
	// subscription: a slice, not a map, since a connection has a few
	// subscriptions and an idle one should cost little (SPEC 11).
	prefixes []subPrefix
}

func (d *dialect) Open(*wsconn.Session) error { return nil }

// DecodeClientMessage strictly parses one client frame.
func DecodeClientMessage(payload []byte) (ClientMessage, error) {
	var m ClientMessage
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		msg := strings.TrimPrefix(err.Error(), "json: ")
		return m, fmt.Errorf("not a valid message: %s", msg)
	}
	if dec.More() {
		return m, errors.New("not a valid message: trailing data after the JSON object")
	}
	switch m.Op {
	case "subscribe", "unsubscribe":
		if m.ID == "" {
			return m, fmt.Errorf("%s needs an id", m.Op)
		}
		if len(m.ID) > 128 {
			return m, errors.New("id longer than 128 characters")
		}
	case "ping":
	case "":
		return m, errors.New(`missing "op" (subscribe, unsubscribe or ping)`)
	default:
		return m, fmt.Errorf("unknown op %q (subscribe, unsubscribe or ping)", m.Op)
	}
	return m, nil
}

// ParseCursor reads the "from" of a subscribe message.
func ParseCursor(raw json.RawMessage) (hub.Cursor, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" || string(raw) == `"latest"` {
		return hub.Latest(), nil
	}
	var c struct {
		Seq  *uint64 `json:"seq"`
		Time *string `json:"time"`
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return hub.Cursor{}, errors.New(`from must be "latest", {"seq": N} or {"time": "RFC 3339"}`)
	}
	switch {
	case c.Seq != nil && c.Time != nil:
		return hub.Cursor{}, errors.New("from: give seq or time, not both")
	case c.Seq != nil:
		return hub.FromSeq(*c.Seq), nil
	case c.Time != nil:
		t, err := time.Parse(time.RFC3339Nano, *c.Time)
		if err != nil {
			return hub.Cursor{}, fmt.Errorf("from.time: %q is not RFC 3339", *c.Time)
		}
		return hub.FromTime(t), nil
	}
	return hub.Cursor{}, errors.New(`from must be "latest", {"seq": N} or {"time": "RFC 3339"}`)
}

func (d *dialect) Message(s *wsconn.Session, payload []byte) error {
	m, err := DecodeClientMessage(payload)
	if err != nil {
		return s.Send(ServerMessage{Type: "error", ID: m.ID, Code: CodeBadMessage, Message: err.Error()})
	}
	switch m.Op {
	case "ping":
		return s.Send(ServerMessage{Type: "pong"})
	case "unsubscribe":
		if !s.Client().Unsubscribe(m.ID) {
			return s.Send(ServerMessage{Type: "error", ID: m.ID, Code: CodeUnknownSub, Message: fmt.Sprintf("no subscription %q", m.ID)})
		}
		d.mu.Lock()
		d.prefixes = slices.DeleteFunc(d.prefixes, func(p subPrefix) bool { return p.id == m.ID })
		d.mu.Unlock()
		return s.Send(ServerMessage{Type: "unsubscribed", ID: m.ID})
	}
	f, err := filter.Decode(m.Filter)
	if err != nil {
		return s.Send(ServerMessage{Type: "error", ID: m.ID, Code: CodeBadFilter, Message: err.Error()})
	}
	matcher, err := filter.Compile(f)
	if err != nil {
		return s.Send(ServerMessage{Type: "error", ID: m.ID, Code: CodeBadFilter, Message: err.Error()})
	}
	cursor, err := ParseCursor(m.From)
	if err != nil {
		return s.Send(ServerMessage{Type: "error", ID: m.ID, Code: CodeBadCursor, Message: err.Error()})
	}
	if err := d.allowSub(s.Client().Subscriptions()); err != nil {
		return s.Send(ServerMessage{Type: "error", ID: m.ID, Code: CodeTooManySubs, Message: err.Error()})
	}
	if s.Client().HasSubscription(m.ID) {
		return s.Send(ServerMessage{Type: "error", ID: m.ID, Code: CodeDuplicateSub, Message: fmt.Sprintf("subscription %q already exists", m.ID)})
	}
	idJSON, _ := json.Marshal(m.ID)
	prefix := append(append([]byte(`{"type":"event","sub":`), idJSON...), `,"event":`...)
	if m.Batch {
		prefix = append(append([]byte(`{"type":"events","sub":`), idJSON...), `,"events":[`...)
	}
	d.mu.Lock()
	d.prefixes = append(slices.DeleteFunc(d.prefixes, func(p subPrefix) bool { return p.id == m.ID }), subPrefix{m.ID, prefix, m.Batch})
	d.mu.Unlock()
	if err := d.subscribe(s, m.ID, matcher, cursor); err != nil {
		if errors.Is(err, errAnnounce) {
			return err // the connection failed
		}
		var dup hub.ErrDuplicateSub
		if errors.As(err, &dup) { // a concurrent subscribe with this id won: its prefix stays
			return s.Send(ServerMessage{Type: "error", ID: m.ID, Code: CodeDuplicateSub, Message: err.Error()})
		}
		d.mu.Lock()
		d.prefixes = slices.DeleteFunc(d.prefixes, func(p subPrefix) bool { return p.id == m.ID })
		d.mu.Unlock()
		code := CodeInternal
		if errors.Is(err, auth.ErrLimit) {
			code = CodeTooManySubs // the token's filter budget
		}
		return s.Send(ServerMessage{Type: "error", ID: m.ID, Code: code, Message: err.Error()})
	}
	return nil
}

// errAnnounce marks a failure to send "subscribed".
var errAnnounce = errors.New("wsnative: announce")

// subscribe announces the subscription with the current head once the
// hub admitted it and before registering it, so "subscribed" precedes
// every replayed or live event of it in the connection's single queue,
// and a refused subscription gets only its error.
func (d *dialect) subscribe(s *wsconn.Session, id string, m *filter.Matcher, c hub.Cursor) error {
	_, err := s.Client().SubscribeAnnounced(s.Context(), id, m, c, func() error {
		if err := s.Send(ServerMessage{Type: "subscribed", ID: id, Head: s.Client().HubHead()}); err != nil {
			return fmt.Errorf("%w: %w", errAnnounce, err)
		}
		return nil
	})
	return err
}

type subPrefix struct {
	id     string
	prefix []byte // `{"type":"event","sub":<id>,"event":` or, batched, `...,"events":[`
	batch  bool
}

// maxBatchEvents bounds one {"type":"events"} message: a client parses a
// burst in few frames, and no frame grows without limit.
const maxBatchEvents = 256

// lookup returns the subscription's prefix; nil once it was unsubscribed.
func (d *dialect) lookup(sub string) ([]byte, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, p := range d.prefixes {
		if p.id == sub {
			return p.prefix, p.batch
		}
	}
	return nil, false
}

func (d *dialect) Encode(dst []byte, del hub.Delivery) []byte {
	prefix, batch := d.lookup(del.SubID)
	if prefix == nil {
		return dst // unsubscribed while queued
	}
	dst = append(dst, prefix...)
	dst = append(dst, del.Event.JSON()...)
	if batch {
		return append(dst, "]}"...)
	}
	return append(dst, '}')
}

var (
	closeEvent  = []byte("}")
	closeEvents = []byte("]}")
	comma       = []byte(",")
)

// EncodeFrames writes the event's shared JSON by reference: the only bytes
// copied per client are the frame header and the subscription's prefix.
// A batched subscription's consecutive deliveries share one message.
func (d *dialect) EncodeFrames(f *wsconn.Frames, batch []hub.Delivery) int {
	del := batch[0]
	prefix, batched := d.lookup(del.SubID)
	if prefix == nil {
		return 1 // unsubscribed while queued
	}
	if !batched {
		body := del.Event.JSON()
		f.Frame(len(prefix) + len(body) + 1)
		f.Copy(prefix)
		f.Share(body)
		f.Copy(closeEvent)
		return 1
	}
	n, size := 0, len(prefix)+len(closeEvents)
	for n < len(batch) && n < maxBatchEvents && batch[n].SubID == del.SubID && batch[n].Event != nil && batch[n].Raw == nil {
		size += len(batch[n].Event.JSON())
		n++
	}
	size += n - 1 // commas
	f.Frame(size)
	f.Copy(prefix)
	for i := range n {
		if i > 0 {
			f.Copy(comma)
		}
		f.Share(batch[i].Event.JSON())
	}
	f.Copy(closeEvents)
	return n
}

func (d *dialect) Lagged(_ *wsconn.Session, lag *hub.LagError) [][]byte {
	out := make([][]byte, 0, len(lag.Resume))
	for id, seq := range lag.Resume {
		b, _ := json.Marshal(ServerMessage{Type: "lagged", ID: id, ResumeFrom: seq})
		out = append(out, b)
	}
	return out
}
