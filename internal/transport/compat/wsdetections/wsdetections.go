// Package wsdetections owns the detection stream dialect of SPEC 7.1
// (GET /ws/detections) as a wsconn.Dialect over the native hub, plus the
// admin connections API (GET /api/v1/connections, POST
// /api/v1/connections/{id}/messages) that lists and messages hub clients of
// every transport. It holds no fan-out logic: the hub delivers detection
// events, this package only reshapes them into {type, data, timestamp}.
package wsdetections

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/filter"
	"github.com/vigil-sec/vigil/internal/hub"
	"github.com/vigil-sec/vigil/internal/transport/wsconn"
)

// Transport is the hub transport name (the "dialect" in the connections API).
const Transport = "detections"

// Handler serves GET /ws/detections. wsconn authenticates (header or
// ?token=), upgrades, pings every deps.PingInterval (30 s by default) and
// terminates clients that did not answer the previous ping.
func Handler(deps wsconn.Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		wsconn.Serve(w, r, deps, Transport, func(*wsconn.Session) wsconn.Dialect { return &Dialect{} })
	})
}

// Dialect is one /ws/detections connection.
type Dialect struct {
	subID string // current subscription; changed by the reader goroutine only
	gen   int
	// lastSeq is touched only by the writer goroutine (Encode): while a
	// filter is replaced both subscriptions may queue the same event, and
	// deliveries arrive in seq order, so skipping seqs already sent
	// removes the duplicates.
	lastSeq uint64
}

// Filters is the client's filter message body. Absent or empty lists mean
// no constraint.
type Filters struct {
	Severity     []string `json:"severity,omitempty"`
	Status       []string `json:"status,omitempty"`
	MitreTactics []string `json:"mitre_tactics,omitempty"`
}

type clientMsg struct {
	Action  string          `json:"action"`
	Filters json.RawMessage `json:"filters"`
}

// Message is a server message: {"type", "data", "timestamp"}.
type Message struct {
	Type      string `json:"type"`
	Data      any    `json:"data"`
	Timestamp string `json:"timestamp"`
}

func now() string { return time.Now().UTC().Format(time.RFC3339Nano) }

func (d *Dialect) matcher(f Filters) (*filter.Matcher, error) {
	return filter.Compile(filter.Filter{
		Categories:   []string{string(event.CategoryDetection)},
		Severities:   f.Severity,
		Statuses:     f.Status,
		MitreTactics: f.MitreTactics,
	})
}

// Open subscribes to every detection the principal may see.
func (d *Dialect) Open(s *wsconn.Session) error {
	m, err := d.matcher(Filters{})
	if err != nil {
		return fmt.Errorf("wsdetections: %w", err)
	}
	d.subID = "detections"
	if _, err := s.Client().Subscribe(context.Background(), d.subID, m, hub.Latest()); err != nil {
		return fmt.Errorf("wsdetections: subscribe: %w", err)
	}
	return nil
}

func sendError(s *wsconn.Session, msg string) error {
	return s.Send(Message{Type: "error", Data: map[string]string{"message": msg}, Timestamp: now()})
}

// Message handles {"action": "filter", "filters": {...}} (replacing the
// connection's filter) and {"action": "ping"}. Anything else is answered
// with an error message; the connection stays open.
func (d *Dialect) Message(s *wsconn.Session, payload []byte) error {
	var msg clientMsg
	if err := json.Unmarshal(payload, &msg); err != nil {
		return sendError(s, "invalid JSON: "+err.Error())
	}
	switch msg.Action {
	case "filter":
		var f Filters
		if len(msg.Filters) > 0 && !bytes.Equal(bytes.TrimSpace(msg.Filters), []byte("null")) {
			dec := json.NewDecoder(bytes.NewReader(msg.Filters))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&f); err != nil {
				return sendError(s, "invalid filters (valid keys: severity, status, mitre_tactics, each a list of strings): "+err.Error())
			}
		}
		m, err := d.matcher(f)
		if err != nil {
			return sendError(s, "invalid filters: "+renameField(err))
		}
		// Subscribe with the new filter before dropping the old one, so no
		// detection falls between them; Encode drops the duplicates.
		d.gen++
		next := "detections-" + strconv.Itoa(d.gen)
		if _, err := s.Client().Subscribe(context.Background(), next, m, hub.Latest()); err != nil {
			return fmt.Errorf("wsdetections: subscribe: %w", err)
		}
		s.Client().Unsubscribe(d.subID)
		d.subID = next
		return s.Send(Message{Type: "filter_applied", Data: map[string]any{"filters": f}, Timestamp: now()})
	case "ping":
		return s.Send(Message{Type: "pong", Data: map[string]any{}, Timestamp: now()})
	case "":
		return sendError(s, `missing "action" (valid: filter, ping)`)
	default:
		return sendError(s, fmt.Sprintf("unknown action %q (valid: filter, ping)", msg.Action))
	}
}

// renameField reports filter errors with this dialect's field names.
func renameField(err error) string {
	if fe, ok := err.(*filter.Error); ok {
		name := map[string]string{"severities": "severity", "statuses": "status"}[fe.Field]
		if name == "" {
			name = fe.Field
		}
		return name + ": " + fe.Reason
	}
	return err.Error()
}

// Encode turns a detection event into {"type": "detection.created" |
// "detection.updated", "data": <detection>, "timestamp": <event time>}.
var _ wsconn.LagReporter = (*Dialect)(nil)

// Lagged is the last message to a client that fell behind its queue,
// before the connection closes with 4000, in the dialect's own shape:
// {"type":"lagged","data":{"resume_from":N,"message":…}}. resume_from is
// the seq of the first detection event it did not get (GET
// /api/v1/events?after=<resume_from - 1>&categories=detection, or the
// native stream, continue from there).
func (d *Dialect) Lagged(_ *wsconn.Session, lag *hub.LagError) [][]byte {
	b, _ := json.Marshal(Message{Type: "lagged", Timestamp: now(), Data: map[string]any{
		"resume_from": lag.First(), "message": "client fell behind; events from resume_from on were not sent"}})
	return [][]byte{b}
}

func (d *Dialect) Encode(dst []byte, del hub.Delivery) []byte {
	e := del.Event
	if e == nil || e.Seq != 0 && e.Seq <= d.lastSeq {
		return dst
	}
	d.lastSeq = e.Seq
	if e.Type != "detection.created" && e.Type != "detection.updated" {
		return dst
	}
	data := []byte(e.Data)
	if len(data) == 0 {
		data = []byte("{}")
	}
	dst = append(dst, `{"type":`...)
	dst = strconv.AppendQuote(dst, e.Type)
	dst = append(dst, `,"data":`...)
	dst = append(dst, data...)
	dst = append(dst, `,"timestamp":"`...)
	dst = e.Time.UTC().AppendFormat(dst, time.RFC3339Nano)
	return append(dst, `"}`...)
}
