package hostile

// Issue 13, items 4 and 5, over a real node: rule reload is for admins of
// every tenant only and a broken edit keeps the previous rule firing; a
// backtest is bounded (body, events, concurrency) and reads only the
// events its token may read.

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/config"
	"github.com/vigil-sec/vigil/internal/testnode"
)

const rulesopsRule = `title: Rulesops marker
id: 7c1d2e3f-0000-4000-8000-0000000000b1
status: test
logsource: {product: vigil}
detection:
    sel: {action: %s}
    condition: sel
level: high
`

func rulesopsWrite(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}

// rulesopsPublish appends events through the REST API with tok.
func rulesopsPublish(t *testing.T, c taClient, events ...map[string]any) {
	t.Helper()
	if st, body := c.do("POST", "/api/v1/events", events, nil); st/100 != 2 {
		t.Fatalf("publish: HTTP %d %s", st, body)
	}
}

func TestRulesOpsReload(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "marker.yml")
	rulesopsWrite(t, file, fmt.Sprintf(rulesopsRule, "marker"))
	n := testnode.Start(t, func(c *config.Config) { c.Rules, c.RulesPoll = dir, -1 })
	root := taClient{t: t, base: n.URL(), tok: n.AdminToken()}
	analyst := taClient{t: t, base: n.URL(), tok: root.taCreate(map[string]any{"role": "analyst", "name": "ana"}).Token}
	acmeAdmin := taClient{t: t, base: n.URL(), tok: root.taCreate(map[string]any{"role": "admin", "tenant": "acme", "name": "acme admin"}).Token}
	for name, c := range map[string]taClient{"analyst": analyst, "tenant admin": acmeAdmin} {
		if st, body := c.do("POST", "/api/v1/rules/reload", nil, nil); st != http.StatusForbidden {
			t.Errorf("%s reload: HTTP %d %s, want 403", name, st, body)
		}
	}

	// A broken edit: the reload reports it, the previous version runs.
	rulesopsWrite(t, file, strings.Replace(fmt.Sprintf(rulesopsRule, "marker"), "sel: {action:", "sel: {action|bogus:", 1))
	var rep struct {
		Reload struct {
			Stale  int `json:"stale"`
			Errors []struct {
				Path string `json:"path"`
				Line int    `json:"line"`
			} `json:"errors"`
		} `json:"reload"`
	}
	if st, body := root.do("POST", "/api/v1/rules/reload", nil, &rep); st != http.StatusOK || rep.Reload.Stale != 1 ||
		len(rep.Reload.Errors) != 1 || rep.Reload.Errors[0].Path != file || rep.Reload.Errors[0].Line != 6 {
		t.Fatalf("reload of a broken file: HTTP %d %s", st, body)
	}
	var rules struct {
		Rules []struct {
			ID, State, Error string
		} `json:"rules"`
	}
	if st, body := root.do("GET", "/api/v1/rules", nil, &rules); st != http.StatusOK || !strings.Contains(body, `"state":"stale"`) ||
		!strings.Contains(body, file+":6") {
		t.Fatalf("rules: HTTP %d %s", st, body)
	}
	rulesopsPublish(t, root, map[string]any{"type": "audit.x", "action": "marker", "user": "mallory"})
	deadline := time.Now().Add(10 * time.Second)
	for {
		var list struct{ Count int }
		root.do("GET", "/api/v1/detections?rule_id=7c1d2e3f-0000-4000-8000-0000000000b1", nil, &list)
		if list.Count == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the previous version of the rule did not fire")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRulesOpsBacktestBounds(t *testing.T) {
	n := testnode.Start(t)
	root := taClient{t: t, base: n.URL(), tok: n.AdminToken()}
	acmePub := taClient{t: t, base: n.URL(), tok: root.taCreate(map[string]any{"role": "publisher", "tenant": "acme", "name": "acme pub"}).Token}
	acmeViewer := taClient{t: t, base: n.URL(), tok: root.taCreate(map[string]any{"role": "viewer", "tenant": "acme", "name": "acme viewer"}).Token}
	var evs []map[string]any
	for i := 0; i < 5; i++ {
		evs = append(evs, map[string]any{"type": "audit.x", "action": "marker", "user": fmt.Sprintf("u%d", i)})
	}
	rulesopsPublish(t, root, evs...)        // default tenant
	rulesopsPublish(t, acmePub, evs[:2]...) // acme
	rules := []map[string]string{{"path": "m.yml", "content": fmt.Sprintf(rulesopsRule, "marker")}}

	type report struct {
		Read      int    `json:"events_read"`
		Evaluated int    `json:"events_evaluated"`
		Truncated string `json:"truncated"`
		Rules     []struct {
			Matches int `json:"matches"`
		} `json:"rules"`
	}
	var rep report
	if st, body := acmeViewer.do("POST", "/api/v1/rules/backtest", map[string]any{"since": "1h", "rules": rules}, &rep); st != http.StatusOK ||
		rep.Evaluated != 2 || rep.Rules[0].Matches != 2 {
		t.Fatalf("acme viewer backtest: HTTP %d %s (other tenants' events must not be evaluated)", st, body)
	}
	if st, body := acmeViewer.do("POST", "/api/v1/rules/backtest", map[string]any{"since": "1h", "tenant": "default"}, nil); st != http.StatusForbidden {
		t.Errorf("acme viewer asking for default: HTTP %d %s, want 403", st, body)
	}
	if st, _ := acmePub.do("POST", "/api/v1/rules/backtest", map[string]any{"since": "1h"}, nil); st != http.StatusForbidden {
		t.Errorf("publisher: HTTP %d, want 403", st)
	}
	if st, body := root.do("POST", "/api/v1/rules/backtest", map[string]any{"from_seq": 1, "max_events": 3, "rules": rules}, &rep); st != http.StatusOK ||
		rep.Read != 3 || rep.Truncated != "max_events" {
		t.Fatalf("max_events 3: HTTP %d %s", st, body)
	}
	if st, body := root.do("POST", "/api/v1/rules/backtest", map[string]any{"max_events": 20_000_001}, nil); st != http.StatusBadRequest {
		t.Errorf("max_events beyond the cap: HTTP %d %s, want 400", st, body)
	}
	if st, body := root.do("POST", "/api/v1/rules/backtest", map[string]any{"max_seconds": 601}, nil); st != http.StatusBadRequest {
		t.Errorf("max_seconds beyond the cap: HTTP %d %s, want 400", st, body)
	}
	huge := []map[string]string{{"path": "big.yml", "content": strings.Repeat("#", 9<<20)}}
	if st, _ := root.do("POST", "/api/v1/rules/backtest", map[string]any{"rules": huge}, nil); st != http.StatusRequestEntityTooLarge {
		t.Errorf("9 MiB body: HTTP %d, want 413", st)
	}
}
