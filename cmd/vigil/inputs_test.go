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

	"github.com/vigil-sec/vigil/internal/inputs"
)

// TestInputsTestCommand runs `vigil inputs test` on the documented example
// mappings and shows, per line, the mapping that took it and the event.
func TestInputsTestCommand(t *testing.T) {
	dir := filepath.Join("..", "..", "internal", "inputs", "mapping", "testdata")
	var out, errOut bytes.Buffer
	e := env{getenv: func(string) string { return "" }, stdin: strings.NewReader(""), stdout: &out, stderr: &errOut}
	if err := run(context.Background(), []string{"inputs", "test", filepath.Join(dir, "example.yaml"), filepath.Join(dir, "lines.log")}, e); err != nil {
		t.Fatalf("inputs test: %v (%s)", err, errOut.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	want := []string{
		"line 1: mapping shopd-login-failure", "line 2: mapping shopd-login-success", "line 3: mapping shopd-errors",
		"line 4: mapping nginx-basic-auth-failure", "line 5: unparsed", "line 6: unparsed",
	}
	if len(lines) != 2*len(want)+1 {
		t.Fatalf("output:\n%s", out.String())
	}
	events := map[int]map[string]any{}
	for i, w := range want {
		if lines[2*i] != w {
			t.Fatalf("line %d header %q, want %q\n%s", i+1, lines[2*i], w, out.String())
		}
		var ev map[string]any
		if err := json.Unmarshal([]byte(lines[2*i+1]), &ev); err != nil {
			t.Fatalf("line %d: event %q: %v", i+1, lines[2*i+1], err)
		}
		events[i+1] = ev
	}
	if ev := events[1]; ev["type"] != "authentication.login" || ev["category"] != "authentication" || ev["user"] != "alice" ||
		ev["src_ip"] != "203.0.113.7" || ev["outcome"] != "failure" || ev["source"] != "web1/shopd" || ev["tenant"] != "default" ||
		ev["data"].(map[string]any)["reason"] != "bad_password" {
		t.Errorf("line 1 event %v", ev)
	}
	if ev := events[3]; ev["type"] != "system.shopd.error" || ev["severity"] != "high" {
		t.Errorf("line 3 event %v", ev)
	}
	if ev := events[4]; ev["user"] != "bob" || ev["src_ip"] != "198.51.100.4" || ev["source"] != "web2/nginx" {
		t.Errorf("line 4 event %v", ev)
	}
	// A capture that is not an IP makes the mapping not match: the line
	// is kept as an unparsed event with its raw text, not lost.
	if ev := events[5]; ev["type"] != "system.syslog.unparsed" || ev["message"] != "auth failure user=carol ip=not-an-ip" {
		t.Errorf("line 5 event %v", ev)
	}
	if !strings.HasSuffix(out.String(), "6 line(s), 4 mapped, 2 unparsed, 4 mapping(s) loaded\n") {
		t.Errorf("summary: %s", out.String())
	}

	// --raw and --app-name: the line is the message text.
	out.Reset()
	e.stdin = strings.NewReader("auth ok user=dave ip=192.0.2.1\n")
	if err := run(context.Background(), []string{"inputs", "test", "--raw", "--app-name", "shopd", "--hostname", "h9", filepath.Join(dir, "example.yaml"), "-"}, e); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), "line 1: mapping shopd-login-success\n") || !strings.Contains(out.String(), `"user":"dave"`) || !strings.Contains(out.String(), `"source":"h9/shopd"`) {
		t.Fatalf("raw output:\n%s", out.String())
	}

	// A broken mappings file: each problem with its file and line.
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("- name: a\n  app_name: x\n  regex: '(?P<u>'\n  set: {type: system.x}\n- name: b\n  app_name: x\n  set: {type: system.x, usr: y}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	errOut.Reset()
	err := run(context.Background(), []string{"inputs", "test", bad, "-"}, e)
	if err == nil || !strings.Contains(errOut.String(), bad+":3: mapping \"a\": regex does not compile") ||
		!strings.Contains(errOut.String(), bad+":7: mapping \"b\": set: unknown event field \"usr\"") {
		t.Fatalf("err %v, stderr:\n%s", err, errOut.String())
	}
}

// TestServeRefusesBrokenMappings: `vigil serve` does not start with a
// mapping file that does not compile, and names its file and line.
func TestServeRefusesBrokenMappings(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "maps.yaml")
	if err := os.WriteFile(bad, []byte("- name: a\n  app_name: x\n  set:\n    type: Not A Type\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	e := env{getenv: func(string) string { return "" }, stdin: strings.NewReader(""), stdout: &out, stderr: &errOut}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := run(ctx, []string{"serve", "--data-dir", filepath.Join(dir, "data"), "--listen", "127.0.0.1:0", "--input-mappings", bad}, e)
	if err == nil || !strings.Contains(err.Error(), bad+":4:") || !strings.Contains(err.Error(), "type") {
		t.Fatalf("serve: err = %v", err)
	}
	if _, statErr := os.Stat(filepath.Join(dir, "data")); statErr == nil {
		t.Fatal("serve created its data directory: it started before refusing")
	}
}

func TestParseBSDHeader(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.Local)
	for _, tc := range []struct {
		line, host, app, pid, text string
		fac, sev                   int
		month                      time.Month
	}{
		{"Nov 30 10:00:00 web1 sshd[812]: Failed password", "web1", "sshd", "812", "Failed password", -1, -1, time.November},
		{"<38>Nov  3 10:00:00 web1 su: hi: there", "web1", "su", "", "hi: there", 4, 6, time.November},
		{"<13>plain text", "", "", "", "plain text", 1, 5, 0},
		{"Dec 31 23:59:59 h x: y", "h", "x", "", "y", -1, -1, time.December}, // last year's
		{"no header: at all", "", "", "", "no header: at all", -1, -1, 0},
		{"<999>x", "", "", "", "<999>x", -1, -1, 0},
	} {
		m := &inputs.Message{Facility: -1, Severity: -1, Text: tc.line}
		parseBSDHeader(m, now)
		if m.Hostname != tc.host || m.AppName != tc.app || m.ProcID != tc.pid || m.Text != tc.text || m.Facility != tc.fac || m.Severity != tc.sev || m.Time.Month() != tc.month && tc.month != 0 {
			t.Errorf("%q: %+v", tc.line, m)
		}
	}
	m := &inputs.Message{Text: "Dec 31 23:59:59 h x: y"}
	parseBSDHeader(m, now)
	if m.Time.Year() != 2025 {
		t.Errorf("a date ahead of now is last year's: %v", m.Time)
	}
}
