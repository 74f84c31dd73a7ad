package detect

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/vigil-sec/vigil/internal/detect/builtin"
	"github.com/vigil-sec/vigil/internal/detect/sigma"
	"github.com/vigil-sec/vigil/internal/event"
	"gopkg.in/yaml.v3"
)

// FieldMapFile is the optional file in the rules directory that extends the
// Sigma → Vigil field mapping (docs/detections.md).
const FieldMapFile = "fieldmap.yaml"

// RuleInfo describes one rule for GET /api/v1/rules.
type RuleInfo struct {
	ID              string   `json:"id,omitempty"`
	Name            string   `json:"name,omitempty"`
	Title           string   `json:"title,omitempty"`
	Kind            string   `json:"kind"`   // "sigma" or "correlation:<type>"
	Origin          string   `json:"origin"` // "builtin" or "file"
	Path            string   `json:"path"`
	Line            int      `json:"line,omitempty"`
	Severity        string   `json:"severity,omitempty"`
	MitreTactics    []string `json:"mitre_tactics,omitempty"`
	MitreTechniques []string `json:"mitre_techniques,omitempty"`
	OWASPCategory   string   `json:"owasp_category,omitempty"`
	References      []string `json:"rules,omitempty"` // correlations: the rules they read
	// State is "enabled" (creates detections), "referenced" (only feeds
	// correlations: Sigma's generate: false) or "error".
	State string `json:"state"`
	Error string `json:"error,omitempty"`
	// LoadedAt is when the running version of the rule was loaded; a
	// reload that leaves the rule unchanged keeps it (docs/detections.md,
	// "Hot reload").
	LoadedAt time.Time `json:"loaded_at"`
	// Hash identifies the rule's content (with what it reads, for a
	// correlation): a reload keeps the correlation state of a rule whose
	// key and hash did not change.
	Hash string `json:"hash,omitempty"`
}

// ruleMeta is what a detection inherits from its rule.
type ruleMeta struct {
	RuleID, Title, Category, Severity, OWASP string
	Confidence                               float64
	Tactics, Techniques                      []string
}

// rule is a loaded, compiled rule.
type rule struct {
	idx        int
	src        *sigma.Rule
	info       *RuleInfo
	meta       ruleMeta
	matcher    *sigma.Matcher // detection rules
	corr       *correlation   // correlation rules
	groupBy    []string       // plain rules: Vigil fields forming the group key
	generate   bool
	downstream []*rule // correlations that read this rule's matches
	hash       string  // content hash (see RuleInfo.Hash)
}

// RuleSet is an immutable set of compiled rules with their load report.
type RuleSet struct {
	rules    []*rule // loaded without error, in load order
	infos    []*RuleInfo
	errs     []*sigma.Error
	byCat    map[event.Category][]*rule // detection rules limited to one category
	anyCat   []*rule                    // detection rules for every category
	fieldMap sigma.FieldMap
	// What it was loaded from, so a reload can read the same places and
	// fall back, per file, to the version that loaded (hot reload).
	opts     LoadOptions
	srcs     []ruleSource
	fmData   []byte // the fieldmap.yaml that loaded (nil: none)
	loadedAt time.Time
	index    *sigma.Index // detection rules by the event keys they need (issue 13)
}

// candidates are the positions of the detection rules ctx's event may
// match (the index); a rule set built without one yields every detection
// rule.
func (rs *RuleSet) candidates(ctx *sigma.EvalCtx, sc *sigma.IndexScratch) []int32 {
	if rs.index != nil {
		return rs.index.Candidates(ctx, sc)
	}
	var out []int32
	for i, r := range rs.rules {
		if r.matcher != nil {
			out = append(out, int32(i))
		}
	}
	return out
}

// Infos returns the load report of every rule, in load order.
func (rs *RuleSet) Infos() []RuleInfo {
	out := make([]RuleInfo, len(rs.infos))
	for i, in := range rs.infos {
		out[i] = *in
	}
	return out
}

// Errors returns the problems found while loading.
func (rs *RuleSet) Errors() []*sigma.Error { return rs.errs }

// Len is the number of rules that loaded.
func (rs *RuleSet) Len() int { return len(rs.rules) }

// maxTimespan is the longest correlation timespan: how much of the log
// before the cursor rebuilds every correlation window.
func (rs *RuleSet) maxTimespan() time.Duration {
	var span time.Duration
	for _, r := range rs.rules {
		if r.corr != nil {
			span = max(span, r.corr.spec.Timespan)
		}
	}
	return span
}

// ruleSource is one rule file to load.
type ruleSource struct {
	path, origin string
	data         []byte
}

// LoadOptions say where rules come from.
type LoadOptions struct {
	// NoBuiltins skips the embedded rules (tests, `vigil rules test`).
	NoBuiltins bool
	// Dir is an extra rule directory (--rules); may be empty.
	Dir string
	// Files are extra rule files (`vigil rules test`).
	Files []string
	// FieldMap extends the default Sigma field mapping.
	FieldMap sigma.FieldMap
	// Pipelines are pySigma-compatible processing pipeline files
	// (--pipeline), applied in priority order when rules compile.
	Pipelines []string
	// Placeholders is a YAML file of values for the expand modifier's
	// %placeholders% (--sigma-placeholders); may be empty.
	Placeholders string
}

// LoadRules loads the built-in rules, then every *.yml / *.yaml under Dir
// (recursively), then Files. A broken file or rule is recorded in the
// report and skipped; the others load. Only an unreadable directory is an
// error.
func LoadRules(opts LoadOptions) (*RuleSet, error) { return loadRules(opts, nil) }

// ReloadRules loads the rules again from where prev was loaded (hot
// reload). A file that changed and no longer loads keeps prev's version
// running: its rules are reported with state "stale" and the new
// version's errors. An unreadable directory is an error and prev stays.
func ReloadRules(prev *RuleSet) (*RuleSet, error) { return loadRules(prev.opts, prev) }

// gathered is what the rule sources hold before parsing.
type gathered struct {
	srcs     []ruleSource
	fmPath   string
	fmData   []byte // fieldmap.yaml, nil when absent
	loadErrs []*sigma.Error
}

func gatherSources(opts LoadOptions) (gathered, error) {
	var g gathered
	if !opts.NoBuiltins {
		err := fs.WalkDir(builtin.FS, ".", func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !isRuleFile(path) {
				return err
			}
			b, err := fs.ReadFile(builtin.FS, path)
			if err != nil {
				return err
			}
			g.srcs = append(g.srcs, ruleSource{path: "builtin:" + path, origin: "builtin", data: b})
			return nil
		})
		if err != nil {
			return g, fmt.Errorf("detect: built-in rules: %w", err)
		}
	}
	if opts.Dir != "" {
		st, err := os.Stat(opts.Dir)
		if err != nil {
			return g, fmt.Errorf("detect: rules dir: %w", err)
		}
		if !st.IsDir() {
			return g, fmt.Errorf("detect: rules dir %s: not a directory", opts.Dir)
		}
		g.fmPath = filepath.Join(opts.Dir, FieldMapFile)
		if b, err := os.ReadFile(g.fmPath); err == nil {
			g.fmData = b
		}
		err = filepath.WalkDir(opts.Dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				g.loadErrs = append(g.loadErrs, &sigma.Error{Path: path, Reason: err.Error()})
				return nil
			}
			if d.IsDir() || !isRuleFile(path) || filepath.Base(path) == FieldMapFile {
				return nil
			}
			b, err := os.ReadFile(path)
			if err != nil {
				g.loadErrs = append(g.loadErrs, &sigma.Error{Path: path, Reason: err.Error()})
				return nil
			}
			g.srcs = append(g.srcs, ruleSource{path: path, origin: "file", data: b})
			return nil
		})
		if err != nil {
			return g, fmt.Errorf("detect: rules dir: %w", err)
		}
	}
	for _, f := range opts.Files {
		b, err := os.ReadFile(f)
		if err != nil {
			return g, fmt.Errorf("detect: rule file: %w", err)
		}
		g.srcs = append(g.srcs, ruleSource{path: f, origin: "file", data: b})
	}
	return g, nil
}

// maxStaleRounds bounds the rebuilds of a reload that puts back previous
// versions of broken files (each round can only add files, so a few
// suffice; the bound keeps a pathological set from looping).
const maxStaleRounds = 4

func loadRules(opts LoadOptions, prev *RuleSet) (*RuleSet, error) {
	g, err := gatherSources(opts)
	if err != nil {
		return nil, err
	}
	copts, err := compileOptions(opts)
	if err != nil {
		return nil, err
	}
	now := time.Now().UTC()
	fm := sigma.DefaultFieldMap().Merge(opts.FieldMap)
	var staleInfos []*RuleInfo
	var staleErrs []*sigma.Error
	fmData := g.fmData
	if fmData != nil {
		extra, perr := sigma.ParseFieldMap(fmData)
		switch {
		case perr == nil:
			fm = fm.Merge(extra)
		case prev != nil && prev.fmData != nil:
			// Keep the field map that loaded: every rule depends on it.
			se := &sigma.Error{Path: g.fmPath, Reason: perr.Error()}
			staleErrs = append(staleErrs, se)
			staleInfos = append(staleInfos, &RuleInfo{Path: g.fmPath, Kind: "fieldmap", Origin: "file", State: "stale",
				Error: se.Error(), LoadedAt: prev.loadedAt})
			fmData = prev.fmData
			if extra, perr := sigma.ParseFieldMap(fmData); perr == nil {
				fm = fm.Merge(extra)
			}
		default:
			g.loadErrs = append(g.loadErrs, &sigma.Error{Path: g.fmPath, Reason: perr.Error()})
			fmData = nil
		}
	}
	srcs := g.srcs
	stale := map[string][]*sigma.Error{} // path → errors of the version on disk
	var rs *RuleSet
	for round := 0; ; round++ {
		copts.FieldMap = fm
		rs = buildRuleSetWith(srcs, copts)
		if prev == nil || round == maxStaleRounds {
			break
		}
		prevSrc := make(map[string]ruleSource, len(prev.srcs))
		for _, s := range prev.srcs {
			prevSrc[s.path] = s
		}
		errsBy := map[string][]*sigma.Error{}
		for _, se := range rs.errs {
			errsBy[se.Path] = append(errsBy[se.Path], se)
		}
		var next []ruleSource
		for i, src := range srcs {
			es := errsBy[src.path]
			old, ok := prevSrc[src.path]
			if len(es) == 0 || stale[src.path] != nil || !ok || bytes.Equal(old.data, src.data) {
				continue
			}
			if next == nil {
				next = slices.Clone(srcs)
			}
			stale[src.path] = es
			next[i] = old
		}
		if next == nil {
			break
		}
		srcs = next
	}
	rs.opts, rs.srcs, rs.fmData, rs.loadedAt = opts, srcs, fmData, now
	rs.errs = append(g.loadErrs, rs.errs...)
	for _, e := range g.loadErrs {
		rs.infos = append(rs.infos, &RuleInfo{Path: e.Path, Line: e.Line, Kind: "file", Origin: "file", State: "error", Error: e.Reason})
	}
	for _, in := range rs.infos {
		in.LoadedAt = now
	}
	if prev != nil {
		// An unchanged rule keeps the time its running version loaded.
		was := make(map[string]*rule, len(prev.rules))
		for _, r := range prev.rules {
			was[r.src.Key()+"\x1f"+r.hash] = r
		}
		for _, r := range rs.rules {
			if p, ok := was[r.src.Key()+"\x1f"+r.hash]; ok {
				r.info.LoadedAt = p.info.LoadedAt
			}
		}
	}
	paths := make([]string, 0, len(stale))
	for p := range stale {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		es := stale[p]
		msg := es[0].Error()
		if len(es) > 1 {
			msg += fmt.Sprintf(" (and %d more)", len(es)-1)
		}
		for _, in := range rs.infos {
			if in.Path == p && in.State != "error" {
				in.State, in.Error = "stale", msg
			}
		}
		staleErrs = append(staleErrs, es...)
	}
	rs.errs = append(rs.errs, staleErrs...)
	rs.infos = append(rs.infos, staleInfos...)
	return rs, nil
}

// Stale counts the files whose previous version runs because the version
// on disk does not load.
func (rs *RuleSet) Stale() int {
	seen := map[string]bool{}
	for _, in := range rs.infos {
		if in.State == "stale" {
			seen[in.Path] = true
		}
	}
	return len(seen)
}

func isRuleFile(p string) bool {
	ext := strings.ToLower(filepath.Ext(p))
	return ext == ".yml" || ext == ".yaml"
}

// compileOptions loads the pipelines and the placeholders file: a broken
// one is a configuration error (every rule depends on it), not a rule's.
func compileOptions(opts LoadOptions) (sigma.CompileOptions, error) {
	var c sigma.CompileOptions
	pipes, err := sigma.LoadPipelines(opts.Pipelines)
	if err != nil {
		return c, fmt.Errorf("detect: %w", err)
	}
	c.Pipelines = pipes
	if opts.Placeholders != "" {
		b, err := os.ReadFile(opts.Placeholders)
		if err != nil {
			return c, fmt.Errorf("detect: placeholders: %w", err)
		}
		if c.Placeholders, err = sigma.ParsePlaceholders(opts.Placeholders, b); err != nil {
			return c, fmt.Errorf("detect: %w", err)
		}
	}
	return c, nil
}

// buildRuleSet parses, compiles and links rules. Correlations are linked
// after every file is parsed, so a correlation may name rules of any file.
func buildRuleSet(srcs []ruleSource, fm sigma.FieldMap) *RuleSet {
	return buildRuleSetWith(srcs, sigma.CompileOptions{FieldMap: fm})
}

// buildRuleSetWith is buildRuleSet with pipelines and placeholders.
func buildRuleSetWith(srcs []ruleSource, copts sigma.CompileOptions) *RuleSet {
	fm := copts.FieldMap
	rs := &RuleSet{byCat: map[event.Category][]*rule{}, fieldMap: fm}
	var filters []*rule // Sigma v2 filters, applied once every rule is parsed
	var parsed []*rule
	byRef := map[string]*rule{}
	fail := func(r *rule, err error) {
		var se *sigma.Error
		if !errors.As(err, &se) {
			se = &sigma.Error{Path: r.src.Path, Line: r.src.Line, Rule: r.src.Label(), Reason: err.Error()}
		}
		r.info.State, r.info.Error = "error", se.Reason
		if se.Line > 0 {
			r.info.Line = se.Line
		}
		rs.errs = append(rs.errs, se)
	}
	for _, src := range srcs {
		rules, errs := sigma.ParseFile(src.path, src.data)
		for _, e := range errs {
			rs.errs = append(rs.errs, e)
			rs.infos = append(rs.infos, &RuleInfo{Title: e.Rule, Path: e.Path, Line: e.Line, Kind: "sigma", Origin: src.origin, State: "error", Error: e.Reason})
		}
		for _, sr := range rules {
			r := &rule{src: sr, info: &RuleInfo{ID: sr.ID, Name: sr.Name, Title: sr.Title, Path: sr.Path, Line: sr.Line,
				Origin: src.origin, Severity: sr.Severity(), State: "enabled"}}
			r.info.MitreTactics, r.info.MitreTechniques = sigma.Mitre(sr.Tags)
			r.info.OWASPCategory = firstNonEmpty(sr.Vigil.OWASP, sigma.OWASP(sr.Tags))
			rs.infos = append(rs.infos, r.info)
			if sr.Filter != nil {
				r.info.Kind, r.info.References = "filter", sr.Filter.Rules
				m, err := sigma.CompileWith(sr, copts)
				if err != nil {
					fail(r, err)
					continue
				}
				r.matcher = m
				filters = append(filters, r)
				continue
			}
			if sr.Correlation != nil {
				r.info.Kind = "correlation:" + sr.Correlation.Type
				r.info.References = sr.Correlation.Rules
			} else {
				r.info.Kind = "sigma"
				m, err := sigma.CompileWith(sr, copts)
				if err != nil {
					fail(r, err)
					continue
				}
				r.matcher = m
				// Sorted: the matcher lists its fields in map order.
				r.hash = contentHash(sr, slices.Sorted(slices.Values(m.Fields())))
			}
			dup := false
			for _, ref := range []string{sr.ID, sr.Name} {
				if ref == "" {
					continue
				}
				if prev, ok := byRef[ref]; ok {
					fail(r, &sigma.Error{Path: sr.Path, Line: sr.Line, Rule: sr.Label(),
						Reason: fmt.Sprintf("duplicate rule id or name %q (first defined in %s:%d)", ref, prev.src.Path, prev.src.Line)})
					dup = true
					break
				}
			}
			if dup {
				continue
			}
			for _, ref := range []string{sr.ID, sr.Name} {
				if ref != "" {
					byRef[ref] = r
				}
			}
			parsed = append(parsed, r)
		}
	}
	applyFilters(rs, filters, parsed, byRef, fail)
	// Link correlations to the rules they read, rejecting unknown
	// references and cycles.
	linked := map[*rule]bool{}
	var link func(r *rule, stack map[*rule]bool) error
	link = func(r *rule, stack map[*rule]bool) error {
		if linked[r] || r.src.Correlation == nil {
			return nil
		}
		if stack[r] {
			return fmt.Errorf("correlation cycle through %q", r.src.Key())
		}
		stack[r] = true
		defer delete(stack, r)
		c := r.src.Correlation
		corr := &correlation{spec: c, owner: r}
		for _, ref := range c.Rules {
			target, ok := byRef[ref]
			if !ok {
				return fmt.Errorf("correlation.rules: no rule with id or name %q", ref)
			}
			if target.info.State == "error" {
				return fmt.Errorf("correlation.rules: rule %q failed to load", ref)
			}
			if err := link(target, stack); err != nil {
				return err
			}
			if target.src.Correlation != nil && target.corr == nil {
				return fmt.Errorf("correlation.rules: rule %q failed to load", ref)
			}
			corr.refs = append(corr.refs, target)
		}
		if err := corr.resolveFields(rs.fieldMap); err != nil {
			return err
		}
		// A correlation's windows hold matches of the rules it reads:
		// it is unchanged only if they are too.
		var parts []string
		for i, t := range corr.refs {
			parts = append(parts, t.hash, strings.Join(corr.groupFields[i], ","), corr.valueField[i])
		}
		r.hash = contentHash(r.src, parts)
		r.corr = corr
		linked[r] = true
		return nil
	}
	for _, r := range parsed {
		if r.src.Correlation == nil {
			continue
		}
		if err := link(r, map[*rule]bool{}); err != nil {
			fail(r, &sigma.Error{Path: r.src.Path, Line: r.src.Line, Rule: r.src.Label(), Reason: err.Error()})
		}
	}
	// Generation: a rule generates detections unless a correlation reads
	// it with generate: false (Sigma v2) and none reads it with true.
	refGen := map[*rule][]bool{}
	for _, r := range parsed {
		if r.corr == nil {
			continue
		}
		for _, t := range r.corr.refs {
			refGen[t] = append(refGen[t], r.corr.spec.Generate)
			if !containsRule(t.downstream, r) {
				t.downstream = append(t.downstream, r)
			}
		}
	}
	for _, r := range parsed {
		if r.info.State == "error" {
			continue
		}
		r.generate = true
		if gens, ok := refGen[r]; ok {
			r.generate = false
			for _, g := range gens {
				r.generate = r.generate || g
			}
		}
		if !r.generate {
			r.info.State = "referenced"
		}
		r.meta = metaFor(r)
		r.groupBy = groupByFields(r.src, rs.fieldMap)
		r.info.Hash = r.hash
		r.idx = len(rs.rules)
		rs.rules = append(rs.rules, r)
		if r.matcher != nil {
			if c := r.matcher.Category(); c != "" {
				rs.byCat[c] = append(rs.byCat[c], r)
			} else {
				rs.anyCat = append(rs.anyCat, r)
			}
		}
	}
	ms := make([]*sigma.Matcher, len(rs.rules))
	for i, r := range rs.rules {
		ms[i] = r.matcher
	}
	rs.index = sigma.NewIndex(ms)
	sort.SliceStable(rs.errs, func(i, j int) bool { return rs.errs[i].Path < rs.errs[j].Path })
	return rs
}

// contentHash identifies a rule's content (not where it sits in its file)
// together with extra strings (resolved fields, what it reads).
func contentHash(sr *sigma.Rule, extra []string) string {
	h := sha256.New()
	c := *sr
	c.Path, c.Line = "", 0
	b, _ := json.Marshal(&c) // the detection block is not in the JSON: below
	h.Write(b)
	if d := sr.Detection; d != nil {
		for _, name := range d.Order {
			h.Write([]byte("\x00" + name + "\x00"))
			nb, _ := yaml.Marshal(d.Searches[name])
			h.Write(nb)
		}
		for _, c := range d.Conditions {
			h.Write([]byte("\x00cond\x00" + c))
		}
	}
	for _, x := range extra {
		h.Write([]byte("\x00" + x))
	}
	return hex.EncodeToString(h.Sum(nil)[:12])
}

// applyFilters ANDs each Sigma filter's condition into the rules it names
// (or every rule of its logsource for rules: any). A filter naming a rule
// that is not loaded is reported and applied to the others.
func applyFilters(rs *RuleSet, filters, parsed []*rule, byRef map[string]*rule, fail func(*rule, error)) {
	for _, f := range filters {
		var missing []string
		for _, ref := range f.src.Filter.Rules {
			if _, ok := byRef[ref]; !ok {
				missing = append(missing, ref)
			}
		}
		for _, r := range parsed {
			if r.matcher != nil && f.src.AppliesTo(r.src) {
				r.matcher = r.matcher.WithFilter(f.matcher)
			}
		}
		if len(missing) > 0 {
			fail(f, &sigma.Error{Path: f.src.Path, Line: f.src.Line, Rule: f.src.Label(),
				Reason: fmt.Sprintf("filter.rules: no rule with id or name %s", strings.Join(missing, ", "))})
		}
	}
}

func containsRule(list []*rule, r *rule) bool {
	for _, x := range list {
		if x == r {
			return true
		}
	}
	return false
}

func firstNonEmpty(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}

// metaFor derives what detections of r carry. A correlation without its
// own ATT&CK tags inherits those of the rules it reads.
func metaFor(r *rule) ruleMeta {
	sr := r.src
	m := ruleMeta{RuleID: sr.Key(), Title: sr.Title, Severity: sr.Severity(), Category: sr.Vigil.Category,
		OWASP: r.info.OWASPCategory, Confidence: sr.Vigil.Confidence}
	if m.RuleID == "" {
		m.RuleID = sr.Title
	}
	m.Tactics, m.Techniques = r.info.MitreTactics, r.info.MitreTechniques
	if r.corr != nil && len(m.Tactics) == 0 && len(m.Techniques) == 0 {
		var tags []string
		var walk func(x *rule)
		walk = func(x *rule) {
			tags = append(tags, x.src.Tags...)
			if x.corr != nil {
				for _, t := range x.corr.refs {
					walk(t)
				}
			}
		}
		walk(r)
		m.Tactics, m.Techniques = sigma.Mitre(tags)
		r.info.MitreTactics, r.info.MitreTechniques = m.Tactics, m.Techniques
	}
	if m.Category == "" {
		m.Category = defaultCategory(r)
	}
	if m.Confidence == 0 {
		m.Confidence = map[string]float64{"info": 0.5, "low": 0.6, "medium": 0.75, "high": 0.9, "critical": 0.95}[m.Severity]
	}
	return m
}

// defaultCategory names a detection category from the logsource when the
// rule does not set vigil.category, e.g. AUTHENTICATION_ALERT.
func defaultCategory(r *rule) string {
	cat := r.src.Logsource.Category
	if r.corr != nil && len(r.corr.refs) > 0 {
		cat = r.corr.refs[0].src.Logsource.Category
		if cat == "" && r.corr.refs[0].meta.Category != "" {
			return r.corr.refs[0].meta.Category
		}
	}
	if cat == "" {
		return "SECURITY_ALERT"
	}
	return strings.ToUpper(strings.ReplaceAll(cat, "-", "_")) + "_ALERT"
}

// groupByFields are the Vigil fields whose values key a plain rule's
// detections.
func groupByFields(sr *sigma.Rule, fm sigma.FieldMap) []string {
	names := sr.Vigil.GroupBy
	if len(names) == 0 {
		names = []string{"source", "user", "src_ip", "resource"}
	}
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = fm.Resolve(n)
	}
	return out
}
