package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/client"
	"github.com/vigil-sec/vigil/internal/demo"
	"github.com/vigil-sec/vigil/internal/detect"
	"github.com/vigil-sec/vigil/internal/testkit"
	"github.com/vigil-sec/vigil/internal/testnode"
)

// cliCheckFor polls cond every step until it returns nil or timeout passes
// (nats-server's pattern: no fixed sleeps).
func cliCheckFor(t *testing.T, timeout, step time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %v", timeout, err)
		}
		time.Sleep(step)
	}
}

// cliBackground runs a vigil command until the returned stop is called; its
// outputs can be read while it runs, and done is closed with its exit code.
type cliBackground struct {
	stdout, stderr testkit.SyncBuffer
	done           chan struct{}
	code           int
	cancel         context.CancelFunc
}

func cliRunBackground(t *testing.T, vars map[string]string, args ...string) *cliBackground {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	b := &cliBackground{done: make(chan struct{}), cancel: cancel}
	e := env{getenv: func(k string) string { return vars[k] }, stdin: strings.NewReader(""), stdout: &b.stdout, stderr: &b.stderr}
	go func() { // owned by the test: ends when stop cancels ctx
		defer close(b.done)
		b.code = exitCode(ctx, args, e)
	}()
	t.Cleanup(b.stop)
	return b
}

// stop ends the command and waits for it.
func (b *cliBackground) stop() {
	b.cancel()
	<-b.done
}

func cliNodeVars(n *testnode.Node) map[string]string {
	return map[string]string{"VIGIL_SERVER": n.URL(), "VIGIL_DATA_DIR": n.Config.DataDir}
}

// cliClosedAddr is a loopback address nothing listens on.
func cliClosedAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

// TestErrorsNameTheProblemOnce: a refused token, a server that is not
// running and a rejected event from stdin each give one message, once
// prefixed with "vigil:", with the hint that helps.
func TestErrorsNameTheProblemOnce(t *testing.T) {
	n := testnode.Start(t)
	run := func(vars map[string]string, stdin string, args ...string) (int, string) {
		var out, errb bytes.Buffer
		e := env{getenv: func(k string) string { return vars[k] }, stdin: strings.NewReader(stdin), stdout: &out, stderr: &errb}
		code := exitCode(context.Background(), args, e)
		return code, errb.String()
	}
	noDouble := func(what, stderr string) {
		t.Helper()
		if strings.Count(stderr, "vigil:") != 1 || strings.Contains(stderr, "vigil: vigil:") {
			t.Errorf("%s: the vigil: prefix is not there exactly once: %q", what, stderr)
		}
	}

	// 401: the hint names the flag and the variable.
	bad := map[string]string{"VIGIL_SERVER": n.URL(), "VIGIL_TOKEN": "wrong"}
	for _, args := range [][]string{{"token", "list"}, {"publish"}, {"tail"}, {"tail", "--tail", "5"}} {
		code, stderr := run(bad, `{"type":"audit.query"}`, args...)
		if code != 1 || !strings.Contains(stderr, "HTTP 401") || !strings.Contains(stderr, "hint: the token was refused: check --token / VIGIL_TOKEN") {
			t.Errorf("%v with a wrong token: exit %d, stderr %q", args, code, stderr)
		}
		noDouble(fmt.Sprint(args), stderr)
	}

	// Connection refused: the hint asks whether vigil serve runs there.
	down := "http://" + cliClosedAddr(t)
	for _, args := range [][]string{{"token", "list"}, {"verify"}, {"tail"}, {"publish"}} {
		code, stderr := run(map[string]string{"VIGIL_SERVER": down, "VIGIL_TOKEN": "x"}, `{"type":"audit.query"}`, args...)
		want := "vigil: cannot connect to " + down + ": connection refused\nhint: is `vigil serve` running at " + down + "? (set --server or VIGIL_SERVER)\n"
		if code != 1 || stderr != want {
			t.Errorf("%v with no server: exit %d, stderr\n%q, want\n%q", args, code, stderr, want)
		}
	}

	// A host name that does not resolve (.invalid never does, RFC 2606).
	code, stderr := run(map[string]string{"VIGIL_SERVER": "http://vigil.invalid:8080", "VIGIL_TOKEN": "x"}, "", "token", "list")
	if code != 1 || !strings.HasPrefix(stderr, "vigil: cannot reach http://vigil.invalid:8080: lookup vigil.invalid") ||
		!strings.Contains(stderr, "hint: check the host name in --server / VIGIL_SERVER") {
		t.Errorf("unresolvable host: exit %d, stderr %q", code, stderr)
	}

	// A rejected event from stdin: "stdin", the event's index in it
	// (0-based, as the server counts) and its line, said once; no
	// "-: events 0..0", no second number for the same event.
	code, stderr = run(cliNodeVars(n), `{"type":"audit.query"}`+"\n"+`{"type":"x.y","category":"nope"}`, "publish")
	if code != 1 || strings.Contains(stderr, "-:") || strings.Contains(stderr, "0..") ||
		!strings.HasPrefix(stderr, "vigil: stdin: HTTP 400: event 1 (line 2) category: unknown category") ||
		strings.Count(stderr, "event ") != 1 {
		t.Errorf("bad event on stdin: exit %d, stderr %q", code, stderr)
	}
	noDouble("bad event", stderr)
}

// TestTailGivesUpWithoutRetry: a first connection that fails ends tail
// with the error; with --retry it waits for the server, and prints what
// is published once the server is up.
func TestTailGivesUpWithoutRetry(t *testing.T) {
	down := map[string]string{"VIGIL_SERVER": "http://" + cliClosedAddr(t), "VIGIL_TOKEN": "x"}
	b := cliRunBackground(t, down, "tail")
	select {
	case <-b.done:
	case <-time.After(10 * time.Second):
		t.Fatal("tail without --retry still retrying after 10s")
	}
	if b.code != 1 || !strings.Contains(b.stderr.String(), "connection refused") {
		t.Fatalf("tail: exit %d, stderr %q", b.code, b.stderr.String())
	}

	n := testnode.Start(t)
	n.Stop()
	vars := cliNodeVars(n)
	tail := cliRunBackground(t, vars, "tail", "--retry", "--json", "--users", "retry-user")
	cliCheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if strings.Contains(tail.stderr.String(), "reconnecting") {
			return nil
		}
		return fmt.Errorf("tail --retry has not reported a retry: %q", tail.stderr.String())
	})
	select {
	case <-tail.done:
		t.Fatalf("tail --retry gave up: exit %d, %q", tail.code, tail.stderr.String())
	default:
	}
	n.Restart()
	c, err := client.New(n.URL(), n.AdminToken())
	if err != nil {
		t.Fatal(err)
	}
	cliCheckFor(t, 15*time.Second, 100*time.Millisecond, func() error {
		if _, err := c.Publish(context.Background(), []*client.Event{{Type: "audit.query", User: "retry-user"}}); err != nil {
			return err
		}
		if strings.Contains(tail.stdout.String(), `"user":"retry-user"`) {
			return nil
		}
		return fmt.Errorf("tail --retry printed nothing after the server came up: stdout %q", tail.stdout.String())
	})
	tail.stop()
	if tail.code != 0 {
		t.Errorf("tail --retry stopped by Ctrl-C: exit %d, %q", tail.code, tail.stderr.String())
	}
}

func cliPublishUsers(t *testing.T, c *client.Client, users ...string) {
	t.Helper()
	evs := make([]*client.Event, len(users))
	for i, u := range users {
		evs[i] = &client.Event{Type: "audit.query", User: u}
	}
	if _, err := c.Publish(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
}

// cliTailUsers runs tail with args until its --json output holds want lines,
// then publishes one more event (user live) and waits for it: the replay
// is followed by the live stream. It returns the users printed.
func cliTailUsers(t *testing.T, n *testnode.Node, c *client.Client, live string, want int, args ...string) []string {
	t.Helper()
	b := cliRunBackground(t, cliNodeVars(n), append([]string{"tail", "--json"}, args...)...)
	lines := func() []string {
		var users []string
		for _, l := range strings.Split(strings.TrimSpace(b.stdout.String()), "\n") {
			if l == "" {
				continue
			}
			var ev struct{ User string }
			if err := json.Unmarshal([]byte(l), &ev); err != nil {
				t.Fatalf("tail --json printed %q", l)
			}
			users = append(users, ev.User)
		}
		return users
	}
	cliCheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if got := lines(); len(got) < want {
			return fmt.Errorf("tail %v printed %v so far, want %d events (stderr %q)", args, got, want, b.stderr.String())
		}
		return nil
	})
	cliPublishUsers(t, c, live)
	cliCheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if got := lines(); len(got) == 0 || got[len(got)-1] != live {
			return fmt.Errorf("tail %v did not continue live: %v", args, got)
		}
		return nil
	})
	b.stop()
	if b.code != 0 {
		t.Fatalf("tail %v: exit %d, %q", args, b.code, b.stderr.String())
	}
	return lines()
}

// TestTailTailAndSince: --tail N replays the last N matching events, then
// continues live with nothing missed or repeated; --since a time replays
// what came after it.
func TestTailTailAndSince(t *testing.T) {
	n := testnode.Start(t)
	c, err := client.New(n.URL(), n.AdminToken())
	if err != nil {
		t.Fatal(err)
	}
	cliPublishUsers(t, c, "u0", "u1", "u2", "u3", "u4", "u5")
	if got := strings.Join(cliTailUsers(t, n, c, "l1", 3, "--tail", "3"), ","); got != "u3,u4,u5,l1" {
		t.Errorf("--tail 3 printed %s, want u3,u4,u5,l1", got)
	}
	// The last 2 matching a filter, not the last 2 of the log.
	if got := strings.Join(cliTailUsers(t, n, c, "l2", 2, "--tail", "2", "--users", "u1,u2,u3,l2"), ","); got != "u2,u3,l2" {
		t.Errorf("--tail 2 --users printed %s, want u2,u3,l2", got)
	}
	// More than there are: all of them.
	if got := strings.Join(cliTailUsers(t, n, c, "l3", 2, "--tail", "50", "--users", "u0,u5,l3"), ","); got != "u0,u5,l3" {
		t.Errorf("--tail 50 --users printed %s, want u0,u5,l3", got)
	}

	// --since TIME: only what was logged after it.
	mark := time.Now().UTC()
	cliCheckFor(t, time.Second, time.Millisecond, func() error { // the log's clock has moved past mark
		if !time.Now().After(mark) {
			return fmt.Errorf("clock did not advance")
		}
		return nil
	})
	cliPublishUsers(t, c, "after1", "after2")
	if got := strings.Join(cliTailUsers(t, n, c, "l4", 2, "--since", mark.Format(time.RFC3339Nano)), ","); got != "after1,after2,l4" {
		t.Errorf("--since %s printed %s, want after1,after2,l4", mark.Format(time.RFC3339Nano), got)
	}
	// --since DURATION with --tail: the last N of that window.
	if got := strings.Join(cliTailUsers(t, n, c, "l5", 1, "--since", "1h", "--tail", "1", "--users", "u4,after1,l5"), ","); got != "after1,l5" {
		t.Errorf("--since 1h --tail 1 printed %s, want after1,l5", got)
	}

	for _, args := range [][]string{{"--since", "yesterday"}, {"--since", "-5m"}, {"--from", "3", "--tail", "2"}, {"--tail", "20000"}} {
		code, _, errOut := cliExit(append([]string{"tail"}, args...)...)
		if code != 1 || !strings.Contains(errOut, "--") {
			t.Errorf("tail %v: exit %d, stderr %q; want a refusal naming the flag", args, code, errOut)
		}
	}
}

func TestParseSince(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	if got, err := parseSince("90m", now); err != nil || !got.Equal(now.Add(-90*time.Minute)) {
		t.Errorf("90m: %v %v", got, err)
	}
	if got, err := parseSince("2026-11-30T10:00:00Z", now); err != nil || !got.Equal(time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)) {
		t.Errorf("RFC 3339: %v %v", got, err)
	}
	for _, bad := range []string{"", "0s", "-1h", "10", "monday"} {
		if _, err := parseSince(bad, now); err == nil {
			t.Errorf("parseSince(%q) accepted", bad)
		}
	}
}

// TestDemoKeepsRetryingWhenServerRestarts: the server stops under a
// running demo and comes back; demo reports it, keeps going and publishes
// again, ending only when stopped.
func TestDemoKeepsRetryingWhenServerRestarts(t *testing.T) {
	n := testnode.Start(t)
	c, err := client.New(n.URL(), n.AdminToken())
	if err != nil {
		t.Fatal(err)
	}
	stored := func() int {
		evs, _, err := c.History(context.Background(), url.Values{"sources": {demo.Source}, "limit": {"10000"}})
		if err != nil {
			return -1
		}
		return len(evs)
	}
	d := cliRunBackground(t, cliNodeVars(n), "demo", "--rate", "100")
	cliCheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if stored() < 20 {
			return fmt.Errorf("demo has stored %d events", stored())
		}
		return nil
	})
	n.Stop()
	cliCheckFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		if strings.Contains(d.stderr.String(), "server unavailable") {
			return nil
		}
		select {
		case <-d.done:
			return fmt.Errorf("demo gave up when the server stopped: exit %d, %q", d.code, d.stderr.String())
		default:
		}
		return fmt.Errorf("demo has not noticed the server stopped: %q", d.stderr.String())
	})
	n.Restart()
	before := stored()
	cliCheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		select {
		case <-d.done:
			return fmt.Errorf("demo ended: exit %d, %q", d.code, d.stderr.String())
		default:
		}
		if got := stored(); !strings.Contains(d.stdout.String(), "server back") || got < before+20 {
			return fmt.Errorf("after the restart: %d stored (was %d), stdout %q", got, before, d.stdout.String())
		}
		return nil
	})
	d.stop()
	if d.code != 0 {
		t.Errorf("demo stopped by Ctrl-C: exit %d, %q", d.code, d.stderr.String())
	}

	// A refusal retrying cannot fix still ends it.
	code, _, errOut := cliExitEnv(map[string]string{"VIGIL_SERVER": n.URL(), "VIGIL_TOKEN": "wrong"}, "demo", "--count", "5", "--rate", "50")
	if code != 1 || !strings.Contains(errOut, "HTTP 401") {
		t.Errorf("demo with a wrong token: exit %d, %q", code, errOut)
	}
}

func cliExitEnv(vars map[string]string, args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	e := env{getenv: func(k string) string { return vars[k] }, stdin: strings.NewReader(""), stdout: &out, stderr: &errb}
	code := exitCode(context.Background(), args, e)
	return code, out.String(), errb.String()
}

// TestBenchEventsMatchNoBuiltinRule: the events vigil bench sends are
// labelled and match none of the built-in rules, so a benchmark creates no
// detections; --realistic (the demo mix) does match them.
func TestBenchEventsMatchNoBuiltinRule(t *testing.T) {
	rs, err := detect.LoadRules(detect.LoadOptions{})
	if err != nil || rs.Len() == 0 {
		t.Fatalf("built-in rules: %v (%d loaded)", err, rs.Len())
	}
	for _, realistic := range []bool{false, true} {
		ev := detect.NewEvaluator(rs, 0, 0)
		gen := demo.New(7)
		matched, fired := 0, 0
		for i := 0; i < 3000; i++ {
			e := benchEvent(gen, "run", realistic)
			e.Seq, e.Tenant, e.ID, e.ReceivedAt = uint64(i+1), "default", fmt.Sprint(i), e.Time
			if e.Source != benchSource || len(e.Tags) != 1 || e.Tags[0] != "bench" || e.Resource != "run" {
				t.Fatalf("bench event not labelled: %+v", e)
			}
			se := serverEvent(e)
			if len(ev.Matches(se)) > 0 {
				matched++
			}
			fired += len(ev.EvaluateView(se))
		}
		if !realistic && (matched > 0 || fired > 0) {
			t.Errorf("bench events: %d matched a built-in rule, %d firings; want none", matched, fired)
		}
		if realistic && fired == 0 {
			t.Errorf("--realistic: no firing in 3000 demo events; the test would not see a rule match")
		}
	}
}

// TestBenchCreatesNoDetections runs a small vigil bench against a node: it
// says how its events are labelled, they are stored with source
// vigil-bench, and no detection exists afterwards.
func TestBenchCreatesNoDetections(t *testing.T) {
	n := testnode.Start(t)
	code, out, errOut := cliExitEnv(cliNodeVars(n), "bench", "--events", "400", "--batch", "100", "--publishers", "2", "--subscribers", "1")
	if code != 0 || !strings.Contains(out, `source "vigil-bench"`) || !strings.Contains(out, "no detections") || !strings.Contains(out, "400 deliveries") {
		t.Fatalf("bench: exit %d\n%s%s", code, out, errOut)
	}
	c, err := client.New(n.URL(), n.AdminToken())
	if err != nil {
		t.Fatal(err)
	}
	evs, _, err := c.History(context.Background(), url.Values{"sources": {benchSource}, "limit": {"1000"}})
	if err != nil || len(evs) != 400 {
		t.Fatalf("history: %d bench events, %v", len(evs), err)
	}
	var dets struct {
		Detections []json.RawMessage `json:"detections"`
	}
	if err := c.Do(context.Background(), "GET", "/api/v1/detections", nil, &dets); err != nil {
		t.Fatal(err)
	}
	if len(dets.Detections) != 0 {
		t.Errorf("bench created %d detections", len(dets.Detections))
	}
}
