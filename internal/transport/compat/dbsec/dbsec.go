// Package dbsec owns the database security stream dialect (SPEC 7.3): the six
// /api/v1/ws/security/* WebSocket endpoints, each limited to its categories;
// the configuration message and its filter keys (translated into one native
// filter.Filter, see Config.Filter); the flattened message shape with a
// PascalCase event_type; the audit severity vocabulary; and the JSON-level
// ping. GraphQL's named subscriptions reuse the same translation.
package dbsec

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/hub"
	"github.com/vigil-sec/vigil/internal/transport/wsconn"
)

// Transport names these connections in the hub.
const Transport = "dbsec"

// Endpoint is one of the six WebSocket endpoints.
type Endpoint struct {
	Path       string
	Categories []event.Category
}

// Endpoints lists the six endpoints of SPEC 7.3.
func Endpoints() []Endpoint {
	return []Endpoint{
		{"/api/v1/ws/security/events", Categories()},
		{"/api/v1/ws/security/authentication", []event.Category{event.CategoryAuthentication}},
		{"/api/v1/ws/security/audit", []event.Category{event.CategoryAudit}},
		{"/api/v1/ws/security/threats", []event.Category{event.CategoryInsiderThreat}},
		{"/api/v1/ws/security/encryption", []event.Category{event.CategoryEncryption}},
		{"/api/v1/ws/security/rate-limits", []event.Category{event.CategoryRateLimit}},
	}
}

// Handler serves one endpoint limited to cats.
func Handler(deps wsconn.Deps, cats []event.Category) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		wsconn.Serve(w, r, deps, Transport, func(*wsconn.Session) wsconn.Dialect {
			return &dialect{cats: cats}
		})
	})
}

// Register adds the six endpoints to mux.
func Register(mux *http.ServeMux, deps wsconn.Deps) {
	for _, ep := range Endpoints() {
		mux.Handle("GET "+ep.Path, Handler(deps, ep.Categories))
	}
}

type dialect struct {
	cats []event.Category

	mu    sync.Mutex // guards the subscription swap (reader goroutine)
	subN  int
	subID string
}

func nowStr() string { return time.Now().UTC().Format(time.RFC3339Nano) }

func sendError(s *wsconn.Session, msg string) error {
	return s.Send(map[string]any{"type": "error", "error": msg, "message": msg, "timestamp": nowStr()})
}

// Open subscribes with the empty configuration: everything of the
// endpoint's categories.
func (d *dialect) Open(s *wsconn.Session) error {
	return d.configure(s, Config{})
}

func (d *dialect) configure(s *wsconn.Session, c Config) error {
	m, err := c.Compile(d.cats)
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.subN++
	id := "dbsec-" + strconv.Itoa(d.subN)
	// Subscribe the new configuration before dropping the old: no gap. An
	// event matching both in the overlap is sent once, because Encode
	// drops deliveries of any subscription but the current one.
	if _, err := s.Client().Subscribe(s.Context(), id, m, hub.Latest()); err != nil {
		return err
	}
	old := d.subID
	d.subID = id
	if old != "" {
		s.Client().Unsubscribe(old)
	}
	return nil
}

// Message handles a JSON ping or a configuration message. Anything else is
// answered with an error message; the connection stays usable.
func (d *dialect) Message(s *wsconn.Session, payload []byte) error {
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(payload, &probe); err != nil {
		return sendError(s, "invalid JSON: "+strings.TrimPrefix(err.Error(), "json: "))
	}
	if raw, ok := probe["type"]; ok {
		var typ string
		_ = json.Unmarshal(raw, &typ)
		if typ == "ping" {
			return s.Send(map[string]any{"type": "pong", "timestamp": nowStr()})
		}
		return sendError(s, `unknown message type "`+typ+`" (send {"type":"ping"} or a configuration object)`)
	}
	var c Config
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		msg := strings.TrimPrefix(err.Error(), "json: ")
		if name, ok := strings.CutPrefix(msg, "unknown field "); ok {
			msg = "unknown configuration key " + name + " (valid: event_types, username_filter, severity_filter, resource_filter, source_ip_filter, blocked_only, min_threat_level, user_id_filter, key_id_filter, circuit_id_filter)"
		}
		return sendError(s, "invalid configuration: "+msg)
	}
	if err := d.configure(s, c); err != nil {
		return sendError(s, "invalid configuration: "+err.Error())
	}
	// No acknowledgement: the source system's clients expect only events,
	// errors and pongs on this stream. A client that needs to know the new
	// configuration is in force sends {"type":"ping"}: messages are handled
	// in order, so the pong follows the change.
	return nil
}

var _ wsconn.LagReporter = (*dialect)(nil)

// Lagged is the last message to a client that fell behind its queue,
// before the connection closes with 4000: resume_from is the seq of the
// first event it did not get (read it and what follows with
// GET /api/v1/events?after=<resume_from - 1>, or the native stream).
func (d *dialect) Lagged(_ *wsconn.Session, lag *hub.LagError) [][]byte {
	const msg = "client fell behind; events from resume_from on were not sent"
	b, _ := json.Marshal(map[string]any{"type": "lagged", "resume_from": lag.First(), "message": msg, "timestamp": nowStr()})
	return [][]byte{b}
}

func (d *dialect) Encode(dst []byte, del hub.Delivery) []byte {
	d.mu.Lock()
	current := del.SubID == d.subID
	d.mu.Unlock()
	if !current || del.Event == nil || !inCategories(d.cats, del.Event.Category) {
		return dst
	}
	b, err := json.Marshal(Flatten(del.Event))
	if err != nil {
		return dst
	}
	return append(dst, b...)
}

// reserved are keys owned by the event's own fields; data keys of the same
// name are not merged over them.
var reserved = map[string]bool{
	"event_type": true, "action": true, "id": true, "event_id": true, "seq": true,
	"timestamp": true, "severity": true, "category": true,
}

// Flatten renders an event as this dialect's message: the event's fields
// under the source system's names, a PascalCase event_type, the lower-case
// action, the audit severity vocabulary, and data's keys merged in.
func Flatten(e *event.Event) map[string]any {
	m := map[string]any{
		"event_type": EventType(e.Category), "action": strings.ToLower(e.Action),
		"id": e.ID, "event_id": e.ID, "seq": e.Seq, "type": e.Type,
		"category": string(e.Category), "severity": AuditSeverity(e.Severity),
		"vigil_severity": e.Severity.String(), "tenant": e.Tenant,
		"timestamp": e.Time.UTC().Format(time.RFC3339Nano),
	}
	switch e.Outcome {
	case "success":
		m["success"] = true
	case "failure":
		m["success"] = false
	}
	e.FlattenInto(m, event.FlatNames{User: "username", UserID: "user_id", SrcIP: "source_ip", Resource: "resource",
		Source: "source", Message: "message", Outcome: "outcome"}, reserved, true)
	return m
}
