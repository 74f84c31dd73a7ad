package event

import (
	"encoding/json"
	"strconv"
	"strings"
	"sync"
	"time"

	gojson "github.com/goccy/go-json"
)

// Event is one security event as stored in the log and sent to clients.
// Optional numbers are pointers so that "absent" and "zero" stay distinct:
// a confidence of 0 is a statement, a missing one is not.
type Event struct {
	ID              string          `json:"id"`
	Seq             uint64          `json:"seq,omitempty"`
	Time            time.Time       `json:"time"`
	ReceivedAt      time.Time       `json:"received_at"`
	Type            string          `json:"type"`
	Category        Category        `json:"category"`
	Severity        Severity        `json:"severity"`
	Source          string          `json:"source,omitempty"`
	Tenant          string          `json:"tenant"`
	Message         string          `json:"message,omitempty"`
	User            string          `json:"user,omitempty"`
	UserID          string          `json:"user_id,omitempty"`
	SrcIP           string          `json:"src_ip,omitempty"`
	Resource        string          `json:"resource,omitempty"`
	Action          string          `json:"action,omitempty"`
	Outcome         string          `json:"outcome,omitempty"`
	Confidence      *float64        `json:"confidence,omitempty"`
	RiskScore       *float64        `json:"risk_score,omitempty"`
	MitreTactics    []string        `json:"mitre_tactics,omitempty"`
	MitreTechniques []string        `json:"mitre_techniques,omitempty"`
	Tags            []string        `json:"tags,omitempty"`
	Data            json.RawMessage `json:"data,omitempty"`
	// Chain, PrevHash and Hash form the integrity chain (SPEC 10): Hash is
	// SHA-256 over the canonical form, which includes PrevHash.
	Chain    string `json:"chain,omitempty"`
	PrevHash string `json:"prev_hash,omitempty"`
	Hash     string `json:"hash,omitempty"`

	dataOnce sync.Once
	dataMap  map[string]any
	encOnce  sync.Once
	enc      []byte
	stored   []byte // the log's bytes (no seq), spliced into enc on demand
	// idAssigned says Normalize generated ID (see IDAssigned).
	idAssigned bool
}

// IDAssigned says that Normalize gave e its id (the producer sent none): a
// fresh UUIDv7 with 74 random bits, so no earlier copy of e can be stored
// and the log skips the late-retry lookup of its id in the id index (one
// Pebble read per event; docs/performance.md, "Ingest CPU per event").
// A Clone does not carry it: the copy is looked up like any other event.
func (e *Event) IDAssigned() bool { return e.idAssigned }

// JSON returns the event's wire encoding (with seq), computed once and
// shared by every subscriber that receives this event. The result must not
// be modified.
func (e *Event) JSON() []byte {
	e.encOnce.Do(func() {
		switch {
		case e.enc != nil:
		case e.stored != nil:
			e.enc = spliceSeq(e.stored, e.Seq)
			e.stored = nil
		default:
			e.enc, _ = json.Marshal(e)
		}
	})
	return e.enc
}

// SetJSON records an already-encoded form of e (the store splices seq into
// the stored bytes instead of encoding again).
func (e *Event) SetJSON(b []byte) { e.enc = b }

// SetStored records the bytes the log holds for e (its encoding without
// seq): JSON splices e.Seq into them the first time it is asked, so an
// event read from the log and never sent is never re-encoded. b must not
// be modified afterwards.
func (e *Event) SetStored(b []byte) { e.stored = b }

func spliceSeq(stored []byte, seq uint64) []byte {
	enc := make([]byte, 0, len(stored)+24)
	enc = append(enc, `{"seq":`...)
	enc = strconv.AppendUint(enc, seq, 10)
	if len(stored) > 2 {
		enc = append(enc, ',')
	}
	return append(enc, stored[1:]...)
}

// DataMap returns Data decoded as a JSON object, decoding it at most once.
// Matchers on many subscriptions may ask for it concurrently; the result must
// be treated as read-only.
func (e *Event) DataMap() map[string]any {
	e.dataOnce.Do(func() {
		if len(e.Data) == 0 {
			return
		}
		var m map[string]any
		// Rules and CEL filters read data on every event: the faster
		// decoder matters here (docs/architecture.md, Dependencies).
		if gojson.Unmarshal(e.Data, &m) == nil {
			e.dataMap = m
		}
	})
	return e.dataMap
}

// Field returns the value of a top-level field by its JSON name, or of a
// nested data field as "data.a.b". It is the one field accessor shared by
// rules, masking and the compatibility dialects.
func (e *Event) Field(name string) (any, bool) {
	switch name {
	case "id":
		return e.ID, true
	case "seq":
		return e.Seq, true
	case "time":
		return e.Time, true
	case "received_at":
		return e.ReceivedAt, true
	case "type":
		return e.Type, true
	case "category":
		return string(e.Category), true
	case "severity":
		return e.Severity.String(), true
	case "source":
		return e.Source, e.Source != ""
	case "tenant":
		return e.Tenant, true
	case "message":
		return e.Message, e.Message != ""
	case "user":
		return e.User, e.User != ""
	case "user_id":
		return e.UserID, e.UserID != ""
	case "src_ip":
		return e.SrcIP, e.SrcIP != ""
	case "resource":
		return e.Resource, e.Resource != ""
	case "action":
		return e.Action, e.Action != ""
	case "outcome":
		return e.Outcome, e.Outcome != ""
	case "confidence":
		if e.Confidence == nil {
			return nil, false
		}
		return *e.Confidence, true
	case "risk_score":
		if e.RiskScore == nil {
			return nil, false
		}
		return *e.RiskScore, true
	case "mitre_tactics":
		return e.MitreTactics, len(e.MitreTactics) > 0
	case "mitre_techniques":
		return e.MitreTechniques, len(e.MitreTechniques) > 0
	case "tags":
		return e.Tags, len(e.Tags) > 0
	case "data":
		m := e.DataMap()
		return m, m != nil
	}
	path, ok := strings.CutPrefix(name, "data.")
	if !ok {
		return nil, false
	}
	var cur any = e.DataMap()
	for _, part := range strings.Split(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[part]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// Clone returns a shallow copy safe to modify at the top level (masking,
// dialect flattening); slices and Data are shared and must not be mutated.
func (e *Event) Clone() *Event {
	c := &Event{
		ID: e.ID, Seq: e.Seq, Time: e.Time, ReceivedAt: e.ReceivedAt, Type: e.Type,
		Category: e.Category, Severity: e.Severity, Source: e.Source, Tenant: e.Tenant,
		Message: e.Message, User: e.User, UserID: e.UserID, SrcIP: e.SrcIP,
		Resource: e.Resource, Action: e.Action, Outcome: e.Outcome,
		Confidence: e.Confidence, RiskScore: e.RiskScore,
		MitreTactics: e.MitreTactics, MitreTechniques: e.MitreTechniques, Tags: e.Tags,
		Data: e.Data, Chain: e.Chain, PrevHash: e.PrevHash, Hash: e.Hash,
	}
	return c
}
