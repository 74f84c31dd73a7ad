package sigma

import (
	"slices"
	"strconv"
	"strings"
)

// Index finds the rules an event could match, so that with thousands of
// rules loaded (the SigmaHQ corpus) an event meets only a few of them.
// For every rule it derives a set of event keys — a Vigil field that is
// set, or a top-level key under data — at least one of which must be
// present for the rule to match: a field condition cannot hold on an absent
// field unless it is negated (neq), tests null, exists: false or sits under
// not. Rules with no such set (keyword searches, negations only, fields
// every event has) are candidates for every event. Candidates also still
// go through the rule's category check and full match, so the index only
// ever skips rules that cannot match. An Index is immutable.
type Index struct {
	byKey  map[string][]int32
	byKW   [][]int32 // by keyword pattern id (automaton hits)
	always []int32
	n      int
	ac     *acMachine // the rules' keyword contains values (EvalCtx.UseIndex)
}

// IndexScratch is per-goroutine scratch space for Index.Candidates.
type IndexScratch struct {
	mark []uint32
	gen  uint32
	out  []int32
}

// keyWeight ranks keys when a rule needs only one of several conditions:
// fields most events set are poor discriminators.
func keyWeight(k string) int {
	if strings.HasPrefix(k, "data.") || strings.HasPrefix(k, "#") || strings.Contains(k, "=") {
		return 1
	}
	return 50
}

type need map[string]bool // nil: no requirement (the rule may match anything)

func (n need) weight() int {
	w := 0
	for k := range n {
		w += keyWeight(k)
	}
	return w
}

func union(a, b need) need {
	if a == nil || b == nil {
		return nil
	}
	out := make(need, len(a)+len(b))
	for k := range a {
		out[k] = true
	}
	for k := range b {
		out[k] = true
	}
	return out
}

// best returns the lightest requirement of an AND (any one of them must
// hold), nil when none of them requires anything.
func best(ns []need) need {
	var out need
	for _, n := range ns {
		if n != nil && (out == nil || n.weight() < out.weight()) {
			out = n
		}
	}
	return out
}

// fieldKeys are the event keys through which lookup can find field.
func fieldKeys(field string) need {
	if alwaysSet[field] || field == "data" || field == "" {
		return nil
	}
	path, ok := strings.CutPrefix(field, "data.")
	if !ok {
		return need{field: true}
	}
	// lookupPath finds data["a.b.c"], data["a"]["b.c"], data["a.b"]["c"], …:
	// the top-level key is any dot-prefix of the path.
	n := need{"data." + path: true}
	for i := 0; i < len(path); i++ {
		if path[i] == '.' {
			n["data."+path[:i]] = true
		}
	}
	return n
}

func (f *fieldCond) need(ac *acMachine) need {
	if f.negate || len(f.vals) == 0 {
		return nil
	}
	if f.key == keywordKey() && f.field == "" {
		return f.keywordNeed(ac)
	}
	for _, v := range f.vals {
		switch x := v.(type) {
		case nullMatcher, alwaysMatcher:
			return nil
		case existsMatcher:
			if !x.want {
				return nil
			}
		case *anyFieldMatcher:
			var out need = need{}
			for i := range x.alts {
				out = union(out, x.alts[i].need(ac))
			}
			return out
		}
	}
	chain := f.chain
	if len(chain) == 0 {
		chain = []string{f.field}
	}
	out := need{}
	for _, c := range chain {
		if valueKeyed[c] {
			vk := f.valueKeys(c)
			if vk == nil && !alwaysSet[c] {
				vk = fieldKeys(c) // not an equality: presence is still needed
			}
			out = union(out, vk)
			continue
		}
		out = union(out, fieldKeys(c))
	}
	return out
}

// valueKeyed are the fields the index keys by value ("type=process.start")
// when a rule tests them for equality: type and category, which every
// event has (auditd's type: EXECVE, Okta's eventtype), and action and
// outcome, which most have (GitHub audit rules' action: repo.destroy).
var valueKeyed = map[string]bool{"type": true, "category": true, "action": true, "outcome": true}

// valueKeys keys field c by the condition's values when every value is a
// plain equality; nil (no requirement) otherwise.
func (f *fieldCond) valueKeys(c string) need {
	out := need{}
	for _, v := range f.vals {
		sm, ok := v.(*strMatcher)
		if !ok || sm.op != opEq {
			return nil
		}
		out[c+"="+strings.ToLower(sm.pattern)] = true
	}
	if f.all && len(out) > 1 {
		for k := range out { // all of several values: any one is needed
			return need{k: true}
		}
	}
	return out
}

// keywordNeed keys a keyword search by the automaton's pattern ids ("#7"):
// one of its keywords must occur in the event's text.
func (f *fieldCond) keywordNeed(ac *acMachine) need {
	if ac == nil {
		return nil
	}
	out := need{}
	for _, v := range f.vals {
		sm, ok := v.(*strMatcher)
		if !ok || !sm.keyword {
			return nil
		}
		id, ok := ac.ids[sm.kwID]
		if !ok {
			return nil
		}
		k := "#" + strconv.Itoa(int(id))
		if f.all {
			return need{k: true}
		}
		out[k] = true
	}
	return out
}

func (s *search) need(ac *acMachine) need {
	out := need{}
	for _, g := range s.groups {
		ns := make([]need, len(g))
		for i := range g {
			ns[i] = g[i].need(ac)
		}
		out = union(out, best(ns))
	}
	return out
}

func condNeed(c cond, ss []need) need {
	switch x := c.(type) {
	case condSel:
		return ss[x]
	case condAnd:
		ns := make([]need, len(x))
		for i, y := range x {
			ns[i] = condNeed(y, ss)
		}
		return best(ns)
	case condOr:
		out := need{}
		for _, y := range x {
			out = union(out, condNeed(y, ss))
		}
		return out
	case condOf:
		ns := make([]need, len(x.sel))
		for i, idx := range x.sel {
			ns[i] = ss[idx]
		}
		if x.n < 0 {
			return best(ns)
		}
		out := need{}
		for _, n := range ns {
			out = union(out, n)
		}
		return out
	}
	return nil // not, filters: no requirement
}

// requirement is the set of event keys one of which the rule needs.
func (m *Matcher) requirement(ac *acMachine) need {
	ss := make([]need, len(m.searches))
	for i := range m.searches {
		ss[i] = m.searches[i].need(ac)
	}
	out := need{}
	for _, c := range m.conds {
		out = union(out, condNeed(c, ss))
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// NewIndex indexes ms; Candidates returns positions in ms. Nil entries
// (rules without a matcher) are never candidates. It also builds one
// Aho-Corasick automaton over the keyword values of every rule (an EvalCtx
// uses it after UseIndex). The matchers are only read, so several indexes
// (rule sets) may share them.
func NewIndex(ms []*Matcher) *Index {
	ix := &Index{byKey: map[string][]int32{}, n: len(ms)}
	ix.buildAC(ms)
	if ix.ac != nil {
		ix.byKW = make([][]int32, ix.ac.patterns)
	}
	for i, m := range ms {
		if m == nil {
			continue
		}
		req := m.requirement(ix.ac)
		if req == nil {
			ix.always = append(ix.always, int32(i))
			continue
		}
		for k := range req {
			if id, ok := strings.CutPrefix(k, "#"); ok {
				n, _ := strconv.Atoi(id)
				ix.byKW[n] = append(ix.byKW[n], int32(i))
				continue
			}
			ix.byKey[k] = append(ix.byKey[k], int32(i))
		}
	}
	return ix
}

// Always is how many rules are candidates for every event.
func (ix *Index) Always() int { return len(ix.always) }

// vigilKeys are the optional top-level fields an index key may name.
var vigilKeys = []string{"user", "user_id", "src_ip", "resource", "action", "outcome", "message", "source",
	"confidence", "risk_score", "mitre_tactics", "mitre_techniques", "tags"}

// Candidates returns, in ascending order, the positions of the rules the
// event of ctx (after ctx.Reset) may match. The result is valid until the
// next call with sc. With keyword rules indexed, ctx must use the index
// (ctx.UseIndex(ix)): the event's text is then scanned once, here.
func (ix *Index) Candidates(ctx *EvalCtx, sc *IndexScratch) []int32 {
	e := ctx.e
	if len(sc.mark) < ix.n {
		sc.mark = make([]uint32, ix.n)
		sc.gen = 0
	}
	sc.gen++
	if sc.gen == 0 { // wrapped: forget every mark
		clear(sc.mark)
		sc.gen = 1
	}
	out := append(sc.out[:0], ix.always...)
	add := func(list []int32) {
		for _, i := range list {
			if sc.mark[i] != sc.gen {
				sc.mark[i] = sc.gen
				out = append(out, i)
			}
		}
	}
	for _, i := range ix.always {
		sc.mark[i] = sc.gen
	}
	for _, k := range vigilKeys {
		list, ok := ix.byKey[k]
		if !ok {
			continue
		}
		if _, present := e.Field(k); present {
			add(list)
		}
	}
	var buf [128]byte
	for _, kv := range [4][2]string{{"type=", e.Type}, {"category=", string(e.Category)}, {"action=", e.Action}, {"outcome=", e.Outcome}} {
		key := append(append(buf[:0], kv[0]...), lowerASCIIFast(kv[1])...)
		if list, ok := ix.byKey[string(key)]; ok { // no allocation: map lookup of a converted []byte
			add(list)
		}
	}
	if m := e.DataMap(); m != nil && len(ix.byKey) > 0 {
		for k := range m {
			key := append(append(buf[:0], "data."...), k...)
			if list, ok := ix.byKey[string(key)]; ok {
				add(list)
			}
		}
	}
	if ix.ac != nil {
		if ctx.ac != ix.ac {
			// The context cannot tell which keywords occur: every keyword
			// rule is a candidate.
			for _, list := range ix.byKW {
				add(list)
			}
		} else {
			for _, id := range ctx.acScan(ctx.getChain(ctx.kw, nil)) {
				add(ix.byKW[id])
			}
		}
	}
	slices.Sort(out)
	sc.out = out
	return out
}

// buildAC collects the keyword (full-text) contains values of every rule
// (and the longest literal of each keyword wildcard value),
// case-insensitive ones, into one automaton. It reads the matchers and
// never changes them.
func (ix *Index) buildAC(ms []*Matcher) {
	ids := map[string]bool{}
	var pats []string
	for _, m := range ms {
		if m == nil {
			continue
		}
		for si := range m.searches {
			for _, g := range m.searches[si].groups {
				for fi := range g {
					for _, v := range g[fi].vals {
						if sm, ok := v.(*strMatcher); ok && sm.keyword && !ids[sm.pattern] {
							ids[sm.pattern] = true
							pats = append(pats, sm.pattern)
						}
						if gm, ok := v.(*globMatcher); ok && gm.kwLit != "" && !ids[gm.kwLit] {
							ids[gm.kwLit] = true
							pats = append(pats, gm.kwLit)
						}
					}
				}
			}
		}
	}
	if len(pats) > 0 {
		ix.ac = newAC(pats)
	}
}
