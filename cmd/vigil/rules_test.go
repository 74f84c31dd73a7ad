package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRulesTestCommand runs `vigil rules test` on the Sigma specification's
// correlation example and checks that the chained correlation fires on the
// successful login after ten failures, and `vigil rules check` on a
// broken file.
func TestRulesTestCommand(t *testing.T) {
	dir := t.TempDir()
	var events strings.Builder
	for i := 0; i < 10; i++ {
		events.WriteString(`{"type":"authentication.login","action":"login","outcome":"failure","user":"eve","time":"2026-11-22T10:00:0` + string(rune('0'+i)) + `Z"}` + "\n")
	}
	events.WriteString(`{"type":"authentication.login","action":"login","outcome":"success","user":"eve","time":"2026-11-22T10:05:00Z"}` + "\n")
	evPath := filepath.Join(dir, "events.ndjson")
	if err := os.WriteFile(evPath, []byte(events.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	rule := filepath.Join("..", "..", "internal", "detect", "sigma", "testdata", "rules", "correlation_spec_example.yml")
	var out, errOut bytes.Buffer
	e := env{getenv: func(string) string { return "" }, stdin: strings.NewReader(""), stdout: &out, stderr: &errOut}
	if err := run(context.Background(), []string{"rules", "test", rule, evPath}, e); err != nil {
		t.Fatalf("rules test: %v (%s)", err, errOut.String())
	}
	s := out.String()
	if !strings.Contains(s, "line 1 ") || !strings.Contains(s, "matches failed_login") ||
		!strings.Contains(s, `FIRES 4c2e6a7d-3f0c-4a9b-8b1e-2f6d5c4b3a21 "Successful login after multiple failed logins"`) ||
		!strings.Contains(s, "11 event(s), 11 matched a rule, 1 firing(s)") {
		t.Fatalf("output:\n%s", s)
	}

	bad := filepath.Join(dir, "bad.yml")
	if err := os.WriteFile(bad, []byte("title: bad\nlogsource: {}\ndetection:\n  sel:\n    user|nope: x\n  condition: sel\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	errOut.Reset()
	if err := run(context.Background(), []string{"rules", "check", bad}, e); err == nil {
		t.Fatal("check accepted a broken rule")
	}
	if !strings.Contains(errOut.String(), "bad.yml:5") || !strings.Contains(errOut.String(), `unknown modifier "nope"`) {
		t.Fatalf("check stderr: %s", errOut.String())
	}
}
