package hostile

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/app"
	"github.com/vigil-sec/vigil/internal/config"
	"github.com/vigil-sec/vigil/internal/testnode"
)

// Issue 13, items 1-3 through a real node: `vigil serve` with --rules,
// --pipeline and --sigma-placeholders. A Sysmon registry event forwarded
// unchanged under data fires a SigmaHQ-style rule with the default field
// map (data.<Field> fallback), a pipeline maps a field, a placeholder is
// expanded, and a Sigma filter suppresses the matches it names.
func TestSigspecServeRulesPipelineFilter(t *testing.T) {
	dir := t.TempDir()
	rules := filepath.Join(dir, "rules")
	if err := os.Mkdir(rules, 0o700); err != nil {
		t.Fatal(err)
	}
	sigspecWrite(t, filepath.Join(rules, "registry.yml"), `title: Run key set by an administrator
id: 3f1c0a52-7d4e-4a0e-9c51-0d6c1e7a9b10
status: test
level: high
logsource:
  category: registry_set
  product: windows
detection:
  selection:
    EventType: SetValue
    TargetObject|contains: '\CurrentVersion\Run\'
    Image|endswith: '.exe'
    User|expand|contains: '%Administrators%'
  condition: selection
tags: [attack.persistence, attack.t1547.001]
vigil:
  group-by: [data.TargetObject]
`)
	sigspecWrite(t, filepath.Join(rules, "mf_updater.yml"), `title: Filter the sanctioned updater
logsource:
  category: registry_set
  product: windows
filter:
  rules: [3f1c0a52-7d4e-4a0e-9c51-0d6c1e7a9b10]
  updater:
    Details|endswith: '\corp-updater.exe'
  condition: not updater
`)
	pipe := filepath.Join(dir, "pipeline.yml")
	// The producer names the process image "ProcessPath".
	sigspecWrite(t, pipe, `name: site
priority: 20
transformations:
  - type: field_name_mapping
    mapping:
      Image: ProcessPath
    rule_conditions:
      - type: logsource
        product: windows
`)
	ph := filepath.Join(dir, "placeholders.yml")
	sigspecWrite(t, ph, "Administrators: ['adm_']\n")
	n := testnode.Start(t, func(c *config.Config) {
		c.Rules, c.Pipelines, c.SigmaPlaceholders = rules, []string{pipe}, ph
	})

	var info struct {
		Rules []struct{ Kind, State, Error string }
	}
	sigspecDo(t, n, "GET", "/api/v1/rules", nil, &info)
	kinds := map[string]string{}
	for _, r := range info.Rules {
		if r.State == "error" && r.Kind != "" {
			t.Fatalf("rule in error: %+v", r)
		}
		kinds[r.Kind] = r.State
	}
	if kinds["filter"] != "enabled" {
		t.Fatalf("filter not listed as enabled: %+v", info.Rules)
	}

	sysmon := func(id, target, details, user string) map[string]any {
		return map[string]any{"id": id, "type": "audit.registry", "source": "sysmon-forwarder", "data": map[string]any{
			"EventID": 13, "EventType": "SetValue", "TargetObject": target, "Details": details,
			"ProcessPath": `C:\Windows\System32\reg.exe`, "User": user, "UtcTime": "2026-11-30 10:00:00.000"}}
	}
	run := `HKU\S-1-5-21\SOFTWARE\Microsoft\Windows\CurrentVersion\Run\`
	evs := []map[string]any{
		// filtered: the sanctioned updater
		sysmon("0193b7a0-0000-7000-8000-000000000001", run+"updater", `C:\Program Files\corp-updater.exe`, `CORP\adm_ops`),
		// not an administrator
		sysmon("0193b7a0-0000-7000-8000-000000000002", run+"other", `C:\Users\bob\x.exe`, `CORP\bob`),
		// fires
		sysmon("0193b7a0-0000-7000-8000-000000000003", run+"evil", `C:\Users\Public\evil.exe`, `CORP\adm_eve`),
	}
	sigspecDo(t, n, "POST", "/api/v1/events", evs, nil)

	deadline := time.Now().Add(20 * time.Second)
	for {
		var out struct {
			Detections []struct {
				RuleID   string   `json:"rule_id"`
				EventIDs []string `json:"event_ids"`
				GroupKey string   `json:"group_key"`
			}
		}
		sigspecDo(t, n, "GET", "/api/v1/detections?rule_id=3f1c0a52-7d4e-4a0e-9c51-0d6c1e7a9b10", nil, &out)
		if len(out.Detections) > 0 {
			// Events are evaluated in log order: by the time the third one
			// fired, the first two were evaluated and did not.
			var ids []string
			for _, d := range out.Detections {
				ids = append(ids, d.EventIDs...)
			}
			if !slices.Equal(ids, []string{"0193b7a0-0000-7000-8000-000000000003"}) {
				t.Fatalf("detections carry events %v, want only the third (the first is filtered, the second is no administrator)", ids)
			}
			if !strings.Contains(out.Detections[0].GroupKey, `Run\evil`) {
				t.Fatalf("group key %q", out.Detections[0].GroupKey)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("no detection for the Sysmon registry event within 20s")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// A pipeline Vigil cannot apply stops the node from starting, naming the
// file, the line and the construct.
func TestSigspecServeRefusesUnsupportedPipeline(t *testing.T) {
	pipe := filepath.Join(t.TempDir(), "splunk.yml")
	sigspecWrite(t, pipe, "name: splunk\ntransformations:\n  - id: q\n    type: query_expression_placeholders\n    expression: '| lookup {id}'\n")
	cfg := config.Defaults()
	cfg.Listen, cfg.DataDir, cfg.Pipelines = "127.0.0.1:0", t.TempDir(), []string{pipe}
	err := sigspecStartErr(t, cfg)
	if err == nil || !strings.Contains(err.Error(), pipe+":4") || !strings.Contains(err.Error(), "query_expression_placeholders") {
		t.Fatalf("start error %v, want %s:4 naming query_expression_placeholders", err, pipe)
	}
}

func sigspecWrite(t *testing.T, path, src string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
}

func sigspecDo(t *testing.T, n *testnode.Node, method, path string, body, out any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, n.URL()+path, rd)
	req.Header.Set("Authorization", "Bearer "+n.AdminToken())
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
	}
}

// sigspecStartErr runs app.Run with cfg and returns its error when it
// fails to start; a node that does start is stopped and nil returned.
func sigspecStartErr(t *testing.T, cfg config.Config) error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	ready := make(chan struct{})
	go func() { // ends when ctx is cancelled or Run fails
		done <- app.Run(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), func(string) { close(ready) })
	}()
	select {
	case err := <-done:
		return err
	case <-ready:
		cancel()
		<-done
		return nil
	case <-time.After(30 * time.Second):
		cancel()
		<-done
		t.Fatal("node neither failed nor started within 30s")
		return nil
	}
}
