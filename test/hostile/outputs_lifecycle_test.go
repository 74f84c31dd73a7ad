package hostile

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/config"
	"github.com/vigil-sec/vigil/internal/testnode"
)

// lifecyclePagerDuty is a loopback PagerDuty Events API v2 receiver. It
// checks what the reference asks of every request
// (https://developer.pagerduty.com/api-reference/368ae3d938c9e-send-an-event-to-pager-duty):
// POST JSON with routing_key, event_action trigger|acknowledge|resolve and a
// dedup_key; a trigger carries payload.summary, payload.source and
// payload.severity (critical|error|warning|info). It answers 202 as the
// service does, and records the (action, dedup_key) pairs in order.
type lifecyclePagerDuty struct {
	*httptest.Server
	t      *testing.T
	key    string
	mu     sync.Mutex
	events [][2]string
}

func newLifecyclePagerDuty(t *testing.T, key string) *lifecyclePagerDuty {
	pd := &lifecyclePagerDuty{t: t, key: key}
	pd.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var ev struct {
			RoutingKey  string `json:"routing_key"`
			EventAction string `json:"event_action"`
			DedupKey    string `json:"dedup_key"`
			Payload     *struct {
				Summary  string `json:"summary"`
				Source   string `json:"source"`
				Severity string `json:"severity"`
			} `json:"payload"`
		}
		bad := func(why string) {
			t.Errorf("PagerDuty receiver: %s: %s", why, body)
			w.WriteHeader(http.StatusBadRequest)
		}
		switch {
		case r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json":
			bad("not a JSON POST")
		case json.Unmarshal(body, &ev) != nil:
			bad("not JSON")
		case ev.RoutingKey != key:
			bad("wrong routing_key")
		case ev.DedupKey == "":
			bad("no dedup_key")
		case ev.EventAction == "trigger" && (ev.Payload == nil || ev.Payload.Summary == "" || ev.Payload.Source == "" ||
			!map[string]bool{"critical": true, "error": true, "warning": true, "info": true}[ev.Payload.Severity]):
			bad("trigger without summary, source or a valid severity")
		case ev.EventAction != "trigger" && ev.EventAction != "acknowledge" && ev.EventAction != "resolve":
			bad("event_action")
		default:
			pd.mu.Lock()
			pd.events = append(pd.events, [2]string{ev.EventAction, ev.DedupKey})
			pd.mu.Unlock()
			w.WriteHeader(http.StatusAccepted)
			_, _ = w.Write([]byte(`{"status":"success","message":"Event processed","dedup_key":"` + ev.DedupKey + `"}`))
		}
	}))
	t.Cleanup(pd.Close)
	return pd
}

// waitFor polls until the receiver has seen action for key.
func (pd *lifecyclePagerDuty) waitFor(action, key string) {
	pd.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		pd.mu.Lock()
		for _, e := range pd.events {
			if e == [2]string{action, key} {
				pd.mu.Unlock()
				return
			}
		}
		seen := fmt.Sprint(pd.events)
		pd.mu.Unlock()
		if time.Now().After(deadline) {
			pd.t.Fatalf("no %s for %s within 20s; received %s", action, key, seen)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestOutputsPagerDutyLifecycle: the whole chain on a real node — failed
// logins make the built-in brute-force rule create a detection, the
// pagerduty output triggers an alert keyed by the detection id; an analyst
// moves it to investigating (acknowledge) and to resolved (resolve) over
// REST, and each change reaches PagerDuty with the same dedup_key.
func TestOutputsPagerDutyLifecycle(t *testing.T) {
	const key = "R0UT1NGKEY0000000000000000000000"
	pd := newLifecyclePagerDuty(t, key)
	kf := filepath.Join(t.TempDir(), "pd.key")
	if err := os.WriteFile(kf, []byte(key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	n := testnode.Start(t, func(c *config.Config) {
		c.Outputs = outputsYAML(t, fmt.Sprintf(`
- name: oncall
  type: pagerduty
  routing_key_file: %s
  api_url: %s/v2/enqueue
  filter: {categories: [detection]}
`, kf, pd.URL))
	})
	admin := n.AdminToken()
	var evs []map[string]any
	start := time.Now().Add(-time.Minute)
	for i := 0; i < 12; i++ {
		evs = append(evs, map[string]any{"type": "authentication.login_failed", "action": "login_failed", "outcome": "failure",
			"user": "mallory", "src_ip": "203.0.113.66", "source": "auth-gateway", "time": start.Add(time.Duration(i) * time.Second).Format(time.RFC3339Nano)})
	}
	if st, body := outputsDo(t, "POST", n.URL()+"/api/v1/events", admin, evs); st != http.StatusOK {
		t.Fatalf("publish: HTTP %d %s", st, body)
	}
	var det struct {
		ID     string `json:"id"`
		RuleID string `json:"rule_id"`
	}
	deadline := time.Now().Add(20 * time.Second)
	for det.ID == "" {
		_, body := outputsDo(t, "GET", n.URL()+"/api/v1/detections?rule_id=SEC-AUTH-002", admin, nil)
		var list struct {
			Detections []struct {
				ID     string `json:"id"`
				RuleID string `json:"rule_id"`
			} `json:"detections"`
		}
		_ = json.Unmarshal([]byte(body), &list)
		if len(list.Detections) > 0 {
			det.ID, det.RuleID = list.Detections[0].ID, list.Detections[0].RuleID
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no brute-force detection within 20s: %s", body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	pd.waitFor("trigger", det.ID)
	for _, step := range []struct{ status, action string }{{"investigating", "acknowledge"}, {"resolved", "resolve"}} {
		if st, body := outputsDo(t, "PATCH", n.URL()+"/api/v1/detections/"+det.ID, admin, map[string]any{"status": step.status}); st != http.StatusOK {
			t.Fatalf("PATCH %s: HTTP %d %s", step.status, st, body)
		}
		pd.waitFor(step.action, det.ID)
	}
	// This detection's requests come in lifecycle order: triggers (a
	// count update re-triggers with the same key: PagerDuty merges it),
	// then acknowledge, then resolve. (Other rules may fire on the same
	// burst: their detections page under their own ids.)
	pd.mu.Lock()
	defer pd.mu.Unlock()
	var mine []string
	for _, e := range pd.events {
		if e[1] == det.ID && (len(mine) == 0 || mine[len(mine)-1] != e[0]) {
			mine = append(mine, e[0])
		}
	}
	if fmt.Sprint(mine) != "[trigger acknowledge resolve]" {
		t.Fatalf("requests for %s in the order %v, want trigger, acknowledge, resolve: %v", det.ID, mine, pd.events)
	}
}
