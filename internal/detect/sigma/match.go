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
	"unique"

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

// WithFilter returns a copy of m whose condition is ANDed with the
// condition of the filter rule f (compiled with Compile; Sigma v2 filters,
// as pySigma applies them: "(rule condition) and (filter condition)"). The
// filter's logsource category does not limit m further.
func (m *Matcher) WithFilter(f *Matcher) *Matcher {
	out := *m
	out.conds = make([]cond, len(m.conds))
	for i, c := range m.conds {
		out.conds[i] = condAnd{c, condFilter{f}}
	}
	out.fields = nil
	seen := map[string]bool{}
	for _, x := range append(append([]string(nil), m.fields...), f.fields...) {
		if !seen[x] {
			seen[x] = true
			out.fields = append(out.fields, x)
		}
	}
	return &out
}

// condFilter evaluates a filter's own conditions over its own searches.
type condFilter struct{ f *Matcher }

func (c condFilter) eval(_ []search, ev *EvalCtx) bool {
	for _, x := range c.f.conds {
		if x.eval(c.f.searches, ev) {
			return true
		}
	}
	return false
}

// EvalCtx caches the values of the fields looked up while evaluating rules
// against one event. It is not safe for concurrent use.
type EvalCtx struct {
	e *event.Event
	// cache is keyed by the interned cache key of a field (fieldKey): a
	// handle hashes and compares as a pointer, where a string key is
	// hashed byte by byte on each of the ~300 lookups an event costs.
	cache map[fieldKey]*fieldVal
	kw    fieldKey // keywordKey(), made once
	pool  []*fieldVal
	used  int
	// keyword Aho-Corasick state (UseIndex): hits[id] == gen when keyword
	// pattern id occurs in this event's text.
	ac     *acMachine
	acHits []uint32
	acList []int32
	acGen  uint32
	acDone bool
}

// UseIndex lets the context answer the keyword searches of the index's
// rules with one pass over the event (Index, Aho-Corasick).
func (c *EvalCtx) UseIndex(ix *Index) {
	if ix == nil || ix.ac == nil {
		c.ac = nil
		return
	}
	c.ac = ix.ac
	c.acHits = make([]uint32, ix.ac.patterns)
	c.acGen = 0
}

// acHit reports whether keyword pattern id occurs in fv, the keyword
// text, running the automaton once per event.
func (c *EvalCtx) acHit(fv *fieldVal, id int32) bool {
	c.acScan(fv)
	return c.acHits[id] == c.acGen
}

// acScan runs the automaton over the keyword text once per event and
// returns the ids of the patterns that occur.
func (c *EvalCtx) acScan(fv *fieldVal) []int32 {
	if !c.acDone {
		c.acDone = true
		c.acGen++
		if c.acGen == 0 {
			clear(c.acHits)
			c.acGen = 1
		}
		c.acList = c.acList[:0]
		for _, s := range fv.lowerStrs() {
			c.acList = c.ac.scan(s, c.acHits, c.acGen, c.acList)
		}
	}
	return c.acList
}

// NewEvalCtx returns an empty context.
func NewEvalCtx() *EvalCtx {
	return &EvalCtx{cache: map[fieldKey]*fieldVal{}, kw: keywordKey()}
}

// fieldKey is the interned cache key of a field or fallback chain: equal
// keys of different rules (and of rule sets before and after a hot
// reload) are the same handle, so the field is resolved once per event
// whichever rule asks first. unique's table is the runtime's, safe for
// concurrent use; nothing here is mutable shared state.
type fieldKey = unique.Handle[string]

// keywordKey is the cache key of the keyword text (a keyword search).
func keywordKey() fieldKey { return unique.Make("") }

// Reset points the context at a new event and forgets cached values.
func (c *EvalCtx) Reset(e *event.Event) {
	c.e = e
	clear(c.cache)
	c.used = 0
	c.acDone = false
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

// getChain returns the value of the first present field of chain (cached
// under key), or of key alone when chain is empty. A chain is how a Sigma
// field that the field map sends to a Vigil field falls back to
// data.<Field> (FieldMap.ResolveAll).
func (c *EvalCtx) getChain(key fieldKey, chain []string) *fieldVal {
	if fv, ok := c.cache[key]; ok {
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
	switch name := key.Value(); {
	case name == "":
		fv.present = true
		fv.strs = keywordValues(c.e, fv.strs)
	case len(chain) == 0:
		fv.load(c.e, name)
	default:
		for _, f := range chain {
			if fv.load(c.e, f) {
				break
			}
		}
	}
	c.cache[key] = fv
	return fv
}

// load reads field of e into fv and reports whether it is present. The
// string fields of an event are read directly: event.Field returns them
// as an any, which allocates for every string (a third of the
// allocations of an evaluation with the whole corpus loaded).
func (fv *fieldVal) load(e *event.Event, field string) bool {
	if s, ok, known := stringField(e, field); known {
		fv.present = ok
		if ok {
			fv.strs = append(fv.strs, s)
		}
		return ok
	}
	v, ok := lookup(e, field)
	fv.fill(v, ok)
	return ok
}

// stringField is event.Field for the event's string fields (known false
// for any other name); TestStringFieldAgreesWithField keeps them in step.
func stringField(e *event.Event, name string) (s string, ok, known bool) {
	switch name {
	case "id":
		return e.ID, true, true
	case "type":
		return e.Type, true, true
	case "category":
		return string(e.Category), true, true
	case "severity":
		return e.Severity.String(), true, true
	case "source":
		return e.Source, e.Source != "", true
	case "tenant":
		return e.Tenant, true, true
	case "message":
		return e.Message, e.Message != "", true
	case "user":
		return e.User, e.User != "", true
	case "user_id":
		return e.UserID, e.UserID != "", true
	case "src_ip":
		return e.SrcIP, e.SrcIP != "", true
	case "resource":
		return e.Resource, e.Resource != "", true
	case "action":
		return e.Action, e.Action != "", true
	case "outcome":
		return e.Outcome, e.Outcome != "", true
	}
	return "", false, false
}

func (fv *fieldVal) fill(v any, ok bool) {
	fv.present = ok
	if !ok {
		return
	}
	if v == nil {
		fv.null = true
		return
	}
	fv.strs = appendStrings(fv.strs, v, 0)
}

// lookup is event.Field without the path split allocation for data paths
// (rules read data fields on every event). A dotted path under data matches
// nested objects and flat keys alike: data.process.executable finds
// {"process":{"executable":…}} and {"process.executable":…} (Sigma v2.1:
// a dotted field name may be either).
func lookup(e *event.Event, field string) (any, bool) {
	path, ok := strings.CutPrefix(field, "data.")
	if !ok {
		return e.Field(field)
	}
	m := e.DataMap()
	if m == nil {
		return nil, false
	}
	return lookupPath(m, path, 0)
}

func lookupPath(m map[string]any, path string, depth int) (any, bool) {
	if v, ok := m[path]; ok {
		return v, true
	}
	if depth > 16 {
		return nil, false
	}
	for i := 0; i < len(path); i++ {
		if path[i] != '.' {
			continue
		}
		sub, ok := m[path[:i]].(map[string]any)
		if !ok {
			continue
		}
		if v, ok := lookupPath(sub, path[i+1:], depth+1); ok {
			return v, true
		}
	}
	return nil, false
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
	field  string   // Vigil field (the first of chain); "" for keyword search
	key    fieldKey // cache key of chain in EvalCtx (the field, or the chain joined by NULs)
	chain  []string // fields tried in order, the first present one is read
	all    bool
	negate bool // neq: the detection item is negated
	vals   []valueMatcher
}

func (f *fieldCond) match(ev *EvalCtx) bool {
	return f.matchVals(ev) != f.negate
}

func (f *fieldCond) matchVals(ev *EvalCtx) bool {
	fv := ev.getChain(f.key, f.chain)
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
	// keyword: a case-insensitive keyword (full-text) contains value; with
	// a context using an Index, the answer comes from one Aho-Corasick pass
	// over the event's text. Set at compile time: a Matcher is never
	// changed afterwards, so rule sets may share matchers.
	keyword bool
	kwID    unique.Handle[string] // the interned pattern: acMachine.ids' key
}

func (m *strMatcher) match(fv *fieldVal, ev *EvalCtx) bool {
	if m.keyword && ev.ac != nil {
		if id, ok := ev.ac.ids[m.kwID]; ok {
			return ev.acHit(fv, id)
		}
	}
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
		if m.holds(n) {
			return true
		}
	}
	return false
}

func (m *numMatcher) holds(n float64) bool {
	switch m.op {
	case "eq":
		return n == m.v
	case "lt":
		return n < m.v
	case "lte":
		return n <= m.v
	case "gt":
		return n > m.v
	case "gte":
		return n >= m.v
	}
	return false
}

// timeMatcher is a Sigma v2.1 time modifier: it reads the field as a date
// and compares one part of it (minute 0-59, hour 0-23, day 1-31, ISO week
// 1-53, month 1-12, year). As the spec warns, there is no time-zone
// conversion: a date with an offset is read in that offset, one without
// as UTC.
type timeMatcher struct {
	part string
	num  numMatcher
}

func (m *timeMatcher) match(fv *fieldVal, _ *EvalCtx) bool {
	for _, s := range fv.strs {
		t, ok := parseDate(s)
		if !ok {
			continue
		}
		var n int
		switch m.part {
		case "minute":
			n = t.Minute()
		case "hour":
			n = t.Hour()
		case "day":
			n = t.Day()
		case "week":
			_, n = t.ISOWeek()
		case "month":
			n = int(t.Month())
		case "year":
			n = t.Year()
		}
		if m.num.holds(float64(n)) {
			return true
		}
	}
	return false
}

// dateLayouts are the date forms the time modifiers read: RFC 3339 (Vigil's
// own time fields), the space-separated form of Windows / Sysmon (UtcTime)
// and a bare date.
var dateLayouts = []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999", "2006-01-02 15:04:05.999999999Z07:00",
	"2006-01-02 15:04:05.999999999", "2006-01-02"}

// parseDate reads a date string; a number is Unix time in seconds (in
// milliseconds when larger than 1e11).
func parseDate(s string) (time.Time, bool) {
	for _, l := range dateLayouts {
		if t, err := time.Parse(l, s); err == nil {
			return t, true
		}
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		if f > 1e11 || f < -1e11 {
			return time.UnixMilli(int64(f)).UTC(), true
		}
		return time.Unix(int64(f), 0).UTC(), true
	}
	return time.Time{}, false
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

// match is presence only: the spec's exists "only verifies the presence of
// a field, not its value, be it empty or null".
func (m existsMatcher) match(fv *fieldVal, _ *EvalCtx) bool {
	return fv.present == m.want
}

// fieldrefMatcher compares a field with another field of the same event.
type fieldrefMatcher struct {
	key   fieldKey
	chain []string
	op    strOp
	cased bool
}

func (m *fieldrefMatcher) match(fv *fieldVal, ev *EvalCtx) bool {
	ov := ev.getChain(m.key, m.chain)
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

// CompileOptions say how rules are compiled: the field map, the processing
// pipelines (pySigma format, applied in priority order) and the values of
// the placeholders the expand modifier names.
type CompileOptions struct {
	FieldMap     FieldMap
	Pipelines    []*Pipeline
	Placeholders map[string][]string
}

// maxExpand bounds the values one expanded value may turn into (the product
// of its placeholders' lists), so a placeholder file cannot make a rule
// cost unbounded memory.
const maxExpand = 10_000

// compiler holds what compiling one rule needs.
type compiler struct {
	fm    FieldMap
	items []*pipelineItem // pipeline items that apply to the rule, in order
	vars  map[string][]string
	seen  map[string]bool
	rule  *Rule
}

// Compile turns a parsed detection rule into a Matcher, resolving Sigma
// field names with fm. Errors carry the line of the offending node.
func Compile(r *Rule, fm FieldMap) (*Matcher, error) {
	return CompileWith(r, CompileOptions{FieldMap: fm})
}

// CompileWith is Compile with processing pipelines and placeholders.
func CompileWith(r *Rule, opts CompileOptions) (*Matcher, error) {
	d := r.Detection
	if r.Filter != nil {
		d = r.Filter.Detection
	}
	if d == nil {
		return nil, &Error{Path: r.Path, Line: r.Line, Rule: r.Label(), Reason: "not a detection rule"}
	}
	fm := opts.FieldMap
	if fm == nil {
		fm = DefaultFieldMap()
	}
	c := &compiler{fm: fm, seen: map[string]bool{}, rule: r, vars: map[string][]string{}}
	for k, v := range opts.Placeholders {
		c.vars[k] = v
	}
	ls := r.Logsource
	items, err := pipelineItemsFor(opts.Pipelines, r, &ls, c.vars)
	if err != nil {
		err.Path, err.Rule = r.Path, r.Label()
		return nil, err
	}
	c.items = items
	m := &Matcher{Rule: r}
	if cat := event.Category(strings.ToLower(ls.Category)); cat.Valid() {
		m.category = cat
	}
	order := d.Order
	for _, name := range d.Order {
		s, err := c.compileSearch(d.Searches[name])
		if err != nil {
			err.Path, err.Rule = r.Path, r.Label()
			if err.Reason != "" {
				err.Reason = name + ": " + err.Reason
			}
			return nil, err
		}
		m.searches = append(m.searches, s)
	}
	// add_condition items of the pipelines: searches ANDed with the rule's
	// condition.
	var extra []cond
	for _, it := range c.items {
		if it.Type != "add_condition" {
			continue
		}
		s, err := c.compileSearch(it.conditions)
		if err != nil {
			err.Path, err.Rule = it.path, r.Label()
			err.Reason = "pipeline add_condition: " + err.Reason
			return nil, err
		}
		var sel cond = condSel(len(m.searches))
		if it.negated {
			sel = condNot{sel}
		}
		extra = append(extra, sel)
		m.searches = append(m.searches, s)
	}
	for _, expr := range d.Conditions {
		cnd, err := parseCondition(expr, order)
		if err != nil {
			return nil, &Error{Path: r.Path, Line: d.condLine, Rule: r.Label(), Reason: err.Error()}
		}
		if len(extra) > 0 {
			cnd = append(condAnd{cnd}, extra...)
		}
		m.conds = append(m.conds, cnd)
	}
	for f := range c.seen {
		m.fields = append(m.fields, f)
	}
	return m, nil
}

func (c *compiler) compileSearch(n *yaml.Node) (search, *Error) {
	var s search
	switch n.Kind {
	case yaml.MappingNode:
		g, err := c.compileMap(n)
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
				g, err := c.compileMap(el)
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
			fcs, err := c.compileField("", &yaml.Node{Kind: yaml.SequenceNode, Content: keywords, Line: keywords[0].Line}, keywords[0])
			if err != nil {
				return s, err
			}
			s.groups = append(s.groups, fcs)
		}
	case yaml.ScalarNode:
		fcs, err := c.compileField("", n, n)
		if err != nil {
			return s, err
		}
		s.groups = append(s.groups, fcs)
	default:
		return s, nodeErr(n, "must be a mapping or a list")
	}
	if len(s.groups) == 0 {
		return s, nodeErr(n, "is empty")
	}
	return s, nil
}

func (c *compiler) compileMap(n *yaml.Node) ([]fieldCond, *Error) {
	var g []fieldCond
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], resolveAlias(n.Content[i+1])
		fcs, err := c.compileField(k.Value, v, k)
		if err != nil {
			return nil, err
		}
		for _, fc := range fcs {
			if fc.field != "" {
				c.seen[fc.field] = true
			}
		}
		g = append(g, fcs...)
	}
	if len(g) == 0 {
		// Every item was dropped by a pipeline (drop_detection_item): an
		// empty AND is true, as in pySigma.
		return []fieldCond{{key: keywordKey(), vals: []valueMatcher{alwaysMatcher{}}}}, nil
	}
	return g, nil
}

type alwaysMatcher struct{}

func (alwaysMatcher) match(*fieldVal, *EvalCtx) bool { return true }

// modifiers applied to one field condition, in the order written.
type mods struct {
	transforms []string // wide, utf16*, base64, base64offset, windash
	match      string   // "", contains, startswith, endswith, re, cidr, lt, lte, gt, gte, exists, fieldref
	timePart   string   // minute, hour, day, week, month, year
	all, cased bool
	neq        bool
	expand     bool
	reFlags    string
}

var transformMods = map[string]bool{"wide": true, "utf16le": true, "utf16be": true, "utf16": true, "base64": true, "base64offset": true, "windash": true}
var matchMods = map[string]bool{"contains": true, "startswith": true, "endswith": true, "re": true, "cidr": true,
	"lt": true, "lte": true, "gt": true, "gte": true, "exists": true, "fieldref": true}
var timeMods = map[string]bool{"minute": true, "hour": true, "day": true, "week": true, "month": true, "year": true}

const supportedMods = "contains, startswith, endswith, all, re with i/m/s, cidr, exists, cased, neq, lt, lte, gt, gte, " +
	"minute, hour, day, week, month, year, base64, base64offset, wide/utf16le/utf16be/utf16, windash, fieldref, expand"

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
		case p == "neq":
			m.neq = true
		case p == "expand":
			m.expand = true
		case timeMods[p]:
			if m.timePart != "" {
				return "", m, nodeErr(at, "modifiers %q and %q cannot be combined", m.timePart, p)
			}
			if m.match != "" {
				return "", m, nodeErr(at, "time modifier %q must come before %q", p, m.match)
			}
			m.timePart = p
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
			if m.timePart != "" && p != "lt" && p != "lte" && p != "gt" && p != "gte" {
				return "", m, nodeErr(at, "modifier %q cannot follow the time modifier %q (valid after it: lt, lte, gt, gte, neq)", p, m.timePart)
			}
			if p == "fieldref" && m.match != "" {
				m.match = "fieldref+" + m.match
			} else if m.match == "fieldref" {
				m.match = "fieldref+" + p
			} else {
				m.match = p
			}
		case p == "":
			return "", m, nodeErr(at, "empty modifier in %q", key)
		default:
			return "", m, nodeErr(at, "unknown modifier %q (supported: %s)", p, supportedMods)
		}
	}
	if m.timePart != "" && (len(m.transforms) > 0 || m.cased || m.expand) {
		return "", m, nodeErr(at, "time modifier %q only combines with lt, lte, gt, gte, neq and all", m.timePart)
	}
	if m.match == "exists" && (m.neq || m.all || len(m.transforms) > 0 || m.expand) {
		return "", m, nodeErr(at, "exists only applies to an unmodified true or false")
	}
	return parts[0], m, nil
}

// stringValues reports whether the item's values are strings (plain,
// wildcard or encoded) rather than regular expressions, numbers, CIDR
// ranges, booleans or field references: pipeline value transformations
// (replace_string, map_string, set_value, case) apply only to those, as
// pySigma's apply to SigmaString values.
func (m mods) stringValues() bool {
	switch m.match {
	case "", "contains", "startswith", "endswith":
		return m.timePart == ""
	}
	return false
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

// compileField compiles one detection item. It usually yields one field
// condition; a pipeline's one-to-many field mapping yields one per target
// field, ORed in a single condition via fieldAny; drop_detection_item
// yields none.
func (c *compiler) compileField(key string, v *yaml.Node, at *yaml.Node) ([]fieldCond, *Error) {
	name, m, err := parseMods(key, at)
	if err != nil {
		return nil, err
	}
	vals, err := values(v)
	if err != nil {
		return nil, err
	}
	names := []string{name}
	if name != "" || len(c.items) > 0 {
		var drop bool
		names, vals, drop, err = c.applyItems(name, vals, at, m.stringValues())
		if err != nil {
			return nil, err
		}
		if drop {
			return nil, nil
		}
	}
	if m.expand {
		if vals, err = c.expand(vals); err != nil {
			return nil, err
		}
	}
	var alts []fieldCond
	for _, n := range names {
		fc, err := c.compileFieldFor(n, m, vals, v, at)
		if err != nil {
			return nil, err
		}
		alts = append(alts, fc)
	}
	if len(alts) == 1 {
		return alts, nil
	}
	// One-to-many mapping: the item matches when any target field does
	// (pySigma turns it into an OR of the mapped items).
	// The outer condition reads alts[0]'s (cached) field so that its own
	// lookup costs nothing extra; anyFieldMatcher reads each target.
	or := fieldCond{field: alts[0].field, key: alts[0].key, chain: alts[0].chain, vals: []valueMatcher{&anyFieldMatcher{alts: alts}}}
	return []fieldCond{or}, nil
}

// anyFieldMatcher ORs the conditions of a one-to-many field mapping.
type anyFieldMatcher struct{ alts []fieldCond }

func (m *anyFieldMatcher) match(_ *fieldVal, ev *EvalCtx) bool {
	for i := range m.alts {
		if m.alts[i].match(ev) {
			return true
		}
	}
	return false
}

func (c *compiler) compileFieldFor(name string, m mods, vals []rawValue, v, at *yaml.Node) (fieldCond, *Error) {
	fc := fieldCond{all: m.all, negate: m.neq, key: keywordKey()}
	if name != "" {
		fc.chain = c.fm.ResolveAll(name)
		fc.field = fc.chain[0]
		fc.key = unique.Make(strings.Join(fc.chain, "\x00"))
		if len(fc.chain) == 1 {
			fc.key, fc.chain = unique.Make(fc.field), nil
		}
	} else if m.timePart != "" || m.neq || m.match == "exists" {
		return fc, nodeErr(at, "modifiers on a keyword search are not allowed")
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
		ms, err := compileValue(rv, m, c.fm, name == "")
		if err != nil {
			return fc, err
		}
		fc.vals = append(fc.vals, ms...)
	}
	if m.all && len(m.transforms) > 0 && len(fc.vals) != len(vals) {
		// A transform expanded each value into variants; "all" over the
		// variants would demand every encoding at once.
		return fc, nodeErr(at, "all cannot be combined with base64offset or windash")
	}
	return fc, nil
}

// expand replaces %name% placeholders in values by every value configured
// for the placeholder (a placeholders file, or a pipeline's vars through
// value_placeholders / wildcard_placeholders). An unknown placeholder is
// an error naming it.
func (c *compiler) expand(vals []rawValue) ([]rawValue, *Error) {
	var out []rawValue
	for _, rv := range vals {
		if rv.null {
			out = append(out, rv)
			continue
		}
		cur := []string{""}
		var lit strings.Builder // text since the last placeholder; \% is a plain %
		flush := func() {
			for k := range cur {
				cur[k] += lit.String()
			}
			lit.Reset()
		}
		for i := 0; i < len(rv.s); i++ {
			ch := rv.s[i]
			if ch == '\\' && i+1 < len(rv.s) && rv.s[i+1] == '%' {
				lit.WriteByte('%')
				i++
				continue
			}
			end := -1
			if ch == '%' {
				end = strings.IndexByte(rv.s[i+1:], '%')
			}
			if end < 0 {
				lit.WriteByte(ch)
				continue
			}
			name := rv.s[i+1 : i+1+end]
			repl, ok := c.vars[name]
			if !ok {
				return nil, nodeErr(rv.node, "expand: no value configured for placeholder %%%s%% (give it in a placeholders file or a pipeline's vars)", name)
			}
			if len(cur)*len(repl) > maxExpand {
				return nil, nodeErr(rv.node, "expand: %q expands to more than %d values", rv.s, maxExpand)
			}
			flush()
			next := make([]string, 0, len(cur)*len(repl))
			for _, p := range cur {
				for _, r := range repl {
					next = append(next, p+r)
				}
			}
			cur = next
			i += end + 1
		}
		flush()
		for _, s := range cur {
			out = append(out, rawValue{s: s, node: rv.node})
		}
	}
	if len(out) == 0 {
		return nil, nodeErr(vals[0].node, "expand: the placeholders expand to no value")
	}
	return out, nil
}

// compileValue returns the matchers for one value (several when a
// transform expands it into variants, which are ORed).
func compileValue(rv rawValue, m mods, fm FieldMap, keyword bool) ([]valueMatcher, *Error) {
	switch {
	case m.timePart != "":
		f, err := strconv.ParseFloat(rv.s, 64)
		if err != nil {
			return nil, nodeErr(rv.node, "%s needs a number, not %q", m.timePart, rv.s)
		}
		op := m.match
		if op == "" {
			op = "eq"
		}
		return []valueMatcher{&timeMatcher{part: m.timePart, num: numMatcher{op: op, v: f}}}, nil
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
		chain := fm.ResolveAll(rv.s)
		fr := &fieldrefMatcher{key: unique.Make(chain[0]), op: op, cased: m.cased}
		if len(chain) > 1 {
			fr.key, fr.chain = unique.Make(strings.Join(chain, "\x00")), chain
		}
		return []valueMatcher{fr}, nil
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
		if sm, ok := vm.(*strMatcher); ok && keyword && op == opContains && !m.cased && sm.pattern != "" {
			sm.keyword = true // answered by the index's automaton (EvalCtx.UseIndex)
			sm.kwID = unique.Make(sm.pattern)
		}
		if gm, ok := vm.(*globMatcher); ok && keyword && !m.cased {
			gm.keywordLiteral() // prefiltered by the index's automaton
		}
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
	return newGlob(s, op, cased), nil
}

// wildcardRegexp is the former regexp form of a wildcard value, kept as
// the reference the glob matcher is tested against.
func wildcardRegexp(s string, op strOp, cased bool) (*regexp.Regexp, error) {
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
	return re, nil
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
