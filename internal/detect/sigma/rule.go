// Package sigma owns Vigil's Sigma implementation: parsing Sigma rule files
// (the public YAML format, specification v2, including multi-document files
// and v2 correlation rules), validating them with errors that name the file
// and line, mapping Sigma field names onto Vigil event fields, and compiling
// each detection rule once into a Matcher that evaluates an event without
// re-reading the rule. It knows nothing about detections' lifecycle or
// correlation state; internal/detect builds those on top.
package sigma

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Error is a problem with one rule file, located as precisely as possible.
type Error struct {
	Path   string `json:"path"`
	Line   int    `json:"line,omitempty"`
	Rule   string `json:"rule,omitempty"` // title or id when known
	Reason string `json:"reason"`
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Path)
	if e.Line > 0 {
		b.WriteString(":" + strconv.Itoa(e.Line))
	}
	if e.Rule != "" {
		b.WriteString(" (" + e.Rule + ")")
	}
	b.WriteString(": " + e.Reason)
	return b.String()
}

// Logsource is the Sigma logsource block.
type Logsource struct {
	Category   string `json:"category,omitempty"`
	Product    string `json:"product,omitempty"`
	Service    string `json:"service,omitempty"`
	Definition string `json:"definition,omitempty"`
}

// Extension is Vigil's own block in a rule (`vigil:`), a Sigma custom
// attribute: what the detection object needs and Sigma does not say.
type Extension struct {
	// Category is the detection's category (e.g. AUTHENTICATION_ATTACK).
	Category string `json:"category,omitempty"`
	// OWASP is the OWASP Top 10 category, e.g. "A07:2021".
	OWASP string `json:"owasp_category,omitempty"`
	// Confidence in 0..1; zero means "derive from level".
	Confidence float64 `json:"confidence,omitempty"`
	// GroupBy names the fields whose values form the group key of a plain
	// (non-correlation) rule, so repeated firings for the same key update
	// one detection. Empty: source, user, src_ip and resource.
	GroupBy []string `json:"group_by,omitempty"`
}

// Rule is one parsed Sigma document: a detection rule or a correlation rule.
type Rule struct {
	Path        string       `json:"path,omitempty"`
	Line        int          `json:"line,omitempty"`
	ID          string       `json:"id,omitempty"`
	Name        string       `json:"name,omitempty"`
	Title       string       `json:"title"`
	Description string       `json:"description,omitempty"`
	Status      string       `json:"status,omitempty"`
	Author      string       `json:"author,omitempty"`
	Level       string       `json:"level,omitempty"`
	Tags        []string     `json:"tags,omitempty"`
	References  []string     `json:"references,omitempty"`
	FalsePos    []string     `json:"falsepositives,omitempty"`
	Logsource   Logsource    `json:"logsource"`
	Vigil       Extension    `json:"vigil"`
	Detection   *Detection   `json:"-"`
	Correlation *Correlation `json:"correlation,omitempty"`
	Filter      *Filter      `json:"filter,omitempty"`
}

// Filter is a Sigma v2 filter document (`filter:`): its condition is ANDed
// with the condition of every rule it names (or of every rule when rules
// is "any") whose logsource matches the filter's, so matches it does not
// accept are suppressed. A filter creates no detections of its own.
type Filter struct {
	Rules     []string   `json:"rules,omitempty"`
	Any       bool       `json:"any,omitempty"`
	Detection *Detection `json:"-"`
}

// AppliesTo reports whether the filter f (a rule with Filter set) applies
// to the detection rule r: the logsource fields f sets equal r's, and r is
// named by id or name in filter.rules (or rules is "any").
func (f *Rule) AppliesTo(r *Rule) bool {
	if f.Filter == nil || r.Detection == nil {
		return false
	}
	for _, p := range [][2]string{{f.Logsource.Category, r.Logsource.Category}, {f.Logsource.Product, r.Logsource.Product},
		{f.Logsource.Service, r.Logsource.Service}} {
		if p[0] != "" && !strings.EqualFold(p[0], p[1]) {
			return false
		}
	}
	if f.Filter.Any {
		return true
	}
	for _, ref := range f.Filter.Rules {
		if ref != "" && (ref == r.ID || ref == r.Name) {
			return true
		}
	}
	return false
}

// Label names the rule in messages: its title, else id, else name.
func (r *Rule) Label() string {
	switch {
	case r.Title != "":
		return r.Title
	case r.ID != "":
		return r.ID
	}
	return r.Name
}

// Key is how a rule is referenced and reported: its id, else its name.
func (r *Rule) Key() string {
	if r.ID != "" {
		return r.ID
	}
	return r.Name
}

// Detection is the raw, validated detection block of a rule, kept as YAML
// nodes until Compile resolves field names with a FieldMap.
type Detection struct {
	Searches   map[string]*yaml.Node
	Order      []string // search identifiers in file order
	Conditions []string // several conditions are ORed (legacy list form)
	condLine   int
}

// Correlation is a Sigma v2 correlation block.
type Correlation struct {
	Type      string                       `json:"type"`
	Rules     []string                     `json:"rules"`
	GroupBy   []string                     `json:"group_by,omitempty"`
	Timespan  time.Duration                `json:"timespan"`
	Condition *CountCondition              `json:"condition,omitempty"`
	Field     string                       `json:"field,omitempty"` // value_count
	Generate  bool                         `json:"generate"`
	Aliases   map[string]map[string]string `json:"aliases,omitempty"` // alias -> rule -> field
}

// Correlation types of Sigma v2.
const (
	EventCount      = "event_count"
	ValueCount      = "value_count"
	Temporal        = "temporal"
	TemporalOrdered = "temporal_ordered"
)

// CountCondition is a correlation threshold: every set bound must hold.
type CountCondition struct {
	Ops map[string]float64 `json:"ops"` // gt, gte, lt, lte, eq, neq
}

// Holds reports whether n satisfies every bound.
func (c *CountCondition) Holds(n float64) bool {
	if c == nil {
		return true
	}
	for op, v := range c.Ops {
		ok := false
		switch op {
		case "gt":
			ok = n > v
		case "gte":
			ok = n >= v
		case "lt":
			ok = n < v
		case "lte":
			ok = n <= v
		case "eq":
			ok = n == v
		case "neq":
			ok = n != v
		}
		if !ok {
			return false
		}
	}
	return true
}

var yamlLine = regexp.MustCompile(`line (\d+)`)

// ParseFile parses every YAML document of a rule file. A document that is
// not a valid rule is reported and skipped; the others are returned. A YAML
// syntax error ends the file (the parser cannot resynchronise).
func ParseFile(path string, data []byte) ([]*Rule, []*Error) {
	var rules []*Rule
	var errs []*Error
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			e := &Error{Path: path, Reason: strings.TrimPrefix(err.Error(), "yaml: ")}
			if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
				e.Line, _ = strconv.Atoi(m[1])
				e.Reason = strings.TrimPrefix(e.Reason, "line "+m[1]+": ")
			}
			errs = append(errs, e)
			break
		}
		if len(doc.Content) == 0 {
			continue // empty document (e.g. a trailing ---)
		}
		r, err := parseDoc(doc.Content[0])
		if err != nil {
			var pe *Error
			if !errors.As(err, &pe) {
				pe = &Error{Reason: err.Error()}
			}
			pe.Path = path
			if pe.Rule == "" && r != nil {
				pe.Rule = r.Label()
			}
			errs = append(errs, pe)
			continue
		}
		r.Path = path
		rules = append(rules, r)
	}
	return rules, errs
}

func nodeErr(n *yaml.Node, format string, args ...any) *Error {
	e := &Error{Reason: fmt.Sprintf(format, args...)}
	if n != nil {
		e.Line = n.Line
	}
	return e
}

func scalar(n *yaml.Node, what string) (string, error) {
	if n.Kind != yaml.ScalarNode {
		return "", nodeErr(n, "%s must be a string", what)
	}
	return n.Value, nil
}

func stringList(n *yaml.Node, what string) ([]string, error) {
	switch n.Kind {
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return nil, nil
		}
		return []string{n.Value}, nil
	case yaml.SequenceNode:
		out := make([]string, 0, len(n.Content))
		for _, c := range n.Content {
			if c.Kind != yaml.ScalarNode {
				return nil, nodeErr(c, "%s: entries must be strings", what)
			}
			out = append(out, c.Value)
		}
		return out, nil
	}
	return nil, nodeErr(n, "%s must be a list of strings", what)
}

// resolveAlias follows YAML aliases so rules may use anchors.
func resolveAlias(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 16; i++ {
		n = n.Alias
	}
	return n
}

func parseDoc(root *yaml.Node) (*Rule, error) {
	root = resolveAlias(root)
	if root.Kind != yaml.MappingNode {
		return nil, nodeErr(root, "a rule must be a YAML mapping")
	}
	r := &Rule{Line: root.Line}
	var detection, correlation, filter *yaml.Node
	var logsource *yaml.Node
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], resolveAlias(root.Content[i+1])
		var err error
		switch k.Value {
		case "title":
			r.Title, err = scalar(v, "title")
		case "id":
			r.ID, err = scalar(v, "id")
		case "name":
			r.Name, err = scalar(v, "name")
		case "description":
			r.Description, err = scalar(v, "description")
		case "status":
			r.Status, err = scalar(v, "status")
		case "author":
			r.Author, err = scalar(v, "author")
		case "level":
			r.Level, err = scalar(v, "level")
			if err == nil {
				r.Level = strings.ToLower(r.Level)
				if _, ok := levels[r.Level]; !ok {
					err = nodeErr(v, "level %q is not one of informational, low, medium, high, critical", r.Level)
				}
			}
		case "tags":
			r.Tags, err = stringList(v, "tags")
		case "references":
			r.References, err = stringList(v, "references")
		case "falsepositives":
			r.FalsePos, err = stringList(v, "falsepositives")
		case "logsource":
			logsource = v
			err = parseLogsource(v, &r.Logsource)
		case "filter":
			filter = v
		case "detection":
			detection = v
		case "correlation":
			correlation = v
		case "vigil":
			err = parseExtension(v, &r.Vigil)
		default:
			// Other Sigma attributes (date, modified, fields, license,
			// related, scope, taxonomy, custom ones) do not affect matching.
		}
		if err != nil {
			return r, err
		}
	}
	if r.Title == "" {
		return r, nodeErr(root, "missing required field title")
	}
	blocks := 0
	for _, b := range []*yaml.Node{detection, correlation, filter} {
		if b != nil {
			blocks++
		}
	}
	switch {
	case blocks > 1:
		return r, nodeErr(root, "a rule has one of detection, correlation or filter, not several")
	case filter != nil:
		if logsource == nil {
			return r, nodeErr(root, "a filter needs a logsource (the rules it applies to must share it)")
		}
		f, err := parseFilter(filter)
		if err != nil {
			return r, err
		}
		r.Filter = f
	case detection != nil:
		d, err := parseDetection(detection)
		if err != nil {
			return r, err
		}
		r.Detection = d
	case correlation != nil:
		c, err := parseCorrelation(correlation)
		if err != nil {
			return r, err
		}
		r.Correlation = c
	default:
		return r, nodeErr(root, "missing detection (or correlation, or filter) block")
	}
	return r, nil
}

var levels = map[string]string{
	"informational": "info", "info": "info", "low": "low", "medium": "medium", "high": "high", "critical": "critical",
}

// Severity maps the Sigma level onto Vigil's severity names.
func (r *Rule) Severity() string {
	if s, ok := levels[r.Level]; ok {
		return s
	}
	return "medium" // Sigma's level is optional; medium is its usual default
}

func parseLogsource(n *yaml.Node, ls *Logsource) error {
	if n.Kind != yaml.MappingNode {
		return nodeErr(n, "logsource must be a mapping")
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], resolveAlias(n.Content[i+1])
		s, err := scalar(v, "logsource."+k.Value)
		if err != nil {
			return err
		}
		switch k.Value {
		case "category":
			ls.Category = s
		case "product":
			ls.Product = s
		case "service":
			ls.Service = s
		case "definition":
			ls.Definition = s
		}
	}
	return nil
}

func parseExtension(n *yaml.Node, x *Extension) error {
	if n.Kind != yaml.MappingNode {
		return nodeErr(n, "vigil must be a mapping")
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], resolveAlias(n.Content[i+1])
		var err error
		switch k.Value {
		case "category":
			x.Category, err = scalar(v, "vigil.category")
		case "owasp", "owasp_category":
			x.OWASP, err = scalar(v, "vigil.owasp")
		case "confidence":
			var s string
			if s, err = scalar(v, "vigil.confidence"); err == nil {
				x.Confidence, err = strconv.ParseFloat(s, 64)
				if err != nil || x.Confidence < 0 || x.Confidence > 1 {
					err = nodeErr(v, "vigil.confidence must be a number between 0 and 1")
				}
			}
		case "group-by", "group_by":
			x.GroupBy, err = stringList(v, "vigil.group-by")
		default:
			err = nodeErr(k, "unknown vigil attribute %q (valid: category, owasp, confidence, group-by)", k.Value)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func parseDetection(n *yaml.Node) (*Detection, error) {
	if n.Kind != yaml.MappingNode {
		return nil, nodeErr(n, "detection must be a mapping")
	}
	d := &Detection{Searches: map[string]*yaml.Node{}}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], resolveAlias(n.Content[i+1])
		switch k.Value {
		case "condition":
			conds, err := stringList(v, "condition")
			if err != nil {
				return nil, err
			}
			d.Conditions = conds
			d.condLine = v.Line
		case "timeframe":
			// Sigma v1 aggregation timeframe; v2 moved it to correlations.
			return nil, nodeErr(k, "timeframe is Sigma v1 aggregation syntax; write a correlation rule instead")
		default:
			if _, dup := d.Searches[k.Value]; dup {
				return nil, nodeErr(k, "duplicate search identifier %q", k.Value)
			}
			switch v.Kind {
			case yaml.MappingNode, yaml.SequenceNode, yaml.ScalarNode:
			default:
				return nil, nodeErr(v, "search identifier %q must be a mapping or a list", k.Value)
			}
			d.Searches[k.Value] = v
			d.Order = append(d.Order, k.Value)
		}
	}
	if len(d.Conditions) == 0 {
		return nil, nodeErr(n, "detection has no condition")
	}
	if len(d.Searches) == 0 {
		return nil, nodeErr(n, "detection has no search identifiers")
	}
	return d, nil
}

// parseFilter reads a filter block: rules (a list of rule ids or names, or
// "any"), search identifiers and a condition, like a detection.
func parseFilter(n *yaml.Node) (*Filter, error) {
	if n.Kind != yaml.MappingNode {
		return nil, nodeErr(n, "filter must be a mapping")
	}
	f := &Filter{}
	rest := &yaml.Node{Kind: yaml.MappingNode, Line: n.Line, Column: n.Column}
	var rulesNode *yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], resolveAlias(n.Content[i+1])
		if k.Value != "rules" {
			rest.Content = append(rest.Content, k, v)
			continue
		}
		rulesNode = v
		if v.Kind == yaml.ScalarNode && strings.EqualFold(v.Value, "any") {
			f.Any = true
			continue
		}
		refs, err := stringList(v, "filter.rules")
		if err != nil {
			return nil, err
		}
		f.Rules = refs
	}
	if rulesNode == nil || (!f.Any && len(f.Rules) == 0) {
		return nil, nodeErr(n, "filter.rules must name at least one rule id or name (or be \"any\")")
	}
	d, err := parseDetection(rest)
	if err != nil {
		var pe *Error
		if errors.As(err, &pe) {
			pe.Reason = "filter: " + pe.Reason
		}
		return nil, err
	}
	f.Detection = d
	return f, nil
}

// ParseTimespan reads a Sigma timespan: a number followed by s, m, h, d or w.
func ParseTimespan(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if len(s) < 2 {
		return 0, fmt.Errorf("timespan %q: want a number and a unit (s, m, h, d, w)", s)
	}
	n, err := strconv.Atoi(s[:len(s)-1])
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("timespan %q: want a positive whole number and a unit (s, m, h, d, w)", s)
	}
	unit := map[byte]time.Duration{'s': time.Second, 'm': time.Minute, 'h': time.Hour, 'd': 24 * time.Hour, 'w': 7 * 24 * time.Hour}[s[len(s)-1]]
	if unit == 0 {
		return 0, fmt.Errorf("timespan %q: unknown unit (valid: s, m, h, d, w)", s)
	}
	return time.Duration(n) * unit, nil
}

func parseCorrelation(n *yaml.Node) (*Correlation, error) {
	if n.Kind != yaml.MappingNode {
		return nil, nodeErr(n, "correlation must be a mapping")
	}
	c := &Correlation{}
	var condNode *yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], resolveAlias(n.Content[i+1])
		var err error
		switch k.Value {
		case "type":
			c.Type, err = scalar(v, "correlation.type")
		case "rules":
			c.Rules, err = stringList(v, "correlation.rules")
		case "group-by", "group_by":
			c.GroupBy, err = stringList(v, "correlation.group-by")
		case "timespan", "timeframe":
			var s string
			if s, err = scalar(v, "correlation.timespan"); err == nil {
				if c.Timespan, err = ParseTimespan(s); err != nil {
					err = nodeErr(v, "%s", err.Error())
				}
			}
		case "condition":
			condNode = v
		case "field":
			c.Field, err = scalar(v, "correlation.field")
		case "generate":
			var s string
			if s, err = scalar(v, "correlation.generate"); err == nil {
				c.Generate, err = strconv.ParseBool(s)
				if err != nil {
					err = nodeErr(v, "correlation.generate must be true or false")
				}
			}
		case "aliases":
			c.Aliases, err = parseAliases(v)
		default:
			err = nodeErr(k, "unknown correlation attribute %q", k.Value)
		}
		if err != nil {
			return nil, err
		}
	}
	switch c.Type {
	case EventCount, ValueCount, Temporal, TemporalOrdered:
	case "":
		return nil, nodeErr(n, "correlation.type is required (event_count, value_count, temporal, temporal_ordered)")
	default:
		return nil, nodeErr(n, "correlation.type %q is not one of event_count, value_count, temporal, temporal_ordered", c.Type)
	}
	if len(c.Rules) == 0 {
		return nil, nodeErr(n, "correlation.rules must name at least one rule")
	}
	if c.Timespan == 0 {
		return nil, nodeErr(n, "correlation.timespan is required")
	}
	if condNode != nil {
		cond, field, err := parseCountCondition(condNode)
		if err != nil {
			return nil, err
		}
		c.Condition = cond
		if field != "" {
			c.Field = field
		}
	}
	switch c.Type {
	case EventCount, ValueCount:
		if c.Condition == nil {
			return nil, nodeErr(n, "correlation %s needs a condition (e.g. gte: 10)", c.Type)
		}
		if c.Type == ValueCount && c.Field == "" {
			return nil, nodeErr(n, "value_count needs condition.field naming the field whose distinct values are counted")
		}
	case Temporal, TemporalOrdered:
		if len(c.Rules) < 2 && c.Type == TemporalOrdered {
			return nil, nodeErr(n, "temporal_ordered needs at least two rules")
		}
	}
	return c, nil
}

func parseCountCondition(n *yaml.Node) (*CountCondition, string, error) {
	if n.Kind != yaml.MappingNode {
		return nil, "", nodeErr(n, "correlation.condition must be a mapping such as {gte: 10}")
	}
	c := &CountCondition{Ops: map[string]float64{}}
	field := ""
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], resolveAlias(n.Content[i+1])
		s, err := scalar(v, "correlation.condition."+k.Value)
		if err != nil {
			return nil, "", err
		}
		switch k.Value {
		case "field":
			field = s
		case "gt", "gte", "lt", "lte", "eq", "neq":
			f, err := strconv.ParseFloat(s, 64)
			if err != nil {
				return nil, "", nodeErr(v, "correlation.condition.%s must be a number", k.Value)
			}
			c.Ops[k.Value] = f
		default:
			return nil, "", nodeErr(k, "unknown condition operator %q (valid: gt, gte, lt, lte, eq, neq, field)", k.Value)
		}
	}
	if len(c.Ops) == 0 {
		return nil, "", nodeErr(n, "correlation.condition has no operator (gt, gte, lt, lte, eq, neq)")
	}
	return c, field, nil
}

func parseAliases(n *yaml.Node) (map[string]map[string]string, error) {
	if n.Kind != yaml.MappingNode {
		return nil, nodeErr(n, "correlation.aliases must be a mapping")
	}
	out := map[string]map[string]string{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], resolveAlias(n.Content[i+1])
		if v.Kind != yaml.MappingNode {
			return nil, nodeErr(v, "alias %q must map rule names to field names", k.Value)
		}
		m := map[string]string{}
		for j := 0; j+1 < len(v.Content); j += 2 {
			f, err := scalar(resolveAlias(v.Content[j+1]), "alias field")
			if err != nil {
				return nil, err
			}
			m[v.Content[j].Value] = f
		}
		out[k.Value] = m
	}
	return out, nil
}
