package detect

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/vigil-sec/vigil/internal/detect/builtin"
	"github.com/vigil-sec/vigil/internal/detect/sigma"
)

// FuzzLoadRule feeds arbitrary bytes to the whole loader — parse, compile,
// correlation linking (references, cycles, aliases), generation — next to
// the built-in rules, then evaluates an event. Nothing may panic, every
// problem must be reported with the file's path, and the built-ins must
// keep loading whatever the extra file holds.
func FuzzLoadRule(f *testing.F) {
	_ = fs.WalkDir(builtin.FS, ".", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if b, err := fs.ReadFile(builtin.FS, p); err == nil {
				f.Add(b)
			}
		}
		return nil
	})
	entries, _ := os.ReadDir(filepath.Join("sigma", "testdata", "rules"))
	for _, e := range entries {
		if b, err := os.ReadFile(filepath.Join("sigma", "testdata", "rules", e.Name())); err == nil {
			f.Add(b)
		}
	}
	var srcs []ruleSource
	_ = fs.WalkDir(builtin.FS, ".", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			b, _ := fs.ReadFile(builtin.FS, p)
			srcs = append(srcs, ruleSource{path: "builtin:" + p, origin: "builtin", data: b})
		}
		return nil
	})
	f.Fuzz(func(t *testing.T, data []byte) {
		all := append(append([]ruleSource(nil), srcs...), ruleSource{path: "fuzz.yml", origin: "file", data: data})
		rs := buildRuleSet(all, sigma.DefaultFieldMap())
		for _, e := range rs.Errors() {
			if e.Path != "fuzz.yml" || e.Reason == "" {
				t.Fatalf("unexpected error %+v", e)
			}
		}
		builtinOK := 0
		for _, in := range rs.Infos() {
			if in.Origin == "builtin" && in.State != "error" {
				builtinOK++
			}
		}
		if builtinOK < 20 {
			// A fuzz file may shadow a built-in id (duplicate), but only
			// the file's own rules may fail.
			for _, in := range rs.Infos() {
				if in.Origin == "builtin" && in.State == "error" {
					t.Fatalf("built-in rule broken by another file: %+v", in)
				}
			}
		}
		ev := NewEvaluator(rs, 16, 8)
		for i := 0; i < 3; i++ {
			ev.Evaluate(failure(t, 0, "alice", "203.0.113.7"))
		}
	})
}
