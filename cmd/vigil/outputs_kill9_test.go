package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/client"
	"github.com/vigil-sec/vigil/internal/outputs/webhook"
)

// TestOutputsKill9WhileReceiverDown (issue 10): detections are delivered
// to a webhook; the receiver goes down and more detections are appended;
// Vigil is killed with SIGKILL while it retries them; the receiver comes
// back and Vigil restarts on the same data directory: every detection
// arrives (deduplicated by X-Vigil-Delivery), every signature verifies.
// Once one request at a time (the default), once with concurrency: 8
// (eight requests retried at once when the kill comes).
func TestOutputsKill9WhileReceiverDown(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills a child vigil process; skipped with -short")
	}
	t.Run("serial", func(t *testing.T) { outputsKill9(t, "") })
	t.Run("concurrency-8", func(t *testing.T) { outputsKill9(t, "    concurrency: 8\n") })
}

func outputsKill9(t *testing.T, extra string) {
	const secret = "kill9-secret"
	var (
		mu       sync.Mutex
		down     bool
		byID     = map[string]int{}
		refused  int
		badSigs  int
		requests int
	)
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		requests++
		if down {
			refused++
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		if webhook.Verify([]byte(secret), r.Header.Get(webhook.HeaderSignature), body, time.Now(), 5*time.Minute) != nil {
			badSigs++
		}
		byID[r.Header.Get(webhook.HeaderDelivery)]++
	}))
	defer recv.Close()

	dir := t.TempDir()
	bin := vigilBin.Path(t)
	sf := filepath.Join(dir, "secret")
	_ = os.WriteFile(sf, []byte(secret), 0o600)
	cfgPath := filepath.Join(dir, "vigil.yaml")
	_ = os.WriteFile(cfgPath, []byte(fmt.Sprintf(`outputs:
  - name: soc
    type: webhook
    url: %s/hook
    secret_file: %s
    filter: {categories: [detection]}
%s`, recv.URL, sf, extra)), 0o600)
	dataDir := filepath.Join(dir, "data")
	cmd, addr := startServe(t, bin, "--data-dir", dataDir, "--config", cfgPath)
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	token, err := os.ReadFile(filepath.Join(dataDir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New("http://"+addr, strings.TrimSpace(string(token)))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var ids []string
	publish := func(from, to int) {
		t.Helper()
		var batch []map[string]any
		for i := from; i < to; i++ {
			id := fmt.Sprintf("k9-det-%d", i)
			ids = append(ids, id)
			batch = append(batch, map[string]any{"id": id, "type": "detection.created", "category": "detection", "severity": "high",
				"data": map[string]any{"id": "d" + id, "rule_id": "r", "title": "t", "status": "active", "count": 1}})
		}
		if err := c.Do(ctx, "POST", "/api/v1/events", batch, nil); err != nil {
			t.Fatal(err)
		}
	}
	waitFor := func(d time.Duration, what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(d)
		for {
			mu.Lock()
			ok := cond()
			mu.Unlock()
			if ok {
				return
			}
			if time.Now().After(deadline) {
				mu.Lock()
				defer mu.Unlock()
				t.Fatalf("%s: not within %s (delivered %d, requests %d)", what, d, len(byID), requests)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	publish(0, 10)
	waitFor(15*time.Second, "first 10 delivered", func() bool { return len(byID) == 10 })

	mu.Lock()
	down = true
	mu.Unlock()
	publish(10, 40)
	waitFor(15*time.Second, "retries while the receiver is down", func() bool { return refused >= 2 })
	if err := cmd.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	_ = cmd.Wait()
	mu.Lock()
	down = false
	mu.Unlock()

	cmd, _ = startServe(t, bin, "--data-dir", dataDir, "--config", cfgPath)
	waitFor(30*time.Second, "every detection delivered after the restart", func() bool {
		for _, id := range ids {
			if byID[id] == 0 {
				return false
			}
		}
		return true
	})
	mu.Lock()
	defer mu.Unlock()
	if badSigs != 0 {
		t.Fatalf("%d bad signatures", badSigs)
	}
	dups := 0
	for _, n := range byID {
		dups += n - 1
	}
	if len(byID) != len(ids) {
		t.Fatalf("%d distinct deliveries, want %d", len(byID), len(ids))
	}
	t.Logf("40 detections delivered across a kill -9; %d refused attempts, %d duplicate deliveries (dropped by X-Vigil-Delivery)", refused, dups)
}
