package sigma

import (
	"math/rand"
	"testing"
)

// TestGlobAgreesWithRegexp checks the glob matcher against the regular
// expression Vigil used before for the same Sigma values, over random
// ASCII patterns (stars, question marks, escapes) and texts. (The regexp
// form was wrong for non-ASCII values: it quoted them byte by byte; see
// TestGlobNonASCII.)
func TestGlobAgreesWithRegexp(t *testing.T) {
	rng := rand.New(rand.NewSource(13))
	alpha := []string{"a", "b", "A", "\\", "."}
	pat := []string{"a", "b", "B", "*", "?", "\\*", "\\?", "\\\\", "\\", "."}
	checked := 0
	for n := 0; n < 20000; n++ {
		var p, s string
		for i := rng.Intn(6); i >= 0; i-- {
			p += pat[rng.Intn(len(pat))]
		}
		if !hasWildcard(p) {
			continue
		}
		for i := rng.Intn(8); i > 0; i-- {
			s += alpha[rng.Intn(len(alpha))]
		}
		for _, op := range []strOp{opEq, opContains, opPrefix, opSuffix} {
			for _, cased := range []bool{false, true} {
				re, err := wildcardRegexp(p, op, cased)
				if err != nil {
					t.Fatalf("%q: %v", p, err)
				}
				g := newGlob(p, op, cased)
				text := s
				if !cased {
					text = lowerASCIIFast(s)
				}
				if got, want := g.matchString(text), re.MatchString(s); got != want {
					t.Fatalf("pattern %q op %d cased %v text %q: glob %v, regexp %v", p, op, cased, s, got, want)
				}
				checked++
			}
		}
	}
	t.Logf("%d pattern/text pairs agree", checked)
}

func TestGlobNonASCII(t *testing.T) {
	m := compileOne(t, rule("  sel:\n    data.Path: '*\\Résumé?.doc'\n  condition: sel"))
	if !m.Match(mustEvent(t, `{"type":"audit.file","data":{"Path":"C:\\Users\\RÉSUMÉ1.DOC"}}`)) {
		t.Fatal("non-ASCII wildcard value does not match")
	}
	if m.Match(mustEvent(t, `{"type":"audit.file","data":{"Path":"C:\\Users\\Resume1.doc"}}`)) {
		t.Fatal("é matched e")
	}
}
