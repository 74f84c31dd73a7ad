package detect

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// Sigma v2 filter documents (sigma-filters-specification.md): a filter's
// condition is ANDed with the conditions of the rules it names, when the
// logsource matches; other rules are untouched; a filter creates no
// detections itself.
func TestSigmaFilterRules(t *testing.T) {
	dir := t.TempDir()
	write := func(name, src string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("rules.yml", `title: Archiver run
id: 6f3e2987-db24-4c78-a860-b4f4095a7095
logsource:
  category: process_creation
  product: windows
detection:
  selection:
    Image|endswith: '\rar.exe'
  condition: selection
---
title: Archiver run (unfiltered twin)
id: 11111111-db24-4c78-a860-b4f4095a7095
logsource:
  category: process_creation
  product: windows
detection:
  selection:
    Image|endswith: '\rar.exe'
  condition: selection
---
title: Archiver run on linux
id: 22222222-db24-4c78-a860-b4f4095a7095
logsource:
  category: process_creation
  product: linux
detection:
  selection:
    Image|endswith: '\rar.exe'
  condition: selection
`)
	write("mf_admins.yml", `title: Filter Administrator account
description: The valid administrator account start with adm_
logsource:
  category: process_creation
  product: windows
filter:
  rules:
    - 6f3e2987-db24-4c78-a860-b4f4095a7095
  selection:
    User|startswith: 'adm_'
  condition: not selection
`)
	write("mf_any.yml", `title: Filter backup host on every windows process rule
logsource:
  product: windows
filter:
  rules: any
  host:
    Computer: backup01
  condition: not host
`)
	rs, err := LoadRules(LoadOptions{NoBuiltins: true, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range rs.Errors() {
		t.Fatalf("load error: %v", e)
	}
	kinds := map[string]int{}
	for _, in := range rs.Infos() {
		kinds[in.Kind]++
	}
	if kinds["filter"] != 2 || kinds["sigma"] != 3 {
		t.Fatalf("kinds %v, want 2 filters and 3 rules", kinds)
	}
	evl := NewEvaluator(rs, 1000, 10)
	matches := func(js string) []string {
		ids := evl.Matches(ev(t, 0, js))
		slices.Sort(ids)
		return ids
	}
	admin := matches(`{"type":"audit.process","user":"adm_bob","source":"ws01","data":{"Image":"C:\\rar.exe"}}`)
	if want := []string{"11111111-db24-4c78-a860-b4f4095a7095", "22222222-db24-4c78-a860-b4f4095a7095"}; !slices.Equal(admin, want) {
		t.Fatalf("adm_ user: matches %v, want %v (the filtered rule suppressed, the others not)", admin, want)
	}
	plain := matches(`{"type":"audit.process","user":"bob","source":"ws01","data":{"Image":"C:\\rar.exe"}}`)
	if len(plain) != 3 {
		t.Fatalf("bob: matches %v, want all three rules", plain)
	}
	// rules: any with logsource product windows: both windows rules are
	// filtered on backup01, the linux rule is not.
	backup := matches(`{"type":"audit.process","user":"bob","source":"backup01","data":{"Image":"C:\\rar.exe"}}`)
	if want := []string{"22222222-db24-4c78-a860-b4f4095a7095"}; !slices.Equal(backup, want) {
		t.Fatalf("backup01: matches %v, want %v", backup, want)
	}
}

func TestSigmaFilterUnknownRuleIsReported(t *testing.T) {
	dir := t.TempDir()
	src := "title: f\nlogsource:\n  product: windows\nfilter:\n  rules: [no-such-rule]\n  sel:\n    User: x\n  condition: not sel\n"
	if err := os.WriteFile(filepath.Join(dir, "mf.yml"), []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	rs, err := LoadRules(LoadOptions{NoBuiltins: true, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	errs := rs.Errors()
	if len(errs) != 1 || !strings.Contains(errs[0].Reason, "no-such-rule") || errs[0].Line != 1 || !strings.HasSuffix(errs[0].Path, "mf.yml") {
		t.Fatalf("errors %v, want one naming no-such-rule at mf.yml:1", errs)
	}
}

// --pipeline and --sigma-placeholders reach the compiler through
// LoadOptions, and a broken pipeline is a load error naming the file.
func TestLoadRulesWithPipelineAndPlaceholders(t *testing.T) {
	dir := t.TempDir()
	rules := filepath.Join(dir, "rules")
	os.Mkdir(rules, 0o700)
	os.WriteFile(filepath.Join(rules, "r.yml"), []byte(`title: admin shell
id: r1
logsource:
  category: process_creation
  product: windows
detection:
  sel:
    Image|endswith: '\cmd.exe'
    User|expand: '%Administrators%'
  condition: sel
`), 0o600)
	pipe := filepath.Join(dir, "p.yml")
	os.WriteFile(pipe, []byte("transformations:\n  - type: field_name_mapping\n    mapping:\n      Image: process.executable\n"), 0o600)
	ph := filepath.Join(dir, "ph.yml")
	os.WriteFile(ph, []byte("Administrators: [root, adm_*]\n"), 0o600)
	rs, err := LoadRules(LoadOptions{NoBuiltins: true, Dir: rules, Pipelines: []string{pipe}, Placeholders: ph})
	if err != nil {
		t.Fatal(err)
	}
	if len(rs.Errors()) > 0 {
		t.Fatalf("errors: %v", rs.Errors())
	}
	got := NewEvaluator(rs, 10, 10).Matches(ev(t, 0, `{"type":"audit.process","user":"adm_eve","data":{"process":{"executable":"C:\\cmd.exe"}}}`))
	if !slices.Equal(got, []string{"r1"}) {
		t.Fatalf("matches %v, want r1", got)
	}
	// Without the placeholders file the rule is refused, naming the
	// placeholder, file and line.
	rs, err = LoadRules(LoadOptions{NoBuiltins: true, Dir: rules, Pipelines: []string{pipe}})
	if err != nil {
		t.Fatal(err)
	}
	if errs := rs.Errors(); len(errs) != 1 || errs[0].Line != 9 || !strings.Contains(errs[0].Reason, "%Administrators%") {
		t.Fatalf("errors %v, want r.yml:9 naming %%Administrators%%", errs)
	}
	os.WriteFile(pipe, []byte("transformations:\n  - type: query_expression_placeholders\n"), 0o600)
	if _, err := LoadRules(LoadOptions{NoBuiltins: true, Dir: rules, Pipelines: []string{pipe}}); err == nil || !strings.Contains(err.Error(), "p.yml:2") {
		t.Fatalf("broken pipeline: %v, want an error naming p.yml:2", err)
	}
}
