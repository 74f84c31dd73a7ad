package sigma

import (
	"math/rand"
	"slices"
	"strings"
	"testing"
)

// The index may only skip rules that cannot match: for every spec case
// and fallback case that matches, the rule must be a candidate.
func TestIndexNeverSkipsAMatch(t *testing.T) {
	checked, skipped := 0, 0
	for _, c := range specCases {
		src := "title: spec\nlogsource:\n  product: windows\ndetection:\n" + c.detection
		rules, _ := ParseFile("spec.yml", []byte(src))
		m, err := Compile(rules[0], nil)
		if err != nil {
			t.Fatal(err)
		}
		ix := NewIndex([]*Matcher{nil, m})
		e := mustEvent(t, c.event)
		ctx := NewEvalCtx()
		ctx.UseIndex(ix)
		ctx.Reset(e)
		cands := ix.Candidates(ctx, &IndexScratch{})
		if m.Match(e) {
			checked++
			if len(cands) != 1 || cands[0] != 1 {
				t.Errorf("%s: matches but candidates are %v", c.ref, cands)
			}
		} else if len(cands) == 0 {
			skipped++
		}
	}
	t.Logf("%d matching cases were candidates; %d non-matching ones skipped by the index", checked, skipped)
	if skipped == 0 {
		t.Error("the index skipped nothing")
	}
}

func TestIndexRequirement(t *testing.T) {
	for _, c := range []struct {
		detection string
		want      []string // nil: candidate for every event
	}{
		{"  sel:\n    Image|endswith: x\n  condition: sel", []string{"data.Image"}},
		{"  sel:\n    process.executable: x\n  condition: sel", []string{"data.process", "data.process.executable"}},
		{"  sel:\n    User: x\n  condition: sel", []string{"user", "data.User"}},
		{"  sel:\n    EventType: x\n  condition: sel", []string{"data.EventType", "type=x"}},
		{"  sel:\n    EventType|contains: x\n  condition: sel", nil},
		{"  sel:\n    action: [Repo.Destroy, repo.archived]\n  condition: sel", []string{"action=repo.destroy", "action=repo.archived"}},
		{"  sel:\n    action|startswith: repo.\n  condition: sel", []string{"action"}},
		{"  sel:\n    Image: x\n  condition: not sel", nil},
		{"  sel:\n    Image|neq: x\n  condition: sel", nil},
		{"  sel:\n    Image: null\n  condition: sel", nil},
		{"  sel:\n    - evil\n  condition: sel", nil}, // keywords are keyed only inside an index with an automaton
		{"  a:\n    Image: x\n  b:\n    CommandLine: y\n  condition: a or b", []string{"data.Image", "data.CommandLine"}},
		{"  a:\n    Image: x\n  b:\n    User: y\n  condition: a and b", []string{"data.Image"}},
		{"  a:\n    Image: x\n  b:\n    - evil\n  condition: a or b", nil},
		{"  a_1:\n    Image: x\n  a_2:\n    Hashes: y\n  condition: 1 of a_*", []string{"data.Image", "data.Hashes"}},
	} {
		m := compileOne(t, rule(c.detection))
		got := m.requirement(nil)
		if (got == nil) != (c.want == nil) || len(got) != len(c.want) {
			t.Errorf("%q: requirement %v, want %v", c.detection, got, c.want)
			continue
		}
		for _, k := range c.want {
			if !got[k] {
				t.Errorf("%q: requirement %v, want %v", c.detection, got, c.want)
			}
		}
	}
}

// The keyword automaton answers as strings.Contains does, over random
// patterns and texts (overlaps, prefixes of each other, repeats).
func TestACAgreesWithContains(t *testing.T) {
	rng := rand.New(rand.NewSource(13))
	for round := 0; round < 200; round++ {
		var pats []string
		for i := rng.Intn(12) + 1; i > 0; i-- {
			p := ""
			for j := rng.Intn(4) + 1; j > 0; j-- {
				p += string("abcé"[rng.Intn(5)%4])
			}
			pats = append(pats, p)
		}
		a := newAC(pats)
		hits := make([]uint32, len(pats))
		for k := 0; k < 20; k++ {
			s := ""
			for j := rng.Intn(16); j > 0; j-- {
				s += string("abcdé"[rng.Intn(6)%5])
			}
			gen := uint32(round*100 + k + 1)
			a.scan(s, hits, gen, nil)
			for id, p := range pats {
				if (hits[id] == gen) != strings.Contains(s, p) {
					t.Fatalf("patterns %q text %q: pattern %q hit %v, contains %v", pats, s, p, hits[id] == gen, strings.Contains(s, p))
				}
			}
		}
	}
}

func TestKeywordsThroughIndex(t *testing.T) {
	m1 := compileOne(t, rule("  keywords:\n    - 'Mimikatz'\n    - 'sekurlsa::'\n  condition: keywords"))
	m2 := compileOne(t, rule("  keywords:\n    '|all':\n      - 'Invoke-'\n      - 'bypass'\n  condition: keywords"))
	ix := NewIndex([]*Matcher{m1, m2})
	ctx := NewEvalCtx()
	ctx.UseIndex(ix)
	for _, c := range []struct {
		ev     string
		w1, w2 bool
	}{
		{`{"type":"audit.x","message":"ran MIMIKATZ"}`, true, false},
		{`{"type":"audit.x","data":{"cmd":"Invoke-Thing -exec Bypass"}}`, false, true},
		{`{"type":"audit.x","data":{"cmd":"Invoke-Thing"},"message":"bypass"}`, false, true},
		{`{"type":"audit.x","message":"nothing"}`, false, false},
	} {
		ctx.Reset(mustEvent(t, c.ev))
		if m1.MatchCtx(ctx) != c.w1 || m2.MatchCtx(ctx) != c.w2 {
			t.Errorf("%s: got %v %v, want %v %v", c.ev, m1.MatchCtx(ctx), m2.MatchCtx(ctx), c.w1, c.w2)
		}
	}
}

// Two rule sets may share compiled matchers (a reload keeping unchanged
// rules): each index numbers the keywords its own way, and neither
// changes the matchers.
func TestIndexesShareMatchers(t *testing.T) {
	m1 := compileOne(t, rule("  keywords:\n    - 'mimikatz'\n  condition: keywords"))
	m2 := compileOne(t, rule("  keywords:\n    - 'sekurlsa'\n    - 'lsadump'\n  condition: keywords"))
	ix1 := NewIndex([]*Matcher{m1})
	ix2 := NewIndex([]*Matcher{m2, m1}) // mimikatz gets another id here
	e := mustEvent(t, `{"type":"audit.x","message":"ran MimiKatz lsadump::sam"}`)
	for _, c := range []struct {
		ix   *Index
		want []int32
	}{{ix1, []int32{0}}, {ix2, []int32{0, 1}}, {ix1, []int32{0}}} {
		ctx := NewEvalCtx()
		ctx.UseIndex(c.ix)
		ctx.Reset(e)
		got := c.ix.Candidates(ctx, &IndexScratch{})
		if !slices.Equal(got, c.want) {
			t.Fatalf("candidates %v, want %v", got, c.want)
		}
		if !m1.MatchCtx(ctx) || (c.ix == ix2 && !m2.MatchCtx(ctx)) {
			t.Fatal("keyword rule does not match through a shared matcher")
		}
	}
}

// Keyword wildcard values are prefiltered by their longest literal through
// the index's automaton: the answers must be those of the plain search
// (no index), case-insensitively, with the literals in the same string.
func TestKeywordWildcardsThroughIndex(t *testing.T) {
	m := compileOne(t, rule("  keywords:\n    - 'wget * - http* | perl'\n    - 'chmod 7?7 /tmp/*'\n  condition: keywords"))
	ix := NewIndex([]*Matcher{m})
	ctx := NewEvalCtx()
	ctx.UseIndex(ix)
	for _, c := range []struct {
		ev   string
		want bool
	}{
		{`{"type":"audit.x","message":"ran WGET -q -O - HTTP://x | Perl"}`, true},
		{`{"type":"audit.x","data":{"cmd":"sh -c 'chmod 757 /tmp/a'"}}`, true},
		{`{"type":"audit.x","data":{"cmd":"Chmod 777 /TMP/"}}`, true},
		{`{"type":"audit.x","message":"wget -q -O - http://x","data":{"cmd":"| perl"}}`, false}, // literals in two strings
		{`{"type":"audit.x","message":"chmod 777 /var/x"}`, false},
		{`{"type":"audit.x","message":"nothing"}`, false},
	} {
		e := mustEvent(t, c.ev)
		ctx.Reset(e)
		if got, plain := m.MatchCtx(ctx), m.Match(e); got != c.want || plain != c.want {
			t.Errorf("%s: through the index %v, plain %v, want %v", c.ev, got, plain, c.want)
		}
	}
}
