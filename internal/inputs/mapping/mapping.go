// Package mapping turns log lines the built-in parsers do not know into
// Vigil events with user-defined mappings written in YAML (issue 9, item 4,
// docs/inputs.md "User mappings").
//
// A mapping matches on the fields of an inputs.Message (app_name,
// hostname, facility, input: exact values or lists), optionally a regular
// expression with named captures on the message text and a CEL condition,
// and sets event fields from templates ("${user}", "$$" for a literal $).
// A Set holds a file's mappings in order; the first that matches wins.
//
// Everything that can be checked is checked at load, with the file and
// line of the offending value: a regex or CEL expression that does not
// compile, an unknown field, a ${name} the mapping does not define, a type,
// category or severity that event validation would refuse. Regexes are Go
// RE2 (linear in the length of the line, so a hostile line cannot make a
// mapping take exponential time) and CEL conditions run under a cost limit.
package mapping

import (
	"encoding/json"
	"regexp"
	"strconv"
	"time"
	"unicode/utf8"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/interpreter"

	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/inputs"
)

// Mapping is one compiled mapping; it is an inputs.Mapper and safe for
// concurrent use.
type Mapping struct {
	Name string
	File string
	Line int // line of the mapping in File

	appName, hostname, input []string // empty: any
	facility                 []int

	re       *regexp.Regexp
	captures map[string]int // capture name -> submatch index
	when     cel.Program

	typ      string
	category event.Category
	severity *event.Severity // nil: from the syslog severity
	fields   []fieldSetter   // top-level string fields
	tags     []template
	mitre    []template
	data     []dataSetter
}

type fieldSetter struct {
	field string // event JSON name: user, src_ip, ...
	tpl   template
}

type dataSetter struct {
	key string
	tpl template
}

// Set is a file's mappings in file order.
type Set struct {
	Path     string
	Mappings []*Mapping

	// byApp lists, per app name named by some mapping, the mappings (in
	// file order) that can match a message from that app; anyApp lists
	// those for every other app (the mappings with no app_name
	// condition). A line then skips the regexes of mappings written for
	// other apps: with 1,000 mappings that is the difference between one
	// regex and a thousand per line (BenchmarkMap).
	byApp  map[string][]*Mapping
	anyApp []*Mapping
}

// index builds byApp and anyApp; Parse calls it once.
func (s *Set) index() {
	s.byApp = map[string][]*Mapping{}
	for _, m := range s.Mappings {
		for _, a := range m.appName {
			s.byApp[a] = nil
		}
	}
	for _, m := range s.Mappings {
		if len(m.appName) == 0 {
			s.anyApp = append(s.anyApp, m)
			for a := range s.byApp {
				s.byApp[a] = append(s.byApp[a], m)
			}
			continue
		}
		for _, a := range m.appName {
			if l := s.byApp[a]; len(l) == 0 || l[len(l)-1] != m { // an app listed twice
				s.byApp[a] = append(l, m)
			}
		}
	}
}

func (s *Set) candidates(app string) []*Mapping {
	if s.byApp == nil { // a Set built by hand, not by Parse
		return s.Mappings
	}
	if l, ok := s.byApp[app]; ok {
		return l
	}
	return s.anyApp
}

// Map makes the event of the first mapping that matches msg: a Set is
// one inputs.Mapper (the fastest way to put a file in a chain). A nil Set
// matches nothing.
func (s *Set) Map(msg *inputs.Message) (*event.Event, bool) {
	_, ev, ok := s.Match(msg)
	return ev, ok
}

// Mappers returns the set as mappers for an inputs.Chain, first match
// first. A nil set has none.
func (s *Set) Mappers() []inputs.Mapper {
	if s == nil {
		return nil
	}
	out := make([]inputs.Mapper, len(s.Mappings))
	for i, m := range s.Mappings {
		out[i] = m
	}
	return out
}

// Match returns the first mapping that recognises msg and its event.
func (s *Set) Match(msg *inputs.Message) (*Mapping, *event.Event, bool) {
	if s == nil {
		return nil, nil, false
	}
	for _, m := range s.candidates(msg.AppName) {
		if ev, ok := m.Map(msg); ok {
			return m, ev, true
		}
	}
	return nil, nil, false
}

// Map makes the event of msg when every condition of the mapping holds.
// A mapping whose result event validation would refuse (a capture that is
// not an IP address set as src_ip, an outcome outside success, failure,
// unknown, an over-long value) does not match, so the message goes on to
// the next mapper and at worst becomes a system.*.unparsed event: never
// lost.
func (m *Mapping) Map(msg *inputs.Message) (*event.Event, bool) {
	if !oneOf(m.input, msg.Input) || !oneOf(m.appName, msg.AppName) || !oneOf(m.hostname, msg.Hostname) {
		return nil, false
	}
	if len(m.facility) > 0 {
		found := false
		for _, f := range m.facility {
			found = found || f == msg.Facility
		}
		if !found {
			return nil, false
		}
	}
	var sub []int
	if m.re != nil {
		sub = m.re.FindStringSubmatchIndex(msg.Text)
		if sub == nil {
			return nil, false
		}
	}
	capture := func(name string) (string, bool) {
		i, ok := m.captures[name]
		if !ok {
			return "", false
		}
		if sub[2*i] < 0 { // an optional group that did not take part
			return "", true
		}
		return msg.Text[sub[2*i]:sub[2*i+1]], true
	}
	if m.when != nil {
		out, _, err := m.when.Eval(activation{msg: msg, capture: capture, names: m.captures})
		if err != nil { // a missing key, a cost overrun: no match
			return nil, false
		}
		if b, ok := out.(types.Bool); !ok || !bool(b) {
			return nil, false
		}
	}
	lookup := func(name string) string {
		if v, ok := capture(name); ok {
			return v
		}
		v, _ := messageVar(msg, name)
		return v
	}
	ev := &event.Event{Type: m.typ, Category: m.category, Message: msg.Text}
	if m.severity != nil {
		ev.Severity = *m.severity
	} else {
		ev.Severity = inputs.SyslogSeverity(msg.Severity)
	}
	for _, f := range m.fields {
		v := f.tpl.expand(lookup)
		switch f.field {
		case "user":
			ev.User = v
		case "user_id":
			ev.UserID = v
		case "src_ip":
			ev.SrcIP = v
		case "action":
			ev.Action = v
		case "outcome":
			ev.Outcome = v
		case "resource":
			ev.Resource = v
		case "message":
			ev.Message = v
		case "source":
			ev.Source = v
		}
	}
	ev.Tags = expandList(m.tags, lookup)
	ev.MitreTechniques = expandList(m.mitre, lookup)
	// m.data is sorted by key at load: the object is written directly,
	// with the same bytes json.Marshal of a map would give, at a
	// fraction of its cost (reflection and sorting per line).
	raw := make([]byte, 0, 64)
	raw = append(raw, '{')
	for _, d := range m.data {
		v := d.tpl.expand(lookup)
		if v == "" {
			continue
		}
		if len(raw) > 1 {
			raw = append(raw, ',')
		}
		raw = appendJSONString(raw, d.key)
		raw = append(raw, ':')
		raw = appendJSONString(raw, v)
	}
	raw = append(raw, '}')
	ev.Data = json.RawMessage(raw)
	if !acceptable(ev) {
		return nil, false
	}
	return ev, true
}

// appendJSONString appends s as a JSON string as encoding/json writes it
// (invalid UTF-8 as U+FFFD, <, > and & escaped).
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c == '\n':
				b = append(b, '\\', 'n')
			case c == '\r':
				b = append(b, '\\', 'r')
			case c == '\t':
				b = append(b, '\\', 't')
			case c == '\b':
				b = append(b, '\\', 'b')
			case c == '\f':
				b = append(b, '\\', 'f')
			case c < 0x20 || c == '<' || c == '>' || c == '&':
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
		default:
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}

// acceptable runs the event package's validation on a probe carrying the
// values a template could make invalid, so a mapped event is never one
// that ingest would refuse.
func acceptable(ev *event.Event) bool {
	probe := &event.Event{
		ID: "probe", Type: ev.Type, Category: ev.Category, Source: ev.Source, Message: ev.Message,
		User: ev.User, UserID: ev.UserID, SrcIP: ev.SrcIP, Resource: ev.Resource, Action: ev.Action,
		Outcome: ev.Outcome, Tags: ev.Tags, MitreTechniques: ev.MitreTechniques,
	}
	_, err := event.Normalize(probe, "default", time.Unix(0, 0), event.DefaultLimits())
	return err == nil
}

func expandList(ts []template, lookup func(string) string) []string {
	var out []string
	for _, t := range ts {
		if v := t.expand(lookup); v != "" { // an empty entry would be refused
			out = append(out, v)
		}
	}
	return out
}

func oneOf(list []string, v string) bool {
	if len(list) == 0 {
		return true
	}
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// messageVars are the names templates and CEL conditions may use for the
// message's own fields (besides the regex's captures and fields.<key>).
var messageVars = []string{"input", "hostname", "app_name", "proc_id", "msg_id", "facility", "syslog_severity", "message", "remote"}

func isMessageVar(name string) bool {
	if len(name) > len("fields.") && name[:len("fields.")] == "fields." {
		return true
	}
	for _, v := range messageVars {
		if v == name {
			return true
		}
	}
	return false
}

func messageVar(msg *inputs.Message, name string) (string, bool) {
	switch name {
	case "input":
		return msg.Input, true
	case "hostname":
		return msg.Hostname, true
	case "app_name":
		return msg.AppName, true
	case "proc_id":
		return msg.ProcID, true
	case "msg_id":
		return msg.MsgID, true
	case "message":
		return msg.Text, true
	case "remote":
		return msg.Remote, true
	case "facility":
		if msg.Facility < 0 {
			return "", true
		}
		return strconv.Itoa(msg.Facility), true
	case "syslog_severity":
		if msg.Severity < 0 {
			return "", true
		}
		return strconv.Itoa(msg.Severity), true
	}
	if len(name) > len("fields.") && name[:len("fields.")] == "fields." {
		v, ok := msg.Fields[name[len("fields."):]]
		return v, ok
	}
	return "", false
}

// celCostLimit bounds the work of one condition per message, as
// internal/filter does for subscriptions: a mapping cannot stall an input.
const celCostLimit = 10_000

// newCELEnv declares the message as CEL variables: its header fields as
// strings, facility and syslog_severity as ints (-1 when absent), fields
// (structured data, OTLP attributes) and captures (the regex's named
// groups) as maps of strings.
func newCELEnv() (*cel.Env, error) {
	return cel.NewEnv(
		cel.Variable("input", cel.StringType),
		cel.Variable("hostname", cel.StringType),
		cel.Variable("app_name", cel.StringType),
		cel.Variable("proc_id", cel.StringType),
		cel.Variable("msg_id", cel.StringType),
		cel.Variable("message", cel.StringType),
		cel.Variable("remote", cel.StringType),
		cel.Variable("facility", cel.IntType),
		cel.Variable("syslog_severity", cel.IntType),
		cel.Variable("fields", cel.MapType(cel.StringType, cel.StringType)),
		cel.Variable("captures", cel.MapType(cel.StringType, cel.StringType)),
	)
}

// activation resolves CEL variables from the message on demand.
type activation struct {
	msg     *inputs.Message
	capture func(string) (string, bool)
	names   map[string]int
}

func (a activation) Parent() interpreter.Activation { return nil }

func (a activation) ResolveName(name string) (any, bool) {
	switch name {
	case "facility":
		return int64(a.msg.Facility), true
	case "syslog_severity":
		return int64(a.msg.Severity), true
	case "fields":
		if a.msg.Fields == nil {
			return map[string]string{}, true
		}
		return a.msg.Fields, true
	case "captures":
		out := make(map[string]string, len(a.names))
		for n := range a.names {
			out[n], _ = a.capture(n)
		}
		return out, true
	}
	return messageVar(a.msg, name)
}
