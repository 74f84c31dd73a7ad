package sigma

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func parseRule(t *testing.T, src string) *Rule {
	t.Helper()
	rules, errs := ParseFile("rule.yml", []byte(src))
	if len(errs) > 0 || len(rules) != 1 {
		t.Fatalf("parse: %v", errs)
	}
	return rules[0]
}

func mustPipeline(t *testing.T, src string) *Pipeline {
	t.Helper()
	p, err := ParsePipeline("p.yml", []byte(src))
	if err != nil {
		t.Fatalf("pipeline: %v", err)
	}
	return p
}

const procRule = `title: Suspicious shell
logsource:
  category: process_creation
  product: windows
detection:
  selection:
    Image|endswith: '\cmd.exe'
    CommandLine|contains: 'whoami'
  condition: selection
`

// field_name_mapping limited by a logsource rule condition, as in pySigma's
// own example: it applies to windows process_creation rules only.
func TestPipelineFieldMappingWithLogsourceCondition(t *testing.T) {
	p := mustPipeline(t, `name: ecs
priority: 20
transformations:
  - id: proc_fields
    type: field_name_mapping
    mapping:
      Image: process.executable
      CommandLine: [process.command_line, process.args]
    rule_conditions:
      - type: logsource
        category: process_creation
        product: windows
`)
	m, err := CompileWith(parseRule(t, procRule), CompileOptions{Pipelines: []*Pipeline{p}})
	if err != nil {
		t.Fatal(err)
	}
	ev := `{"type":"audit.process","data":{"process":{"executable":"C:\\Windows\\cmd.exe","args":"/c whoami"}}}`
	if !m.Match(mustEvent(t, ev)) {
		t.Fatalf("mapped fields not read (fields %v)", m.Fields())
	}
	// The original names are no longer read.
	if m.Match(mustEvent(t, `{"type":"audit.process","data":{"Image":"C:\\cmd.exe","CommandLine":"whoami"}}`)) {
		t.Fatal("unmapped Sysmon names still matched")
	}
	// A rule of another logsource is not mapped.
	other := strings.Replace(procRule, "process_creation", "file_event", 1)
	m2, err := CompileWith(parseRule(t, other), CompileOptions{Pipelines: []*Pipeline{p}})
	if err != nil {
		t.Fatal(err)
	}
	if !m2.Match(mustEvent(t, `{"type":"audit.process","data":{"Image":"C:\\cmd.exe","CommandLine":"whoami"}}`)) {
		t.Fatal("rule of another logsource was mapped")
	}
}

func TestPipelinePrefixSuffixReplaceAndConditions(t *testing.T) {
	p := mustPipeline(t, `name: nested
transformations:
  - type: field_name_prefix_mapping
    mapping:
      Cmd: process.
  - type: field_name_prefix
    prefix: "win."
    field_name_conditions:
      - type: include_fields
        fields: [Image]
  - type: field_name_suffix
    suffix: ".keyword"
    field_name_conditions:
      - type: include_fields
        mode: re
        fields: ['^Command']
  - type: replace_string
    regex: '\\'
    replacement: '/'
    field_name_conditions:
      - type: include_fields
        fields: [win.Image]
  - type: add_condition
    conditions:
      data.channel: Security
`)
	m, err := CompileWith(parseRule(t, procRule), CompileOptions{Pipelines: []*Pipeline{p}})
	if err != nil {
		t.Fatal(err)
	}
	ev := `{"type":"audit.process","data":{"win":{"Image":"/usr/bin/cmd.exe"},"CommandLine.keyword":"whoami /all","channel":"Security"}}`
	if !m.Match(mustEvent(t, ev)) {
		t.Fatalf("no match (fields %v)", m.Fields())
	}
	noChannel := strings.Replace(ev, `"Security"`, `"System"`, 1)
	if m.Match(mustEvent(t, noChannel)) {
		t.Fatal("add_condition not ANDed")
	}
}

func TestPipelinePlaceholdersFromVars(t *testing.T) {
	p := mustPipeline(t, `name: env
vars:
  Administrators: [root, 'adm_*']
  Servers: srv01
transformations:
  - type: value_placeholders
    include: [Administrators]
  - type: wildcard_placeholders
`)
	r := parseRule(t, `title: admin logon
logsource:
  product: linux
detection:
  sel:
    User|expand: '%Administrators%'
    Host|expand: '%Servers%'
  condition: sel
`)
	m, err := CompileWith(r, CompileOptions{Pipelines: []*Pipeline{p}})
	if err != nil {
		t.Fatal(err)
	}
	// Administrators from vars; Servers is not included by
	// value_placeholders, so wildcard_placeholders makes it *.
	if !m.Match(mustEvent(t, `{"type":"authentication.login","user":"adm_bob","data":{"Host":"anything"}}`)) {
		t.Fatal("placeholders not expanded")
	}
	if m.Match(mustEvent(t, `{"type":"authentication.login","user":"bob","data":{"Host":"anything"}}`)) {
		t.Fatal("bob matched %Administrators%")
	}
	// A placeholders file wins over vars.
	m, err = CompileWith(r, CompileOptions{Pipelines: []*Pipeline{p}, Placeholders: map[string][]string{"Administrators": {"bob"}}})
	if err != nil {
		t.Fatal(err)
	}
	if !m.Match(mustEvent(t, `{"type":"authentication.login","user":"bob","data":{"Host":"x"}}`)) {
		t.Fatal("placeholders file not used")
	}
}

func TestPipelineLogsourceChangeDropFailure(t *testing.T) {
	p := mustPipeline(t, `transformations:
  - type: change_logsource
    category: authentication
    rule_conditions:
      - type: logsource
        product: windows
  - type: drop_detection_item
    field_name_conditions:
      - type: include_fields
        fields: [Image]
  - type: rule_failure
    message: rules tagged test are not for production
    rule_conditions:
      - type: tag
        tag: test
`)
	m, err := CompileWith(parseRule(t, procRule), CompileOptions{Pipelines: []*Pipeline{p}})
	if err != nil {
		t.Fatal(err)
	}
	if m.Category() != "authentication" {
		t.Fatalf("category %q, want authentication (change_logsource)", m.Category())
	}
	if !m.Match(mustEvent(t, `{"type":"authentication.login","data":{"CommandLine":"whoami"}}`)) {
		t.Fatal("Image was not dropped")
	}
	tagged := strings.Replace(procRule, "detection:", "tags: [test]\ndetection:", 1)
	_, err = CompileWith(parseRule(t, tagged), CompileOptions{Pipelines: []*Pipeline{p}})
	if err == nil || !strings.Contains(err.Error(), "not for production") {
		t.Fatalf("rule_failure: %v", err)
	}
}

func TestPipelinePriorityOrder(t *testing.T) {
	dir := t.TempDir()
	// Given second on the command line but priority 10: applied first, so
	// Image → proc_path, then (priority 20) proc_path → data.exe.path.
	second := filepath.Join(dir, "b.yml")
	first := filepath.Join(dir, "a.yml")
	os.WriteFile(first, []byte("priority: 20\ntransformations:\n  - type: field_name_mapping\n    mapping:\n      proc_path: data.exe.path\n"), 0o600)
	os.WriteFile(second, []byte("priority: 10\ntransformations:\n  - type: field_name_mapping\n    mapping:\n      Image: proc_path\n"), 0o600)
	pipes, err := LoadPipelines([]string{first, second})
	if err != nil {
		t.Fatal(err)
	}
	r := parseRule(t, "title: t\nlogsource:\n  product: windows\ndetection:\n  sel:\n    Image: x.exe\n  condition: sel\n")
	m, err := CompileWith(r, CompileOptions{Pipelines: pipes})
	if err != nil {
		t.Fatal(err)
	}
	if !m.Match(mustEvent(t, `{"type":"audit.process","data":{"exe":{"path":"x.exe"}}}`)) {
		t.Fatalf("priority order not applied (fields %v)", m.Fields())
	}
}

// Unsupported constructs are refused with the file and line.
func TestPipelineRefusals(t *testing.T) {
	for _, c := range []struct{ src, want string }{
		{"transformations:\n  - id: q\n    type: query_expression_placeholders\n    expression: '{field} in x'\n", `p.yml:3: pipeline: transformation type "query_expression_placeholders" is not supported`},
		{"transformations:\n  - type: field_name_mapping\n    mapping: {a: b}\n    detection_item_conditions:\n      - type: match_string\n", "p.yml:4: pipeline: detection_item_conditions is not supported"},
		{"transformations:\n  - type: field_name_mapping\n    mapping: {a: b}\n    rule_conditions:\n      - type: processing_state\n", `p.yml:5: pipeline: rule condition type "processing_state" is not supported`},
		{"transformations:\n  - type: replace_string\n    regex: '('\n    replacement: x\n", "p.yml:2: pipeline: replace_string: bad regex"},
		{"transformations:\n  - type: field_name_prefix\n    prefx: x\n", "p.yml:2: pipeline: field_name_prefix needs prefix"},
		{"name: x\nbogus: 1\n", `p.yml:2: pipeline: unknown pipeline key "bogus"`},
	} {
		_, err := ParsePipeline("p.yml", []byte(c.src))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("pipeline %q: error %v, want %q", c.src, err, c.want)
		}
	}
}

func TestParsePlaceholders(t *testing.T) {
	ph, err := ParsePlaceholders("ph.yml", []byte("placeholders:\n  Administrators: [root, admin]\n  Servers: srv*\n"))
	if err != nil || len(ph["Administrators"]) != 2 || ph["Servers"][0] != "srv*" {
		t.Fatalf("%v %v", ph, err)
	}
	if _, err := ParsePlaceholders("ph.yml", []byte("A:\n  b: c\n")); err == nil || !strings.Contains(err.Error(), "ph.yml:2") {
		t.Fatalf("nested mapping accepted: %v", err)
	}
}

// A placeholders file cannot make one value expand without bound: the
// product of the lists is capped (maxExpand) and the rule refused.
func TestExpandIsBounded(t *testing.T) {
	big := make([]string, 200)
	for i := range big {
		big[i] = strings.Repeat("x", i%7+1)
	}
	r := parseRule(t, "title: t\nlogsource:\n  product: windows\ndetection:\n  sel:\n    Host|expand: '%A%-%B%'\n  condition: sel\n")
	_, err := CompileWith(r, CompileOptions{Placeholders: map[string][]string{"A": big, "B": big}})
	if err == nil || !strings.Contains(err.Error(), "more than 10000 values") || !strings.Contains(err.Error(), "rule.yml:6") {
		t.Fatalf("40,000 combinations: %v", err)
	}
	if _, err := CompileWith(r, CompileOptions{Placeholders: map[string][]string{"A": big[:50], "B": big[:50]}}); err != nil {
		t.Fatalf("2,500 combinations refused: %v", err)
	}
}

// Value transformations touch string values only: a regular expression or
// a number keeps its text.
func TestPipelineValueTransformsSkipNonStrings(t *testing.T) {
	p := mustPipeline(t, "transformations:\n  - type: replace_string\n    regex: 'a'\n    replacement: 'b'\n")
	r := parseRule(t, "title: t\nlogsource:\n  product: x\ndetection:\n  s:\n    Name: 'a1'\n  r:\n    Cmd|re: '^a+$'\n  condition: s and r\n")
	m, err := CompileWith(r, CompileOptions{Pipelines: []*Pipeline{p}})
	if err != nil {
		t.Fatal(err)
	}
	if !m.Match(mustEvent(t, `{"type":"audit.x","data":{"Name":"b1","Cmd":"aaa"}}`)) {
		t.Fatal("replace_string changed the regular expression or missed the string")
	}
}
