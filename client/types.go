package client

import (
	"encoding/json"
	"fmt"
	"time"
)

// The client's own types: the wire format (SPEC 2, 4) is the contract, not
// the server's internal structs, so the server may change its internals
// (caches, decoders) without changing this API. TestWireMatchesServer
// checks that these types encode exactly as the server's do.

// Event is one Vigil event (SPEC 2). Publish fills ID (a UUIDv7) when it is
// empty; the server sets Tenant, ReceivedAt, Seq and the integrity fields.
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
	// Chain, PrevHash and Hash are the integrity chain (SPEC 10).
	Chain    string `json:"chain,omitempty"`
	PrevHash string `json:"prev_hash,omitempty"`
	Hash     string `json:"hash,omitempty"`
}

// Category is an event category ("authentication", "audit", ...; SPEC 2).
// Empty: the server derives it from the type.
type Category string

func (c Category) String() string { return string(c) }

// Severity orders events from info to critical; the zero value is info.
// On the wire it is its name.
type Severity uint8

// The five severities, lowest first.
const (
	SeverityInfo Severity = iota
	SeverityLow
	SeverityMedium
	SeverityHigh
	SeverityCritical
)

var severityNames = [...]string{"info", "low", "medium", "high", "critical"}

func (s Severity) String() string {
	if int(s) < len(severityNames) {
		return severityNames[s]
	}
	return fmt.Sprintf("severity(%d)", s)
}

// ParseSeverity accepts the five names.
func ParseSeverity(name string) (Severity, error) {
	for i, n := range severityNames {
		if n == name {
			return Severity(i), nil
		}
	}
	return 0, fmt.Errorf("unknown severity %q (valid: info, low, medium, high, critical)", name)
}

// MarshalJSON writes the name.
func (s Severity) MarshalJSON() ([]byte, error) {
	if int(s) >= len(severityNames) {
		return nil, fmt.Errorf("invalid severity %d", s)
	}
	return json.Marshal(severityNames[s])
}

// UnmarshalJSON reads a name; "" is info.
func (s *Severity) UnmarshalJSON(b []byte) error {
	var name string
	if err := json.Unmarshal(b, &name); err != nil {
		return fmt.Errorf("severity must be a string")
	}
	if name == "" {
		*s = SeverityInfo
		return nil
	}
	v, err := ParseSeverity(name)
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// Filter selects events (SPEC 4): every non-empty field must match; Expr is
// a CEL condition. The zero Filter matches everything.
type Filter struct {
	Categories      []string `json:"categories,omitempty"`
	Types           []string `json:"types,omitempty"`
	MinSeverity     string   `json:"min_severity,omitempty"`
	Severities      []string `json:"severities,omitempty"`
	Users           []string `json:"users,omitempty"`
	UserIDs         []string `json:"user_ids,omitempty"`
	SrcIPs          []string `json:"src_ips,omitempty"`
	Resources       []string `json:"resources,omitempty"`
	Actions         []string `json:"actions,omitempty"`
	Outcomes        []string `json:"outcomes,omitempty"`
	Sources         []string `json:"sources,omitempty"`
	MitreTactics    []string `json:"mitre_tactics,omitempty"`
	MitreTechniques []string `json:"mitre_techniques,omitempty"`
	Statuses        []string `json:"statuses,omitempty"`
	MinConfidence   *float64 `json:"min_confidence,omitempty"`
	Expr            string   `json:"expr,omitempty"`
}

// Problem is one reason the server refused an event of a batch.
type Problem struct {
	Index  int    `json:"index"`
	Field  string `json:"field,omitempty"`
	Reason string `json:"reason"`
}
