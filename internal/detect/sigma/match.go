package sigma

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf16"

	"gopkg.in/yaml.v3"

	"github.com/vigil-sec/vigil/internal/event"
)

// Matcher is a compiled Sigma detection rule. It is immutable and safe for
// concurrent use; per-event scratch state lives in an EvalCtx.
type Matcher struct {
	Rule     *Rule
	category event.Category // from logsource.category; "" matches any
	searches []search
	conds    []cond // ORed
	fields   []string
}

// Category is the event category the rule's logsource limits it to ("" for
// any), used by the engine to skip rules that cannot match.
func (m *Matcher) Category() event.Category { return m.category }

// Fields lists the Vigil fields the rule reads (for documentation and
// `vigil rules test` output).
func (m *Matcher) Fields() []string { return m.fields }

// Match evaluates the rule against one event.
func (m *Matcher) Match(e *event.Event) bool {
	ctx := NewEvalCtx()
	ctx.Reset(e)
	return m.MatchCtx(ctx)
}

// MatchCtx evaluates the rule with a reusable context, so field lookups
// shared by many rules are done once per event.
func (m *Matcher) MatchCtx(ctx *EvalCtx) bool {
	if m.category != "" && ctx.e.Category != m.category {
		return false
	}
	for _, c := range m.conds {
		if c.eval(m.searches, ctx) {
			return true
		}
	}
	return false
}

// EvalCtx caches the values of the fields looked up while evaluating rules
// against one event. It is not safe for concurrent use.
type EvalCtx struct {
	e     *event.Event
	cache map[string]*fieldVal
	pool  []*fieldVal
	used  int
}

// NewEvalCtx returns an empty context.
func NewEvalCtx() *EvalCtx { return &EvalCtx{cache: map[string]*fieldVal{}} }

// Reset points the context at a new event and forgets cached values.
func (c *EvalCtx) Reset(e *event.Event) {
	c.e = e
	clear(c.cache)
	c.used = 0
}

// Event is the event being evaluated.
func (c *EvalCtx) Event() *event.Event { return c.e }

type fieldVal struct {
	present bool
	null    bool
	strs    []string
	lower   []string
	lowered bool
}

func (c *EvalCtx) get(field string) *fieldVal {
	if fv, ok := c.cache[field]; ok {
		return fv
	}
	var fv *fieldVal
	if c.used < len(c.pool) {
		fv = c.pool[c.used]
		*fv = fieldVal{strs: fv.strs[:0], lower: fv.lower[:0]}
	} else {
		fv = &fieldVal{}
		c.pool = append(c.pool, fv)
	}
	c.used++
	if field == "" {
		fv.present = true
		fv.strs = keywordValues(c.e, fv.strs)
	} else {
		v, ok := lookup(c.e, field)
		fv.present = ok
		if ok {
			if v == nil {
				fv.null = true
			} else {
				fv.strs = appendStrings(fv.strs, v, 0)
			}
		}
	}
	c.cache[field] = fv
	return fv
}

// lookup is event.Field without the path split allocation for data paths
// (rules read data fields on every event).
func lookup(e *event.Event, field string) (any, bool) {
	path, ok := strings.CutPrefix(field, "data.")
	if !ok {
		return e.Field(field)
	}
	var cur any = e.DataMap()
	for {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		part, rest, more := strings.Cut(path, ".")
		if cur, ok = m[part]; !ok {
			return nil, false
		}
		if !more {
			return cur, true
		}
		path = rest
	}
}

func (fv *fieldVal) lowerStrs() []string {
	if !fv.lowered {
		for _, s := range fv.strs {
			fv.lower = append(fv.lower, lowerASCIIFast(s))
		}
		fv.lowered = true
	}
	return fv.lower
}

// lowerASCIIFast lower-cases s, without allocating when it already is.
func lowerASCIIFast(s string) string {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x80 || (c >= 'A' && c <= 'Z') {
			return strings.ToLower(s)
		}
	}
	return s
}

func appendStrings(dst []string, v any, depth int) []string {
	switch x := v.(type) {
	case string:
		return append(dst, x)
	case float64:
		return append(dst, strconv.FormatFloat(x, 'f', -1, 64))
	case bool:
		return append(dst, strconv.FormatBool(x))
	case uint64:
		return append(dst, strconv.FormatUint(x, 10))
	case int:
		return append(dst, strconv.Itoa(x))
	case time.Time:
		return append(dst, x.UTC().Format(time.RFC3339Nano))
	case []string:
		return append(dst, x...)
	case []any:
		if depth > 0 {
			return dst
		}
		for _, el := range x {
			dst = appendStrings(dst, el, depth+1)
		}
	}
	return dst
}

// keywordValues are the strings a Sigma keyword search looks through: the
// human-readable top-level fields and every string inside data.
func keywordValues(e *event.Event, dst []string) []string {
	for _, s := range []string{e.Message, e.Type, e.Action, e.Resource, e.User, e.Source} {
		if s != "" {
			dst = append(dst, s)
		}
	}
	var walk func(v any, depth int)
	walk = func(v any, depth int) {
		if depth > 32 {
			return
		}
		switch x := v.(type) {
		case string:
			dst = append(dst, x)
		case map[string]any:
			for _, c := range x {
				walk(c, depth+1)
			}
		case []any:
			for _, c := range x {
				walk(c, depth+1)
			}
		}
	}
	if m := e.DataMap(); m != nil {
		walk(m, 0)
	}
	return dst
}

// search is one search identifier: an OR of AND-groups of field conditions.
type search struct {
	groups [][]fieldCond
}

func (s *search) match(ev *EvalCtx) bool {
	for _, g := range s.groups {
		ok := true
		for i := range g {
			if !g[i].match(ev) {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

type fieldCond struct {
	field string // Vigil field; "" for keyword search
	all   bool
	vals  []valueMatcher
}

func (f *fieldCond) match(ev *EvalCtx) bool {
	fv := ev.get(f.field)
	if len(f.vals) == 0 {
		return false
	}
	if f.all {
		for _, v := range f.vals {
			if !v.match(fv, ev) {
				return false
			}
		}
		return true
	}
	for _, v := range f.vals {
		if v.match(fv, ev) {
			return true
		}
	}
	return false
}

type valueMatcher interface {
	match(fv *fieldVal, ev *EvalCtx) bool
}

type strOp uint8

const (
	opEq strOp = iota
	opContains
	opPrefix
	opSuffix
)

// strMatcher compares without wildcards; pattern is lower-cased unless cased.
type strMatcher struct {
	op      strOp
	pattern string
	cased   bool
}

func (m *strMatcher) match(fv *fieldVal, _ *EvalCtx) bool {
	vals := fv.strs
	if !m.cased {
		vals = fv.lowerStrs()
	}
	for _, s := range vals {
		switch m.op {
		case opEq:
			if s == m.pattern {
				return true
			}
		case opContains:
			if strings.Contains(s, m.pattern) {
				return true
			}
		case opPrefix:
			if strings.HasPrefix(s, m.pattern) {
				return true
			}
		case opSuffix:
			if strings.HasSuffix(s, m.pattern) {
				return true
			}
		}
	}
	return false
}

type reMatcher struct{ re *regexp.Regexp }

func (m *reMatcher) match(fv *fieldVal, _ *EvalCtx) bool {
	for _, s := range fv.strs {
		if m.re.MatchString(s) {
			return true
		}
	}
	return false
}

type numMatcher struct {
	op string
	v  float64
}

func (m *numMatcher) match(fv *fieldVal, _ *EvalCtx) bool {
	for _, s := range fv.strs {
		n, err := strconv.ParseFloat(s, 64)
		if err != nil {
			continue
		}
		switch m.op {
		case "lt":
			if n < m.v {
				return true
			}
		case "lte":
			if n <= m.v {
				return true
			}
		case "gt":
			if n > m.v {
				return true
			}
		case "gte":
			if n >= m.v {
				return true
			}
		}
	}
	return false
}

type cidrMatcher struct{ p netip.Prefix }

func (m *cidrMatcher) match(fv *fieldVal, _ *EvalCtx) bool {
	for _, s := range fv.strs {
		a, err := netip.ParseAddr(s)
		if err == nil && m.p.Contains(a.Unmap()) {
			return true
		}
	}
	return false
}

type nullMatcher struct{}

func (nullMatcher) match(fv *fieldVal, _ *EvalCtx) bool {
	return !fv.present || fv.null
}

type existsMatcher struct{ want bool }

func (m existsMatcher) match(fv *fieldVal, _ *EvalCtx) bool {
	return (fv.present && !fv.null) == m.want
}

// fieldrefMatcher compares a field with another field of the same event.
type fieldrefMatcher struct {
	other string
	op    strOp
	cased bool
}

func (m *fieldrefMatcher) match(fv *fieldVal, ev *EvalCtx) bool {
	ov := ev.get(m.other)
	a, b := fv.strs, ov.strs
	if !m.cased {
		a, b = fv.lowerStrs(), ov.lowerStrs()
	}
	for _, x := range a {
		for _, y := range b {
			switch m.op {
			case opEq:
				if x == y {
					return true
				}
			case opContains:
				if strings.Contains(x, y) {
					return true
				}
			case opPrefix:
				if strings.HasPrefix(x, y) {
					return true
				}
			case opSuffix:
				if strings.HasSuffix(x, y) {
					return true
				}
			}
		}
	}
	return false
}

// Compile turns a parsed detection rule into a Matcher, resolving Sigma
// field names with fm. Errors carry the line of the offending node.
func Compile(r *Rule, fm FieldMap) (*Matcher, error) {
	if r.Detection == nil {
		return nil, &Error{Path: r.Path, Line: r.Line, Rule: r.Label(), Reason: "not a detection rule"}
	}
	if fm == nil {
		fm = DefaultFieldMap()
	}
	m := &Matcher{Rule: r}
	if c := event.Category(strings.ToLower(r.Logsource.Category)); c.Valid() {
		m.category = c
	}
	seen := map[string]bool{}
	d := r.Detection
	for _, name := range d.Order {
		s, err := compileSearch(d.Searches[name], fm, seen)
		if err != nil {
			err.Path, err.Rule = r.Path, r.Label()
			if err.Reason != "" {
				err.Reason = name + ": " + err.Reason
			}
			return nil, err
		}
		m.searches = append(m.searches, s)
	}
	for _, expr := range d.Conditions {
		c, err := parseCondition(expr, d.Order)
		if err != nil {
			return nil, &Error{Path: r.Path, Line: d.condLine, Rule: r.Label(), Reason: err.Error()}
		}
		m.conds = append(m.conds, c)
	}
	for f := range seen {
		m.fields = append(m.fields, f)
	}
	return m, nil
}

func compileSearch(n *yaml.Node, fm FieldMap, seen map[string]bool) (search, *Error) {
	var s search
	switch n.Kind {
	case yaml.MappingNode:
		g, err := compileMap(n, fm, seen)
		if err != nil {
			return s, err
		}
		s.groups = append(s.groups, g)
	case yaml.SequenceNode:
		var keywords []*yaml.Node
		for _, el := range n.Content {
			el = resolveAlias(el)
			switch el.Kind {
			case yaml.MappingNode:
				g, err := compileMap(el, fm, seen)
				if err != nil {
					return s, err
				}
				s.groups = append(s.groups, g)
			case yaml.ScalarNode:
				keywords = append(keywords, el)
			default:
				return s, nodeErr(el, "list entries must be field mappings or keywords")
			}
		}
		if len(keywords) > 0 {
			fc, err := compileField("", &yaml.Node{Kind: yaml.SequenceNode, Content: keywords, Line: keywords[0].Line}, fm, keywords[0])
			if err != nil {
				return s, err
			}
			s.groups = append(s.groups, []fieldCond{fc})
		}
	case yaml.ScalarNode:
		fc, err := compileField("", n, fm, n)
		if err != nil {
			return s, err
		}
		s.groups = append(s.groups, []fieldCond{fc})
	default:
		return s, nodeErr(n, "must be a mapping or a list")
	}
	if len(s.groups) == 0 {
		return s, nodeErr(n, "is empty")
	}
	return s, nil
}

func compileMap(n *yaml.Node, fm FieldMap, seen map[string]bool) ([]fieldCond, *Error) {
	var g []fieldCond
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], resolveAlias(n.Content[i+1])
		fc, err := compileField(k.Value, v, fm, k)
		if err != nil {
			return nil, err
		}
		if fc.field != "" {
			seen[fc.field] = true
		}
		g = append(g, fc)
	}
	if len(g) == 0 {
		return nil, nodeErr(n, "empty mapping")
	}
	return g, nil
}

// modifiers applied to one field condition, in the order written.
type mods struct {
	transforms []string // wide, utf16*, base64, base64offset, windash
	match      string   // "", contains, startswith, endswith, re, cidr, lt, lte, gt, gte, exists, fieldref
	all, cased bool
	reFlags    string
}

var transformMods = map[string]bool{"wide": true, "utf16le": true, "utf16be": true, "utf16": true, "base64": true, "base64offset": true, "windash": true}
var matchMods = map[string]bool{"contains": true, "startswith": true, "endswith": true, "re": true, "cidr": true,
	"lt": true, "lte": true, "gt": true, "gte": true, "exists": true, "fieldref": true}

func parseMods(key string, at *yaml.Node) (string, mods, *Error) {
	parts := strings.Split(key, "|")
	var m mods
	for _, p := range parts[1:] {
		switch {
		case transformMods[p]:
			m.transforms = append(m.transforms, p)
		case p == "all":
			m.all = true
		case p == "cased":
			m.cased = true
		case p == "i" || p == "m" || p == "s" || p == "ignorecase" || p == "multiline" || p == "dotall":
			if m.match != "re" {
				return "", m, nodeErr(at, "modifier %q only follows re", p)
			}
			m.reFlags += p[:1]
		case matchMods[p]:
			if m.match != "" && !(m.match == "fieldref" && (p == "contains" || p == "startswith" || p == "endswith")) &&
				!(p == "fieldref" && (m.match == "contains" || m.match == "startswith" || m.match == "endswith")) {
				return "", m, nodeErr(at, "modifiers %q and %q cannot be combined", m.match, p)
			}
			if p == "fieldref" && m.match != "" {
				m.match = "fieldref+" + m.match
			} else if m.match == "fieldref" {
				m.match = "fieldref+" + p
			} else {
				m.match = p
			}
		case p == "expand":
			return "", m, nodeErr(at, "modifier expand (placeholders) is not supported by Vigil")
		case p == "":
			return "", m, nodeErr(at, "empty modifier in %q", key)
		default:
			return "", m, nodeErr(at, "unknown modifier %q (supported: contains, startswith, endswith, all, re with i/m/s, cidr, exists, cased, lt, lte, gt, gte, base64, base64offset, wide/utf16le/utf16be/utf16, windash, fieldref)", p)
		}
	}
	return parts[0], m, nil
}

type rawValue struct {
	s    string
	null bool
	node *yaml.Node
}

func values(v *yaml.Node) ([]rawValue, *Error) {
	switch v.Kind {
	case yaml.ScalarNode:
		return []rawValue{{s: v.Value, null: v.Tag == "!!null", node: v}}, nil
	case yaml.SequenceNode:
		out := make([]rawValue, 0, len(v.Content))
		for _, c := range v.Content {
			c = resolveAlias(c)
			if c.Kind != yaml.ScalarNode {
				return nil, nodeErr(c, "values must be scalars")
			}
			out = append(out, rawValue{s: c.Value, null: c.Tag == "!!null", node: c})
		}
		return out, nil
	}
	return nil, nodeErr(v, "value must be a scalar or a list of scalars")
}

func compileField(key string, v *yaml.Node, fm FieldMap, at *yaml.Node) (fieldCond, *Error) {
	name, m, err := parseMods(key, at)
	if err != nil {
		return fieldCond{}, err
	}
	fc := fieldCond{all: m.all}
	if name != "" {
		fc.field = fm.Resolve(name)
	}
	vals, err := values(v)
	if err != nil {
		return fc, err
	}
	if m.match == "exists" {
		if len(vals) != 1 {
			return fc, nodeErr(v, "exists takes one value, true or false")
		}
		b, perr := strconv.ParseBool(vals[0].s)
		if perr != nil {
			return fc, nodeErr(v, "exists takes true or false, not %q", vals[0].s)
		}
		fc.vals = []valueMatcher{existsMatcher{b}}
		return fc, nil
	}
	for _, rv := range vals {
		if rv.null {
			fc.vals = append(fc.vals, nullMatcher{})
			continue
		}
		ms, err := compileValue(rv, m, fm, name == "")
		if err != nil {
			return fc, err
		}
		fc.vals = append(fc.vals, ms...)
	}
	if m.all && len(m.transforms) > 0 && len(fc.vals) != len(vals) {
		// A transform expanded each value into variants; "all" over the
		// variants would demand every encoding at once. Keep the ANY of
		// variants per value by grouping.
		return fc, nodeErr(at, "all cannot be combined with base64offset or windash")
	}
	return fc, nil
}

// compileValue returns the matchers for one value (several when a
// transform expands it into variants, which are ORed).
func compileValue(rv rawValue, m mods, fm FieldMap, keyword bool) ([]valueMatcher, *Error) {
	switch {
	case m.match == "re":
		flags := ""
		for _, f := range []string{"i", "m", "s"} {
			if strings.Contains(m.reFlags, f) {
				flags += f
			}
		}
		expr := rv.s
		if flags != "" {
			expr = "(?" + flags + ")" + expr
		}
		re, err := regexp.Compile(expr)
		if err != nil {
			return nil, nodeErr(rv.node, "bad regular expression %q: %v", rv.s, err)
		}
		return []valueMatcher{&reMatcher{re}}, nil
	case m.match == "cidr":
		p, err := netip.ParsePrefix(rv.s)
		if err != nil {
			return nil, nodeErr(rv.node, "%q is not a CIDR prefix", rv.s)
		}
		return []valueMatcher{&cidrMatcher{p.Masked()}}, nil
	case m.match == "lt" || m.match == "lte" || m.match == "gt" || m.match == "gte":
		f, err := strconv.ParseFloat(rv.s, 64)
		if err != nil {
			return nil, nodeErr(rv.node, "%s needs a number, not %q", m.match, rv.s)
		}
		return []valueMatcher{&numMatcher{op: m.match, v: f}}, nil
	case strings.HasPrefix(m.match, "fieldref"):
		op := opEq
		switch strings.TrimPrefix(m.match, "fieldref+") {
		case "contains":
			op = opContains
		case "startswith":
			op = opPrefix
		case "endswith":
			op = opSuffix
		}
		return []valueMatcher{&fieldrefMatcher{other: fm.Resolve(rv.s), op: op, cased: m.cased}}, nil
	}
	// Plain string matching, possibly transformed first. windash works
	// on the escaped form (dashes are not special); encodings work on the
	// unescaped text and yield literals without wildcards.
	variants := []string{rv.s}
	literal := false
	for _, t := range m.transforms {
		var next []string
		for _, s := range variants {
			if t == "windash" {
				next = append(next, windash(s)...)
				continue
			}
			if !literal {
				s = unescape(s)
			}
			switch t {
			case "wide", "utf16le":
				next = append(next, encodeUTF16(s, binary.LittleEndian, false))
			case "utf16be":
				next = append(next, encodeUTF16(s, binary.BigEndian, false))
			case "utf16":
				next = append(next, encodeUTF16(s, binary.LittleEndian, true))
			case "base64":
				next = append(next, base64.StdEncoding.EncodeToString([]byte(s)))
			case "base64offset":
				next = append(next, base64Offsets(s)...)
			}
		}
		if t != "windash" {
			literal = true
		}
		variants = next
	}
	op := opEq
	switch m.match {
	case "contains":
		op = opContains
	case "startswith":
		op = opPrefix
	case "endswith":
		op = opSuffix
	case "":
		if keyword {
			op = opContains // Sigma keywords are full-text (substring) searches
		}
	default:
		return nil, nodeErr(rv.node, "modifier %s cannot apply here", m.match)
	}
	out := make([]valueMatcher, 0, len(variants))
	for _, s := range variants {
		vm, err := stringMatcher(s, op, m.cased, literal)
		if err != nil {
			return nil, nodeErr(rv.node, "%v", err)
		}
		out = append(out, vm)
	}
	return out, nil
}

// stringMatcher compiles one Sigma string value: `*` and `?` are wildcards,
// `\*`, `\?` and `\\` are literals. Case-insensitive unless cased.
func stringMatcher(s string, op strOp, cased, literal bool) (valueMatcher, error) {
	if literal || !hasWildcard(s) {
		if !literal {
			s = unescape(s)
		}
		if !cased {
			s = strings.ToLower(s)
		}
		return &strMatcher{op: op, pattern: s, cased: cased}, nil
	}
	var b strings.Builder
	b.WriteString("(?s")
	if !cased {
		b.WriteString("i")
	}
	b.WriteString(")^")
	if op == opContains || op == opSuffix {
		b.WriteString(".*")
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && i+1 < len(s) && (s[i+1] == '*' || s[i+1] == '?' || s[i+1] == '\\'):
			b.WriteString(regexp.QuoteMeta(string(s[i+1])))
			i++
		case c == '*':
			b.WriteString(".*")
		case c == '?':
			b.WriteString(".")
		default:
			b.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	if op == opContains || op == opPrefix {
		b.WriteString(".*")
	}
	b.WriteString("$")
	re, err := regexp.Compile(b.String())
	if err != nil {
		return nil, fmt.Errorf("value %q: %v", s, err)
	}
	return &reMatcher{re}, nil
}

func hasWildcard(s string) bool {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '*', '?':
			return true
		}
	}
	return false
}

func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) && (s[i+1] == '*' || s[i+1] == '?' || s[i+1] == '\\') {
			b.WriteByte(s[i+1])
			i++
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func encodeUTF16(s string, order binary.AppendByteOrder, bom bool) string {
	units := utf16.Encode([]rune(s))
	out := make([]byte, 0, 2*len(units)+2)
	if bom {
		out = append(out, 0xFF, 0xFE)
	}
	for _, u := range units {
		out = order.AppendUint16(out, u)
	}
	return string(out)
}

// base64Offsets returns the three encodings of s as it may appear inside a
// longer base64 text, one per alignment (the Sigma base64offset modifier).
func base64Offsets(s string) []string {
	start := []int{0, 2, 3}
	end := []int{0, -3, -2}
	out := make([]string, 0, 3)
	for i := 0; i < 3; i++ {
		enc := base64.StdEncoding.EncodeToString(append(make([]byte, i), s...))
		from := start[i]
		to := len(enc)
		if r := (len(s) + i) % 3; r != 0 {
			to += end[r]
		}
		if from > to {
			from = to
		}
		out = append(out, enc[from:to])
	}
	return out
}

// windash returns variants of s with each dash replaced by the characters
// Windows command lines accept for option prefixes.
func windash(s string) []string {
	if !strings.Contains(s, "-") {
		return []string{s}
	}
	out := []string{s}
	for _, alt := range []string{"/", "\u2013", "\u2014", "\u2015"} {
		out = append(out, strings.ReplaceAll(s, "-", alt))
	}
	return out
}
