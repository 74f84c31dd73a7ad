package hostile

// Issue 8 item 3: detection engine fail-over. Two `vigil serve` processes
// share one external JetStream (an in-process nats-server on loopback);
// one engine leads through the KV lease. The leader is killed with
// SIGKILL — a real process death: no release, no final flush, no cursor
// save — and the other node must take over within seconds and continue
// the same detection, counting every event once. A graceful stop (SIGTERM)
// must hand leadership over at once.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// failoverNATS runs a JetStream-enabled nats-server on a loopback port
// for the test's duration and returns its URL.
func failoverNATS(t *testing.T) string {
	t.Helper()
	ns, err := server.NewServer(&server.Options{ServerName: "failover-nats", Host: "127.0.0.1", Port: -1,
		JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start() // stopped by the cleanup below
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready within 10s")
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	return ns.ClientURL()
}

// failoverBuild is the vigil binary (built once per run: archVigilBin).
func failoverBuild(t *testing.T) string {
	t.Helper()
	return archVigilBin.Path(t)
}

var failoverAddrLine = regexp.MustCompile(`msg="vigil listening" addr=(\S+)`)

// failoverNode is one `vigil serve` child process.
type failoverNode struct {
	t       *testing.T
	id      string
	cmd     *exec.Cmd
	addr    string
	token   string
	exited  chan struct{}
	logMu   sync.Mutex
	logText strings.Builder
	lastSeq uint64 // of the last event published through this node
}

func failoverServe(t *testing.T, bin, natsURL, id, dataDir string) *failoverNode {
	t.Helper()
	n := &failoverNode{t: t, id: id, exited: make(chan struct{})}
	n.cmd = exec.Command(bin, "serve", "--listen", "127.0.0.1:0", "--data-dir", dataDir, "--nats", natsURL, "--node-id", id)
	stderr, err := n.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addrCh := make(chan string, 1)
	go func() { // drains the child's log until it exits, then reaps it
		defer close(n.exited)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			n.logMu.Lock()
			n.logText.WriteString(line + "\n")
			n.logMu.Unlock()
			if m := failoverAddrLine.FindStringSubmatch(line); m != nil {
				addrCh <- m[1]
			}
		}
		_ = n.cmd.Wait()
	}()
	t.Cleanup(func() { n.kill() })
	select {
	case n.addr = <-addrCh:
	case <-n.exited:
		t.Fatalf("node %s exited at start:\n%s", id, n.logs())
	case <-time.After(60 * time.Second):
		t.Fatalf("node %s did not listen within 60s:\n%s", id, n.logs())
	}
	b, err := os.ReadFile(filepath.Join(dataDir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	n.token = strings.TrimSpace(string(b))
	return n
}

func (n *failoverNode) logs() string {
	n.logMu.Lock()
	defer n.logMu.Unlock()
	return n.logText.String()
}

// kill is a process death: SIGKILL, nothing released.
func (n *failoverNode) kill() {
	_ = n.cmd.Process.Signal(syscall.SIGKILL)
	<-n.exited
}

// term is a graceful stop.
func (n *failoverNode) term() {
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.exited:
	case <-time.After(30 * time.Second):
		n.t.Errorf("node %s did not stop within 30s of SIGTERM", n.id)
		n.kill()
	}
}

func (n *failoverNode) do(method, path string, body any) (int, []byte) {
	n.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, "http://"+n.addr+path, rd)
	if err != nil {
		n.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+n.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, []byte(err.Error())
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

// leader reads the vigil_detect_leader gauge.
func (n *failoverNode) leader() bool {
	resp, err := http.Get("http://" + n.addr + "/metrics")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return regexp.MustCompile(`(?m)^vigil_detect_leader 1$`).Match(b)
}

// failures publishes n failed logins for user through node and returns
// the acknowledged ids. Each user has an address of its own, so only the
// per-user brute-force rule (SEC-AUTH-002) fires.
func (n *failoverNode) failures(user string, start time.Time, count int) []string {
	n.t.Helper()
	ip := fmt.Sprintf("198.51.100.%d", len(user))
	var evs []map[string]any
	for i := 0; i < count; i++ {
		evs = append(evs, map[string]any{"type": "authentication.login_failed", "action": "login_failed", "outcome": "failure",
			"user": user, "src_ip": ip, "source": "auth-gateway",
			"time": start.Add(time.Duration(i) * time.Second).Format(time.RFC3339Nano)})
	}
	code, body := n.do(http.MethodPost, "/api/v1/events", evs)
	var out struct {
		Events []struct {
			ID  string `json:"id"`
			Seq uint64 `json:"seq"`
		} `json:"events"`
	}
	if code != http.StatusOK || json.Unmarshal(body, &out) != nil || len(out.Events) != count {
		n.t.Fatalf("publish on %s: %d %s", n.id, code, body)
	}
	ids := make([]string, count)
	for i, e := range out.Events {
		ids[i] = e.ID
		n.lastSeq = max(n.lastSeq, e.Seq)
	}
	return ids
}

type failoverDetection struct {
	ID       string   `json:"id"`
	Status   string   `json:"status"`
	Assignee string   `json:"assignee"`
	GroupKey string   `json:"group_key"`
	Count    int      `json:"count"`
	EventIDs []string `json:"event_ids"`
}

// detections lists the node's brute-force detections for user.
func (n *failoverNode) detections(user string) []failoverDetection {
	n.t.Helper()
	code, body := n.do(http.MethodGet, "/api/v1/detections?rule_id=SEC-AUTH-002", nil)
	var out struct {
		Detections []failoverDetection `json:"detections"`
	}
	if code != http.StatusOK || json.Unmarshal(body, &out) != nil {
		return nil
	}
	var mine []failoverDetection
	for _, d := range out.Detections {
		if d.GroupKey == "user="+user {
			mine = append(mine, d)
		}
	}
	return mine
}

// created counts detection.created events in the log.
func (n *failoverNode) created() int {
	n.t.Helper()
	code, body := n.do(http.MethodGet, "/api/v1/events?types=detection.created&limit=1000", nil)
	var out struct {
		Events []json.RawMessage `json:"events"`
	}
	if code != http.StatusOK || json.Unmarshal(body, &out) != nil {
		n.t.Fatalf("history on %s: %d %s", n.id, code, body)
	}
	return len(out.Events)
}

// failoverCursor reads the detection engine's saved cursor from the
// shared bucket.
func failoverCursor(t *testing.T, natsURL string) uint64 {
	t.Helper()
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	kv, err := js.KeyValue(ctx, "VIGIL_DETECTIONS")
	if err != nil {
		return 0
	}
	entry, err := kv.Get(ctx, "cursor")
	if err != nil {
		return 0
	}
	seq, _ := strconv.ParseUint(string(entry.Value()), 10, 64)
	return seq
}

func failoverWait(t *testing.T, what string, within time.Duration, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < within {
		if cond() {
			return time.Since(start)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("timed out after %s waiting for %s", within, what)
	return 0
}

// failoverOne waits until node shows exactly one brute-force detection
// for user, counting exactly the events ids (every one among its event
// ids), in status, and returns it.
func failoverOne(t *testing.T, node *failoverNode, user string, ids []string, status string) failoverDetection {
	t.Helper()
	var got []failoverDetection
	ok := func() bool {
		got = node.detections(user)
		if len(got) != 1 || got[0].Count != len(ids) || got[0].Status != status {
			return false
		}
		for _, id := range ids {
			if !slices.Contains(got[0].EventIDs, id) {
				return false
			}
		}
		return true
	}
	start := time.Now()
	for !ok() {
		if time.Since(start) > 20*time.Second {
			t.Fatalf("node %s: want one detection, count %d, status %s, every event id; have %+v\nlog of %s:\n%s", node.id, len(ids), status, got, node.id, node.logs())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return got[0]
}

// TestFailoverDetectionEngine: one detection engine leads; kill -9 of the
// leader hands over to the other node within seconds, which continues
// the same detection (every event counted once, the analyst's change
// kept, one detection.created in the log); a graceful stop hands over at
// once.
func TestFailoverDetectionEngine(t *testing.T) {
	if testing.Short() {
		t.Skip("builds vigil and kills child processes; skipped with -short")
	}
	bin := failoverBuild(t)
	natsURL := failoverNATS(t)
	dirA, dirB := t.TempDir(), t.TempDir()

	a := failoverServe(t, bin, natsURL, "node-a", dirA)
	failoverWait(t, "node-a to lead", 15*time.Second, a.leader)
	b := failoverServe(t, bin, natsURL, "node-b", dirB)
	failoverWait(t, "node-b to stand by", 15*time.Second, func() bool { return strings.Contains(b.logs(), "detection engine standing by") })
	if b.leader() {
		t.Fatal("two leaders")
	}

	// Five failures (threshold 5) through the leader: one detection,
	// served by both nodes.
	start := time.Now().UTC().Add(-time.Minute)
	ids := a.failures("mallory", start, 5)
	d := failoverOne(t, a, "mallory", ids, "active")
	failoverOne(t, b, "mallory", ids, "active")

	// An analyst's change through the standby.
	if code, body := b.do(http.MethodPatch, "/api/v1/detections/"+d.ID, map[string]string{"status": "investigating", "assignee": "ana"}); code != http.StatusOK {
		t.Fatalf("PATCH on the standby: %d %s", code, body)
	}
	failoverOne(t, a, "mallory", ids, "investigating")

	// Three failures for another user, below the threshold of 5: an open
	// correlation window, evaluated and behind the saved cursor, so
	// node-b can only complete it by rebuilding the window from the log.
	trent := a.failures("trent", start, 3)
	failoverWait(t, "the cursor saved past trent's failures", 10*time.Second, func() bool { return failoverCursor(t, natsURL) >= a.lastSeq })
	// One more for mallory, evaluated by the leader; then SIGKILL at once:
	// the cursor is most likely not saved (flushes are 1 s apart), so
	// node-b evaluates it again and must not count it twice.
	ids = append(ids, a.failures("mallory", start.Add(5*time.Second), 1)...)
	failoverOne(t, a, "mallory", ids, "investigating")
	killed := time.Now()
	a.kill()
	// Events arriving while nobody leads are evaluated by the next leader;
	// trent's two complete the window begun before the kill.
	ids = append(ids, b.failures("mallory", start.Add(6*time.Second), 2)...)
	trent = append(trent, b.failures("trent", start.Add(3*time.Second), 2)...)
	failoverWait(t, "node-b to take over", 15*time.Second, b.leader)
	took := time.Since(killed)
	t.Logf("takeover after kill -9 of the leader: %s (lease TTL 5s)", took.Round(10*time.Millisecond))
	if took > 8*time.Second {
		t.Errorf("takeover after kill -9 took %s: more than the 5s lease TTL + 1s poll + slack", took)
	}
	if !strings.Contains(b.logs(), "detection engine leadership gained") {
		t.Errorf("node-b logged no leadership gain:\n%s", b.logs())
	}
	got := failoverOne(t, b, "mallory", ids, "investigating")
	if got.ID != d.ID || got.Assignee != "ana" {
		t.Fatalf("after fail-over: %+v, want detection %s assigned to ana", got, d.ID)
	}
	failoverOne(t, b, "trent", trent, "active")

	// node-a comes back as a standby; SIGTERM to node-b releases the
	// lease and node-a leads at once.
	a = failoverServe(t, bin, natsURL, "node-a", dirA)
	failoverWait(t, "node-a to stand by", 15*time.Second, func() bool { return strings.Contains(a.logs(), "detection engine standing by") })
	failoverOne(t, a, "mallory", ids, "investigating")
	stopped := time.Now()
	b.term()
	failoverWait(t, "node-a to take over", 10*time.Second, a.leader)
	handover := time.Since(stopped)
	t.Logf("takeover after a graceful stop (SIGTERM) of the leader: %s", handover.Round(10*time.Millisecond))
	if !strings.Contains(b.logs(), "detection engine leadership released") {
		t.Errorf("node-b logged no release:\n%s", b.logs())
	}
	if handover > 2500*time.Millisecond {
		t.Errorf("hand-over after a graceful stop took %s: the lease was not released", handover)
	}
	ids = append(ids, a.failures("mallory", start.Add(8*time.Second), 1)...)
	failoverOne(t, a, "mallory", ids, "investigating")
	if n := a.created(); n != 2 {
		t.Fatalf("%d detection.created events in the log, want 2 (mallory, trent)", n)
	}
}
