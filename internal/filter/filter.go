// Package filter owns the one filter model of SPEC 4: the Filter object
// every transport accepts (JSON body, query string, GraphQL input), its
// compilation into a Matcher, and the CEL environment for `expr`. A filter is
// compiled once per subscription; matching is allocation-free for everything
// but `expr`.
package filter

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/vigil-sec/vigil/internal/event"
)

// Filter is the wire form of a filter. All fields are optional and ANDed;
// list values are ORed.
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

// Error names the filter field that does not compile.
type Error struct {
	Field  string
	Reason string
}

func (e *Error) Error() string { return e.Field + ": " + e.Reason }

// Decode strictly parses a JSON filter: unknown fields are errors naming the
// field. An empty or null body is the match-everything filter.
func Decode(raw []byte) (Filter, error) {
	var f Filter
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return f, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		msg := err.Error()
		if name, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
			field := strings.Trim(name, `"`)
			if field == "" {
				field = `""` // an empty key still gets a name in the message
			}
			return f, &Error{Field: field, Reason: "unknown filter field"}
		}
		var ute *json.UnmarshalTypeError
		if errors.As(err, &ute) && ute.Field != "" {
			return f, &Error{Field: ute.Field, Reason: fmt.Sprintf("wrong type (%s)", ute.Value)}
		}
		return f, &Error{Field: "filter", Reason: strings.TrimPrefix(msg, "json: ")}
	}
	return f, nil
}

// Matcher is a compiled filter. It is immutable and safe for concurrent use.
type Matcher struct {
	src        Filter
	categories uint32 // bit per category index; 0 = any
	severities uint8  // bit per severity; 0 = any
	typeExact  []string
	typeSet    map[string]struct{} // typeExact as a set, when it is long
	typePrefix []string
	prefixes   []netip.Prefix
	// The list fields (users, user_ids, resources, actions, outcomes,
	// sources, tactics, techniques, statuses) are matched straight from
	// src rather than through copies of their slice headers: one
	// matcher per subscription, and 216 bytes less each counts with
	// 100,000 idle connections (docs/performance.md).
	minConf    float64
	hasMinConf bool
	program    *celProgram
}

// MatchAll is the matcher of the empty filter.
func MatchAll() *Matcher { m, _ := Compile(Filter{}); return m }

var categoryIndex = func() map[event.Category]uint32 {
	m := map[event.Category]uint32{}
	for i, c := range event.Categories() {
		m[c] = 1 << uint(i)
	}
	return m
}()

// Bounds of a filter: values per list field, bytes of its expr.
const (
	MaxListValues = 1000
	MaxExprBytes  = 8 << 10
)

// Compile checks every field and returns a Matcher, or an *Error naming the
// first field that does not compile.
func Compile(f Filter) (*Matcher, error) {
	// Bounded before anything else: a subscription's filter is compiled
	// and indexed while the hub's router is locked, and tested against
	// every event routed to it (an audit froze a node's delivery for
	// ~3 s per subscription with 40,000 types in one SSE query string).
	for name, list := range map[string][]string{
		"categories": f.Categories, "types": f.Types, "severities": f.Severities, "users": f.Users, "user_ids": f.UserIDs,
		"src_ips": f.SrcIPs, "resources": f.Resources, "actions": f.Actions, "outcomes": f.Outcomes, "sources": f.Sources,
		"mitre_tactics": f.MitreTactics, "mitre_techniques": f.MitreTechniques, "statuses": f.Statuses,
	} {
		if len(list) > MaxListValues {
			return nil, &Error{name, fmt.Sprintf("%d values; at most %d", len(list), MaxListValues)}
		}
	}
	if len(f.Expr) > MaxExprBytes {
		return nil, &Error{"expr", fmt.Sprintf("%d bytes; at most %d", len(f.Expr), MaxExprBytes)}
	}
	m := &Matcher{src: f}
	for _, c := range f.Categories {
		bit, ok := categoryIndex[event.Category(c)]
		if !ok {
			_, err := event.ParseCategory(c)
			return nil, &Error{"categories", err.Error()}
		}
		m.categories |= bit
	}
	for _, t := range f.Types {
		switch {
		case t == "":
			return nil, &Error{"types", "empty type"}
		case t == "*":
			m.typePrefix = append(m.typePrefix, "")
		case strings.HasSuffix(t, "*"):
			if strings.Count(t, "*") > 1 {
				return nil, &Error{"types", fmt.Sprintf("%q: only a trailing * wildcard is supported", t)}
			}
			m.typePrefix = append(m.typePrefix, strings.TrimSuffix(t, "*"))
		case strings.Contains(t, "*"):
			return nil, &Error{"types", fmt.Sprintf("%q: only a trailing * wildcard is supported", t)}
		default:
			m.typeExact = append(m.typeExact, t)
		}
	}
	if len(m.typeExact) > 16 { // a linear scan is faster for a few
		m.typeSet = make(map[string]struct{}, len(m.typeExact))
		for _, t := range m.typeExact {
			m.typeSet[t] = struct{}{}
		}
	}
	minSev := event.SeverityInfo
	if f.MinSeverity != "" {
		s, err := event.ParseSeverity(f.MinSeverity)
		if err != nil {
			return nil, &Error{"min_severity", err.Error()}
		}
		minSev = s
	}
	var sevSet uint8
	for _, name := range f.Severities {
		s, err := event.ParseSeverity(name)
		if err != nil {
			return nil, &Error{"severities", err.Error()}
		}
		sevSet |= 1 << s
	}
	if f.MinSeverity != "" || len(f.Severities) > 0 {
		var allowed uint8
		for _, s := range event.Severities() {
			if s >= minSev && (sevSet == 0 || sevSet&(1<<s) != 0) {
				allowed |= 1 << s
			}
		}
		if allowed == 0 {
			return nil, &Error{"severities", "no severity satisfies both min_severity and severities"}
		}
		m.severities = allowed
	}
	for _, ip := range f.SrcIPs {
		if strings.Contains(ip, "/") {
			p, err := netip.ParsePrefix(ip)
			if err != nil {
				return nil, &Error{"src_ips", fmt.Sprintf("%q is not a CIDR prefix", ip)}
			}
			m.prefixes = append(m.prefixes, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(ip)
		if err != nil {
			return nil, &Error{"src_ips", fmt.Sprintf("%q is not an IP address or CIDR prefix", ip)}
		}
		m.prefixes = append(m.prefixes, netip.PrefixFrom(a, a.BitLen()))
	}
	for _, o := range f.Outcomes {
		switch o {
		case "success", "failure", "unknown":
		default:
			return nil, &Error{"outcomes", fmt.Sprintf("unknown value %q (valid: success, failure, unknown)", o)}
		}
	}
	for _, s := range f.Statuses {
		switch s {
		case "active", "investigating", "resolved", "false_positive":
		default:
			return nil, &Error{"statuses", fmt.Sprintf("unknown value %q (valid: active, investigating, resolved, false_positive)", s)}
		}
	}
	if f.MinConfidence != nil {
		if *f.MinConfidence < 0 || *f.MinConfidence > 1 {
			return nil, &Error{"min_confidence", "must be between 0 and 1"}
		}
		m.minConf, m.hasMinConf = *f.MinConfidence, true
	}
	for name, list := range map[string][]string{
		"users": f.Users, "user_ids": f.UserIDs, "resources": f.Resources, "actions": f.Actions,
		"sources": f.Sources, "mitre_tactics": f.MitreTactics, "mitre_techniques": f.MitreTechniques,
	} {
		for _, v := range list {
			if v == "" {
				return nil, &Error{name, "empty value"}
			}
		}
	}
	if f.Expr != "" {
		p, err := compileExpr(f.Expr)
		if err != nil {
			return nil, &Error{"expr", err.Error()}
		}
		m.program = p
	}
	return m, nil
}

// Filter returns the filter the matcher was compiled from.
func (m *Matcher) Filter() Filter { return m.src }

// Cost is what one subscription with this filter may make the hub's
// dispatcher spend per event, in units of a structured filter's test
// (~37 ns): 1, or ExprCost with a CEL expression (~0.4 µs per test,
// docs/performance.md). Limits count it per token (auth.Limiter.Take).
func (m *Matcher) Cost() int {
	if m.program != nil {
		return ExprCost
	}
	return 1
}

// ExprCost is the Cost of a filter with an expr.
const ExprCost = 10

// Categories returns the categories the matcher is limited to (nil: any).
func (m *Matcher) Categories() []event.Category {
	if m.categories == 0 {
		return nil
	}
	var out []event.Category
	for c, bit := range categoryIndex {
		if m.categories&bit != 0 {
			out = append(out, c)
		}
	}
	return out
}

// MatchClass reports whether e satisfies the filter's categories,
// severities and types: the fields no masking changes (auth.MaskEvent), so
// it is a cheap necessary condition of Match on any masked form of e. A
// reader shown masked events is matched on the masked form only; this
// spares masking the events it could never match.
func (m *Matcher) MatchClass(e *event.Event) bool {
	if m.categories != 0 && m.categories&categoryIndex[e.Category] == 0 {
		return false
	}
	if m.severities != 0 && m.severities&(1<<e.Severity) == 0 {
		return false
	}
	return (len(m.typeExact) == 0 && len(m.typePrefix) == 0) || m.matchType(e.Type)
}

// Match reports whether e satisfies every field of the filter.
func (m *Matcher) Match(e *event.Event) bool {
	if !m.MatchClass(e) {
		return false
	}
	if len(m.src.Users) > 0 && !containsFold(m.src.Users, e.User) {
		return false
	}
	if len(m.src.UserIDs) > 0 && !contains(m.src.UserIDs, e.UserID) {
		return false
	}
	if len(m.src.Resources) > 0 && !contains(m.src.Resources, e.Resource) {
		return false
	}
	if len(m.src.Actions) > 0 && !contains(m.src.Actions, e.Action) {
		return false
	}
	if len(m.src.Outcomes) > 0 && !contains(m.src.Outcomes, e.Outcome) {
		return false
	}
	if len(m.src.Sources) > 0 && !contains(m.src.Sources, e.Source) {
		return false
	}
	if len(m.prefixes) > 0 && !m.matchIP(e.SrcIP) {
		return false
	}
	if len(m.src.MitreTactics) > 0 && !intersects(m.src.MitreTactics, e.MitreTactics) {
		return false
	}
	if len(m.src.MitreTechniques) > 0 && !m.matchTechnique(e.MitreTechniques) {
		return false
	}
	if m.hasMinConf && (e.Confidence == nil || *e.Confidence < m.minConf) {
		return false
	}
	if len(m.src.Statuses) > 0 && e.Category == event.CategoryDetection {
		st, _ := e.Field("data.status")
		s, _ := st.(string)
		if !contains(m.src.Statuses, s) {
			return false
		}
	}
	if m.program != nil && !m.program.match(e) {
		return false
	}
	return true
}

func (m *Matcher) matchType(t string) bool {
	if m.typeSet != nil {
		if _, ok := m.typeSet[t]; ok {
			return true
		}
	} else {
		for _, x := range m.typeExact {
			if x == t {
				return true
			}
		}
	}
	for _, p := range m.typePrefix {
		if strings.HasPrefix(t, p) {
			return true
		}
	}
	return false
}

func (m *Matcher) matchIP(s string) bool {
	if s == "" {
		return false
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return false
	}
	a = a.Unmap()
	for _, p := range m.prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// matchTechnique lets a parent technique match its sub-techniques:
// T1110 matches T1110.001, but T111 does not match T1110.
func (m *Matcher) matchTechnique(have []string) bool {
	for _, want := range m.src.MitreTechniques {
		for _, h := range have {
			if h == want || (strings.HasPrefix(h, want) && len(h) > len(want) && h[len(want)] == '.') {
				return true
			}
		}
	}
	return false
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

func containsFold(list []string, v string) bool {
	for _, x := range list {
		if strings.EqualFold(x, v) {
			return true
		}
	}
	return false
}

func intersects(a, b []string) bool {
	for _, x := range a {
		if contains(b, x) {
			return true
		}
	}
	return false
}
