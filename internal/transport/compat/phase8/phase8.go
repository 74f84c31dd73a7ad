// Package phase8 owns the Phase 8 security stream dialect (SPEC 7.2):
// GET /ws/phase8/security, its client actions (subscribe, unsubscribe,
// get_security_status, get_event_schema, filter_events, ping), the
// security_event message shape with the event's data payload flattened in,
// per-connection deduplication by event id, and the JSON Schemas of the five
// event types (also served at GET /api/v1/schema). It is an adapter: the
// connection is a wsconn.Session, matching is a filter.Matcher, fan-out is
// the hub.
package phase8

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/domain"
	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/filter"
	"github.com/vigil-sec/vigil/internal/hub"
	"github.com/vigil-sec/vigil/internal/stats"
	"github.com/vigil-sec/vigil/internal/transport/wsconn"
)

// Transport names phase 8 connections in the hub (connections API, metrics).
const Transport = "phase8"

// The five Phase 8 event types.
const (
	TypeAnalysisComplete    = "security.analysis.complete"
	TypeThreatDetected      = "security.threat.detected"
	TypeFraudAlert          = "security.fraud.alert"
	TypeResponseExecuted    = "security.response.executed"
	TypeOrchestrationUpdate = "security.orchestration.update"
)

// EventTypes lists the five event types in the order clients are told them.
func EventTypes() []string {
	return []string{TypeAnalysisComplete, TypeThreatDetected, TypeFraudAlert, TypeResponseExecuted, TypeOrchestrationUpdate}
}

// StatusFunc reports the security status a principal may see.
type StatusFunc func(ctx context.Context, p *auth.Principal) stats.Status

// Deps are what the Phase 8 endpoint needs.
type Deps struct {
	WS     wsconn.Deps
	Status StatusFunc
	// DedupWindow is how many recent event ids each connection remembers to
	// suppress duplicates (default 8192). Memory is bounded by it.
	DedupWindow int
}

// Handler serves GET /ws/phase8/security (token in ?token= or the header).
func Handler(deps Deps) http.Handler {
	if deps.DedupWindow <= 0 {
		deps.DedupWindow = 8192
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		wsconn.Serve(w, r, deps.WS, Transport, func(*wsconn.Session) wsconn.Dialect {
			return newDialect(deps)
		})
	})
}

// clientMessage is every action a Phase 8 client sends.
type clientMessage struct {
	Action         string          `json:"action"`
	EventTypes     []string        `json:"event_types,omitempty"`
	FilterCriteria json.RawMessage `json:"filter_criteria,omitempty"`
}

// Criteria is the filter_events payload.
type Criteria struct {
	MinSeverity   string   `json:"min_severity,omitempty"`
	EventTypes    []string `json:"event_types,omitempty"`
	MinConfidence *float64 `json:"min_confidence,omitempty"`
}

type dialect struct {
	deps Deps

	// mu guards the subscription state, changed by the reader goroutine.
	mu         sync.Mutex
	explicit   bool            // false until the first subscribe: all five types flow
	subscribed map[string]bool // event types subscribed once explicit
	criteria   Criteria
	subN       int    // generation of the hub subscription
	subID      string // current hub subscription ("" when none)

	// dedup is touched only by Encode, which the connection's single writer
	// goroutine calls; no lock needed.
	dedup *idRing
}

func newDialect(deps Deps) *dialect {
	return &dialect{deps: deps, subscribed: map[string]bool{}, dedup: newIDRing(deps.DedupWindow)}
}

func now() string { return time.Now().UTC().Format(time.RFC3339Nano) }

// Open subscribes to all five types and then greets: once a client has the
// greeting, every event published afterwards reaches it.
func (d *dialect) Open(s *wsconn.Session) error {
	d.mu.Lock()
	err := d.resubscribeLocked(s)
	d.mu.Unlock()
	if err != nil {
		return err
	}
	return s.Send(map[string]any{
		"type": "connection_established", "client_id": s.ID(),
		"available_event_types": EventTypes(), "timestamp": now(),
	})
}

func (d *dialect) sendError(s *wsconn.Session, msg string) error {
	return s.Send(map[string]any{"type": "error", "message": msg, "timestamp": now()})
}

func (d *dialect) Message(s *wsconn.Session, payload []byte) error {
	var m clientMessage
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return d.sendError(s, "invalid message: "+strings.TrimPrefix(err.Error(), "json: "))
	}
	switch m.Action {
	case "ping":
		return s.Send(map[string]any{"type": "pong", "timestamp": now()})
	case "subscribe", "unsubscribe":
		return d.changeSubscription(s, m.Action, m.EventTypes)
	case "filter_events":
		return d.applyFilter(s, m.FilterCriteria)
	case "get_security_status":
		var st any = map[string]any{}
		if d.deps.Status != nil {
			st = d.deps.Status(s.Context(), s.Principal())
		}
		return s.Send(map[string]any{"type": "security_status", "data": st, "timestamp": now()})
	case "get_event_schema":
		return s.Send(map[string]any{"type": "event_schema", "data": Schemas(), "timestamp": now()})
	case "":
		return d.sendError(s, `missing "action" (subscribe, unsubscribe, get_security_status, get_event_schema, filter_events, ping)`)
	default:
		return d.sendError(s, fmt.Sprintf("unknown action %q (subscribe, unsubscribe, get_security_status, get_event_schema, filter_events, ping)", m.Action))
	}
}

func validTypes(types []string) error {
	for _, t := range types {
		if !slices.Contains(EventTypes(), t) {
			return fmt.Errorf("unknown event type %q (valid: %s)", t, strings.Join(EventTypes(), ", "))
		}
	}
	return nil
}

// changeSubscription implements subscribe/unsubscribe. The first subscribe
// switches the connection from "all five" to exactly the listed types;
// later ones add. An empty list on subscribe means all five.
func (d *dialect) changeSubscription(s *wsconn.Session, action string, types []string) error {
	if err := validTypes(types); err != nil {
		return d.sendError(s, action+": "+err.Error())
	}
	d.mu.Lock()
	if action == "subscribe" {
		if len(types) == 0 {
			types = EventTypes()
		}
		d.explicit = true
		for _, t := range types {
			d.subscribed[t] = true
		}
	} else {
		if !d.explicit {
			// Unsubscribing from the implicit "all": keep the others.
			d.explicit = true
			for _, t := range EventTypes() {
				d.subscribed[t] = true
			}
		}
		if len(types) == 0 {
			types = EventTypes()
		}
		for _, t := range types {
			delete(d.subscribed, t)
		}
	}
	err := d.resubscribeLocked(s)
	current := d.currentTypesLocked()
	d.mu.Unlock()
	if err != nil {
		return d.sendError(s, action+": "+err.Error())
	}
	reply := "subscription_confirmed"
	if action == "unsubscribe" {
		reply = "unsubscription_confirmed"
	}
	return s.Send(map[string]any{"type": reply, "event_types": types, "subscribed_event_types": current, "timestamp": now()})
}

func (d *dialect) applyFilter(s *wsconn.Session, raw json.RawMessage) error {
	var c Criteria
	if len(bytes.TrimSpace(raw)) > 0 && string(bytes.TrimSpace(raw)) != "null" {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&c); err != nil {
			return d.sendError(s, "filter_events: invalid filter_criteria: "+strings.TrimPrefix(err.Error(), "json: "))
		}
	}
	if err := validTypes(c.EventTypes); err != nil {
		return d.sendError(s, "filter_events: event_types: "+err.Error())
	}
	// Compile once up front so a bad value is reported without touching
	// the live subscription.
	if _, err := filter.Compile(filter.Filter{MinSeverity: c.MinSeverity, MinConfidence: c.MinConfidence}); err != nil {
		return d.sendError(s, "filter_events: "+err.Error())
	}
	d.mu.Lock()
	old := d.criteria
	d.criteria = c
	err := d.resubscribeLocked(s)
	if err != nil {
		d.criteria = old
	}
	d.mu.Unlock()
	if err != nil {
		return d.sendError(s, "filter_events: "+err.Error())
	}
	return s.Send(map[string]any{"type": "filter_applied", "filter_criteria": c, "timestamp": now()})
}

func (d *dialect) currentTypesLocked() []string {
	var out []string
	for _, t := range EventTypes() {
		if !d.explicit || d.subscribed[t] {
			out = append(out, t)
		}
	}
	if out == nil {
		out = []string{}
	}
	return out
}

// Filter is the native filter equivalent to a subscription set and filter
// criteria: the one translation from Phase 8 terms to filter.Filter.
func Filter(types []string, c Criteria) filter.Filter {
	if len(c.EventTypes) > 0 {
		types = slices.DeleteFunc(slices.Clone(types), func(t string) bool { return !slices.Contains(c.EventTypes, t) })
	}
	return filter.Filter{Types: types, MinSeverity: c.MinSeverity, MinConfidence: c.MinConfidence}
}

// resubscribeLocked replaces the hub subscription with one for the current
// state. The new subscription starts before the old one stops, so no event
// falls between them; any overlap is removed by the id dedup in Encode.
func (d *dialect) resubscribeLocked(s *wsconn.Session) error {
	types := d.currentTypesLocked()
	f := Filter(types, d.criteria)
	old := d.subID
	d.subID = ""
	if len(f.Types) > 0 {
		m, err := filter.Compile(f)
		if err != nil {
			return err
		}
		d.subN++
		id := "phase8-" + strconv.Itoa(d.subN)
		if _, err := s.Client().Subscribe(context.Background(), id, m, hub.Latest()); err != nil {
			d.subID = old
			return fmt.Errorf("subscribe: %w", err)
		}
		d.subID = id
	}
	if old != "" {
		s.Client().Unsubscribe(old)
	}
	return nil
}

var _ wsconn.LagReporter = (*dialect)(nil)

// Lagged is the last message to a client that fell behind its queue,
// before the connection closes with 4000: resume_from is the seq of the
// first event it did not get (GET /api/v1/events?after=<resume_from - 1>
// or the native stream continue from there).
func (d *dialect) Lagged(_ *wsconn.Session, lag *hub.LagError) [][]byte {
	const msg = "client fell behind; events from resume_from on were not sent"
	b, _ := json.Marshal(map[string]any{"type": "lagged", "resume_from": lag.First(), "message": msg, "timestamp": now()})
	return [][]byte{b}
}

func (d *dialect) Encode(dst []byte, del hub.Delivery) []byte {
	e := del.Event
	if e == nil || !d.dedup.add(e.ID) {
		return dst
	}
	b, err := json.Marshal(map[string]any{"type": "security_event", "data": Flatten(e), "timestamp": now()})
	if err != nil {
		return dst
	}
	return append(dst, b...)
}

// reserved are the keys the event's own fields own in a flattened message;
// a data payload key of the same name does not override them.
var reserved = map[string]bool{
	"event_type": true, "event_id": true, "id": true, "seq": true, "timestamp": true,
	"severity": true, "category": true, "tenant": true,
}

// Flatten is the data object of a security_event: the event's fields under
// the source system's names, with the data payload's keys merged in
// (fraud_details, analysis_results, threat_intelligence, ...).
func Flatten(e *event.Event) map[string]any {
	m := map[string]any{
		"event_type": e.Type, "event_id": e.ID, "id": e.ID, "seq": e.Seq,
		"timestamp": e.Time.UTC().Format(time.RFC3339Nano), "severity": e.Severity.String(),
		"category": string(e.Category), "tenant": e.Tenant,
	}
	e.FlattenInto(m, event.FlatNames{Source: "source", Message: "message", User: "user", UserID: "user_id", SrcIP: "src_ip",
		Resource: "resource", Action: "action", Outcome: "outcome", Tags: "tags"}, reserved, false)
	return m
}

// idRing remembers the last n event ids: a bounded set with FIFO eviction.
// It grows with use, so an idle connection costs almost nothing (SPEC 11
// counts idle connections in KiB).
type idRing struct {
	max  int
	ids  []string
	next int
	set  map[string]struct{}
}

func newIDRing(n int) *idRing { return &idRing{max: n} }

// add records id and reports whether it was new.
func (r *idRing) add(id string) bool {
	if _, seen := r.set[id]; seen {
		return false
	}
	if r.set == nil {
		r.set = map[string]struct{}{}
	}
	if len(r.ids) < r.max {
		r.ids = append(r.ids, id)
	} else {
		delete(r.set, r.ids[r.next])
		r.ids[r.next] = id
		r.next = (r.next + 1) % r.max
	}
	r.set[id] = struct{}{}
	return true
}

// SchemaHandler serves GET /api/v1/schema: the same JSON Schemas as the
// get_event_schema action.
func SchemaHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := auth.FromContext(r.Context()); !ok {
			auth.WriteErr(w, domain.Errorf(domain.KindUnauthenticated, "missing bearer token"))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"event_types": EventTypes(), "schemas": Schemas()})
	})
}
