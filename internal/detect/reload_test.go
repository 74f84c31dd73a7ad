package detect

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/event"
)

const reloadBase = `title: Login failed
id: 5f0c1a2e-0000-4000-8000-000000000001
name: reload_fail
logsource: {product: vigil}
detection:
    sel: {action: login_failed}
    condition: sel
level: low
`

const reloadCorr = `title: Three failures
id: 5f0c1a2e-0000-4000-8000-000000000002
correlation:
    type: event_count
    rules: [reload_fail]
    group-by: [user]
    timespan: 10m
    condition: {gte: 3}
level: high
`

const reloadPlain = `title: Marker seen
id: 5f0c1a2e-0000-4000-8000-000000000003
logsource: {product: vigil}
detection:
    sel: {action: %s}
    condition: sel
level: medium
`

func writeRule(t *testing.T, dir, name, body string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}

func reloadRuleSet(t *testing.T, dir string) *RuleSet {
	t.Helper()
	rs, err := LoadRules(LoadOptions{NoBuiltins: true, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if len(rs.Errors()) > 0 {
		t.Fatalf("rules: %v", rs.Errors()[0])
	}
	return rs
}

func postReload(t *testing.T, e *Engine, p *auth.Principal) (int, map[string]any) {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, "/api/v1/rules/reload", nil)
	r = r.WithContext(auth.WithPrincipal(r.Context(), p))
	w := httptest.NewRecorder()
	e.HandleReload(w, r)
	var out map[string]any
	_ = json.Unmarshal(w.Body.Bytes(), &out)
	return w.Code, out
}

type rulesReply struct {
	Rules  []RuleInfo `json:"rules"`
	Stale  int        `json:"stale"`
	Errors []struct {
		Path   string `json:"path"`
		Line   int    `json:"line"`
		Reason string `json:"reason"`
	} `json:"errors"`
}

func getRules(t *testing.T, e *Engine) rulesReply {
	t.Helper()
	code, body := get(t, e.HandleRules, admin, "/api/v1/rules", "")
	if code != http.StatusOK {
		t.Fatalf("GET /api/v1/rules: %d %s", code, body)
	}
	var out rulesReply
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func actionEvent(t *testing.T, user, action string) *event.Event {
	t.Helper()
	return ev(t, 0, `{"type":"test","category":"audit","action":"`+action+`","user":"`+user+`","source":"reload-test"}`)
}

// TestReloadKeepsUnchangedCorrelationWindow: two of three failures are in
// a correlation window when the rules are reloaded (another file changed,
// one was added); the third failure after the reload completes the window:
// the unchanged correlation kept its state. Changing the correlation
// itself resets it.
func TestReloadKeepsUnchangedCorrelationWindow(t *testing.T) {
	l := openLog(t, t.TempDir())
	defer l.Close()
	dir := t.TempDir()
	writeRule(t, dir, "auth.yml", reloadBase+"---\n"+reloadCorr)
	writeRule(t, dir, "other.yml", strings.Replace(reloadPlain, "%s", "marker", 1))
	run := startEngine(t, l, Options{Rules: reloadRuleSet(t, dir), RulesPoll: -1})
	e := run.e

	now := time.Now().UTC()
	var seq uint64
	for i := range 2 {
		f := actionEvent(t, "alice", "login_failed")
		f.Time = now.Add(time.Duration(i) * time.Second)
		acks, err := l.Append(context.Background(), []*event.Event{f})
		if err != nil {
			t.Fatal(err)
		}
		seq = acks[0].Seq
	}
	waitCursor(t, e, seq)
	if e.eval.Load().Windows() != 1 {
		t.Fatalf("windows before reload: %d, want 1", e.eval.Load().Windows())
	}

	writeRule(t, dir, "other.yml", strings.Replace(reloadPlain, "%s", "other_marker", 1))
	writeRule(t, dir, "new.yml", strings.Replace(strings.Replace(reloadPlain, "%s", "new_marker", 1),
		"000000000003", "000000000004", 1))
	code, out := postReload(t, e, admin)
	if code != http.StatusOK {
		t.Fatalf("reload: %d %v", code, out)
	}
	rep := out["reload"].(map[string]any)
	if rep["correlation_state_kept"] != float64(1) || rep["correlation_state_reset"] != float64(0) ||
		len(rep["added"].([]any)) != 1 || len(rep["changed"].([]any)) != 1 {
		t.Fatalf("reload report: %v", rep)
	}

	f := actionEvent(t, "alice", "login_failed")
	f.Time = now.Add(2 * time.Second)
	publish(t, l, f)
	waitFor(t, "the correlation to fire on the third failure", func() bool {
		return len(detectionsOf(e, admin, "5f0c1a2e-0000-4000-8000-000000000002")) == 1
	})

	// Changing the correlation (threshold) resets its windows.
	writeRule(t, dir, "auth.yml", reloadBase+"---\n"+strings.Replace(reloadCorr, "gte: 3", "gte: 4", 1))
	if _, err := e.Reload(context.Background(), "test"); err != nil {
		t.Fatal(err)
	}
	if w := e.eval.Load().Windows(); w != 0 {
		t.Fatalf("a changed correlation kept %d window(s)", w)
	}
}

// TestReloadBrokenFileKeepsOldRule: a rule file edited into something that
// does not load (picked up by the directory poll) keeps its previous
// version firing, and GET /api/v1/rules reports it as stale with the new
// version's file, line and reason and the old loaded_at.
func TestReloadBrokenFileKeepsOldRule(t *testing.T) {
	l := openLog(t, t.TempDir())
	defer l.Close()
	dir := t.TempDir()
	good := strings.Replace(reloadPlain, "%s", "marker", 1)
	writeRule(t, dir, "plain.yml", good)
	run := startEngine(t, l, Options{Rules: reloadRuleSet(t, dir), RulesPoll: 20 * time.Millisecond})
	e := run.e
	before := getRules(t, e).Rules[0]

	broken := strings.Replace(good, "sel: {action: marker}", "sel: {action|nosuchmodifier: marker}", 1)
	writeRule(t, dir, "plain.yml", broken)
	var got rulesReply
	waitFor(t, "the broken edit to be reported", func() bool {
		got = getRules(t, e)
		return got.Stale == 1
	})
	if len(got.Rules) != 1 {
		t.Fatalf("rules: %+v", got.Rules)
	}
	r := got.Rules[0]
	if r.State != "stale" || !strings.Contains(r.Error, filepath.Join(dir, "plain.yml")+":5") ||
		!strings.Contains(r.Error, "nosuchmodifier") || !r.LoadedAt.Equal(before.LoadedAt) {
		t.Fatalf("stale rule reported as %+v (loaded before at %s)", r, before.LoadedAt)
	}
	if len(got.Errors) != 1 || got.Errors[0].Line != 5 {
		t.Fatalf("errors: %+v", got.Errors)
	}

	publish(t, l, actionEvent(t, "bob", "marker"))
	waitFor(t, "the previous version to fire", func() bool {
		return len(detectionsOf(e, admin, "5f0c1a2e-0000-4000-8000-000000000003")) == 1
	})

	// Fixed: the new version runs, the error is gone.
	writeRule(t, dir, "plain.yml", strings.Replace(good, "action: marker", "action: fixed", 1))
	waitFor(t, "the fixed file to load", func() bool {
		got = getRules(t, e)
		return got.Stale == 0 && len(got.Errors) == 0 && got.Rules[0].State == "enabled" && got.Rules[0].Hash != before.Hash
	})
}

// TestReloadOnSIGHUP: SIGHUP reloads.
func TestReloadOnSIGHUP(t *testing.T) {
	// Our own handler first, so the signal can never reach the default
	// action (which ends the process) before the engine listens.
	keep := make(chan os.Signal, 1)
	signal.Notify(keep, syscall.SIGHUP)
	defer signal.Stop(keep)
	l := openLog(t, t.TempDir())
	defer l.Close()
	dir := t.TempDir()
	writeRule(t, dir, "plain.yml", strings.Replace(reloadPlain, "%s", "marker", 1))
	run := startEngine(t, l, Options{Rules: reloadRuleSet(t, dir), RulesPoll: -1, ReloadOnSIGHUP: true})
	writeRule(t, dir, "new.yml", strings.Replace(strings.Replace(reloadPlain, "%s", "new_marker", 1),
		"000000000003", "000000000004", 1))
	waitFor(t, "SIGHUP to reload", func() bool {
		_ = syscall.Kill(os.Getpid(), syscall.SIGHUP) // again until the watcher listens
		return run.e.Rules().Len() == 2
	})
}

// TestReloadReachesLeader: a reload asked of a standby node reaches the
// leader, which is the node that evaluates.
func TestReloadReachesLeader(t *testing.T) {
	l := openLog(t, t.TempDir())
	defer l.Close()
	dirA, dirB := t.TempDir(), t.TempDir()
	for _, d := range []string{dirA, dirB} {
		writeRule(t, d, "plain.yml", strings.Replace(reloadPlain, "%s", "marker", 1))
	}
	a := startStandby(t, l, Options{NodeID: "a", Rules: reloadRuleSet(t, dirA), RulesPoll: -1})
	waitFor(t, "a to lead", a.e.Leader)
	b := startStandby(t, l, Options{NodeID: "b", Rules: reloadRuleSet(t, dirB), RulesPoll: -1})
	for _, d := range []string{dirA, dirB} {
		writeRule(t, d, "plain.yml", strings.Replace(reloadPlain, "%s", "changed", 1))
	}
	if code, out := postReload(t, b.e, analyst); code != http.StatusForbidden {
		t.Fatalf("analyst reload: %d %v", code, out)
	}
	code, out := postReload(t, b.e, admin)
	if code != http.StatusOK || out["other_nodes_asked"] != true {
		t.Fatalf("reload on the standby: %d %v", code, out)
	}
	waitFor(t, "the leader to reload", func() bool {
		return a.e.Rules().Infos()[0].Hash == b.e.Rules().Infos()[0].Hash
	})
	publish(t, l, actionEvent(t, "carol", "changed"))
	waitFor(t, "the leader to fire the new version", func() bool {
		return len(detectionsOf(a.e, admin, "5f0c1a2e-0000-4000-8000-000000000003")) == 1
	})
}

// TestReloadCorpus measures what hot reload costs with the SigmaHQ corpus
// loaded (VIGIL_SIGMA_CORPUS: a checkout's directory of rules; skipped
// without it): one directory poll (a stat per file) and one reload.
func TestReloadCorpus(t *testing.T) {
	dir := os.Getenv("VIGIL_SIGMA_CORPUS")
	if dir == "" {
		t.Skip("VIGIL_SIGMA_CORPUS is not set: point it at a SigmaHQ rules checkout to measure reloads of the corpus")
	}
	start := time.Now()
	rs, err := LoadRules(LoadOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	load := time.Since(start)
	start = time.Now()
	const polls = 5
	for range polls {
		rulesStamp(rs.opts)
	}
	poll := time.Since(start) / polls
	l := openLog(t, t.TempDir())
	defer l.Close()
	run := startEngine(t, l, Options{Rules: rs, RulesPoll: -1})
	start = time.Now()
	rep, err := run.e.Reload(context.Background(), "test")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d rules loaded in %s; one poll of the directory %s; reload %s (%d unchanged, %d correlation states kept)",
		rs.Len(), load, poll, time.Since(start), rep.Unchanged, rep.StateKept)
}

// TestReloadUnchangedIsUnchanged: reloading files that did not change
// reports every rule unchanged and keeps every correlation's state, however
// many fields a rule reads (the content hash must not depend on map order).
func TestReloadUnchangedIsUnchanged(t *testing.T) {
	dir := t.TempDir()
	writeRule(t, dir, "auth.yml", strings.Replace(reloadBase, "sel: {action: login_failed}",
		"sel: {action: login_failed, user|startswith: a, src_ip|cidr: 10.0.0.0/8, resource|contains: x, outcome: failure, source: s}", 1)+"---\n"+reloadCorr)
	e, err := New(context.Background(), Options{Rules: reloadRuleSet(t, dir)})
	if err != nil {
		t.Fatal(err)
	}
	for range 10 {
		rep, err := e.Reload(context.Background(), "test")
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.Changed) != 0 || len(rep.Added) != 0 || rep.Unchanged != 2 || rep.StateKept != 1 {
			t.Fatalf("reload of unchanged files: %+v", rep)
		}
	}
}
