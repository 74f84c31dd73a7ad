package mapping

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/inputs"
)

const exampleFile = `mappings:
  - name: myapp-login
    app_name: myapp
    regex: '^login (?P<result>failed|ok) for (?P<user>\S+) from (?P<ip>[0-9a-f.:]+)(?: port (?P<port>\d+))?$'
    when: captures.result == "failed"
    set:
      type: authentication.login
      severity: medium
      user: "${user}"
      src_ip: "${ip}"
      action: login
      outcome: failure
      tags: [myapp, "host-${hostname}"]
      mitre_techniques: T1110
      data.port: "${port}"
      data.price: "$$5 ${app_name}"
  - name: myapp-any
    app_name: [myapp, myapp2]
    facility: [auth, 10]
    set:
      type: audit.myapp
  - name: by-host
    hostname: fw1
    input: syslog
    set:
      type: system.firewall
      category: system
      resource: "${fields.meta.zone}"
`

func msg(app, host, text string) *inputs.Message {
	return &inputs.Message{Input: "syslog", AppName: app, Hostname: host, Facility: 4, Severity: 6, Text: text}
}

func mustParse(t *testing.T, src string) *Set {
	t.Helper()
	s, err := Parse("m.yaml", []byte(src))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return s
}

// TestMatch: conditions, captures, templates, first match wins and the
// fallback to the chain's unparsed event.
func TestMatch(t *testing.T) {
	set := mustParse(t, exampleFile)
	fw := msg("kernel", "fw1", "DROP IN=eth0")
	fw.Fields = map[string]string{"meta.zone": "dmz"}
	noFac := msg("myapp", "h", "hello")
	noFac.Facility = -1
	tests := []struct {
		name    string
		m       *inputs.Message
		mapping string // "" : no mapping
		check   func(t *testing.T, ev *event.Event)
	}{
		{"regex captures and templates", msg("myapp", "web1", "login failed for alice from 203.0.113.7 port 4242"), "myapp-login", func(t *testing.T, ev *event.Event) {
			if ev.Type != "authentication.login" || ev.Category != event.CategoryAuthentication || ev.Severity != event.SeverityMedium ||
				ev.User != "alice" || ev.SrcIP != "203.0.113.7" || ev.Action != "login" || ev.Outcome != "failure" {
				t.Errorf("event %+v", ev)
			}
			if strings.Join(ev.Tags, ",") != "myapp,host-web1" || strings.Join(ev.MitreTechniques, ",") != "T1110" {
				t.Errorf("tags %v mitre %v", ev.Tags, ev.MitreTechniques)
			}
			if ev.Message != "login failed for alice from 203.0.113.7 port 4242" {
				t.Errorf("message %q: the raw text by default", ev.Message)
			}
			var d map[string]string
			if err := json.Unmarshal(ev.Data, &d); err != nil || d["port"] != "4242" || d["price"] != "$5 myapp" || d["mapping"] != "myapp-login" {
				t.Errorf("data %s (%v)", ev.Data, err)
			}
		}},
		{"optional capture absent leaves the data key out", msg("myapp", "web1", "login failed for bob from 2001:db8::1"), "myapp-login", func(t *testing.T, ev *event.Event) {
			if ev.SrcIP != "2001:db8::1" || strings.Contains(string(ev.Data), "port") {
				t.Errorf("src_ip %q data %s", ev.SrcIP, ev.Data)
			}
		}},
		{"when false falls to the next mapping (first match wins)", msg("myapp", "web1", "login ok for alice from 203.0.113.7"), "myapp-any", func(t *testing.T, ev *event.Event) {
			if ev.Type != "audit.myapp" || ev.Category != event.CategoryAudit || ev.Severity != event.SeverityInfo || ev.User != "" {
				t.Errorf("event %+v", ev)
			}
		}},
		{"a capture that is not an IP does not match: the next mapping takes it", msg("myapp", "web1", "login failed for x from abc"), "myapp-any", nil},
		{"list of app names", msg("myapp2", "h", "whatever"), "myapp-any", func(t *testing.T, ev *event.Event) {
			if string(ev.Data) != `{"mapping":"myapp-any"}` {
				t.Errorf("data %s", ev.Data)
			}
		}},
		{"facility must match", noFac, "", nil},
		{"hostname, input and fields.<key>", fw, "by-host", func(t *testing.T, ev *event.Event) {
			if ev.Type != "system.firewall" || ev.Resource != "dmz" {
				t.Errorf("event %+v", ev)
			}
		}},
		{"other input", &inputs.Message{Input: "otlp", Hostname: "fw1", Facility: -1, Severity: -1}, "", nil},
		{"no mapping", msg("sshd", "h", "Failed password for root"), "", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, ev, ok := set.Match(tc.m)
			if tc.mapping == "" {
				if ok {
					t.Fatalf("matched %q, want none", m.Name)
				}
				got := inputs.Chain(set.Mappers()).Map(tc.m)
				if !strings.HasSuffix(got.Type, ".unparsed") {
					t.Fatalf("chain made %q, want the unparsed fallback", got.Type)
				}
				return
			}
			if !ok || m.Name != tc.mapping {
				t.Fatalf("matched %v, want %q", m, tc.mapping)
			}
			if tc.check != nil {
				tc.check(t, ev)
			}
			// The chain gives the same event plus source and time, and
			// it passes ingest's validation.
			got := inputs.Chain(set.Mappers()).Map(tc.m)
			if got.Type != ev.Type || got.Source == "" {
				t.Fatalf("chain event %+v", got)
			}
			if _, err := event.Normalize(got, "default", got.Time, event.DefaultLimits()); err != nil {
				t.Fatalf("mapped event refused by ingest validation: %v", err)
			}
		})
	}
}

func TestWhenCEL(t *testing.T) {
	set := mustParse(t, `
- name: sev
  when: 'syslog_severity <= 3 && message.contains("panic") && fields["k"] == "v"'
  set: {type: system.panic, message: "${hostname}: ${message}"}
- name: cost
  when: 'message.size() > 0 && [1,2,3,4,5,6,7,8,9,10].all(x, [1,2,3,4,5,6,7,8,9,10].all(y, [1,2,3,4,5,6,7,8,9,10].all(z, [1,2,3,4,5,6,7,8,9,10].all(w, message.matches("a+b") || true))))'
  set: {type: system.costly}
`)
	m := &inputs.Message{Input: "syslog", Hostname: "h1", Severity: 2, Facility: -1, Text: "kernel panic", Fields: map[string]string{"k": "v"}}
	mp, ev, ok := set.Match(m)
	if !ok || mp.Name != "sev" || ev.Message != "h1: kernel panic" || ev.Severity != event.SeverityCritical {
		t.Fatalf("got %v %+v %v", mp, ev, ok)
	}
	m.Fields = nil // fields["k"] on an empty map: an evaluation error is no match
	if mp, _, ok := set.Match(m); ok {
		t.Fatalf("matched %q: the over-cost condition must not match either", mp.Name)
	}
}

// TestTemplate: ${name} and $$ only.
func TestTemplate(t *testing.T) {
	vals := map[string]string{"a": "1", "b.c": "2"}
	for _, tc := range []struct{ in, out, err string }{
		{"plain", "plain", ""},
		{"${a}", "1", ""},
		{"x${a}y${b.c}z", "x1y2z", ""},
		{"$$${a}$$", "$1$", ""},
		{"", "", ""},
		{"${missing}", "", ""},
		{"$a", "", "lone '$'"},
		{"a$", "", "lone '$'"},
		{"${a", "", "unterminated"},
		{"${}", "", "is not a name"},
		{"${1a}", "", "is not a name"},
		{"${a b}", "", "is not a name"},
	} {
		tpl, err := parseTemplate(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: err %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		if got := tpl.expand(func(n string) string { return vals[n] }); got != tc.out {
			t.Errorf("%q = %q, want %q", tc.in, got, tc.out)
		}
	}
}

// TestValidationErrors: every mapping that does not compile is reported
// with its file, line and reason, all at once.
func TestValidationErrors(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		line      int
		reason    string
	}{
		{"bad regex", "- name: a\n  app_name: x\n  regex: '(?P<u>['\n  set: {type: system.x, user: '${u}'}\n", 3, "regex does not compile"},
		{"bad CEL", "- name: a\n  when: 'message ==='\n  set: {type: system.x}\n", 2, "when does not compile"},
		{"CEL not bool", "- name: a\n  when: 'message'\n  set: {type: system.x}\n", 2, "must evaluate to a bool"},
		{"unknown set field", "- name: a\n  app_name: x\n  set:\n    type: system.x\n    usr: bob\n", 5, `unknown event field "usr"`},
		{"undefined capture", "- name: a\n  regex: '(?P<user>\\w+)'\n  set:\n    type: system.x\n    src_ip: '${ip}'\n", 5, "${ip} is not defined: the regex has no capture (?P<ip>...)"},
		{"capture without regex", "- name: a\n  app_name: x\n  set:\n    type: system.x\n    user: '${user}'\n", 5, "the mapping has no regex"},
		{"bad type", "- name: a\n  app_name: x\n  set:\n    type: Bad..Type\n", 4, "type"},
		{"underivable category", "- name: a\n  app_name: x\n  set:\n    type: nginx.auth\n", 4, "cannot be derived"},
		{"unknown category", "- name: a\n  app_name: x\n  set:\n    type: nginx.auth\n    category: nope\n", 5, "category"},
		{"bad severity", "- name: a\n  app_name: x\n  set:\n    type: system.x\n    severity: urgent\n", 5, "severity"},
		{"template in type", "- name: a\n  app_name: x\n  set:\n    type: 'system.${app_name}'\n", 4, "a literal value"},
		{"bad literal outcome", "- name: a\n  app_name: x\n  set:\n    type: system.x\n    outcome: failed\n", 5, `"failed" would be refused`},
		{"bad literal src_ip", "- name: a\n  app_name: x\n  set:\n    type: system.x\n    src_ip: nowhere\n", 5, "would be refused"},
		{"missing type", "- name: a\n  app_name: x\n  set:\n    user: bob\n", 4, "type is required"},
		{"missing set", "- name: a\n  app_name: x\n", 1, "missing set"},
		{"missing name", "- app_name: x\n  set: {type: system.x}\n", 1, "missing name"},
		{"duplicate name", "- name: a\n  app_name: x\n  set: {type: system.x}\n- name: a\n  app_name: y\n  set: {type: system.y}\n", 4, "name already used by the mapping at line 1"},
		{"unknown key", "- name: a\n  app_name: x\n  regexp: 'x'\n  set: {type: system.x}\n", 3, `unknown key "regexp"`},
		{"no condition", "- name: a\n  set: {type: system.x}\n", 1, "no match condition"},
		{"bad facility", "- name: a\n  facility: kernel\n  set: {type: system.x}\n", 2, `facility "kernel"`},
		{"facility out of range", "- name: a\n  facility: 24\n  set: {type: system.x}\n", 2, `facility "24"`},
		{"secret data key", "- name: a\n  app_name: x\n  set:\n    type: system.x\n    data.password: x\n", 5, "names a secret"},
		{"bad template", "- name: a\n  app_name: x\n  set:\n    type: system.x\n    user: 'cost $5'\n", 5, "lone '$'"},
		{"set field twice", "- name: a\n  app_name: x\n  set:\n    type: system.x\n    user: a\n    user: b\n", 6, "set user given twice"},
		{"not a list", "mappings: 3\n", 1, "expected a list"},
		{"unknown top key", "mapping: []\n", 1, `unknown key "mapping"`},
		{"alias is not expanded", "- &a\n  name: a\n  app_name: x\n  set: {type: system.x}\n- *a\n", 5, "a mapping is an object"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("m.yaml", []byte(tc.src))
			var le *Error
			if !errors.As(err, &le) {
				t.Fatalf("err = %v, want *Error", err)
			}
			p := le.Problems[0]
			if tc.name == "bad regex" && len(le.Problems) != 1 {
				t.Fatalf("a bad regex gives one problem, not also its captures: %v", le)
			}
			if p.File != "m.yaml" || p.Line != tc.line || !strings.Contains(p.Reason, tc.reason) {
				t.Fatalf("problem %s, want line %d and %q", p, tc.line, tc.reason)
			}
			if !strings.Contains(err.Error(), fmt.Sprintf("m.yaml:%d:", tc.line)) {
				t.Fatalf("error text %q lacks file:line", err)
			}
		})
	}
	// Several broken mappings: every one is reported.
	_, err := Parse("m.yaml", []byte("- name: a\n  regex: '['\n  set: {type: system.x}\n- name: b\n  when: 'x'\n  set: {type: system.x}\n"))
	var le *Error
	if !errors.As(err, &le) || len(le.Problems) != 2 || le.Problems[1].Line != 5 {
		t.Fatalf("err = %v", err)
	}
	// YAML syntax errors carry the parser's line.
	if _, err := Parse("m.yaml", []byte("- name: a\n  set: [\n")); err == nil || !strings.Contains(err.Error(), "m.yaml") || !strings.Contains(err.Error(), "line") {
		t.Fatalf("syntax error = %v", err)
	}
}

// TestLimits: the number of mappings and the regex size are bounded.
func TestLimits(t *testing.T) {
	var b strings.Builder
	b.WriteString("mappings:\n")
	for i := 0; i < MaxMappings; i++ {
		fmt.Fprintf(&b, "  - {name: m%d, app_name: a%d, set: {type: system.x}}\n", i, i)
	}
	set := mustParse(t, b.String())
	if len(set.Mappings) != MaxMappings {
		t.Fatalf("%d mappings loaded", len(set.Mappings))
	}
	b.WriteString("  - {name: one-too-many, app_name: z, set: {type: system.x}}\n")
	if _, err := Parse("m.yaml", []byte(b.String())); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("at most %d per file", MaxMappings)) {
		t.Fatalf("%d mappings: err = %v", MaxMappings+1, err)
	}
	ok := "- name: a\n  regex: '" + strings.Repeat("a", MaxRegexLen) + "'\n  set: {type: system.x}\n"
	mustParse(t, ok)
	long := "- name: a\n  regex: '" + strings.Repeat("a", MaxRegexLen+1) + "'\n  set: {type: system.x}\n"
	if _, err := Parse("m.yaml", []byte(long)); err == nil || !strings.Contains(err.Error(), "m.yaml:2:") || !strings.Contains(err.Error(), "regex longer than") {
		t.Fatalf("long regex: err = %v", err)
	}
	if _, err := Parse("m.yaml", make([]byte, MaxFileBytes+1)); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("big file: err = %v", err)
	}
}

// TestRegexLinear: a pattern that backtracking engines take exponential
// time on runs in linear time against a hostile line.
func TestRegexLinear(t *testing.T) {
	set := mustParse(t, "- name: a\n  regex: '^(a+)+$'\n  set: {type: system.x}\n")
	line := strings.Repeat("a", 100_000) + "!"
	if _, _, ok := set.Match(&inputs.Message{Text: line, Facility: -1, Severity: -1}); ok {
		t.Fatal("matched")
	}
}

func TestLoadFile(t *testing.T) {
	if s, err := Load(""); err != nil || s != nil || len(s.Mappers()) != 0 {
		t.Fatalf("Load(\"\") = %v, %v", s, err)
	}
	p := filepath.Join(t.TempDir(), "maps.yaml")
	if err := os.WriteFile(p, []byte(exampleFile), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := Load(p)
	if err != nil || len(s.Mappers()) != 3 || s.Mappings[1].Line != 17 || s.Mappings[1].File != p {
		t.Fatalf("Load = %+v, %v", s, err)
	}
	if _, err := Load(p + ".missing"); err == nil {
		t.Fatal("missing file loaded")
	}
	if err := os.WriteFile(p, []byte("- name: a\n  app_name: x\n  set: {type: Nope}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(p); err == nil || !strings.Contains(err.Error(), p+":3:") {
		t.Fatalf("err = %v", err)
	}
}

// TestDocsExample: the example in docs/inputs.md is testdata/example.yaml
// (which the CLI test runs) and loads.
func TestDocsExample(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "..", "docs", "inputs.md"))
	if err != nil {
		t.Fatal(err)
	}
	ex, err := os.ReadFile(filepath.Join("testdata", "example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(doc), "## User mappings")
	if !ok || !strings.Contains(section, "```yaml\n"+string(ex)+"```") {
		t.Fatal("docs/inputs.md's User mappings example differs from testdata/example.yaml")
	}
	if set := mustParse(t, string(ex)); len(set.Mappings) != 4 {
		t.Fatalf("%d mappings", len(set.Mappings))
	}
}

// TestIndexSameAsLinear: the app-name index picks the same mapping as
// trying every mapping in file order (first match wins is kept).
func TestIndexSameAsLinear(t *testing.T) {
	set := mustParse(t, `
- {name: a1, app_name: a, regex: x, set: {type: system.a1}}
- {name: any1, regex: 'y', set: {type: system.any1}}
- {name: ab, app_name: [b, a, a], regex: 'z', set: {type: system.ab}}
- {name: any2, facility: 4, set: {type: system.any2}}
- {name: a2, app_name: a, set: {type: system.a2}}
- {name: c, app_name: c, set: {type: system.c}}
`)
	for _, app := range []string{"a", "b", "c", "d", ""} {
		for _, text := range []string{"x", "y", "z", "xyz", "zy", "-"} {
			for _, fac := range []int{4, 1} {
				m := &inputs.Message{Input: "syslog", AppName: app, Facility: fac, Severity: 6, Text: text}
				var want string
				for _, mp := range set.Mappings {
					if _, ok := mp.Map(m); ok {
						want = mp.Name
						break
					}
				}
				got, ev, ok := set.Match(m)
				name := ""
				if ok {
					name = got.Name
				}
				if name != want {
					t.Errorf("app %q text %q facility %d: index chose %q, linear %q", app, text, fac, name, want)
				}
				if ev2, ok2 := set.Map(m); ok2 != ok || ok && ev2.Type != ev.Type {
					t.Errorf("Set.Map differs from Match")
				}
			}
		}
	}
	var nilSet *Set
	if _, ok := nilSet.Map(&inputs.Message{}); ok || len(nilSet.Mappers()) != 0 {
		t.Fatal("a nil set matched")
	}
}

// TestConcurrentMap: one Set serves every connection of an input at once
// (run with -race).
func TestConcurrentMap(t *testing.T) {
	set := mustParse(t, exampleFile)
	done := make(chan error)
	for g := 0; g < 4; g++ {
		go func() {
			for i := 0; i < 200; i++ {
				m := msg("myapp", "web1", fmt.Sprintf("login failed for u%d from 203.0.113.7 port %d", i, i))
				mp, ev, ok := set.Match(m)
				if !ok || mp.Name != "myapp-login" || ev.User != fmt.Sprintf("u%d", i) {
					done <- fmt.Errorf("line %d: %v %v", i, mp, ok)
					return
				}
			}
			done <- nil
		}()
	}
	for g := 0; g < 4; g++ {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}
