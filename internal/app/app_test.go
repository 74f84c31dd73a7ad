package app_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/testkit"
	"github.com/vigil-sec/vigil/internal/testnode"
)

type detection struct {
	RuleID   string `json:"rule_id"`
	GroupKey string `json:"group_key"`
	Count    int    `json:"count"`
}

func failures(t *testing.T, n *testnode.Node, user string, count int) {
	t.Helper()
	var b strings.Builder
	for i := 0; i < count; i++ {
		fmt.Fprintf(&b, `{"type":"auth.login.failure","severity":"medium","source":"idp","user":%q,"action":"login","outcome":"failure","src_ip":"198.51.100.%d"}`+"\n", user, i+1)
	}
	req, _ := http.NewRequest(http.MethodPost, n.URL()+"/api/v1/events", strings.NewReader(b.String()))
	req.Header.Set("Authorization", "Bearer "+n.AdminToken())
	req.Header.Set("Content-Type", "application/x-ndjson")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusAccepted {
		t.Fatalf("publish: %d", resp.StatusCode)
	}
}

// bruteForce returns the brute-force detections (rule SEC-AUTH-002) by
// group key ("user=<name>").
func bruteForce(t *testing.T, n *testnode.Node) map[string]detection {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, n.URL()+"/api/v1/detections?rule_id=SEC-AUTH-002", nil)
	req.Header.Set("Authorization", "Bearer "+n.AdminToken())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Detections []detection `json:"detections"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	out := map[string]detection{}
	for _, d := range body.Detections {
		if _, dup := out[d.GroupKey]; dup {
			t.Fatalf("two brute-force detections for %q: %+v", d.GroupKey, body.Detections)
		}
		out[d.GroupKey] = d
	}
	return out
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testkit.CheckFor(t, 15*time.Second, 5*time.Millisecond, func() error {
		if cond() {
			return nil
		}
		return errors.New("waiting for " + what)
	})
}

// TestDetectionEngineInANode: in a whole node the engine reads events
// through the hub; a brute force becomes one detection, and after a
// restart the engine resumes from its checkpoint (old events are not
// evaluated again) and keeps detecting.
func TestDetectionEngineInANode(t *testing.T) {
	n := testnode.Start(t)
	failures(t, n, "mallory", 6)
	var before detection
	waitFor(t, "a brute-force detection for mallory", func() bool {
		d, ok := bruteForce(t, n)["user=mallory"]
		before = d
		return ok && d.Count >= 5
	})
	// The sixth failure updates the open detection instead of opening one.
	waitFor(t, "the detection to count all six failures", func() bool {
		before = bruteForce(t, n)["user=mallory"]
		return before.Count >= 6
	})

	n.Stop()
	n.Restart()
	failures(t, n, "trudy", 5)
	waitFor(t, "a brute-force detection for trudy after the restart", func() bool {
		_, ok := bruteForce(t, n)["user=trudy"]
		return ok
	})
	if after := bruteForce(t, n)["user=mallory"]; after.Count != before.Count {
		t.Fatalf("mallory's detection changed across the restart: %+v -> %+v (events evaluated twice?)", before, after)
	}
}
