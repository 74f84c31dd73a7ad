package sigma

import (
	"fmt"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Pipeline is a pySigma-compatible processing pipeline (the YAML form:
// name, priority, vars, transformations with rule and field-name
// conditions). Vigil applies the transformations that change what a rule
// matches when it compiles the rule; the supported subset is listed in
// docs/detections.md ("Processing pipelines") and anything else is refused
// with the file and line. A Pipeline is immutable once parsed.
type Pipeline struct {
	Path     string
	Name     string
	Priority int
	// Vars are the pipeline's variables; value_placeholders and
	// wildcard_placeholders read placeholder values from them.
	Vars  map[string][]string
	items []*pipelineItem
	order int // position on the command line, breaks priority ties
}

// pipelineItem is one entry of transformations.
type pipelineItem struct {
	path, ID, Type string
	line           int
	pipe           *Pipeline

	ruleConds         []ruleCond
	ruleOr, ruleNot   bool
	fieldConds        []fieldNameCond
	fieldOr, fieldNot bool

	mapping     map[string][]string // field_name_mapping, map_string
	prefixMap   [][2]string         // field_name_prefix_mapping, in file order
	affix       string              // field_name_prefix / field_name_suffix prefix or suffix
	re          *regexp.Regexp      // replace_string
	replacement string              // replace_string
	value       string              // set_value
	method      string              // case
	include     map[string]bool     // placeholders
	exclude     map[string]bool     // placeholders
	conditions  *yaml.Node          // add_condition
	negated     bool                // add_condition
	logsource   Logsource           // change_logsource (set fields only)
	message     string              // rule_failure, detection_item_failure
}

type ruleCond struct {
	typ           string
	ls            Logsource
	tag           string
	attr, op, val string
}

type fieldNameCond struct {
	include bool
	plain   map[string]bool
	res     []*regexp.Regexp
}

func (c *fieldNameCond) match(name string) bool {
	hit := c.plain[name]
	for _, re := range c.res {
		hit = hit || re.MatchString(name)
	}
	return hit == c.include
}

// transformation types Vigil applies (see docs/detections.md).
var pipelineTypes = map[string]bool{
	"field_name_mapping": true, "field_name_prefix_mapping": true, "field_name_prefix": true, "field_name_suffix": true,
	"drop_detection_item": true, "replace_string": true, "map_string": true, "set_value": true, "case": true,
	"value_placeholders": true, "wildcard_placeholders": true, "add_condition": true, "change_logsource": true,
	"rule_failure": true, "detection_item_failure": true,
	// No effect on matching in Vigil (they shape query output or state
	// read by other transformations Vigil does not run): accepted, ignored.
	"add_field": true, "remove_field": true, "set_state": true, "set_custom_attribute": true,
}

// LoadPipelines reads pipeline files (each one YAML document) and returns
// them sorted by priority, lowest first (pySigma's resolver order); files
// with equal priority keep the order given.
func LoadPipelines(paths []string) ([]*Pipeline, error) {
	var out []*Pipeline
	for i, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("sigma pipeline: %w", err)
		}
		pl, err := ParsePipeline(p, b)
		if err != nil {
			return nil, err
		}
		pl.order = i
		out = append(out, pl)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Priority < out[j].Priority })
	return out, nil
}

// ParsePipeline parses one pipeline file. Errors are *Error with the file
// and line of the offending entry.
func ParsePipeline(path string, data []byte) (*Pipeline, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		e := &Error{Path: path, Reason: "pipeline: " + strings.TrimPrefix(err.Error(), "yaml: ")}
		if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
			e.Line, _ = strconv.Atoi(m[1])
		}
		return nil, e
	}
	fail := func(err *Error) (*Pipeline, error) {
		err.Path = path
		err.Reason = "pipeline: " + err.Reason
		return nil, err
	}
	if len(doc.Content) == 0 {
		return fail(&Error{Reason: "empty file"})
	}
	root := resolveAlias(doc.Content[0])
	if root.Kind != yaml.MappingNode {
		return fail(nodeErr(root, "a pipeline must be a YAML mapping"))
	}
	p := &Pipeline{Path: path, Vars: map[string][]string{}}
	var trans *yaml.Node
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], resolveAlias(root.Content[i+1])
		switch k.Value {
		case "name":
			p.Name = v.Value
		case "priority":
			n, err := strconv.Atoi(v.Value)
			if err != nil {
				return fail(nodeErr(v, "priority must be a whole number"))
			}
			p.Priority = n
		case "vars":
			if v.Kind != yaml.MappingNode {
				return fail(nodeErr(v, "vars must be a mapping of names to a value or a list of values"))
			}
			for j := 0; j+1 < len(v.Content); j += 2 {
				vals, err := stringList(resolveAlias(v.Content[j+1]), "vars."+v.Content[j].Value)
				if err != nil {
					return fail(err.(*Error))
				}
				p.Vars[v.Content[j].Value] = vals
			}
		case "transformations":
			trans = v
		case "allowed_backends", "postprocessing", "finalizers":
			// Query-text stages of converting backends; Vigil does not
			// produce query text, so they do not apply.
		default:
			return fail(nodeErr(k, "unknown pipeline key %q (valid: name, priority, vars, transformations, allowed_backends, postprocessing, finalizers)", k.Value))
		}
	}
	if trans != nil {
		if trans.Kind != yaml.SequenceNode {
			return fail(nodeErr(trans, "transformations must be a list"))
		}
		for _, n := range trans.Content {
			it, err := parseItem(resolveAlias(n))
			if err != nil {
				return fail(err)
			}
			it.path, it.pipe = path, p
			p.items = append(p.items, it)
		}
	}
	return p, nil
}

func parseItem(n *yaml.Node) (*pipelineItem, *Error) {
	if n.Kind != yaml.MappingNode {
		return nil, nodeErr(n, "a transformation must be a mapping")
	}
	it := &pipelineItem{line: n.Line}
	var typeNode *yaml.Node
	params := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], resolveAlias(n.Content[i+1])
		var err *Error
		switch k.Value {
		case "id":
			it.ID = v.Value
		case "type":
			it.Type, typeNode = v.Value, v
		case "rule_conditions":
			it.ruleConds, err = parseRuleConds(v)
		case "rule_cond_op", "field_name_cond_op":
			op := strings.ToLower(v.Value)
			if op != "and" && op != "or" {
				err = nodeErr(v, "%s must be and or or", k.Value)
			}
			if k.Value == "rule_cond_op" {
				it.ruleOr = op == "or"
			} else {
				it.fieldOr = op == "or"
			}
		case "rule_cond_not", "field_name_cond_not":
			b, perr := strconv.ParseBool(v.Value)
			if perr != nil {
				err = nodeErr(v, "%s must be true or false", k.Value)
			}
			if k.Value == "rule_cond_not" {
				it.ruleNot = b
			} else {
				it.fieldNot = b
			}
		case "field_name_conditions":
			it.fieldConds, err = parseFieldConds(v)
		case "rule_cond_expr", "detection_item_conditions", "detection_item_cond_op", "detection_item_cond_not",
			"field_name_cond_expr", "detection_item_cond_expr":
			err = nodeErr(k, "%s is not supported by Vigil (supported: rule_conditions, rule_cond_op, rule_cond_not, field_name_conditions, field_name_cond_op, field_name_cond_not)", k.Value)
		default:
			params[k.Value] = v
		}
		if err != nil {
			return nil, err
		}
	}
	if typeNode == nil {
		return nil, nodeErr(n, "transformation without a type")
	}
	if !pipelineTypes[it.Type] {
		return nil, nodeErr(typeNode, "transformation type %q is not supported by Vigil (supported: %s)", it.Type, supportedTypes())
	}
	str := func(name string, required bool) (string, *Error) {
		v, ok := params[name]
		delete(params, name)
		if !ok {
			if required {
				return "", nodeErr(n, "%s needs %s", it.Type, name)
			}
			return "", nil
		}
		if v.Kind != yaml.ScalarNode {
			return "", nodeErr(v, "%s.%s must be a string", it.Type, name)
		}
		return v.Value, nil
	}
	strMap := func(name string) (map[string][]string, *Error) {
		v, ok := params[name]
		delete(params, name)
		if !ok || v.Kind != yaml.MappingNode {
			return nil, nodeErr(n, "%s needs %s: a mapping", it.Type, name)
		}
		out := map[string][]string{}
		for j := 0; j+1 < len(v.Content); j += 2 {
			vals, err := stringList(resolveAlias(v.Content[j+1]), name+"."+v.Content[j].Value)
			if err != nil {
				return nil, err.(*Error)
			}
			out[v.Content[j].Value] = vals
		}
		return out, nil
	}
	var err *Error
	switch it.Type {
	case "field_name_mapping", "map_string":
		it.mapping, err = strMap("mapping")
	case "field_name_prefix_mapping":
		v := params["mapping"]
		var m map[string][]string
		if m, err = strMap("mapping"); err == nil {
			for j := 0; j+1 < len(v.Content); j += 2 {
				k := v.Content[j].Value
				if len(m[k]) != 1 {
					return nil, nodeErr(v.Content[j], "field_name_prefix_mapping maps a prefix to one prefix")
				}
				it.prefixMap = append(it.prefixMap, [2]string{k, m[k][0]})
			}
		}
	case "field_name_prefix":
		it.affix, err = str("prefix", true)
	case "field_name_suffix":
		it.affix, err = str("suffix", true)
	case "replace_string":
		var expr string
		if expr, err = str("regex", true); err == nil {
			re, rerr := regexp.Compile(expr)
			if rerr != nil {
				return nil, nodeErr(n, "replace_string: bad regex %q: %v", expr, rerr)
			}
			it.re = re
			it.replacement, err = str("replacement", true)
			// pySigma's ${n} / \n group references: Go's Expand reads ${n}.
			it.replacement = regexp.MustCompile(`\\(\d)`).ReplaceAllString(it.replacement, "$${$1}")
		}
		if err == nil {
			if v, ok := params["skip_special"]; ok {
				delete(params, "skip_special")
				_ = v // Vigil replaces in the value text; wildcards are text too
			}
		}
	case "set_value":
		it.value, err = str("value", true)
		delete(params, "force_type")
	case "case":
		if it.method, err = str("method", false); err == nil {
			if it.method == "" {
				it.method = "lower"
			}
			if it.method != "lower" && it.method != "upper" {
				return nil, nodeErr(n, "case: method %q is not supported (lower, upper)", it.method)
			}
		}
	case "value_placeholders", "wildcard_placeholders":
		for _, name := range []string{"include", "exclude"} {
			v, ok := params[name]
			delete(params, name)
			if !ok {
				continue
			}
			list, lerr := stringList(v, it.Type+"."+name)
			if lerr != nil {
				return nil, lerr.(*Error)
			}
			set := map[string]bool{}
			for _, s := range list {
				set[s] = true
			}
			if name == "include" {
				it.include = set
			} else {
				it.exclude = set
			}
		}
	case "add_condition":
		v, ok := params["conditions"]
		delete(params, "conditions")
		if !ok || v.Kind != yaml.MappingNode || len(v.Content) == 0 {
			return nil, nodeErr(n, "add_condition needs conditions: a mapping of fields to values")
		}
		it.conditions = v
		var neg string
		if neg, err = str("negated", false); err == nil && neg != "" {
			it.negated, _ = strconv.ParseBool(neg)
		}
		if t, _ := str("template", false); t == "true" {
			return nil, nodeErr(n, "add_condition: template is not supported by Vigil")
		}
		delete(params, "name")
	case "change_logsource":
		it.logsource.Category, err = str("category", false)
		if err == nil {
			it.logsource.Product, err = str("product", false)
		}
		if err == nil {
			it.logsource.Service, err = str("service", false)
		}
	case "rule_failure", "detection_item_failure":
		it.message, err = str("message", true)
	default:
		params = nil // no-op types: their parameters do not matter
	}
	if err != nil {
		return nil, err
	}
	for k, v := range params {
		return nil, nodeErr(v, "%s: unknown parameter %q", it.Type, k)
	}
	return it, nil
}

func supportedTypes() string {
	var names []string
	for k := range pipelineTypes {
		names = append(names, k)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

func parseRuleConds(n *yaml.Node) ([]ruleCond, *Error) {
	if n.Kind != yaml.SequenceNode {
		return nil, nodeErr(n, "rule_conditions must be a list")
	}
	var out []ruleCond
	for _, c := range n.Content {
		c = resolveAlias(c)
		if c.Kind != yaml.MappingNode {
			return nil, nodeErr(c, "a rule condition must be a mapping")
		}
		rc := ruleCond{op: "eq"}
		for i := 0; i+1 < len(c.Content); i += 2 {
			k, v := c.Content[i], resolveAlias(c.Content[i+1])
			if v.Kind != yaml.ScalarNode {
				return nil, nodeErr(v, "rule condition %s must be a string", k.Value)
			}
			switch k.Value {
			case "type":
				rc.typ = v.Value
			case "category":
				rc.ls.Category = v.Value
			case "product":
				rc.ls.Product = v.Value
			case "service":
				rc.ls.Service = v.Value
			case "tag":
				rc.tag = v.Value
			case "attribute":
				rc.attr = v.Value
			case "value":
				rc.val = v.Value
			case "op":
				rc.op = v.Value
			default:
				return nil, nodeErr(k, "rule condition: unknown parameter %q", k.Value)
			}
		}
		switch rc.typ {
		case "logsource", "tag", "is_sigma_rule", "is_sigma_correlation_rule":
		case "rule_attribute":
			if rc.op != "eq" && rc.op != "ne" {
				return nil, nodeErr(c, "rule_attribute: op %q is not supported by Vigil (eq, ne)", rc.op)
			}
		default:
			return nil, nodeErr(c, "rule condition type %q is not supported by Vigil (supported: logsource, tag, rule_attribute, is_sigma_rule, is_sigma_correlation_rule)", rc.typ)
		}
		out = append(out, rc)
	}
	return out, nil
}

func parseFieldConds(n *yaml.Node) ([]fieldNameCond, *Error) {
	if n.Kind != yaml.SequenceNode {
		return nil, nodeErr(n, "field_name_conditions must be a list")
	}
	var out []fieldNameCond
	for _, c := range n.Content {
		c = resolveAlias(c)
		if c.Kind != yaml.MappingNode {
			return nil, nodeErr(c, "a field name condition must be a mapping")
		}
		fc := fieldNameCond{plain: map[string]bool{}}
		var typ, mode string
		var fields []string
		for i := 0; i+1 < len(c.Content); i += 2 {
			k, v := c.Content[i], resolveAlias(c.Content[i+1])
			var err error
			switch k.Value {
			case "type":
				typ = v.Value
			case "mode":
				mode = v.Value
			case "fields":
				fields, err = stringList(v, "fields")
			default:
				err = nodeErr(k, "field name condition: unknown parameter %q", k.Value)
			}
			if err != nil {
				return nil, err.(*Error)
			}
		}
		switch typ {
		case "include_fields":
			fc.include = true
		case "exclude_fields":
		default:
			return nil, nodeErr(c, "field name condition type %q is not supported by Vigil (include_fields, exclude_fields)", typ)
		}
		for _, f := range fields {
			switch mode {
			case "", "plain":
				fc.plain[f] = true
			case "re":
				re, err := regexp.Compile(f)
				if err != nil {
					return nil, nodeErr(c, "field name condition: bad regex %q: %v", f, err)
				}
				fc.res = append(fc.res, re)
			default:
				return nil, nodeErr(c, "field name condition: mode %q is not one of plain, re", mode)
			}
		}
		out = append(out, fc)
	}
	return out, nil
}

// ruleMatches evaluates the item's rule conditions against r with the
// logsource as changed by earlier items.
func (it *pipelineItem) ruleMatches(r *Rule, ls *Logsource) bool {
	if len(it.ruleConds) == 0 {
		return true
	}
	res := !it.ruleOr
	for _, c := range it.ruleConds {
		var ok bool
		switch c.typ {
		case "logsource":
			ok = logsourceIn(*ls, c.ls)
		case "tag":
			for _, t := range r.Tags {
				ok = ok || strings.EqualFold(t, c.tag)
			}
		case "is_sigma_rule":
			ok = r.Detection != nil
		case "is_sigma_correlation_rule":
			ok = r.Correlation != nil
		case "rule_attribute":
			var v string
			switch c.attr {
			case "id":
				v = r.ID
			case "name":
				v = r.Name
			case "title":
				v = r.Title
			case "status":
				v = r.Status
			case "level":
				v = r.Level
			case "author":
				v = r.Author
			}
			ok = (v == c.val) == (c.op == "eq")
		}
		if it.ruleOr {
			res = res || ok
		} else {
			res = res && ok
		}
	}
	return res != it.ruleNot
}

// logsourceIn reports whether every field set in cond equals the rule's.
func logsourceIn(rule, cond Logsource) bool {
	return (cond.Category == "" || strings.EqualFold(cond.Category, rule.Category)) &&
		(cond.Product == "" || strings.EqualFold(cond.Product, rule.Product)) &&
		(cond.Service == "" || strings.EqualFold(cond.Service, rule.Service))
}

// fieldMatches evaluates the item's field name conditions (none: every
// field; a keyword search has no field and only meets unconditioned items).
func (it *pipelineItem) fieldMatches(name string) bool {
	if len(it.fieldConds) == 0 {
		return true
	}
	if name == "" {
		return false
	}
	res := !it.fieldOr
	for i := range it.fieldConds {
		ok := it.fieldConds[i].match(name)
		if it.fieldOr {
			res = res || ok
		} else {
			res = res && ok
		}
	}
	return res != it.fieldNot
}

// pipelineItemsFor returns the items of the pipelines that apply to r, in
// order, applying rule-level ones as it goes: change_logsource rewrites ls
// (which later items' conditions and the matcher's category see),
// rule_failure fails the rule, placeholder items fill vars.
func pipelineItemsFor(pipes []*Pipeline, r *Rule, ls *Logsource, vars map[string][]string) ([]*pipelineItem, *Error) {
	var out []*pipelineItem
	for _, p := range pipes {
		for _, it := range p.items {
			if !it.ruleMatches(r, ls) {
				continue
			}
			switch it.Type {
			case "change_logsource":
				if it.logsource.Category != "" {
					ls.Category = it.logsource.Category
				}
				if it.logsource.Product != "" {
					ls.Product = it.logsource.Product
				}
				if it.logsource.Service != "" {
					ls.Service = it.logsource.Service
				}
				continue
			case "rule_failure":
				return nil, &Error{Line: it.line, Reason: fmt.Sprintf("pipeline %s: rule_failure: %s", p.Path, it.message)}
			case "value_placeholders", "wildcard_placeholders":
				for name, vals := range p.Vars {
					if (it.include != nil && !it.include[name]) || it.exclude[name] {
						continue
					}
					if _, ok := vars[name]; ok {
						continue // the placeholders file wins
					}
					if it.Type == "wildcard_placeholders" {
						vals = []string{"*"}
					}
					vars[name] = vals
				}
				if it.Type == "wildcard_placeholders" && it.include != nil {
					for name := range it.include {
						if _, ok := vars[name]; !ok {
							vars[name] = []string{"*"}
						}
					}
				}
				continue
			}
			out = append(out, it)
		}
	}
	return out, nil
}

// applyItems runs the field-level items over one detection item: field
// name transformations (which may turn one field into several), value
// transformations, drop_detection_item and detection_item_failure.
func (c *compiler) applyItems(name string, vals []rawValue, at *yaml.Node, strValues bool) ([]string, []rawValue, bool, *Error) {
	names := []string{name}
	for _, it := range c.items {
		var next []string
		valueItem := false
		for _, n := range names {
			if !it.fieldMatches(n) {
				next = append(next, n)
				continue
			}
			switch it.Type {
			case "field_name_mapping":
				if n == "" {
					next = append(next, n)
				} else if to, ok := it.mapping[n]; ok {
					next = append(next, to...)
				} else {
					next = append(next, n)
				}
			case "field_name_prefix_mapping":
				out := n
				for _, pm := range it.prefixMap {
					if n != "" && strings.HasPrefix(n, pm[0]) {
						out = pm[1] + strings.TrimPrefix(n, pm[0])
						break
					}
				}
				next = append(next, out)
			case "field_name_prefix":
				if n != "" {
					n = it.affix + n
				}
				next = append(next, n)
			case "field_name_suffix":
				if n != "" {
					n += it.affix
				}
				next = append(next, n)
			case "drop_detection_item":
				return nil, nil, true, nil
			case "detection_item_failure":
				return nil, nil, false, &Error{Line: at.Line, Reason: fmt.Sprintf("pipeline %s: detection_item_failure: %s", it.path, it.message)}
			default:
				valueItem = true
				next = append(next, n)
			}
		}
		names = next
		if valueItem && strValues {
			vals = it.applyValues(vals)
		}
	}
	return names, vals, false, nil
}

// applyValues runs a value transformation over a detection item's values.
func (it *pipelineItem) applyValues(vals []rawValue) []rawValue {
	var out []rawValue
	for _, v := range vals {
		if v.null {
			out = append(out, v)
			continue
		}
		switch it.Type {
		case "replace_string":
			v.s = it.re.ReplaceAllString(v.s, it.replacement)
		case "map_string":
			if to, ok := it.mapping[v.s]; ok {
				for _, s := range to {
					out = append(out, rawValue{s: s, node: v.node})
				}
				continue
			}
		case "set_value":
			v.s = it.value
		case "case":
			if it.method == "upper" {
				v.s = strings.ToUpper(v.s)
			} else {
				v.s = strings.ToLower(v.s)
			}
		}
		out = append(out, v)
	}
	return out
}

// ParsePlaceholders reads a placeholders file for the expand modifier: a
// YAML mapping of placeholder names (without the %) to a value or a list
// of values, optionally under a top-level "placeholders:" key.
//
//	Administrators: [admin, root, 'adm_*']
//	DomainControllers: dc01
func ParsePlaceholders(path string, data []byte) (map[string][]string, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, &Error{Path: path, Reason: "placeholders: " + strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	out := map[string][]string{}
	if len(doc.Content) == 0 {
		return out, nil
	}
	root := resolveAlias(doc.Content[0])
	if root.Kind == yaml.MappingNode && len(root.Content) == 2 && root.Content[0].Value == "placeholders" {
		root = resolveAlias(root.Content[1])
	}
	if root.Kind != yaml.MappingNode {
		return nil, &Error{Path: path, Line: root.Line, Reason: "placeholders: want a mapping of names to values"}
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		vals, err := stringList(resolveAlias(root.Content[i+1]), "placeholder "+root.Content[i].Value)
		if err != nil {
			e := err.(*Error)
			e.Path = path
			return nil, e
		}
		out[root.Content[i].Value] = vals
	}
	return out, nil
}
