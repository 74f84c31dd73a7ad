// Package lint checks Sigma rule files for the problems that matter to a
// detection team's CI (docs/detections.md, "Linting"): everything the
// loader refuses, plus missing or invalid metadata (id, title, level,
// status, logsource), tags that are not Sigma tags, ATT&CK ids that do not
// exist (in the embedded ATT&CK table), search identifiers no condition
// uses, and conditions that are always true or always false.
package lint

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/google/uuid"
	"gopkg.in/yaml.v3"

	"github.com/vigil-sec/vigil/internal/detect"
	"github.com/vigil-sec/vigil/internal/detect/attack"
)

// Severity of a finding.
type Severity string

// Severities.
const (
	Error   Severity = "error"
	Warning Severity = "warning"
)

// Finding is one problem.
type Finding struct {
	Path     string   `json:"path"`
	Line     int      `json:"line,omitempty"`
	Severity Severity `json:"severity"`
	Check    string   `json:"check"`
	Message  string   `json:"message"`
}

func (f Finding) String() string {
	loc := f.Path
	if f.Line > 0 {
		loc += ":" + strconv.Itoa(f.Line)
	}
	return fmt.Sprintf("%s: %s: %s [%s]", loc, f.Severity, f.Message, f.Check)
}

// Options of a lint run.
type Options struct {
	// Builtins loads the built-in rules too, so correlations may name
	// them (they are not linted).
	Builtins bool
}

// Paths lints rule files and directories (recursively: *.yml, *.yaml,
// fieldmap.yaml excepted). Findings are sorted by file and line.
func Paths(paths []string, opts Options) ([]Finding, error) {
	var files []string
	var dir string
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("lint: %w", err)
		}
		if !st.IsDir() {
			files = append(files, p)
			continue
		}
		if dir != "" {
			return nil, errors.New("lint: give at most one rule directory")
		}
		dir = p
	}
	var out []Finding
	// What the loader refuses (syntax, modifiers, conditions, references).
	rs, err := detect.LoadRules(detect.LoadOptions{NoBuiltins: !opts.Builtins, Dir: dir, Files: files})
	if err != nil {
		return nil, err
	}
	for _, se := range rs.Errors() {
		out = append(out, Finding{Path: se.Path, Line: se.Line, Severity: Error, Check: "load", Message: se.Reason})
	}
	if dir != "" {
		err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			ext := strings.ToLower(filepath.Ext(p))
			if !d.IsDir() && (ext == ".yml" || ext == ".yaml") && d.Name() != detect.FieldMapFile {
				files = append(files, p)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("lint: %w", err)
		}
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("lint: %w", err)
		}
		out = append(out, File(f, b)...)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Path != out[j].Path {
			return out[i].Path < out[j].Path
		}
		return out[i].Line < out[j].Line
	})
	return dedup(out), nil
}

// dedup drops a metadata finding that repeats what the loader said at the
// same place (a missing title is both).
func dedup(fs []Finding) []Finding {
	seen := map[string]bool{}
	out := fs[:0]
	for _, f := range fs {
		k := f.Path + "\x00" + strconv.Itoa(f.Line) + "\x00" + f.Message
		if !seen[k] {
			seen[k] = true
			out = append(out, f)
		}
	}
	return out
}

var (
	validStatus = map[string]bool{"stable": true, "test": true, "experimental": true, "deprecated": true, "unsupported": true}
	validLevel  = map[string]bool{"informational": true, "low": true, "medium": true, "high": true, "critical": true}
	// Sigma's tag namespaces (Sigma tags appendix), plus Vigil's owasp.
	tagNamespaces = map[string]bool{"attack": true, "car": true, "cve": true, "d3fend": true, "detection": true,
		"stp": true, "tlp": true, "owasp": true}
	tagFormat     = regexp.MustCompile(`^[a-z0-9_-]+\.[a-z0-9._-]+$`)
	techniqueTag  = regexp.MustCompile(`^t\d{4}(\.\d{3})?$`)
	tacticIDTag   = regexp.MustCompile(`^ta\d{4}$`)
	otherAttackID = regexp.MustCompile(`^([gsc]|ds|m)\d{4}$`)
)

// File lints one file's documents (without the loader's checks).
func File(p string, data []byte) []Finding {
	var out []Finding
	add := func(line int, sev Severity, check, format string, args ...any) {
		out = append(out, Finding{Path: p, Line: line, Severity: sev, Check: check, Message: fmt.Sprintf(format, args...)})
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc yaml.Node
		if err := dec.Decode(&doc); err != nil {
			break // io.EOF, or a syntax error the loader reports with its line
		}
		if len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
			continue
		}
		root := doc.Content[0]
		fields := map[string][2]*yaml.Node{}
		for i := 0; i+1 < len(root.Content); i += 2 {
			fields[root.Content[i].Value] = [2]*yaml.Node{root.Content[i], root.Content[i+1]}
		}
		val := func(k string) (string, *yaml.Node, bool) {
			kv, ok := fields[k]
			if !ok {
				return "", nil, false
			}
			return kv[1].Value, kv[1], true
		}
		_, isCorr := fields["correlation"]
		if _, ok := fields["action"]; ok && len(fields) <= 3 {
			continue // a Sigma global/reset/repeat action document
		}
		// id
		// (Duplicate ids and names are the loader's "load" errors.)
		if id, n, ok := val("id"); !ok || strings.TrimSpace(id) == "" {
			if name, _, ok := val("name"); ok && name != "" {
				add(root.Line, Warning, "id", "missing id (the rule has a name, which correlations may use; Sigma wants a UUID id too)")
			} else {
				add(root.Line, Error, "id", "missing id")
			}
		} else if _, err := uuid.Parse(id); err != nil || len(id) != 36 {
			add(n.Line, Warning, "id", "id %q is not a UUID (Sigma requires one; Vigil accepts it)", id)
		}
		// title
		if t, n, ok := val("title"); !ok || strings.TrimSpace(t) == "" {
			add(root.Line, Error, "title", "missing title")
		} else if len(t) > 256 {
			add(n.Line, Warning, "title", "title is %d characters long (keep it under 256)", len(t))
		}
		// level
		if lv, n, ok := val("level"); !ok {
			add(root.Line, Error, "level", "missing level (informational, low, medium, high, critical)")
		} else if !validLevel[strings.ToLower(lv)] {
			add(n.Line, Error, "level", "level %q is not one of informational, low, medium, high, critical", lv)
		}
		// status
		if st, n, ok := val("status"); !ok {
			add(root.Line, Warning, "status", "missing status (stable, test, experimental, deprecated, unsupported)")
		} else if !validStatus[st] {
			add(n.Line, Error, "status", "status %q is not one of stable, test, experimental, deprecated, unsupported", st)
		}
		// logsource (detection rules)
		if !isCorr {
			_, n, ok := val("logsource")
			switch {
			case !ok:
				add(root.Line, Error, "logsource", "missing logsource")
			case n.Kind != yaml.MappingNode:
				add(n.Line, Error, "logsource", "logsource must be a mapping")
			default:
				has := false
				for i := 0; i+1 < len(n.Content); i += 2 {
					switch n.Content[i].Value {
					case "category", "product", "service":
						has = has || strings.TrimSpace(n.Content[i+1].Value) != ""
					}
				}
				if !has {
					add(n.Line, Error, "logsource", "logsource names no category, product or service")
				}
			}
		}
		// tags
		if _, n, ok := val("tags"); ok && n.Kind == yaml.SequenceNode {
			for _, t := range n.Content {
				checkTag(t, add)
			}
		}
		// detection: unused identifiers, constant conditions
		if _, n, ok := val("detection"); ok && n.Kind == yaml.MappingNode {
			checkDetection(n, add)
		}
	}
	return out
}

func checkTag(n *yaml.Node, add func(int, Severity, string, string, ...any)) {
	tag := n.Value
	if !tagFormat.MatchString(tag) {
		add(n.Line, Warning, "tags", "tag %q is not namespace.value in lower case", tag)
		return
	}
	ns, v, _ := strings.Cut(tag, ".")
	if !tagNamespaces[ns] {
		add(n.Line, Warning, "tags", "tag %q: unknown namespace %q (Sigma: attack, car, cve, d3fend, detection, stp, tlp)", tag, ns)
		return
	}
	if ns != "attack" {
		return
	}
	tb := attack.Enterprise()
	switch {
	case techniqueTag.MatchString(v):
		id := strings.ToUpper(v)
		if _, ok := tb.Technique(id); ok {
			return
		}
		if newerThanTable(tb, id) {
			add(n.Line, Warning, "attack", "tag %q: %s is not in ATT&CK Enterprise %s (the embedded table) and is numbered after its last entry: a newer ATT&CK release? (regenerate the table with scripts/attackgen)", tag, id, tb.Version)
			return
		}
		add(n.Line, Error, "attack", "tag %q: %s is not an ATT&CK Enterprise %s technique (typo, revoked or deprecated)", tag, id, tb.Version)
	case tacticIDTag.MatchString(v):
		if _, ok := tb.Tactic(v); !ok {
			add(n.Line, Error, "attack", "tag %q: %s is not an ATT&CK Enterprise %s tactic", tag, strings.ToUpper(v), tb.Version)
		}
	case otherAttackID.MatchString(v):
		// Groups, software, campaigns, mitigations, data sources: not
		// in the table; not checked.
	default:
		if _, ok := tb.Tactic(v); !ok {
			// Tactic names change between releases (ATT&CK v19 split
			// defense-evasion): a warning, not an error.
			add(n.Line, Warning, "attack", "tag %q: %q is not a tactic name of ATT&CK Enterprise %s (the embedded table), nor a technique, group or software id", tag, v, tb.Version)
		}
	}
}

// newerThanTable reports whether a technique id the table lacks is
// numbered after every technique (or every sub-technique of its parent)
// the table has: likely from a newer ATT&CK release rather than a typo.
func newerThanTable(tb *attack.Table, id string) bool {
	parent, sub, isSub := strings.Cut(id, ".")
	maxParent, maxSub := "", ""
	for _, t := range tb.Techniques() {
		p, s, ok := strings.Cut(t.ID, ".")
		if !ok && p > maxParent {
			maxParent = p
		}
		if ok && p == parent && s > maxSub {
			maxSub = s
		}
	}
	if parent > maxParent {
		return true
	}
	return isSub && maxSub != "" && sub > maxSub
}

func checkDetection(n *yaml.Node, add func(int, Severity, string, string, ...any)) {
	var names []string
	lines := map[string]int{}
	var conds []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch k.Value {
		case "condition":
			if v.Kind == yaml.SequenceNode {
				conds = append(conds, v.Content...)
			} else {
				conds = append(conds, v)
			}
		case "timeframe":
		default:
			names = append(names, k.Value)
			lines[k.Value] = k.Line
		}
	}
	used := map[string]bool{}
	for _, c := range conds {
		e, refs, err := parseCond(c.Value, names)
		if err != nil {
			continue // the loader reports it
		}
		for _, r := range refs {
			used[r] = true
		}
		if len(refs) > 0 && len(refs) <= maxEnumerated {
			switch constant(e, refs) {
			case 1:
				add(c.Line, Error, "condition", "condition %q is always true: the rule matches every event", c.Value)
			case 0:
				add(c.Line, Error, "condition", "condition %q is always false: the rule never matches", c.Value)
			}
		}
	}
	for _, name := range names {
		if !used[name] {
			add(lines[name], Warning, "unused", "search identifier %q is not used by the condition", name)
		}
	}
}

// maxEnumerated bounds the identifiers whose truth assignments are all
// tried (2^12 evaluations).
const maxEnumerated = 12

// expr is a parsed condition over search identifiers.
type expr func(v map[string]bool) bool

// constant returns 1 if e is true for every assignment of refs, 0 if
// false for every one, -1 otherwise.
func constant(e expr, refs []string) int {
	v := make(map[string]bool, len(refs))
	seenT, seenF := false, false
	for mask := 0; mask < 1<<len(refs); mask++ {
		for i, r := range refs {
			v[r] = mask&(1<<i) != 0
		}
		if e(v) {
			seenT = true
		} else {
			seenF = true
		}
		if seenT && seenF {
			return -1
		}
	}
	if seenT {
		return 1
	}
	return 0
}

// parseCond parses a Sigma condition (or, and, not, parentheses, N/any/all
// of pattern|them) into an expression and the identifiers it reads.
func parseCond(s string, names []string) (expr, []string, error) {
	toks := strings.Fields(strings.NewReplacer("(", " ( ", ")", " ) ").Replace(s))
	p := &condParser{toks: toks, names: names, refs: map[string]bool{}}
	e, err := p.or()
	if err != nil {
		return nil, nil, err
	}
	if p.i != len(toks) {
		return nil, nil, fmt.Errorf("trailing %q", toks[p.i])
	}
	refs := make([]string, 0, len(p.refs))
	for r := range p.refs {
		refs = append(refs, r)
	}
	sort.Strings(refs)
	return e, refs, nil
}

type condParser struct {
	toks  []string
	i     int
	names []string
	refs  map[string]bool
}

func (p *condParser) peek() string {
	if p.i < len(p.toks) {
		return strings.ToLower(p.toks[p.i])
	}
	return ""
}

func (p *condParser) or() (expr, error) {
	l, err := p.and()
	if err != nil {
		return nil, err
	}
	for p.peek() == "or" {
		p.i++
		r, err := p.and()
		if err != nil {
			return nil, err
		}
		a, b := l, r
		l = func(v map[string]bool) bool { return a(v) || b(v) }
	}
	return l, nil
}

func (p *condParser) and() (expr, error) {
	l, err := p.not()
	if err != nil {
		return nil, err
	}
	for p.peek() == "and" {
		p.i++
		r, err := p.not()
		if err != nil {
			return nil, err
		}
		a, b := l, r
		l = func(v map[string]bool) bool { return a(v) && b(v) }
	}
	return l, nil
}

func (p *condParser) not() (expr, error) {
	if p.peek() == "not" {
		p.i++
		x, err := p.not()
		if err != nil {
			return nil, err
		}
		return func(v map[string]bool) bool { return !x(v) }, nil
	}
	return p.primary()
}

func (p *condParser) primary() (expr, error) {
	if p.i >= len(p.toks) {
		return nil, errors.New("unexpected end")
	}
	t := p.toks[p.i]
	low := strings.ToLower(t)
	if low == "(" {
		p.i++
		e, err := p.or()
		if err != nil {
			return nil, err
		}
		if p.peek() != ")" {
			return nil, errors.New("missing )")
		}
		p.i++
		return e, nil
	}
	if (low == "all" || low == "any" || isNumber(low)) && p.i+1 < len(p.toks) && strings.ToLower(p.toks[p.i+1]) == "of" {
		if p.i+2 >= len(p.toks) {
			return nil, errors.New("of what?")
		}
		target := p.toks[p.i+2]
		p.i += 3
		var sel []string
		for _, n := range p.names {
			ok := false
			if strings.ToLower(target) == "them" {
				ok = !strings.HasPrefix(n, "_")
			} else {
				ok, _ = path.Match(target, n)
			}
			if ok {
				sel = append(sel, n)
				p.refs[n] = true
			}
		}
		need := 1
		switch low {
		case "all":
			need = len(sel)
		case "any":
		default:
			v, err := strconv.Atoi(low)
			if err != nil || v < 1 {
				return nil, fmt.Errorf("bad quantifier %q", t)
			}
			need = v
		}
		if len(sel) == 0 {
			return nil, errors.New("no identifier")
		}
		return func(v map[string]bool) bool {
			n := 0
			for _, s := range sel {
				if v[s] {
					n++
				}
			}
			return n >= need
		}, nil
	}
	for _, n := range p.names {
		if n == t {
			p.i++
			p.refs[t] = true
			return func(v map[string]bool) bool { return v[t] }, nil
		}
	}
	return nil, fmt.Errorf("unknown identifier %q", t)
}

func isNumber(s string) bool {
	_, err := strconv.Atoi(s)
	return err == nil
}

// Summary counts findings by severity.
func Summary(fs []Finding) (errs, warns int) {
	for _, f := range fs {
		if f.Severity == Error {
			errs++
		} else {
			warns++
		}
	}
	return errs, warns
}
