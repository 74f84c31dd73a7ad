package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigil-sec/vigil/internal/testnode"
)

const backtestCLIRule = `title: Marker seen
id: 5f0c1a2e-0000-4000-8000-00000000000a
logsource: {product: vigil}
detection:
    sel: {action: marker}
    condition: sel
level: medium
tags: [attack.t1110.001]
`

// TestRulesBacktestCommand: `vigil rules backtest` sends a rule file to a
// real server and prints what it would have created over stored events.
func TestRulesBacktestCommand(t *testing.T) {
	n := testnode.Start(t)
	vigil := cliAgainst(n)
	dir := t.TempDir()
	evs := filepath.Join(dir, "events.ndjson")
	body := `{"type":"audit.x","action":"marker","user":"alice"}
{"type":"audit.x","action":"other","user":"bob"}
{"type":"audit.x","action":"marker","user":"carol"}
`
	if err := os.WriteFile(evs, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, stderr, err := vigil("publish", evs); err != nil {
		t.Fatalf("publish: %v %s %s", err, out, stderr)
	}
	rules := filepath.Join(dir, "rules")
	if err := os.Mkdir(rules, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rules, "marker.yml"), []byte(backtestCLIRule), 0o600); err != nil {
		t.Fatal(err)
	}
	out, stderr, err := vigil("rules", "backtest", "--since", "1h", rules)
	if err != nil {
		t.Fatalf("backtest: %v\n%s%s", err, out, stderr)
	}
	if !strings.Contains(out, "3 event(s) read, 3 evaluated") ||
		!strings.Contains(out, "5f0c1a2e-0000-4000-8000-00000000000a  3        2        2        2") ||
		!strings.Contains(out, "would create: tenant=default [user=alice]") {
		t.Fatalf("output:\n%s", out)
	}
	if _, _, err := vigil("rules", "backtest", rules); err == nil || !strings.Contains(err.Error(), "--since or --from-seq") {
		t.Fatalf("without a range: %v", err)
	}
}

// TestRulesCoverageCommand: `vigil rules coverage --navigator` against a
// server writes a Navigator layer; with rule files it works offline and
// names technique ids ATT&CK does not have.
func TestRulesCoverageCommand(t *testing.T) {
	n := testnode.Start(t)
	vigil := cliAgainst(n)
	dir := t.TempDir()
	out := filepath.Join(dir, "layer.json")
	stdout, stderr, err := vigil("rules", "coverage", "--navigator", out)
	if err != nil {
		t.Fatalf("coverage: %v\n%s%s", err, stdout, stderr)
	}
	if !strings.Contains(stdout, "ATT&CK Enterprise 18.1: ") || !strings.Contains(stdout, "TA0006  Credential Access") {
		t.Fatalf("output:\n%s", stdout)
	}
	b, err := os.ReadFile(out)
	if err != nil || !strings.Contains(string(b), `"layer": "4.5"`) || !strings.Contains(string(b), `"techniqueID": "T1110.001"`) {
		t.Fatalf("layer: %v\n%s", err, b)
	}
	rule := filepath.Join(dir, "r.yml")
	if err := os.WriteFile(rule, []byte(strings.Replace(backtestCLIRule, "attack.t1110.001", "attack.t1110.001, attack.t9999", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, err = vigil("rules", "coverage", rule)
	if err != nil || !strings.Contains(stdout, "1 of ") || !strings.Contains(stdout, "T9999") {
		t.Fatalf("offline coverage: %v\n%s%s", err, stdout, stderr)
	}
}

// TestRulesLintCommand: exit code for CI: errors fail, warnings pass
// unless --warnings-as-errors; output is file:line: severity: message.
func TestRulesLintCommand(t *testing.T) {
	dir := t.TempDir()
	rule := filepath.Join(dir, "r.yml")
	write := func(body string) {
		if err := os.WriteFile(rule, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	vigil := func(args ...string) (string, error) {
		var out strings.Builder
		err := run(t.Context(), args, env{getenv: func(string) string { return "" }, stdin: strings.NewReader(""), stdout: &out, stderr: &out})
		return out.String(), err
	}
	// A warning only: an id that is not a UUID.
	write(strings.Replace(backtestCLIRule, "5f0c1a2e-0000-4000-8000-00000000000a", "MY-RULE-1", 1) + "status: test\n")
	out, err := vigil("rules", "lint", dir)
	if err != nil || !strings.Contains(out, rule+`:2: warning: id "MY-RULE-1" is not a UUID`) || !strings.Contains(out, "0 error(s), 1 warning(s)") {
		t.Fatalf("warning only: %v\n%s", err, out)
	}
	if _, err := vigil("rules", "lint", "--warnings-as-errors", dir); err == nil {
		t.Fatal("--warnings-as-errors passed a warning")
	}
	// An error: an ATT&CK technique that does not exist.
	write(strings.Replace(backtestCLIRule, "attack.t1110.001", "attack.t1109", 1) + "status: test\n")
	if out, err := vigil("rules", "lint", dir); err == nil || !strings.Contains(out, rule+`:8: error: tag "attack.t1109"`) {
		t.Fatalf("error: %v\n%s", err, out)
	}
}
