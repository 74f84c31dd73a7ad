package hostile

// Issue 10: outputs over a real node. A webhook receiver on loopback gets
// the detections a node's config routes to it, signed; the outputs REST
// API lists them to admins only (a tenant admin sees only its tenant's,
// secrets never), sends labelled test messages, and the metrics count the
// deliveries. A broken outputs: entry stops the start.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/vigil-sec/vigil/internal/app"
	"github.com/vigil-sec/vigil/internal/config"
	"github.com/vigil-sec/vigil/internal/outputs/webhook"
	"github.com/vigil-sec/vigil/internal/testnode"
)

// outputsReceiver records the webhook requests it accepts by delivery id.
type outputsReceiver struct {
	*httptest.Server
	secret []byte
	mu     sync.Mutex
	byID   map[string]int
	tests  int
	badSig int
}

func newOutputsReceiver(t *testing.T, secret string) *outputsReceiver {
	r := &outputsReceiver{secret: []byte(secret), byID: map[string]int{}}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		defer r.mu.Unlock()
		if webhook.Verify(r.secret, req.Header.Get(webhook.HeaderSignature), body, time.Now(), 5*time.Minute) != nil {
			r.badSig++
		}
		if req.Header.Get(webhook.HeaderTest) == "true" {
			r.tests++
			return
		}
		r.byID[req.Header.Get(webhook.HeaderDelivery)]++
	}))
	t.Cleanup(r.Close)
	return r
}

func outputsYAML(t *testing.T, src string) []yaml.Node {
	var nodes []yaml.Node
	if err := yaml.Unmarshal([]byte(src), &nodes); err != nil {
		t.Fatal(err)
	}
	return nodes
}

// outputsDo sends a JSON request with tok and returns status and body.
func outputsDo(t *testing.T, method, url, tok string, in any) (int, string) {
	t.Helper()
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, url, body)
	req.Header.Set("Authorization", "Bearer "+tok)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(raw)
}

func outputsToken(t *testing.T, n *testnode.Node, admin string, req map[string]any) string {
	t.Helper()
	st, body := outputsDo(t, "POST", n.URL()+"/api/v1/tokens", admin, req)
	if st != http.StatusCreated {
		t.Fatalf("create token: HTTP %d %s", st, body)
	}
	var tk struct {
		Token string `json:"token"`
	}
	_ = json.Unmarshal([]byte(body), &tk)
	return tk.Token
}

func TestOutputsOverRealNode(t *testing.T) {
	const secret = "hostile-whsec-value"
	r := newOutputsReceiver(t, secret)
	sf := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(sf, []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	n := testnode.Start(t, func(c *config.Config) {
		c.PublicURL = "https://vigil.example.com"
		c.Outputs = outputsYAML(t, fmt.Sprintf(`
- name: soc
  type: webhook
  url: %[1]s/soc
  secret_file: %[2]s
  filter: {categories: [detection], min_severity: high}
- name: acme-hook
  type: webhook
  url: %[1]s/acme
  secret_file: %[2]s
  tenants: [acme]
`, r.URL, sf))
	})
	admin := n.AdminToken()
	// Detections published through the normal ingest path, plus noise the
	// filter excludes.
	var ids []string
	for i := 0; i < 5; i++ {
		id := fmt.Sprintf("hostile-det-%d", i)
		ids = append(ids, id)
		st, body := outputsDo(t, "POST", n.URL()+"/api/v1/events", admin, []map[string]any{
			{"id": id, "type": "detection.created", "category": "detection", "severity": "critical", "message": "test detection",
				"data": map[string]any{"id": "d-" + id, "rule_id": "r1", "title": "T", "severity": "critical", "status": "active", "count": 1}},
			{"type": "auth.login", "category": "authentication", "severity": "info"},
		})
		if st != http.StatusOK && st != http.StatusCreated && st != http.StatusAccepted {
			t.Fatalf("publish: HTTP %d %s", st, body)
		}
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		r.mu.Lock()
		got := len(r.byID)
		r.mu.Unlock()
		if got >= len(ids) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d detections delivered", got, len(ids))
		}
		time.Sleep(20 * time.Millisecond)
	}
	r.mu.Lock()
	for _, id := range ids {
		if r.byID[id] == 0 {
			t.Fatalf("%s not delivered: %v", id, r.byID)
		}
	}
	if len(r.byID) != len(ids) || r.badSig != 0 {
		t.Fatalf("deliveries %v, bad signatures %d", r.byID, r.badSig)
	}
	r.mu.Unlock()

	// The list: admin sees both, never the secret nor the secret's path.
	// The receiver answers before the output counts and acknowledges:
	// poll until soc has counted all and its lag is 0.
	var (
		st   int
		body string
	)
	deadline = time.Now().Add(10 * time.Second)
	for {
		st, body = outputsDo(t, "GET", n.URL()+"/api/v1/outputs", admin, nil)
		if st != http.StatusOK || !strings.Contains(body, `"name":"soc"`) || !strings.Contains(body, `"name":"acme-hook"`) {
			t.Fatalf("list: HTTP %d %s", st, body)
		}
		var list struct {
			Outputs []struct {
				Name      string `json:"name"`
				Delivered int64  `json:"delivered"`
				Pending   int64  `json:"pending"`
				State     string `json:"state"`
			} `json:"outputs"`
		}
		_ = json.Unmarshal([]byte(body), &list)
		soc := list.Outputs[0]
		if soc.Delivered == int64(len(ids)) && soc.State == "running" && soc.Pending == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("soc status %+v", soc)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if strings.Contains(body, secret) || strings.Contains(body, sf) {
		t.Fatalf("the list shows the secret or its file: %s", body)
	}
	// A tenant admin sees only the output limited to its tenant; a viewer
	// nothing; nobody without a token.
	acmeAdmin := outputsToken(t, n, admin, map[string]any{"role": "admin", "tenant": "acme"})
	otherAdmin := outputsToken(t, n, admin, map[string]any{"role": "admin", "tenant": "globex"})
	viewer := outputsToken(t, n, admin, map[string]any{"role": "viewer"})
	if st, body := outputsDo(t, "GET", n.URL()+"/api/v1/outputs", acmeAdmin, nil); st != 200 || strings.Contains(body, `"soc"`) || !strings.Contains(body, `"acme-hook"`) {
		t.Fatalf("tenant admin list: HTTP %d %s", st, body)
	}
	if st, body := outputsDo(t, "GET", n.URL()+"/api/v1/outputs", otherAdmin, nil); st != 200 || strings.Contains(body, `"name"`) {
		t.Fatalf("other tenant's admin list: HTTP %d %s", st, body)
	}
	if st, _ := outputsDo(t, "GET", n.URL()+"/api/v1/outputs", viewer, nil); st != http.StatusForbidden {
		t.Fatalf("viewer list: HTTP %d", st)
	}
	if st, _ := outputsDo(t, "GET", n.URL()+"/api/v1/outputs", "", nil); st != http.StatusUnauthorized {
		t.Fatalf("anonymous list: HTTP %d", st)
	}
	// Test messages: labelled, sent now; another tenant's admin cannot
	// test (or learn of) soc; an unknown name is 404.
	st, body = outputsDo(t, "POST", n.URL()+"/api/v1/outputs/soc/test", admin, nil)
	if st != 200 || !strings.Contains(body, `"ok":true`) {
		t.Fatalf("test: HTTP %d %s", st, body)
	}
	r.mu.Lock()
	if r.tests != 1 {
		t.Fatalf("%d test requests arrived", r.tests)
	}
	r.mu.Unlock()
	if st, _ := outputsDo(t, "POST", n.URL()+"/api/v1/outputs/soc/test", acmeAdmin, nil); st != http.StatusNotFound {
		t.Fatalf("tenant admin testing soc: HTTP %d", st)
	}
	if st, _ := outputsDo(t, "POST", n.URL()+"/api/v1/outputs/nope/test", admin, nil); st != http.StatusNotFound {
		t.Fatalf("unknown output: HTTP %d", st)
	}
	// Metrics.
	resp, err := http.Get(n.URL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	m, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`vigil_output_deliveries_total{output="soc",result="delivered"} 5`,
		`vigil_output_lag{output="soc"} 0`,
		`vigil_output_delivery_seconds_count{output="soc"} 5`,
	} {
		if !strings.Contains(string(m), want) {
			t.Fatalf("metrics lack %q", want)
		}
	}
}

// TestOutputsBrokenDefinitionStopsTheStart: the node does not start, and
// says which entry and why.
func TestOutputsBrokenDefinitionStopsTheStart(t *testing.T) {
	cfg := config.Defaults()
	cfg.Listen, cfg.DataDir = "127.0.0.1:0", t.TempDir()
	cfg.Outputs = outputsYAML(t, "- name: ok\n  type: webhook\n  url: http://127.0.0.1:1/\n- name: typo\n  type: webhook\n  url: http://127.0.0.1:1/\n  secert_file: /x\n")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := app.Run(ctx, cfg, slog.New(slog.DiscardHandler), nil)
	if err == nil || !strings.Contains(err.Error(), `outputs[1] (typo): unknown key "secert_file"`) {
		t.Fatalf("err = %v", err)
	}
	if entries, _ := os.ReadDir(cfg.DataDir); len(entries) != 0 {
		t.Fatalf("the data directory was touched: %v", entries)
	}
}

// TestOutputsOneTestAtATime: a caller cannot pile up test requests on a
// slow receiver: while one test of an output is in flight, another is
// refused with 429; once it ends, the next is accepted.
func TestOutputsOneTestAtATime(t *testing.T) {
	arrived := make(chan struct{}, 4)
	release := make(chan struct{})
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer recv.Close()
	n := testnode.Start(t, func(c *config.Config) {
		c.Outputs = outputsYAML(t, fmt.Sprintf("- name: slow\n  type: webhook\n  url: %s\n  timeout: 20s\n", recv.URL))
	})
	admin := n.AdminToken()
	first := make(chan int, 1)
	go func() { // the first test, held by the receiver until release
		req, _ := http.NewRequest("POST", n.URL()+"/api/v1/outputs/slow/test", nil)
		req.Header.Set("Authorization", "Bearer "+admin)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			first <- 0
			return
		}
		resp.Body.Close()
		first <- resp.StatusCode
	}()
	select {
	case <-arrived:
	case <-time.After(10 * time.Second):
		t.Fatal("the first test never reached the receiver")
	}
	if st, body := outputsDo(t, "POST", n.URL()+"/api/v1/outputs/slow/test", admin, nil); st != http.StatusTooManyRequests {
		t.Fatalf("second concurrent test: HTTP %d %s, want 429", st, body)
	}
	close(release)
	if st := <-first; st != http.StatusOK {
		t.Fatalf("first test: HTTP %d", st)
	}
	if st, body := outputsDo(t, "POST", n.URL()+"/api/v1/outputs/slow/test", admin, nil); st != http.StatusOK || !strings.Contains(body, `"ok":true`) {
		t.Fatalf("test after the first ended: HTTP %d %s", st, body)
	}
}
