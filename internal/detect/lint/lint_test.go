package lint

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const cleanRule = `title: Clean rule
id: 0d8a3b6e-2c4f-4e1a-9b7d-5f6e7a8b9c02
status: test
description: nothing wrong here
logsource: {product: vigil, category: authentication}
tags: [attack.credential-access, attack.t1110.001, attack.ta0006, attack.g0016, detection.threat-hunting, owasp.a07-2021]
detection:
    sel: {action: login_failed}
    filter: {user: svc}
    condition: sel and not filter
level: high
`

const badRules = `title: Bad rule
id: not-a-uuid
status: wip
logsource: {product: windows}
tags:
    - attack.t1109
    - attack.ta0099
    - foo.bar
    - NotATag
detection:
    sel: {EventID: 4625}
    unused: {EventID: 1}
    condition: sel or not sel
level: high
---
title: Never
id: 0d8a3b6e-2c4f-4e1a-9b7d-5f6e7a8b9c01
status: test
logsource: {}
detection:
    a: {x: 1}
    b: {y: 1}
    condition: all of them and not a
level: severe
---
title: Bare
detection:
    a: {x: 1|}
    condition: 1 of a*
`

func lintDir(t *testing.T, files map[string]string) []Finding {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	fs, err := Paths([]string{dir}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range fs {
		fs[i].Path = filepath.Base(fs[i].Path)
	}
	return fs
}

// TestLintChecks: every check reports at the right file and line with the
// right severity; a clean rule reports nothing.
func TestLintChecks(t *testing.T) {
	fs := lintDir(t, map[string]string{"clean.yml": cleanRule, "bad.yml": badRules})
	var got []string
	for _, f := range fs {
		got = append(got, f.String())
	}
	want := []string{
		`bad.yml:2: warning: id "not-a-uuid" is not a UUID`,
		`bad.yml:3: error: status "wip" is not one of`,
		`bad.yml:6: error: tag "attack.t1109": T1109 is not an ATT&CK Enterprise 18.1 technique`,
		`bad.yml:7: error: tag "attack.ta0099": TA0099 is not an ATT&CK Enterprise 18.1 tactic`,
		`bad.yml:8: warning: tag "foo.bar": unknown namespace "foo"`,
		`bad.yml:9: warning: tag "NotATag" is not namespace.value`,
		`bad.yml:12: warning: search identifier "unused" is not used by the condition [unused]`,
		`bad.yml:13: error: condition "sel or not sel" is always true`,
		`bad.yml:19: error: logsource names no category, product or service`,
		`bad.yml:23: error: condition "all of them and not a" is always false`,
		`bad.yml:24: error: level "severe" is not one of`,
		`bad.yml:26: error: missing id [id]`,
		`bad.yml:26: error: missing level`,
		`bad.yml:26: warning: missing status`,
		`bad.yml:26: error: missing logsource`,
	}
	all := strings.Join(got, "\n")
	for _, w := range want {
		if !strings.Contains(all, w) {
			t.Errorf("missing finding %q", w)
		}
	}
	for _, f := range fs {
		if f.Path == "clean.yml" {
			t.Errorf("clean rule: %s", f)
		}
	}
	if t.Failed() {
		t.Logf("findings:\n%s", all)
	}
	errs, warns := Summary(fs)
	if errs < 10 || warns < 4 {
		t.Fatalf("%d errors, %d warnings", errs, warns)
	}
}

// TestLintCondition: the condition evaluator agrees with Sigma's meaning
// of the quantifiers and them.
func TestLintCondition(t *testing.T) {
	names := []string{"sel1", "sel2", "_helper", "filter"}
	for _, c := range []struct {
		cond string
		want int // 1 always true, 0 always false, -1 depends
	}{
		{"sel1", -1},
		{"1 of sel* or not 1 of sel*", 1},
		{"all of sel* and not sel1", 0},
		{"2 of sel* and not sel2", 0},
		{"any of them and not (sel1 or sel2 or filter)", 0},
		{"all of them or _helper", -1},
		{"(sel1 or filter) and not (sel1 or filter)", 0},
		{"NOT sel1 OR sel1", 1},
	} {
		e, refs, err := parseCond(c.cond, names)
		if err != nil {
			t.Fatalf("%s: %v", c.cond, err)
		}
		if got := constant(e, refs); got != c.want {
			t.Errorf("%s: %d, want %d", c.cond, got, c.want)
		}
	}
}

// TestLintNewerAttack: ids numbered after the table's last technique (or
// its parent's last sub-technique) and unknown tactic names are warnings
// (a newer ATT&CK release, e.g. v19's attack.stealth, T1685), not errors;
// a gap inside the table's range is an error.
func TestLintNewerAttack(t *testing.T) {
	doc := "title: x\nid: 0d8a3b6e-2c4f-4e1a-9b7d-5f6e7a8b9c03\nstatus: test\nlevel: low\nlogsource: {product: vigil}\n" +
		"tags: [attack.t9999, attack.t1110.009, attack.stealth, attack.t1110.000, attack.g0016, attack.s0002, attack.ds0005]\n" +
		"detection:\n  sel: {a: 1}\n  condition: sel\n"
	var got []string
	for _, f := range File("x.yml", []byte(doc)) {
		got = append(got, string(f.Severity)+" "+f.Message)
	}
	all := strings.Join(got, "\n")
	for _, w := range []string{`warning tag "attack.t9999"`, `warning tag "attack.t1110.009"`, `warning tag "attack.stealth"`, `error tag "attack.t1110.000"`} {
		if !strings.Contains(all, w) {
			t.Errorf("missing %q in\n%s", w, all)
		}
	}
	if len(got) != 4 {
		t.Errorf("%d findings, want 4:\n%s", len(got), all)
	}
}
