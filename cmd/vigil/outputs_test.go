package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/vigil-sec/vigil/internal/config"
	"github.com/vigil-sec/vigil/internal/testnode"
)

// TestOutputsCommand: `vigil outputs list` shows the configured outputs;
// `vigil outputs test NAME` sends a test message and reports a refusal
// as an error.
func TestOutputsCommand(t *testing.T) {
	var status atomic.Int32
	status.Store(http.StatusOK)
	var tests atomic.Int32
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Vigil-Test") == "true" {
			tests.Add(1)
		}
		w.WriteHeader(int(status.Load()))
	}))
	defer recv.Close()
	var nodes []yaml.Node
	if err := yaml.Unmarshal([]byte(fmt.Sprintf("- name: hook\n  type: webhook\n  url: %s\n", recv.URL)), &nodes); err != nil {
		t.Fatal(err)
	}
	n := testnode.Start(t, func(c *config.Config) { c.Outputs = nodes })
	vigil := cliAgainst(n)
	out, stderr, err := vigil("outputs", "list")
	if err != nil || !strings.Contains(out, "NAME") || !strings.Contains(out, "hook") || !strings.Contains(out, "webhook") {
		t.Fatalf("list: %v\n%s%s", err, out, stderr)
	}
	out, stderr, err = vigil("outputs", "test", "hook")
	if err != nil || !strings.Contains(out, "hook: test message") || tests.Load() != 1 {
		t.Fatalf("test: %v (%d test requests)\n%s%s", err, tests.Load(), out, stderr)
	}
	status.Store(http.StatusUnauthorized)
	if _, _, err := vigil("outputs", "test", "hook"); err == nil || !strings.Contains(err.Error(), "permanent failure: HTTP 401") {
		t.Fatalf("refused test: err = %v", err)
	}
	if _, _, err := vigil("outputs", "test", "nope"); err == nil || !strings.Contains(err.Error(), "404") && !strings.Contains(err.Error(), "no output") {
		t.Fatalf("unknown output: err = %v", err)
	}
}
