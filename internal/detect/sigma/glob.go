package sigma

import (
	"strings"
	"unicode/utf8"
	"unique"
)

// globMatcher matches a Sigma value with wildcards (* any run, ? one
// character) without a regular expression: the value is split at its
// stars into segments, the first anchored at the start, the last at the
// end, the others found leftmost in between — which is exact for patterns
// whose only unbounded wildcard is *. With the corpus loaded this replaced
// regexp backtracking, the largest cost of evaluation (issue 13).
type globMatcher struct {
	segs       [][]globTok // separated by *
	lead, tail bool        // the pattern starts / ends with *
	cased      bool
	// suffix is the literal the text must end with when the pattern does
	// not end with * and its last token is a literal: checked before any
	// search, it rejects most texts in one comparison (most Sigma wildcard
	// values are anchored at the end: '*\\AppData\\*\\evil.exe').
	suffix string
	// kwLit is set for a case-insensitive keyword (full-text) value: its
	// longest literal, which must occur in the text for the value to
	// match. It is in the index's automaton, so with a context using an
	// Index an event without it is rejected by one lookup instead of a
	// search through each of its strings (EvalCtx.UseIndex).
	kwLit string
	kwID  unique.Handle[string]
}

// keywordLiteral marks g as a keyword value (see kwLit); called at compile
// time, before the matcher is shared.
func (g *globMatcher) keywordLiteral() {
	for _, seg := range g.segs {
		for _, t := range seg {
			if len(t.lit) > len(g.kwLit) {
				g.kwLit = t.lit
			}
		}
	}
	if g.kwLit != "" {
		g.kwID = unique.Make(g.kwLit)
	}
}

// globTok is a literal run, or one ? when any is set.
type globTok struct {
	lit string
	any bool
}

// newGlob compiles an escaped Sigma value s (with at least one wildcard).
func newGlob(s string, op strOp, cased bool) *globMatcher {
	g := &globMatcher{cased: cased, lead: op == opContains || op == opSuffix, tail: op == opContains || op == opPrefix}
	var parts [][]globTok // split at unescaped stars
	var cur []globTok
	var lit strings.Builder
	flushLit := func() {
		if lit.Len() > 0 {
			t := lit.String()
			if !cased {
				t = strings.ToLower(t)
			}
			cur = append(cur, globTok{lit: t})
			lit.Reset()
		}
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && i+1 < len(s) && (s[i+1] == '*' || s[i+1] == '?' || s[i+1] == '\\'):
			lit.WriteByte(s[i+1])
			i++
		case c == '*':
			flushLit()
			parts = append(parts, cur)
			cur = nil
		case c == '?':
			flushLit()
			cur = append(cur, globTok{any: true})
		default:
			lit.WriteByte(c)
		}
	}
	flushLit()
	parts = append(parts, cur)
	if len(parts) > 1 {
		g.lead = g.lead || len(parts[0]) == 0
		g.tail = g.tail || len(parts[len(parts)-1]) == 0
	}
	for _, p := range parts {
		if len(p) > 0 {
			g.segs = append(g.segs, p)
		}
	}
	if !g.tail && len(g.segs) > 0 {
		last := g.segs[len(g.segs)-1]
		if t := last[len(last)-1]; !t.any {
			g.suffix = t.lit
		}
	}
	return g
}

// matchAt matches seg at s[i:], returning the end offset.
func matchAt(s string, i int, seg []globTok) (int, bool) {
	for _, t := range seg {
		if t.any {
			if i >= len(s) {
				return 0, false
			}
			_, n := utf8.DecodeRuneInString(s[i:])
			i += n
			continue
		}
		if !strings.HasPrefix(s[i:], t.lit) {
			return 0, false
		}
		i += len(t.lit)
	}
	return i, true
}

// find returns the end of the leftmost match of seg in s at or after i.
func find(s string, i int, seg []globTok) (int, bool) {
	if len(seg) > 0 && !seg[0].any {
		for i <= len(s) {
			j := strings.Index(s[i:], seg[0].lit)
			if j < 0 {
				return 0, false
			}
			if end, ok := matchAt(s, i+j, seg); ok {
				return end, true
			}
			i += j + 1
		}
		return 0, false
	}
	for ; i <= len(s); i++ {
		if end, ok := matchAt(s, i, seg); ok {
			return end, true
		}
	}
	return 0, false
}

func (g *globMatcher) matchString(s string) bool {
	segs := g.segs
	if len(segs) == 0 {
		return true // only stars
	}
	if g.suffix != "" && !strings.HasSuffix(s, g.suffix) {
		return false // the last segment must end the text
	}
	i := 0
	if !g.lead {
		end, ok := matchAt(s, 0, segs[0])
		if !ok {
			return false
		}
		if len(segs) == 1 && !g.tail {
			return end == len(s)
		}
		i, segs = end, segs[1:]
	}
	if len(segs) == 0 {
		return true // "abc*"
	}
	last := segs[len(segs)-1]
	for _, seg := range segs[:len(segs)-1] {
		end, ok := find(s, i, seg)
		if !ok {
			return false
		}
		i = end
	}
	if g.tail {
		_, ok := find(s, i, last)
		return ok
	}
	// The last segment must end the text: try every start from i on.
	for p := len(s); p >= i; p-- {
		if end, ok := matchAt(s, p, last); ok && end == len(s) {
			return true
		}
	}
	return false
}

func (g *globMatcher) match(fv *fieldVal, ev *EvalCtx) bool {
	if g.kwLit != "" && ev.ac != nil {
		if id, ok := ev.ac.ids[g.kwID]; ok && !ev.acHit(fv, id) {
			return false // a literal of the pattern is in none of the strings
		}
	}
	vals := fv.strs
	if !g.cased {
		vals = fv.lowerStrs()
	}
	for _, s := range vals {
		if g.matchString(s) {
			return true
		}
	}
	return false
}
