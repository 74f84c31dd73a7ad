package hostile

import (
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
)

// falcoAlert is Falco's documented alert (internal/inputs/falco/testdata).
func falcoAlert(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile("../../internal/inputs/falco/testdata/alert.json")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var falcoJSON = http.Header{"Content-Type": {"application/json"}}

// TestFalcoAlertStored posts Falco's alert as http_output does, reads it
// back through GET /api/v1/events as the tenant's viewer, and posts it
// again as Falco's retry would: the uuid dedups it.
func TestFalcoAlertStored(t *testing.T) {
	in := inputsStart(t)
	alert := falcoAlert(t)
	st, body, _ := in.do("POST", "/api/v1/inputs/falco", in.publisher, falcoJSON, alert)
	if st != http.StatusOK {
		t.Fatalf("POST falco: HTTP %d: %s", st, body)
	}
	var ack struct {
		Accepted int `json:"accepted"`
		Events   []struct {
			ID        string `json:"id"`
			Seq       uint64 `json:"seq"`
			Duplicate bool   `json:"duplicate"`
		} `json:"events"`
	}
	if err := json.Unmarshal(body, &ack); err != nil || ack.Accepted != 1 || ack.Events[0].ID != "2f5d5a58-3c6d-4a8e-9b8e-7d3a1c0e4f11" || ack.Events[0].Seq == 0 {
		t.Fatalf("ack %s (%v)", body, err)
	}
	evs := in.events(url.Values{"types": {"threat.falco.read_sensitive_file_untrusted"}})
	if len(evs) != 1 {
		t.Fatalf("%d events stored, want 1", len(evs))
	}
	ev := evs[0]
	for k, want := range map[string]any{
		"id": "2f5d5a58-3c6d-4a8e-9b8e-7d3a1c0e4f11", "tenant": "acme", "category": "threat_intel",
		"severity": "medium", "user": "root", "source": "node-1/falco", "time": "2026-11-30T10:20:05.408091526Z",
	} {
		if ev[k] != want {
			t.Errorf("%s = %v, want %v", k, ev[k], want)
		}
	}
	if tac, _ := json.Marshal(ev["mitre_tactics"]); string(tac) != `["TA0006"]` {
		t.Errorf("mitre_tactics %s", tac)
	}
	if data, _ := ev["data"].(map[string]any); data["proc_cmdline"] != "cat /etc/shadow" {
		t.Errorf("data %v", ev["data"])
	}

	// Falco retries a post whose answer it did not get: same uuid, stored once.
	st, body, _ = in.do("POST", "/api/v1/inputs/falco", in.publisher, falcoJSON, alert)
	if st != http.StatusOK || !strings.Contains(string(body), `"duplicate":true`) {
		t.Fatalf("retry: HTTP %d: %s", st, body)
	}
	if n := len(in.events(url.Values{"types": {"threat.falco.read_sensitive_file_untrusted"}})); n != 1 {
		t.Fatalf("after the retry %d events, want 1", n)
	}
	// Falco's http_output sets no header: the token in the query works.
	other := strings.Replace(string(alert), "2f5d5a58-", "3f5d5a58-", 1)
	if st, body, _ := in.do("POST", "/api/v1/inputs/falco?token="+url.QueryEscape(in.publisher), "", falcoJSON, []byte(other)); st != http.StatusOK {
		t.Fatalf("?token=: HTTP %d: %s", st, body)
	}
	if n := len(in.events(url.Values{"types": {"threat.falco.*"}})); n != 2 { // docs/inputs.md's filter
		t.Fatalf("%d events after a second alert, want 2", n)
	}
	if m := in.metric(`vigil_input_stored_total{input="falco"}`); !strings.HasSuffix(m, " 3") {
		t.Errorf("stored metric %q, want 3 (every answer was an acknowledgement)", m)
	}
}

// TestFalcoRefusals: a wrong token, a role that may not publish, a body
// over the event limit, invalid JSON and a wrong Content-Type are refused
// and nothing is stored.
func TestFalcoRefusals(t *testing.T) {
	in := inputsStart(t)
	alert := falcoAlert(t)
	big := []byte(`{"rule":"x","priority":"Debug","output":"` + strings.Repeat("a", 70<<10) + `"}`)
	for _, c := range []struct {
		name string
		tok  string
		hdr  http.Header
		body []byte
		want int
	}{
		{"wrong token", "not-a-token", falcoJSON, alert, http.StatusUnauthorized},
		{"no token", "", falcoJSON, alert, http.StatusUnauthorized},
		{"viewer", in.viewer, falcoJSON, alert, http.StatusForbidden},
		{"oversized", in.publisher, falcoJSON, big, http.StatusRequestEntityTooLarge},
		{"duplicate key", in.publisher, falcoJSON, []byte(`{"rule":"a","priority":"Debug","priority":"Critical"}`), http.StatusBadRequest},
		{"unknown priority", in.publisher, falcoJSON, []byte(`{"rule":"a","priority":"Loud"}`), http.StatusBadRequest},
		{"content type", in.publisher, http.Header{"Content-Type": {"text/plain"}}, alert, http.StatusUnsupportedMediaType},
	} {
		st, body, _ := in.do("POST", "/api/v1/inputs/falco", c.tok, c.hdr, c.body)
		if st != c.want {
			t.Errorf("%s: HTTP %d, want %d: %s", c.name, st, c.want, body)
		}
	}
	if n := len(in.events(url.Values{})); n != 0 {
		t.Fatalf("%d events stored by refused requests", n)
	}
	if m := in.metric(`vigil_input_errors_total{input="falco",reason="too_large"}`); !strings.HasSuffix(m, " 1") {
		t.Errorf("too_large metric %q", m)
	}
	if m := in.metric(`vigil_input_errors_total{input="falco",reason="decode"}`); !strings.HasSuffix(m, " 2") {
		t.Errorf("decode metric %q", m)
	}
}
