package sigma

import (
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// corpusDir is the SigmaHQ rule corpus (github.com/SigmaHQ/sigma, read
// outside the repository: it is someone else's content). Tests that need it
// skip without VIGIL_SIGMA_CORPUS.
func corpusDir(t testing.TB) string {
	dir := os.Getenv("VIGIL_SIGMA_CORPUS")
	if dir == "" {
		t.Skip("VIGIL_SIGMA_CORPUS is not set (a checkout of github.com/SigmaHQ/sigma); skipping the corpus test")
	}
	return dir
}

// TestCorpusLoads parses and compiles every rule of the corpus's rules,
// rules-emerging-threats and rules-threat-hunting directories with the
// default configuration and reports what is refused and why.
func TestCorpusLoads(t *testing.T) {
	dir := corpusDir(t)
	var loaded, failed, withPlaceholders int
	// The value a site would give in a placeholders file (--sigma-placeholders).
	ph := CompileOptions{Placeholders: map[string][]string{"known_cdcs": {"dc01.corp.example"}}}
	reasons := map[string]int{}
	for _, sub := range []string{"rules", "rules-emerging-threats", "rules-threat-hunting"} {
		err := filepath.WalkDir(filepath.Join(dir, sub), func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".yml") {
				return err
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			rules, errs := ParseFile(path, b)
			for _, e := range errs {
				failed++
				reasons[e.Reason]++
				t.Logf("refused: %v", e)
			}
			for _, r := range rules {
				if r.Detection == nil {
					loaded++
					continue
				}
				if _, err := Compile(r, nil); err != nil {
					if _, err2 := CompileWith(r, ph); err2 == nil && strings.Contains(err.Error(), "expand") {
						withPlaceholders++
					}
					failed++
					reasons[err.(*Error).Reason]++
					t.Logf("refused: %v", err)
					continue
				}
				loaded++
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	var keys []string
	for k := range reasons {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	t.Logf("corpus: %d rules load, %d refused (%d of them load with a placeholders file)", loaded, failed, withPlaceholders)
	if failed != withPlaceholders {
		t.Errorf("%d refusals are not placeholders", failed-withPlaceholders)
	}
	if loaded < 3700 {
		t.Errorf("only %d corpus rules load", loaded)
	}
}
