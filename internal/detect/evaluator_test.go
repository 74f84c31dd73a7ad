package detect

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/event"
)

var t0 = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

// ev builds a normalized event from JSON, at t0 + offset.
func ev(t testing.TB, offset time.Duration, js string) *event.Event {
	t.Helper()
	e, err := event.DecodeOne([]byte(js))
	if err != nil {
		t.Fatalf("decode %s: %v", js, err)
	}
	e.Time = t0.Add(offset)
	tenant := e.Tenant
	if tenant == "" {
		tenant = "default"
	}
	if _, err := event.Normalize(e, tenant, t0.Add(offset), event.DefaultLimits()); err != nil {
		t.Fatalf("normalize %s: %v", js, err)
	}
	return e
}

func failure(t testing.TB, offset time.Duration, user, ip string) *event.Event {
	return ev(t, offset, fmt.Sprintf(`{"type":"authentication.login_failed","action":"login_failed","outcome":"failure","user":%q,"src_ip":%q,"source":"auth-gateway"}`, user, ip))
}

func builtins(t testing.TB) *RuleSet {
	t.Helper()
	rs, err := LoadRules(LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range rs.Errors() {
		t.Fatalf("built-in rule error: %v", e)
	}
	return rs
}

func ruleIDs(fs []*firing) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.rule.meta.RuleID)
	}
	return out
}

func TestBuiltinRules(t *testing.T) {
	rs := builtins(t)
	want := map[string]string{
		"SEC-AUTH-002": "TA0006", "SEC-AUTH-003": "TA0006", "SEC-AUTH-004": "TA0006", "SEC-AUTH-005": "TA0006",
		"SEC-AUTH-006": "TA0006", "SEC-AUTHZ-001": "TA0004", "SEC-AUTHZ-002": "TA0004", "SEC-EXFIL-001": "TA0010",
		"SEC-EXFIL-002": "TA0009", "SEC-DOS-001": "TA0040", "SEC-DOS-002": "TA0040", "SEC-CRYPTO-001": "TA0005",
		"SEC-MEM-001": "TA0002", "SEC-CB-001": "TA0040",
	}
	seen := map[string]bool{}
	for _, in := range rs.Infos() {
		tactic, ok := want[in.ID]
		if !ok {
			continue
		}
		seen[in.ID] = true
		if in.State != "enabled" {
			t.Errorf("%s state %s", in.ID, in.State)
		}
		if !slices.Contains(in.MitreTactics, tactic) || len(in.MitreTechniques) == 0 || in.Title == "" || in.Severity == "" {
			t.Errorf("%s: %+v", in.ID, in)
		}
	}
	for id := range want {
		if !seen[id] {
			t.Errorf("built-in %s missing", id)
		}
	}
}

func TestBruteForceByUser(t *testing.T) {
	ev := NewEvaluator(builtins(t), 0, 0)
	for i := 0; i < 4; i++ {
		if fs := ev.Evaluate(failure(t, time.Duration(i)*time.Second, "alice", "203.0.113.7")); len(fs) > 0 {
			t.Fatalf("fired after %d failures: %v", i+1, ruleIDs(fs))
		}
	}
	fs := ev.Evaluate(failure(t, 5*time.Second, "alice", "203.0.113.7"))
	if got := ruleIDs(fs); !slices.Equal(got, []string{"SEC-AUTH-002"}) {
		t.Fatalf("fired %v, want SEC-AUTH-002", got)
	}
	f := fs[0]
	if f.groupKey != "user=alice" || f.newEvents != 5 || len(f.eventIDs) != 5 || f.tenant != "default" {
		t.Fatalf("firing = %+v", f)
	}
	m := f.rule.meta
	if m.Severity != "high" || !slices.Equal(m.Tactics, []string{"TA0006"}) || !slices.Equal(m.Techniques, []string{"T1110.001"}) || m.OWASP != "A07:2021" {
		t.Fatalf("meta = %+v", m)
	}
	fs = ev.Evaluate(failure(t, 6*time.Second, "alice", "203.0.113.7"))
	if len(fs) != 1 || fs[0].newEvents != 1 {
		t.Fatalf("6th failure: %+v", fs)
	}
	// A different tenant has its own windows.
	other := failure(t, 7*time.Second, "alice", "203.0.113.7")
	other.Tenant = "acme"
	if fs := ev.Evaluate(other); len(fs) != 0 {
		t.Fatalf("tenant acme fired: %v", ruleIDs(fs))
	}
}

func TestBruteForceWindowExpires(t *testing.T) {
	ev := NewEvaluator(builtins(t), 0, 0)
	for i := 0; i < 10; i++ {
		// One failure every two minutes: never five within five minutes.
		if fs := ev.Evaluate(failure(t, time.Duration(i)*2*time.Minute, "bob", fmt.Sprintf("198.51.100.%d", i))); len(fs) > 0 {
			t.Fatalf("fired at %d: %v", i, ruleIDs(fs))
		}
	}
}

func TestBruteForceBySourceIPAndSpraying(t *testing.T) {
	ev := NewEvaluator(builtins(t), 0, 0)
	var all []string
	for i := 0; i < 10; i++ {
		all = append(all, ruleIDs(ev.Evaluate(failure(t, time.Duration(i)*time.Second, fmt.Sprintf("user%d", i), "192.0.2.50")))...)
	}
	if !slices.Contains(all, "SEC-AUTH-003") || !slices.Contains(all, "SEC-AUTH-004") {
		t.Fatalf("fired %v, want SEC-AUTH-003 and SEC-AUTH-004", all)
	}
	if slices.Contains(all, "SEC-AUTH-002") {
		t.Fatalf("per-user brute force fired for distinct users: %v", all)
	}
}

func TestLockoutAndSuccessAfterBruteForce(t *testing.T) {
	ev := NewEvaluator(builtins(t), 0, 0)
	for i := 0; i < 5; i++ {
		ev.Evaluate(failure(t, time.Duration(i)*time.Second, "carol", "203.0.113.9"))
	}
	locked := ev.Evaluate(ev2(t, 30*time.Second, `{"type":"authentication.account_locked","action":"account_locked","outcome":"success","user":"carol"}`))
	if got := ruleIDs(locked); !slices.Equal(got, []string{"SEC-AUTH-005"}) {
		t.Fatalf("lockout fired %v", got)
	}
	if n := len(locked[0].eventIDs); n != 6 { // the five failures and the lockout
		t.Fatalf("sequence carries %d event ids", n)
	}
	success := ev.Evaluate(ev2(t, 60*time.Second, `{"type":"authentication.login","action":"login","outcome":"success","user":"carol"}`))
	if got := ruleIDs(success); !slices.Equal(got, []string{"SEC-AUTH-006"}) {
		t.Fatalf("success after brute force fired %v", got)
	}
	// A success without a burst before it fires nothing.
	if fs := ev.Evaluate(ev2(t, 61*time.Second, `{"type":"authentication.login","action":"login","outcome":"success","user":"dave"}`)); len(fs) > 0 {
		t.Fatalf("plain login fired %v", ruleIDs(fs))
	}
}

func ev2(t testing.TB, off time.Duration, js string) *event.Event { return ev(t, off, js) }

// TestSpecCorrelationExample runs the Sigma specification's own example:
// many failed logins by a user within 10 minutes followed by a successful
// login, written with the Sigma field name User.
func TestSpecCorrelationExample(t *testing.T) {
	rs, err := LoadRules(LoadOptions{NoBuiltins: true, Files: []string{filepath.Join("sigma", "testdata", "rules", "correlation_spec_example.yml")}})
	if err != nil {
		t.Fatal(err)
	}
	if len(rs.Errors()) > 0 {
		t.Fatal(rs.Errors()[0])
	}
	login := func(off time.Duration, user, outcome string) *event.Event {
		return ev(t, off, fmt.Sprintf(`{"type":"authentication.login","action":"login","outcome":%q,"user":%q}`, outcome, user))
	}
	e := NewEvaluator(rs, 0, 0)
	for i := 0; i < 10; i++ {
		if fs := e.Evaluate(login(time.Duration(i)*30*time.Second, "eve", "failure")); len(fs) > 0 {
			t.Fatalf("failure %d fired %v (many_failed_logins must not generate)", i, ruleIDs(fs))
		}
	}
	fs := e.Evaluate(login(6*time.Minute, "eve", "success"))
	if len(fs) != 1 || fs[0].rule.meta.Title != "Successful login after multiple failed logins" || fs[0].groupKey != "User=eve" {
		t.Fatalf("got %+v", fs)
	}
	if !slices.Equal(fs[0].rule.meta.Tactics, []string{"TA0006"}) {
		t.Fatalf("tactics %v", fs[0].rule.meta.Tactics)
	}
	// Too late: the success comes more than 10 minutes after the burst.
	for i := 0; i < 10; i++ {
		e.Evaluate(login(time.Hour+time.Duration(i)*time.Second, "mallory", "failure"))
	}
	if fs := e.Evaluate(login(time.Hour+11*time.Minute, "mallory", "success")); len(fs) != 0 {
		t.Fatalf("late success fired %v", ruleIDs(fs))
	}
	// Nine failures are not "many".
	for i := 0; i < 9; i++ {
		e.Evaluate(login(2*time.Hour+time.Duration(i)*time.Second, "trent", "failure"))
	}
	if fs := e.Evaluate(login(2*time.Hour+time.Minute, "trent", "success")); len(fs) != 0 {
		t.Fatalf("9 failures fired %v", ruleIDs(fs))
	}
}

func TestTemporalUnordered(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "t.yml", `title: priv grant
name: grant
logsource: {category: authorization}
detection:
  sel: {action: grant}
  condition: sel
---
title: bulk read
name: bulk
logsource: {category: audit}
detection:
  sel: {action: export}
  condition: sel
---
title: Grant and export by one user
id: TEST-TEMPORAL
correlation:
  type: temporal
  rules: [grant, bulk]
  group-by: [user]
  timespan: 1h
level: high
tags: [attack.exfiltration]
`)
	rs, err := LoadRules(LoadOptions{NoBuiltins: true, Dir: dir})
	if err != nil || len(rs.Errors()) > 0 {
		t.Fatal(err, rs.Errors())
	}
	e := NewEvaluator(rs, 0, 0)
	if fs := e.Evaluate(ev(t, 0, `{"type":"audit.export","action":"export","user":"u1"}`)); len(fs) != 0 {
		t.Fatal("fired on first half")
	}
	fs := e.Evaluate(ev(t, time.Minute, `{"type":"authorization.grant","action":"grant","user":"u1"}`))
	if got := ruleIDs(fs); !slices.Equal(got, []string{"TEST-TEMPORAL"}) {
		t.Fatalf("fired %v", got)
	}
}

func TestCorrelationKeysBounded(t *testing.T) {
	e := NewEvaluator(builtins(t), 10, 0)
	for i := 0; i < 50; i++ {
		e.Evaluate(failure(t, time.Duration(i)*time.Millisecond, fmt.Sprintf("u%d", i), fmt.Sprintf("198.51.100.%d", i)))
	}
	for _, st := range e.state {
		if st != nil && len(st.windows) > 10 {
			t.Fatalf("%d windows, cap 10", len(st.windows))
		}
	}
	if e.overflowTotal() == 0 || e.Overflow()["SEC-AUTH-002"] == 0 {
		t.Fatalf("overflow not counted: %v", e.Overflow())
	}
	// Windows idle longer than the timespan are expired to make room.
	for i := 0; i < 2000; i++ {
		e.Evaluate(failure(t, time.Hour+time.Duration(i)*time.Millisecond, fmt.Sprintf("late%d", i), "192.0.2.1"))
	}
	if fs := e.Evaluate(failure(t, 2*time.Hour, "zed", "192.0.2.2")); fs == nil {
		_ = fs
	}
	found := false
	for _, st := range e.state {
		if st == nil {
			continue
		}
		for k := range st.windows {
			if strings.Contains(k, "zed") {
				found = true
			}
		}
	}
	if !found {
		t.Fatal("a new key was refused although the old windows had expired")
	}
}

func TestBuiltinScenarios(t *testing.T) {
	cases := []struct {
		want   string
		events []string
	}{
		{"SEC-AUTHZ-001", []string{`{"type":"authorization.privilege_escalation","action":"grant","user":"mallory","resource":"role:admin","data":{"granted_role":"admin","granted_by":"root"}}`}},
		{"SEC-AUTHZ-002", []string{`{"type":"authorization.grant","action":"grant","user":"mallory","resource":"table:x","data":{"granted_by":"mallory","granted_role":"reader"}}`}},
		{"SEC-EXFIL-001", []string{`{"type":"audit.query","action":"select","user":"ivan","resource":"table:payments","data":{"rows_returned":120000,"bytes_returned":61440000}}`}},
		{"SEC-CRYPTO-001", []string{`{"type":"encryption.key_rotation_failed","action":"key_rotation_failed","outcome":"failure","resource":"key-1","source":"rustydb-1"}`}},
		{"SEC-MEM-001", []string{`{"type":"memory.use_after_free_prevented","action":"use_after_free_prevented","source":"rustydb-1","data":{"component":"executor"}}`}},
		{"SEC-CB-001", []string{
			`{"type":"circuit_breaker.state_changed","action":"state_change","resource":"circuit:payments","data":{"state":"open"}}`,
			`{"type":"circuit_breaker.state_changed","action":"state_change","resource":"circuit:payments","data":{"state":"half_open"}}`,
			`{"type":"circuit_breaker.state_changed","action":"state_change","resource":"circuit:payments","data":{"state":"open"}}`,
			`{"type":"circuit_breaker.state_changed","action":"state_change","resource":"circuit:payments","data":{"state":"closed"}}`,
			`{"type":"circuit_breaker.state_changed","action":"state_change","resource":"circuit:payments","data":{"state":"open"}}`,
		}},
	}
	for _, c := range cases {
		t.Run(c.want, func(t *testing.T) {
			e := NewEvaluator(builtins(t), 0, 0)
			var got []string
			for i, js := range c.events {
				got = append(got, ruleIDs(e.Evaluate(ev(t, time.Duration(i)*time.Second, js)))...)
			}
			if !slices.Contains(got, c.want) {
				t.Fatalf("fired %v, want %s", got, c.want)
			}
		})
	}
	t.Run("SEC-DOS-001", func(t *testing.T) {
		e := NewEvaluator(builtins(t), 0, 0)
		var got []string
		for i := 0; i < 20; i++ {
			got = append(got, ruleIDs(e.Evaluate(ev(t, time.Duration(i)*100*time.Millisecond,
				`{"type":"rate_limit.blocked","action":"blocked","outcome":"failure","src_ip":"198.51.100.66","data":{"blocked":true}}`)))...)
		}
		if !slices.Contains(got, "SEC-DOS-001") {
			t.Fatalf("fired %v", got)
		}
	})
	t.Run("SEC-DOS-002", func(t *testing.T) {
		e := NewEvaluator(builtins(t), 0, 0)
		var got []string
		for i := 0; i < 60; i++ {
			got = append(got, ruleIDs(e.Evaluate(ev(t, time.Duration(i)*100*time.Millisecond,
				fmt.Sprintf(`{"type":"rate_limit.blocked","src_ip":"198.51.%d.%d","data":{"blocked":true}}`, i/200, i%200))))...)
		}
		if !slices.Contains(got, "SEC-DOS-002") {
			t.Fatalf("fired %v", got)
		}
	})
}

func writeFile(t testing.TB, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestBrokenRulesReportedOthersLoad(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "good.yml", `title: Good rule
id: GOOD-1
logsource: {category: authentication}
detection:
  sel: {user: alice}
  condition: sel
level: low
`)
	writeFile(t, dir, "sub/broken_yaml.yml", "title: Broken\ndetection:\n  sel: [unclosed\n")
	writeFile(t, dir, "bad_modifier.yaml", `title: Bad modifier
id: BAD-1
logsource: {category: authentication}
detection:
  sel:
    user|containz: alice
  condition: sel
`)
	writeFile(t, dir, "bad_ref.yml", `title: Dangling correlation
id: BAD-REF
correlation:
  type: event_count
  rules: [does_not_exist]
  timespan: 5m
  condition: {gte: 2}
`)
	writeFile(t, dir, "zz_dup.yml", "title: Dup\nid: GOOD-1\nlogsource: {}\ndetection:\n  s: {user: x}\n  condition: s\n")
	writeFile(t, dir, "notes.txt", "not a rule")
	writeFile(t, dir, FieldMapFile, "fields:\n  Account: user\n")
	rs, err := LoadRules(LoadOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	errs := map[string]string{}
	for _, e := range rs.Errors() {
		errs[filepath.Base(e.Path)] = e.Error()
		if e.Line == 0 {
			t.Errorf("no line for %v", e)
		}
	}
	for _, f := range []string{"broken_yaml.yml", "bad_modifier.yaml", "bad_ref.yml", "zz_dup.yml"} {
		if errs[f] == "" {
			t.Errorf("%s not reported; errors: %v", f, errs)
		}
	}
	if !strings.Contains(errs["bad_modifier.yaml"], ":6") || !strings.Contains(errs["bad_modifier.yaml"], "containz") {
		t.Errorf("bad modifier error = %s", errs["bad_modifier.yaml"])
	}
	states := map[string]string{}
	for _, in := range rs.Infos() {
		k := firstNonEmpty(in.ID, in.Name, in.Title, in.Path)
		if _, dup := states[k]; !dup {
			states[k] = in.State
		}
	}
	if states["GOOD-1"] != "enabled" || states["BAD-REF"] != "error" || states["SEC-AUTH-002"] != "enabled" {
		t.Fatalf("states = %v", states)
	}
	// The field map file extended the mapping.
	if got := rs.fieldMap.Resolve("Account"); got != "user" {
		t.Fatalf("Account → %s", got)
	}
	e := NewEvaluator(rs, 0, 0)
	fs := e.Evaluate(ev(t, 0, `{"type":"authentication.login","user":"alice"}`))
	if got := ruleIDs(fs); !slices.Contains(got, "GOOD-1") {
		t.Fatalf("good rule did not fire: %v", got)
	}
	if len(fs) == 1 && fs[0].groupKey != "user=alice" {
		t.Fatalf("group key %q", fs[0].groupKey)
	}
	b, _ := json.Marshal(rs.Infos())
	if !strings.Contains(string(b), `"state":"error"`) {
		t.Fatal("infos lack error state")
	}
}

func TestCorrelationCycleRejected(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "cycle.yml", `title: a
name: a
correlation: {type: event_count, rules: [b], timespan: 1m, condition: {gte: 1}}
---
title: b
name: b
correlation: {type: event_count, rules: [a], timespan: 1m, condition: {gte: 1}}
`)
	rs, err := LoadRules(LoadOptions{NoBuiltins: true, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if len(rs.Errors()) != 2 || !strings.Contains(rs.Errors()[0].Reason, "cycle") {
		t.Fatalf("errors = %v", rs.Errors())
	}
}
