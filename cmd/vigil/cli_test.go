package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/testnode"
)

// cliAgainst runs vigil commands in-process against node n, finding the
// server through VIGIL_SERVER and the admin token through VIGIL_DATA_DIR,
// as a user next to the server's data directory would.
func cliAgainst(n *testnode.Node) func(args ...string) (stdout, stderr string, err error) {
	return func(args ...string) (string, string, error) {
		return cliCtx(context.Background(), n, "", args...)
	}
}

func cliCtx(ctx context.Context, n *testnode.Node, stdin string, args ...string) (string, string, error) {
	var out, errb bytes.Buffer
	getenv := func(k string) string {
		switch k {
		case "VIGIL_SERVER":
			return n.URL()
		case "VIGIL_DATA_DIR":
			return n.Config.DataDir
		}
		return ""
	}
	err := run(ctx, args, env{getenv: getenv, stdin: strings.NewReader(stdin), stdout: &out, stderr: &errb})
	return out.String(), errb.String(), err
}

func TestPublishTailVerify(t *testing.T) {
	n := testnode.Start(t)
	vigil := cliAgainst(n)
	file := filepath.Join(t.TempDir(), "events.ndjson")
	body := `{"type":"authentication.login","user":"alice","severity":"high","outcome":"failure"}
{"type":"audit.query","user":"bob"}
{"type":"authentication.logout","user":"carol","severity":"low"}
`
	if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	out, stderr, err := vigil("publish", file)
	if err != nil || !strings.Contains(out, "total: 3 events") {
		t.Fatalf("publish: %v\n%s%s", err, out, stderr)
	}
	// stdin, a JSON array
	if out, _, err := cliCtx(context.Background(), n, `[{"type":"authentication.login","user":"dave","severity":"critical"}]`, "publish"); err != nil || !strings.Contains(out, "total: 1 events") {
		t.Fatalf("publish stdin: %v %s", err, out)
	}
	if _, _, err := cliCtx(context.Background(), n, `{"type":"x.y","category":"nope"}`, "publish"); err == nil || !strings.Contains(err.Error(), "category") {
		t.Fatalf("bad event: err = %v, want one naming the category", err)
	}

	// tail --json --from 1 replays the matching events, then keeps streaming.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	out, stderr, err = cliCtx(ctx, n, "", "tail", "--json", "--from", "1", "--categories", "authentication", "--min-severity", "high")
	if err != nil {
		t.Fatalf("tail: %v %s", err, stderr)
	}
	var users []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var e struct{ User string }
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("tail --json printed %q", line)
		}
		users = append(users, e.User)
	}
	if strings.Join(users, ",") != "alice,dave" {
		t.Fatalf("tail delivered users %v, want alice,dave", users)
	}
	// Plain output (not a terminal): no colour codes.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel2()
	out, _, _ = cliCtx(ctx2, n, "", "tail", "--from", "1", "--users", "alice")
	if !strings.Contains(out, "HIGH") || !strings.Contains(out, "user=alice") || strings.Contains(out, "\x1b[") {
		t.Fatalf("plain tail line: %q", out)
	}
	if _, _, err := vigil("tail", "--min-severity", "hgih"); err == nil || !strings.Contains(err.Error(), "min_severity") {
		t.Fatalf("bad filter: %v", err)
	}
	out, _, err = vigil("verify")
	if err != nil || !strings.Contains(out, "OK") {
		t.Fatalf("verify: %v %s", err, out)
	}
}

func TestDemoPublishesLabelledTraffic(t *testing.T) {
	n := testnode.Start(t)
	vigil := cliAgainst(n)
	out, stderr, err := vigil("demo", "--rate", "500", "--count", "300", "--seed", "42")
	if err != nil || !strings.Contains(out, "sent 300 events") {
		t.Fatalf("demo: %v\n%s%s", err, out, stderr)
	}
	c, err := (&remoteFlags{server: n.URL(), token: n.AdminToken()}).client(env{getenv: func(string) string { return "" }})
	if err != nil {
		t.Fatal(err)
	}
	events, _, err := c.History(context.Background(), map[string][]string{"limit": {"1000"}})
	if err != nil {
		t.Fatal(err)
	}
	cats := map[string]bool{}
	for _, e := range events {
		if e.Category == "detection" {
			continue // the rule engine's findings about the demo traffic
		}
		if e.Source == "" || !strings.Contains(strings.Join(e.Tags, ","), "demo") {
			t.Fatalf("demo event not labelled as demo: %+v", e)
		}
		cats[string(e.Category)] = true
	}
	// Every producer-side category of SPEC 2 (detections come from rules).
	for _, c := range []string{"authentication", "authorization", "audit", "encryption", "rate_limit", "insider_threat", "memory", "circuit_breaker", "analysis", "threat_intel", "fraud", "response", "orchestration", "system"} {
		if !cats[c] {
			t.Errorf("300 demo events contain no %s event", c)
		}
	}
}
