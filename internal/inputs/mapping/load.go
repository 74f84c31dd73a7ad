package mapping

import (
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"regexp/syntax"
	"sort"
	"strconv"
	"strings"
	"time"

	"cel.dev/cel-go/cel"
	"gopkg.in/yaml.v3"

	"github.com/vigil-sec/vigil/internal/event"
)

// Limits on a mapping file: mappings run on every input line, so what one
// file can make the server hold and do is bounded.
const (
	MaxMappings  = 1000
	MaxRegexLen  = 4 << 10 // bytes of one regex (and of one when condition)
	MaxFileBytes = 4 << 20
	maxListLen   = 256 // values of one match list, tags, mitre_techniques
)

// Problem is one reason a mapping file does not load, at a line.
type Problem struct {
	File    string
	Line    int
	Mapping string // the mapping's name, if known
	Reason  string
}

func (p Problem) String() string {
	if p.Mapping != "" {
		return fmt.Sprintf("%s:%d: mapping %q: %s", p.File, p.Line, p.Mapping, p.Reason)
	}
	return fmt.Sprintf("%s:%d: %s", p.File, p.Line, p.Reason)
}

// Error lists every problem of a mapping file that did not load.
type Error struct{ Problems []Problem }

func (e *Error) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return "input mappings: " + strings.Join(lines, "; ")
}

// Load reads and compiles the mapping file at path. An empty path is no
// mappings (a nil *Set, whose Mappers is empty). The error is an *Error
// naming the file and line of every problem.
func Load(path string) (*Set, error) {
	if path == "" {
		return nil, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("input mappings: %w", err)
	}
	defer func() { _ = f.Close() }() // read only: closing loses nothing
	b, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("input mappings: %s: %w", path, err)
	}
	return Parse(path, b)
}

// Parse compiles a mapping file's contents; file names it in errors.
// The document is either a list of mappings or an object whose key
// "mappings" holds that list.
func Parse(file string, data []byte) (set *Set, err error) {
	if len(data) > MaxFileBytes {
		return nil, fmt.Errorf("input mappings: %s: larger than %d bytes", file, MaxFileBytes)
	}
	defer func() {
		// The YAML parser is third-party code fed operator input: a
		// panic in it is a load error, never a crash at start.
		if r := recover(); r != nil {
			set, err = nil, fmt.Errorf("input mappings: %s: YAML parser failed: %v", file, r)
		}
	}()
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("input mappings: %s: %w", file, err)
	}
	l := &loader{file: file, names: map[string]int{}}
	env, err := newCELEnv()
	if err != nil {
		return nil, fmt.Errorf("input mappings: cel environment: %w", err)
	}
	l.env = env
	set = &Set{Path: file}
	if doc.Kind == 0 || len(doc.Content) == 0 { // an empty file
		return set, nil
	}
	root := doc.Content[0]
	list := root
	if root.Kind == yaml.MappingNode {
		list = nil
		for i := 0; i+1 < len(root.Content); i += 2 {
			k, v := root.Content[i], root.Content[i+1]
			if k.Value != "mappings" {
				l.problem(k, "", fmt.Sprintf("unknown key %q (the file holds a list of mappings, or mappings: [...])", k.Value))
				continue
			}
			list = v
		}
		if list == nil && len(l.problems) == 0 {
			return set, nil
		}
	}
	if list != nil {
		switch {
		case list.Kind == yaml.ScalarNode && list.Tag == "!!null":
		case list.Kind != yaml.SequenceNode:
			l.problem(list, "", "expected a list of mappings")
		case len(list.Content) > MaxMappings:
			l.problem(list, "", fmt.Sprintf("%d mappings: at most %d per file", len(list.Content), MaxMappings))
		default:
			for _, n := range list.Content {
				if m := l.mapping(n); m != nil {
					set.Mappings = append(set.Mappings, m)
				}
			}
		}
	}
	if len(l.problems) > 0 {
		return nil, &Error{Problems: l.problems}
	}
	set.index()
	return set, nil
}

type loader struct {
	file     string
	env      *cel.Env
	names    map[string]int // mapping name -> line, for duplicates
	problems []Problem
	// badRegex: the current mapping's regex did not compile, so its
	// captures are unknown and ${name} checks would only add noise.
	badRegex bool
}

func (l *loader) problem(n *yaml.Node, mapping, reason string) {
	l.problems = append(l.problems, Problem{File: l.file, Line: n.Line, Mapping: mapping, Reason: reason})
}

// setFields are the event fields a mapping may set besides data.<key>.
var setFields = []string{"type", "category", "severity", "user", "user_id", "src_ip", "action", "outcome", "resource", "message", "source", "tags", "mitre_techniques"}

func (l *loader) mapping(n *yaml.Node) *Mapping {
	if n.Kind != yaml.MappingNode {
		l.problem(n, "", "a mapping is an object with name, match conditions and set")
		return nil
	}
	m := &Mapping{File: l.file, Line: n.Line}
	before := len(l.problems)
	l.badRegex = false
	keys := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		if _, dup := keys[k.Value]; dup {
			l.problem(k, "", fmt.Sprintf("key %q given twice", k.Value))
		}
		keys[k.Value] = n.Content[i+1]
		if k.Value == "name" {
			m.Name = n.Content[i+1].Value
		}
	}
	name := m.Name
	switch nn := keys["name"]; {
	case nn == nil:
		l.problem(n, "", "missing name")
	case nn.Kind != yaml.ScalarNode || nn.Value == "" || len(nn.Value) > 128:
		l.problem(nn, "", "name must be a non-empty string of at most 128 bytes")
	default:
		if line, dup := l.names[name]; dup {
			l.problem(nn, name, fmt.Sprintf("name already used by the mapping at line %d", line))
		}
		l.names[name] = n.Line
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch k.Value {
		case "name", "set":
		case "app_name":
			m.appName = l.stringList(v, name, k.Value)
		case "hostname":
			m.hostname = l.stringList(v, name, k.Value)
		case "input":
			m.input = l.stringList(v, name, k.Value)
		case "facility":
			for _, s := range l.stringList(v, name, k.Value) {
				f, ok := parseFacility(s)
				if !ok {
					l.problem(v, name, fmt.Sprintf("facility %q is not 0-23 or a name (kern, user, mail, daemon, auth, syslog, lpr, news, uucp, cron, authpriv, ftp, ntp, audit, alert, clock, local0-local7)", s))
					continue
				}
				m.facility = append(m.facility, f)
			}
		case "regex":
			l.regex(m, v, name)
		default:
			if k.Value != "when" {
				l.problem(k, name, fmt.Sprintf("unknown key %q (valid: name, app_name, hostname, facility, input, regex, when, set)", k.Value))
			}
		}
	}
	// when after regex: the condition may read captures.
	if v := keys["when"]; v != nil {
		l.when(m, v, name)
	}
	if m.appName == nil && m.hostname == nil && m.input == nil && m.facility == nil && m.re == nil && m.when == nil && len(l.problems) == before {
		l.problem(n, name, "no match condition (app_name, hostname, facility, input, regex or when): it would claim every message")
	}
	if v := keys["set"]; v == nil {
		l.problem(n, name, "missing set (the event fields to set; type is required)")
	} else {
		l.set(m, v, name)
	}
	if len(l.problems) > before {
		return nil
	}
	return m
}

// stringList reads a scalar or a list of scalars.
func (l *loader) stringList(v *yaml.Node, name, key string) []string {
	switch v.Kind {
	case yaml.ScalarNode:
		if v.Tag == "!!null" {
			l.problem(v, name, key+": empty")
			return nil
		}
		return []string{v.Value}
	case yaml.SequenceNode:
		if len(v.Content) == 0 || len(v.Content) > maxListLen {
			l.problem(v, name, fmt.Sprintf("%s: a list of 1 to %d values", key, maxListLen))
			return nil
		}
		out := make([]string, 0, len(v.Content))
		for _, e := range v.Content {
			if e.Kind != yaml.ScalarNode {
				l.problem(e, name, key+": list entries must be strings")
				return nil
			}
			out = append(out, e.Value)
		}
		return out
	}
	l.problem(v, name, key+": a string or a list of strings")
	return nil
}

func (l *loader) regex(m *Mapping, v *yaml.Node, name string) {
	l.badRegex = true
	if v.Kind != yaml.ScalarNode || v.Value == "" {
		l.problem(v, name, "regex must be a non-empty string")
		return
	}
	if len(v.Value) > MaxRegexLen {
		l.problem(v, name, fmt.Sprintf("regex longer than %d bytes", MaxRegexLen))
		return
	}
	re, err := regexp.Compile(v.Value)
	if err != nil {
		var se *syntax.Error
		if errors.As(err, &se) {
			err = fmt.Errorf("%s in `%s`", se.Code, se.Expr)
		}
		l.problem(v, name, fmt.Sprintf("regex does not compile (Go RE2 syntax): %v", err))
		return
	}
	m.re, l.badRegex = re, false
	m.captures = map[string]int{}
	for i, c := range re.SubexpNames() {
		if c != "" {
			m.captures[c] = i
		}
	}
}

func (l *loader) when(m *Mapping, v *yaml.Node, name string) {
	if v.Kind != yaml.ScalarNode || v.Value == "" {
		l.problem(v, name, "when must be a non-empty CEL expression")
		return
	}
	if len(v.Value) > MaxRegexLen {
		l.problem(v, name, fmt.Sprintf("when longer than %d bytes", MaxRegexLen))
		return
	}
	ast, iss := l.env.Compile(v.Value)
	if iss.Err() != nil {
		l.problem(v, name, "when does not compile: "+strings.ReplaceAll(iss.Err().Error(), "\n", " "))
		return
	}
	if ast.OutputType() != cel.BoolType && ast.OutputType() != cel.DynType {
		l.problem(v, name, fmt.Sprintf("when must evaluate to a bool, not %s", ast.OutputType()))
		return
	}
	prg, err := l.env.Program(ast, cel.CostLimit(celCostLimit), cel.EvalOptions(cel.OptOptimize))
	if err != nil {
		l.problem(v, name, "when: "+err.Error())
		return
	}
	m.when = prg
}

// template parses a set value and checks that every ${name} is defined.
func (l *loader) template(m *Mapping, v *yaml.Node, name, field string) (template, bool) {
	if v.Kind != yaml.ScalarNode || v.Tag == "!!null" {
		l.problem(v, name, fmt.Sprintf("set %s: a string value", field))
		return template{}, false
	}
	t, err := parseTemplate(v.Value)
	if err != nil {
		l.problem(v, name, fmt.Sprintf("set %s: %v", field, err))
		return t, false
	}
	ok := true
	for _, n := range t.names() {
		if _, isCapture := m.captures[n]; isCapture || isMessageVar(n) || l.badRegex {
			continue
		}
		reason := "the regex has no capture (?P<" + n + ">...)"
		if m.re == nil {
			reason = "the mapping has no regex"
		}
		l.problem(v, name, fmt.Sprintf("set %s: ${%s} is not defined: %s and it is not a message field (%s, fields.<key>)", field, n, reason, strings.Join(messageVars, ", ")))
		ok = false
	}
	return t, ok
}

func (l *loader) set(m *Mapping, v *yaml.Node, name string) {
	if v.Kind != yaml.MappingNode {
		l.problem(v, name, "set must be an object of event fields")
		return
	}
	var typeNode, catNode *yaml.Node
	seen := map[string]bool{}
	for i := 0; i+1 < len(v.Content); i += 2 {
		k, val := v.Content[i], v.Content[i+1]
		field := k.Value
		if seen[field] {
			l.problem(k, name, fmt.Sprintf("set %s given twice", field))
			continue
		}
		seen[field] = true
		switch {
		case field == "type" || field == "category" || field == "severity":
			// Fixed per mapping, so load can validate them.
			if val.Kind != yaml.ScalarNode || strings.Contains(val.Value, "$") {
				l.problem(val, name, fmt.Sprintf("set %s: a literal value (no ${...}), so it is validated at load", field))
				continue
			}
			switch field {
			case "type":
				typeNode, m.typ = val, val.Value
			case "category":
				// Normalize trusts a set category (the JSON decoder
				// checks it): check it here the same way.
				c, err := event.ParseCategory(val.Value)
				if err != nil {
					l.problem(val, name, "set category: "+err.Error())
					continue
				}
				catNode, m.category = val, c
			case "severity":
				s, err := event.ParseSeverity(val.Value)
				if err != nil {
					l.problem(val, name, "set severity: "+err.Error())
					continue
				}
				m.severity = &s
			}
		case field == "tags" || field == "mitre_techniques":
			items := []*yaml.Node{val}
			if val.Kind == yaml.SequenceNode {
				items = val.Content
				if len(items) > maxListLen {
					l.problem(val, name, fmt.Sprintf("set %s: at most %d entries", field, maxListLen))
					continue
				}
			}
			for _, it := range items {
				t, ok := l.template(m, it, name, field)
				if !ok {
					continue
				}
				if field == "tags" {
					m.tags = append(m.tags, t)
				} else {
					m.mitre = append(m.mitre, t)
				}
			}
		case strings.HasPrefix(field, "data."):
			key := field[len("data."):]
			if key == "" || len(key) > 64 {
				l.problem(k, name, "set data.<key>: the key must be 1 to 64 bytes")
				continue
			}
			if event.IsSensitiveKey(key) {
				l.problem(k, name, fmt.Sprintf("set %s: the key names a secret, which ingest drops (SPEC 9)", field))
				continue
			}
			if t, ok := l.template(m, val, name, field); ok {
				m.data = append(m.data, dataSetter{key: key, tpl: t})
			}
		case oneOf(setFields, field):
			t, ok := l.template(m, val, name, field)
			if !ok {
				continue
			}
			if field == "outcome" || field == "src_ip" {
				if lit, isLit := t.literal(); isLit && !literalValid(field, lit) {
					l.problem(val, name, fmt.Sprintf("set %s: %q would be refused by event validation", field, lit))
					continue
				}
			}
			m.fields = append(m.fields, fieldSetter{field: field, tpl: t})
		default:
			l.problem(k, name, fmt.Sprintf("set: unknown event field %q (valid: %s, data.<key>)", field, strings.Join(setFields, ", ")))
		}
	}
	// data.mapping records which mapping made the event, unless set.
	if !seen["data.mapping"] {
		m.data = append(m.data, dataSetter{key: "mapping", tpl: template{parts: []tplPart{{lit: name}}}})
	}
	sort.Slice(m.data, func(i, j int) bool { return m.data[i].key < m.data[j].key })
	if typeNode == nil {
		l.problem(v, name, "set: type is required (e.g. authentication.login)")
		return
	}
	// The event package's own validation decides: a type it refuses, a
	// category it does not know or cannot derive.
	probe := &event.Event{ID: "probe", Type: m.typ, Category: m.category}
	if _, err := event.Normalize(probe, "default", time.Unix(0, 0), event.DefaultLimits()); err != nil {
		at := typeNode
		if catNode != nil && strings.HasPrefix(err.Error(), "category") {
			at = catNode
		}
		l.problem(at, name, "set: "+err.Error())
		return
	}
	m.category = probe.Category
}

func literalValid(field, v string) bool {
	probe := &event.Event{ID: "probe", Type: "system.probe"}
	if field == "outcome" {
		probe.Outcome = v
	} else {
		probe.SrcIP = v
	}
	_, err := event.Normalize(probe, "default", time.Unix(0, 0), event.DefaultLimits())
	return err == nil
}

var facilityNames = map[string]int{
	"kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6, "news": 7,
	"uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11, "ntp": 12, "audit": 13, "alert": 14, "clock": 15,
	"local0": 16, "local1": 17, "local2": 18, "local3": 19, "local4": 20, "local5": 21, "local6": 22, "local7": 23,
}

func parseFacility(s string) (int, bool) {
	if n, err := strconv.Atoi(s); err == nil {
		return n, n >= 0 && n <= 23
	}
	n, ok := facilityNames[strings.ToLower(s)]
	return n, ok
}
