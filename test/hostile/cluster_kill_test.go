//go:build linux

package hostile

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigil-sec/vigil/internal/config"
	"github.com/vigil-sec/vigil/internal/store"
	"github.com/vigil-sec/vigil/internal/testnode"
)

// TestClusterLeaderHardKill is issue 8 item 2 and 5(d) the way an operator
// loses a NATS node: three nats-server PROCESSES clustered on loopback, two
// Vigil nodes on two of them (three replicas), publishers on both, a
// WebSocket subscriber, and the server leading the stream — the one node A
// is attached to — killed with SIGKILL mid-load. Nothing is handed over:
// the followers must notice the leader is gone and elect another, and
// node A loses its NATS connection too.
//
// It asserts: acknowledgements resume within 15 s; every acknowledged id is
// in the log exactly once, at its acknowledged seq; node A's /readyz says
// 503 after the kill and 200 again once it can append; the subscriber on
// node A resumes by seq with no gap and no duplicate; the integrity chain
// verifies over the whole log once the killed server is back and has
// caught up. It logs the RTO (docs/operations.md, "Hard kill").
func TestClusterLeaderHardKill(t *testing.T) {
	if testing.Short() {
		t.Skip("kill -9 of a NATS cluster node under load: skipped with -short")
	}
	cl := hardkillStartCluster(t, 3)
	nodeA := testnode.Start(t, func(c *config.Config) { c.NATS, c.NodeID, c.Replicas = cl.url(0), "vigil-a", 3 })
	nodeB := testnode.Start(t, func(c *config.Config) { c.NATS, c.NodeID, c.Replicas = cl.url(1), "vigil-b", 3 })

	nc, err := nats.Connect(cl.url(1)+","+cl.url(2), nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx := t.Context()

	// The stream leader is moved to server 0, node A's: its kill then takes
	// both the stream's leader and node A's connection.
	const victim = 0
	hardkillMoveLeader(t, nc, js, cl.name(victim))

	// Two subscribers on node A: one stays there (its node loses its NATS
	// server), the other moves to node B during the outage, resuming by seq.
	sub := hardkillSubscribe(ctx, t, nodeA)
	moved := hardkillSubscribe(ctx, t, nodeA)
	acked := &clusterAcks{seqs: map[string]uint64{}}
	var killAt atomic.Pointer[time.Time]
	var firstAckAfterKill atomic.Pointer[time.Time]
	pubCtx, stopPubs := context.WithCancel(ctx)
	var pubs sync.WaitGroup
	for i, n := range []*testnode.Node{nodeA, nodeA, nodeB, nodeB} {
		pubs.Add(1)
		go func() { // a publisher: stopped by stopPubs
			defer pubs.Done()
			clusterPublish(pubCtx, n, fmt.Sprintf("k%d", i), acked, func(started, done time.Time) {
				if k := killAt.Load(); k != nil && started.After(*k) {
					firstAckAfterKill.CompareAndSwap(nil, &done)
				}
			})
		}()
	}
	defer func() { stopPubs(); pubs.Wait() }()
	clusterCheckFor(t, 15*time.Second, func() error {
		if n := acked.count(); n < 1500 {
			return fmt.Errorf("%d events acknowledged before the kill", n)
		}
		return nil
	})

	// kill -9 the stream leader, watching node A's /readyz meanwhile.
	if l := hardkillLeader(ctx, js); l != cl.name(victim) {
		t.Fatalf("stream leader is %q, want %s", l, cl.name(victim))
	}
	before := acked.count()
	readyStop := make(chan struct{})
	readyDone := make(chan hardkillReadiness, 1)
	now := time.Now()
	killAt.Store(&now)
	go func() { readyDone <- hardkillWatchReady(nodeA, now, readyStop) }() // ends when readyStop closes
	elected := make(chan time.Duration, 1)
	go func() { // ends once a new leader is reported, or with the test
		for ctx.Err() == nil {
			if l := hardkillLeader(ctx, js); l != "" && l != cl.name(victim) {
				elected <- time.Since(now)
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	cl.kill(victim)
	moved.moveTo(nodeB)
	// JetStream's followers notice the dead leader after their election
	// timeout (4-9 s, random) and elect another; Vigil cannot append
	// before that, so the election time is reported with any failure.
	var election time.Duration
	select {
	case election = <-elected:
	case <-time.After(20 * time.Second):
		t.Fatal("JetStream reported no new stream leader 20 s after the kill")
	}
	for firstAckAfterKill.Load() == nil {
		if time.Since(now) > 15*time.Second {
			t.Fatalf("no acknowledgement within 15 s of the kill of the stream leader (%s); JetStream elected a new one %s after the kill", cl.name(victim), election.Round(time.Millisecond))
		}
		time.Sleep(20 * time.Millisecond)
	}
	rto := firstAckAfterKill.Load().Sub(now)
	newLeader := hardkillLeader(ctx, js)
	// Node A's readiness: 503 after the kill (its server is gone, then the
	// stream has no leader), 200 again once it can append.
	clusterCheckFor(t, 15*time.Second, func() error {
		if st := clusterStatus(nodeA, "/readyz"); st != http.StatusOK {
			return fmt.Errorf("node A /readyz = %d after the fail-over", st)
		}
		return nil
	})
	close(readyStop)
	rd := <-readyDone
	if rd.count503 == 0 {
		t.Errorf("node A's /readyz never answered 503 after its NATS server, the stream leader, was killed")
	}
	// Ready again only once there is a leader to append to (the watchers
	// poll every 20 ms, the leader's with 300 ms requests: 500 ms margin).
	if rd.okAgain != 0 && rd.okAgain < election-500*time.Millisecond {
		t.Errorf("node A's /readyz answered 200 %s after the kill, the new stream leader was reported only after %s", rd.okAgain, election)
	}
	t.Logf("kill -9 of %s (stream leader) after %d acknowledged events; new leader %s reported after %s; RTO (first acknowledgement of a request sent after the kill) %s; node A /readyz: first 503 after %s, %d answers 503, last 503 at %s, 200 again at %s",
		cl.name(victim), before, newLeader, election.Round(time.Millisecond), rto.Round(time.Millisecond), rd.first503.Round(time.Millisecond), rd.count503, rd.last503.Round(time.Millisecond), rd.okAgain.Round(time.Millisecond))
	mark := acked.count()
	clusterCheckFor(t, 15*time.Second, func() error {
		if n := acked.count(); n < mark+1000 {
			return fmt.Errorf("%d events acknowledged after the fail-over, want 1000", n-mark)
		}
		return nil
	})

	// The killed server comes back with what it had on disk and catches up
	// while the load goes on.
	cl.start(victim)
	clusterCheckFor(t, 20*time.Second, func() error {
		return hardkillCaughtUp(ctx, js, cl.name(victim))
	})
	stopPubs()
	pubs.Wait()

	// The whole log, read straight from JetStream: every acknowledged id
	// exactly once, at its acknowledged seq.
	head := clusterStreamHead(t, js)
	var got map[string][]uint64
	clusterCheckFor(t, 30*time.Second, func() (err error) {
		got, err = hardkillReadLog(ctx, js, head)
		return err
	})
	lost, dup := 0, 0
	for key, seq := range acked.snapshot() {
		seqs := got[key]
		switch {
		case len(seqs) == 0:
			lost++
			if lost < 5 {
				t.Errorf("acknowledged event %s (seq %d) is not in the log", key, seq)
			}
		case len(seqs) > 1:
			dup++
			if dup < 5 {
				t.Errorf("acknowledged event %s stored %d times (seqs %v)", key, len(seqs), seqs)
			}
		case seqs[0] != seq:
			t.Errorf("event %s acknowledged as seq %d, stored at %d", key, seq, seqs[0])
		}
	}
	t.Logf("RPO: %d of %d acknowledged events lost, %d stored twice; log head %d", lost, acked.count(), dup, head)

	// Each subscriber (resuming by seq whenever its connection ended) saw
	// every seq from 1 to head exactly once.
	for _, c := range []struct {
		name string
		sub  *hardkillSub
	}{{"subscriber on node A", sub}, {"subscriber moved from node A to node B", moved}} {
		clusterCheckFor(t, 15*time.Second, func() error {
			if l := c.sub.last(); l < head {
				return fmt.Errorf("%s at seq %d of %d", c.name, l, head)
			}
			return nil
		})
		seen, resumes := c.sub.seqs(), c.sub.resumes.Load()
		for i, s := range seen {
			if s != uint64(i+1) {
				t.Fatalf("%s: event %d has seq %d, want %d (gap or duplicate; %d resumes)", c.name, i, s, i+1, resumes)
			}
		}
		t.Logf("%s: %d events in order, %d resumes by seq", c.name, len(seen), resumes)
	}
	if moved.resumes.Load() == 0 {
		t.Error("the moved subscriber never resumed")
	}

	// The integrity chain verifies over the whole log, on both nodes.
	for _, n := range []*testnode.Node{nodeA, nodeB} {
		var rep store.VerifyReport
		clusterGetJSON(t, n, "/api/v1/integrity", &rep)
		if !rep.OK || rep.Checked < head {
			t.Errorf("verify on %s after the kill: ok=%v checked %d of %d, broken %+v", n.Config.NodeID, rep.OK, rep.Checked, head, rep.Broken)
		}
	}
}

// hardkillCluster is a JetStream cluster of nats-server processes on
// loopback, so that a server can be killed with SIGKILL as an operator's
// would be (an in-process server can only be shut down gracefully, which
// hands the stream's leadership over at once).
type hardkillCluster struct {
	t      testing.TB
	bin    string
	dir    string
	client []int // client port per server
	procs  []*exec.Cmd
	waits  []chan struct{} // closed when procs[i] has exited
}

// hardkillBuildServer builds the nats-server binary of go.mod's version
// into a temporary directory (offline: the module is in the module cache).
func hardkillBuildServer(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "nats-server")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/nats-io/nats-server/v2")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Skipf("cannot build the nats-server binary for the kill -9 test (go build github.com/nats-io/nats-server/v2): %v\n%s", err, out)
	}
	return bin
}

// hardkillStartCluster starts n clustered JetStream server processes and
// waits until the cluster answers JetStream requests.
func hardkillStartCluster(t testing.TB, n int) *hardkillCluster {
	t.Helper()
	c := &hardkillCluster{t: t, bin: hardkillBuildServer(t), dir: t.TempDir()}
	ports := clusterFreePorts(t, 2*n)
	c.client = ports[:n]
	routes := make([]string, n)
	for i := range n {
		routes[i] = fmt.Sprintf("%q", fmt.Sprintf("nats-route://127.0.0.1:%d", ports[n+i]))
	}
	for i := range n {
		sdir := filepath.Join(c.dir, c.name(i))
		conf := fmt.Sprintf(`server_name: %s
listen: 127.0.0.1:%d
jetstream {
  store_dir: %q
  max_memory_store: 64MB
  max_file_store: 1GB
}
cluster {
  name: vigil-hardkill
  listen: 127.0.0.1:%d
  routes: [%s]
}
`, c.name(i), c.client[i], sdir, ports[n+i], strings.Join(routes, ", "))
		if err := os.WriteFile(filepath.Join(c.dir, c.name(i)+".conf"), []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		c.procs = append(c.procs, nil)
		c.waits = append(c.waits, nil)
		c.start(i)
	}
	t.Cleanup(c.killAll)
	// The cluster is up once a JetStream request is answered (a meta
	// leader is elected).
	nc, err := nats.Connect(c.url(0), nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	clusterCheckFor(t, 20*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := js.AccountInfo(ctx)
		return err
	})
	return c
}

func (c *hardkillCluster) name(i int) string { return fmt.Sprintf("hardkill-n%d", i) }

func (c *hardkillCluster) url(i int) string {
	return fmt.Sprintf("nats://127.0.0.1:%d", c.client[i])
}

// start (re)starts server i from its config file (same name, ports and
// store directory) and waits until it accepts client connections.
func (c *hardkillCluster) start(i int) {
	c.t.Helper()
	logf, err := os.OpenFile(filepath.Join(c.dir, c.name(i)+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		c.t.Fatal(err)
	}
	cmd := exec.Command(c.bin, "-c", filepath.Join(c.dir, c.name(i)+".conf"))
	cmd.Stdout, cmd.Stderr = logf, logf
	// Should the test binary itself die, the servers die with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		c.t.Fatalf("start %s: %v", c.name(i), err)
	}
	done := make(chan struct{})
	go func() { // reaps the process: ends when it exits
		_ = cmd.Wait()
		logf.Close()
		close(done)
	}()
	c.procs[i], c.waits[i] = cmd, done
	clusterCheckFor(c.t, 10*time.Second, func() error {
		select {
		case <-done:
			b, _ := os.ReadFile(filepath.Join(c.dir, c.name(i)+".log"))
			c.t.Fatalf("%s exited at start:\n%s", c.name(i), b)
		default:
		}
		nc, err := nats.Connect(c.url(i), nats.NoReconnect())
		if err != nil {
			return err
		}
		nc.Close()
		return nil
	})
}

// kill sends SIGKILL to server i and waits until it is gone.
func (c *hardkillCluster) kill(i int) {
	c.t.Helper()
	if err := c.procs[i].Process.Kill(); err != nil {
		c.t.Fatalf("kill %s: %v", c.name(i), err)
	}
	<-c.waits[i]
}

func (c *hardkillCluster) killAll() {
	for i, p := range c.procs {
		if p != nil {
			_ = p.Process.Kill()
			<-c.waits[i]
		}
	}
}

// hardkillLeader is the stream's leader as the cluster reports it ("" when
// it has none or does not answer).
func hardkillLeader(ctx context.Context, js jetstream.JetStream) string {
	ctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	s, err := js.Stream(ctx, store.StreamName)
	if err != nil {
		return ""
	}
	if c := s.CachedInfo().Cluster; c != nil {
		return c.Leader
	}
	return ""
}

// hardkillMoveLeader makes server name the stream's leader (a leader
// step-down with that server preferred).
func hardkillMoveLeader(t testing.TB, nc *nats.Conn, js jetstream.JetStream, name string) {
	t.Helper()
	clusterCheckFor(t, 20*time.Second, func() error {
		l := hardkillLeader(t.Context(), js)
		if l == name {
			return nil
		}
		if l != "" {
			req := fmt.Sprintf(`{"placement":{"preferred":%q}}`, name)
			if _, err := nc.Request("$JS.API.STREAM.LEADER.STEPDOWN."+store.StreamName, []byte(req), 2*time.Second); err != nil {
				return fmt.Errorf("step-down to %s: %w", name, err)
			}
		}
		return fmt.Errorf("stream leader %q, want %s", l, name)
	})
}

// hardkillCaughtUp says whether replica name of the stream is online and
// current.
func hardkillCaughtUp(ctx context.Context, js jetstream.JetStream, name string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	s, err := js.Stream(ctx, store.StreamName)
	if err != nil {
		return err
	}
	c := s.CachedInfo().Cluster
	if c == nil {
		return fmt.Errorf("stream has no cluster info")
	}
	if c.Leader == name {
		return nil
	}
	for _, p := range c.Replicas {
		if p != nil && p.Name == name {
			if p.Offline || !p.Current {
				return fmt.Errorf("replica %s: offline %v, current %v, lag %d", name, p.Offline, p.Current, p.Lag)
			}
			return nil
		}
	}
	return fmt.Errorf("replica %s not in %+v", name, c)
}

// hardkillReadiness is what a /readyz watcher saw, as offsets from the kill.
type hardkillReadiness struct {
	first503, last503 time.Duration
	count503          int
	// okAgain is the first 200 after the first 503 (0: none).
	okAgain time.Duration
}

// hardkillWatchReady polls n's /readyz until stop closes.
func hardkillWatchReady(n *testnode.Node, since time.Time, stop <-chan struct{}) hardkillReadiness {
	var r hardkillReadiness
	hc := &http.Client{Timeout: 3 * time.Second}
	for {
		select {
		case <-stop:
			return r
		default:
		}
		if resp, err := hc.Get(n.URL() + "/readyz"); err == nil {
			resp.Body.Close()
			at := time.Since(since)
			switch {
			case resp.StatusCode == http.StatusServiceUnavailable:
				if r.count503 == 0 {
					r.first503 = at
				}
				r.last503 = at
				r.count503++
			case resp.StatusCode == http.StatusOK && r.count503 > 0 && r.okAgain == 0:
				r.okAgain = at
			}
		}
		select {
		case <-stop:
			return r
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// hardkillSub is a native WebSocket subscriber to everything on one node
// that, whenever its connection ends (lagged, error, closed), subscribes
// again from the seq after the last one it saw, as a client should.
type hardkillSub struct {
	node    atomic.Pointer[testnode.Node] // where the next session subscribes
	mu      sync.Mutex
	got     []uint64
	conn    net.Conn // the current session's
	resumes atomic.Int32
}

func (s *hardkillSub) seqs() []uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]uint64(nil), s.got...)
}

func (s *hardkillSub) last() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.got) == 0 {
		return 0
	}
	return s.got[len(s.got)-1]
}

// hardkillSubscribe starts the subscriber on n; it runs until ctx ends
// (the test's end).
func hardkillSubscribe(ctx context.Context, t testing.TB, n *testnode.Node) *hardkillSub {
	s := &hardkillSub{}
	s.node.Store(n)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // owned by the test: ends with ctx
		defer wg.Done()
		for ctx.Err() == nil {
			s.session(ctx, s.node.Load())
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond): // a client's reconnect delay
				s.resumes.Add(1)
			}
		}
	}()
	t.Cleanup(wg.Wait) // registered after t.Context's cancel runs: LIFO order ends ctx first
	return s
}

// moveTo ends the current connection; the subscriber resumes on n from the
// seq after the last one it saw.
func (s *hardkillSub) moveTo(n *testnode.Node) {
	s.node.Store(n)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn != nil {
		s.conn.Close()
	}
}

// session subscribes from the seq after the last one seen and records
// events until the connection ends.
func (s *hardkillSub) session(ctx context.Context, n *testnode.Node) {
	hdr := http.Header{"Authorization": {"Bearer " + n.AdminToken()}}
	d := ws.Dialer{Header: ws.HandshakeHeaderHTTP(hdr), Timeout: 5 * time.Second}
	conn, _, _, err := d.Dial(ctx, "ws://"+n.Addr()+"/api/v1/stream")
	if err != nil {
		return
	}
	defer conn.Close()
	s.mu.Lock()
	s.conn = conn
	s.mu.Unlock()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	msg, _ := json.Marshal(map[string]any{"op": "subscribe", "id": "all", "filter": map[string]any{}, "from": map[string]any{"seq": s.last() + 1}})
	if err := wsutil.WriteClientText(conn, msg); err != nil {
		return
	}
	for {
		b, err := wsutil.ReadServerText(conn)
		if err != nil {
			return
		}
		var m struct {
			Type  string `json:"type"`
			Event struct {
				Seq uint64 `json:"seq"`
			} `json:"event"`
		}
		if json.Unmarshal(b, &m) != nil {
			return
		}
		switch m.Type {
		case "event":
			s.mu.Lock()
			s.got = append(s.got, m.Event.Seq)
			s.mu.Unlock()
		case "lagged", "error":
			return
		}
	}
}

// hardkillReadLog reads seqs 1..head with an ordered consumer and returns
// the seqs of every tenant/id. Right after a server's restart the cluster
// may answer "temporarily unavailable": the caller retries.
func hardkillReadLog(ctx context.Context, js jetstream.JetStream, head uint64) (map[string][]uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	cons, err := js.OrderedConsumer(ctx, store.StreamName, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return nil, fmt.Errorf("read the log: %w", err)
	}
	it, err := cons.Messages()
	if err != nil {
		return nil, fmt.Errorf("read the log: %w", err)
	}
	defer it.Stop()
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	out := map[string][]uint64{}
	for {
		msg, err := it.Next()
		if err != nil {
			return nil, fmt.Errorf("read the log: %w", err)
		}
		meta, err := msg.Metadata()
		if err != nil {
			return nil, fmt.Errorf("read the log: %w", err)
		}
		var e struct {
			ID     string `json:"id"`
			Tenant string `json:"tenant"`
		}
		if err := json.Unmarshal(msg.Data(), &e); err != nil {
			return nil, fmt.Errorf("read the log: seq %d: %w", meta.Sequence.Stream, err)
		}
		key := e.Tenant + "/" + e.ID
		out[key] = append(out[key], meta.Sequence.Stream)
		if meta.Sequence.Stream >= head {
			return out, nil
		}
	}
}
