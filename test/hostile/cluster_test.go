package hostile

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigil-sec/vigil/internal/config"
	"github.com/vigil-sec/vigil/internal/detect"
	"github.com/vigil-sec/vigil/internal/store"
	"github.com/vigil-sec/vigil/internal/testnode"
)

// TestClusterLeaderFailover is issue 8 item 2 (and 5d): two Vigil nodes on
// a three-server JetStream cluster, publishers on both, and the server
// leading the stream is shut down mid-load. Acknowledgements must resume
// within 15 s, nothing acknowledged may be lost or stored twice, a
// subscriber that was on one Vigil node resumes on the other by seq with no
// gap, the integrity chain still verifies (the shut-down server restarted
// meanwhile), and /readyz says not-ready when the stream leader is left
// without a quorum. It logs the RPO and RTO it measured
// (docs/operations.md).
func TestClusterLeaderFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster fail-over under load: skipped with -short")
	}
	cl := clusterStartNATS(t, 3)
	nodeA := testnode.Start(t, func(c *config.Config) { c.NATS, c.NodeID = cl.url(0), "vigil-a" })
	nodeB := testnode.Start(t, func(c *config.Config) { c.NATS, c.NodeID = cl.url(1), "vigil-b" })

	// The default on a 3-server cluster is three replicas, for the stream
	// and every KV bucket the nodes made.
	nc, err := nats.Connect(cl.url(2), nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx := t.Context()
	kvs := 0
	for name := range js.StreamNames(ctx).Name() {
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if r := s.CachedInfo().Config.Replicas; r != 3 {
			t.Errorf("stream %s has %d replicas, want 3", name, r)
		}
		if strings.HasPrefix(name, "KV_") {
			kvs++
		}
	}
	if kvs < 4 {
		t.Errorf("%d KV buckets, want at least 4 (tokens, JWT revocations, detections, detection leader lease)", kvs)
	}

	// Replicas are never lowered silently: asking for one copy of a
	// stream or bucket that has three is refused, naming both numbers.
	if l, err := store.Open(ctx, store.Config{NATSURL: cl.url(2), NodeID: "vigil-low", Replicas: 1}); err == nil {
		l.Close()
		t.Error("store.Open with --replicas 1 on a stream of 3 replicas succeeded")
	} else if !strings.Contains(err.Error(), "refusing to lower them to 1") {
		t.Errorf("lowering the stream's replicas: %v", err)
	}
	if _, err := store.OpenKeyValue(ctx, js, jetstream.KeyValueConfig{Bucket: detect.DefaultBucket, Replicas: 1}); err == nil || !strings.Contains(err.Error(), "refusing to lower them to 1") {
		t.Errorf("lowering a bucket's replicas: %v", err)
	}

	// A subscriber on node A, from the first event.
	sub := clusterSubscribe(t, nodeA, 1)

	acked := &clusterAcks{seqs: map[string]uint64{}}
	var killAt atomic.Pointer[time.Time]
	var firstAckAfterKill atomic.Pointer[time.Time]
	pubCtxA, stopA := context.WithCancel(ctx)
	pubCtxB, stopB := context.WithCancel(ctx)
	var pubs sync.WaitGroup
	for i, n := range []*testnode.Node{nodeA, nodeA, nodeB, nodeB} {
		pctx := pubCtxA
		if n == nodeB {
			pctx = pubCtxB
		}
		pubs.Add(1)
		go func() { // a publisher: stopped by its context
			defer pubs.Done()
			clusterPublish(pctx, n, fmt.Sprintf("p%d", i), acked, func(started, done time.Time) {
				if k := killAt.Load(); k != nil && started.After(*k) {
					firstAckAfterKill.CompareAndSwap(nil, &done)
				}
			})
		}()
	}
	defer func() { stopA(); stopB(); pubs.Wait() }()
	clusterCheckFor(t, 15*time.Second, func() error {
		if n := acked.count(); n < 1500 {
			return fmt.Errorf("%d events acknowledged before the fail-over", n)
		}
		return nil
	})

	// Shut the stream leader down mid-load, watching /readyz meanwhile.
	leader := cl.streamLeader(store.StreamName)
	if leader < 0 {
		t.Fatal("no stream leader")
	}
	before := acked.count()
	now := time.Now()
	killAt.Store(&now)
	readyStop := make(chan struct{})
	notReady := make(chan int, 1)
	go func() { notReady <- clusterWatchReady(nodeB, readyStop) }() // ends when readyStop closes
	cl.servers[leader].Shutdown()
	clusterCheckFor(t, 15*time.Second, func() error {
		if firstAckAfterKill.Load() == nil {
			return fmt.Errorf("no acknowledgement since the leader (%s) was shut down", cl.servers[leader].Name())
		}
		return nil
	})
	rto := firstAckAfterKill.Load().Sub(now)
	close(readyStop)
	sawNotReady := <-notReady
	t.Logf("leader %s shut down after %d acknowledged events; first acknowledgement of a request sent after it: %s (RTO); /readyz answered 503 %d times meanwhile", cl.servers[leader].Name(), before, rto, sawNotReady)
	mark := acked.count()
	clusterCheckFor(t, 15*time.Second, func() error {
		if n := acked.count(); n < mark+1000 {
			return fmt.Errorf("%d events acknowledged after the fail-over, want 1000", n-mark)
		}
		return nil
	})

	// The shut-down server comes back with its store and catches up
	// while the load goes on.
	cl.start(leader)
	clusterCheckFor(t, 15*time.Second, func() error {
		if !cl.servers[leader].JetStreamIsStreamCurrent(server.DEFAULT_GLOBAL_ACCOUNT, store.StreamName) {
			return fmt.Errorf("restarted server %s has not caught up with the stream", cl.servers[leader].Name())
		}
		return nil
	})

	// Node A goes away: its subscriber resumes on node B from the seq
	// after the last one it saw, while B's publishers keep going.
	stopA()
	nodeA.Stop()
	last := sub.wait(t)
	sub2 := clusterSubscribe(t, nodeB, last+1)
	// B's publishers are still running: the resume joins live traffic.
	// Wait for traffic after the resume too (the 1,500 after the
	// fail-over may all be in already; a subscriber that had seen the
	// whole log would then have nothing left to receive).
	resumed := acked.count()
	clusterCheckFor(t, 10*time.Second, func() error {
		if n := acked.count(); n < mark+1500 || n < resumed+200 {
			return fmt.Errorf("%d events acknowledged after the fail-over (want 1500), %d after the resume (want 200)", n-mark, n-resumed)
		}
		return nil
	})
	stopB()
	pubs.Wait()

	// The whole log, read straight from JetStream: every acknowledged id
	// exactly once, at its acknowledged seq.
	head := clusterStreamHead(t, js)
	got := clusterReadLog(t, js, head)
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

	// The subscriber saw every seq from 1 to head exactly once, across the
	// two nodes.
	clusterCheckFor(t, 10*time.Second, func() error {
		if l := sub2.last(); l < head {
			return fmt.Errorf("resumed subscriber (from %d) at seq %d of %d (stream ended: %q)", last+1, l, head, sub2.ended())
		}
		return nil
	})
	seen := append(sub.seqs(), sub2.seqs()...)
	for i, s := range seen {
		if s != uint64(i+1) {
			t.Fatalf("subscriber: event %d has seq %d, want %d (gap or duplicate at the resume after seq %d)", i, s, i+1, last)
		}
	}

	// The integrity chain verifies over the whole log.
	var rep store.VerifyReport
	clusterGetJSON(t, nodeB, "/api/v1/integrity", &rep)
	if !rep.OK || rep.Checked < head {
		t.Errorf("verify after the fail-over: ok=%v checked %d of %d, broken %+v", rep.OK, rep.Checked, head, rep.Broken)
	}

	// The two followers shut down: the leader left cannot store anything
	// (no quorum), though JetStream keeps it leader for its lost-quorum
	// interval (10 s). /readyz must say not-ready well before that.
	var survivor int
	clusterCheckFor(t, 10*time.Second, func() error {
		if survivor = cl.streamLeader(store.StreamName); survivor < 0 {
			return errors.New("no stream leader")
		}
		return nil
	})
	var down sync.WaitGroup
	for i, s := range cl.servers {
		if i != survivor {
			down.Add(1)
			go func() { defer down.Done(); s.Shutdown() }() // ends with the shutdown
		}
	}
	down.Wait()
	clusterCheckFor(t, 5*time.Second, func() error {
		if st := clusterStatus(nodeB, "/readyz"); st != http.StatusServiceUnavailable {
			return fmt.Errorf("/readyz answered %d with the stream leader alone, without a quorum", st)
		}
		return nil
	})
}

// clusterAcks records every acknowledged event: tenant/id -> seq.
type clusterAcks struct {
	mu   sync.Mutex
	seqs map[string]uint64
}

func (a *clusterAcks) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.seqs)
}

func (a *clusterAcks) snapshot() map[string]uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[string]uint64, len(a.seqs))
	for k, v := range a.seqs {
		out[k] = v
	}
	return out
}

// clusterPublish posts batches of 25 events with ids prefix-N to n until
// ctx ends (at most one batch per 10 ms), retrying a failed batch with the same ids (as client.Publish
// does) so that nothing is given up. onAck is told when each successful
// request started and ended.
func clusterPublish(ctx context.Context, n *testnode.Node, prefix string, acks *clusterAcks, onAck func(started, done time.Time)) {
	hc := &http.Client{Timeout: 20 * time.Second}
	tok := n.AdminToken()
	// Paced at one batch per 10 ms at most (2,500 events/s per publisher):
	// enough load for the fail-over, and a log small enough to read back
	// within the test's time on a shared machine.
	pace := time.NewTicker(10 * time.Millisecond)
	defer pace.Stop()
	for b := 0; ctx.Err() == nil; b++ {
		select {
		case <-pace.C:
		case <-ctx.Done():
			return
		}
		var body bytes.Buffer
		body.WriteByte('[')
		for i := range 25 {
			if i > 0 {
				body.WriteByte(',')
			}
			fmt.Fprintf(&body, `{"id":"%s-%d-%d","type":"authentication.login","user":"u%d"}`, prefix, b, i, i)
		}
		body.WriteByte(']')
		for ctx.Err() == nil {
			started := time.Now()
			req, _ := http.NewRequestWithContext(ctx, "POST", n.URL()+"/api/v1/events", bytes.NewReader(body.Bytes()))
			req.Header.Set("Authorization", "Bearer "+tok)
			req.Header.Set("Content-Type", "application/json")
			resp, err := hc.Do(req)
			if err != nil {
				continue
			}
			var out struct {
				Events []struct {
					ID  string `json:"id"`
					Seq uint64 `json:"seq"`
				} `json:"events"`
			}
			ok := resp.StatusCode == http.StatusOK && json.NewDecoder(resp.Body).Decode(&out) == nil && len(out.Events) == 25
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if !ok {
				continue
			}
			acks.mu.Lock()
			for _, e := range out.Events {
				acks.seqs["default/"+e.ID] = e.Seq
			}
			acks.mu.Unlock()
			onAck(started, time.Now())
			break
		}
	}
}

// clusterSub is a native WebSocket subscriber recording the seqs it gets.
type clusterSub struct {
	mu   sync.Mutex
	got  []uint64
	end  string // the message or error that ended the stream, if any
	done chan struct{}
}

// ended says why the stream ended ("" while it runs).
func (s *clusterSub) ended() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.end
}

func (s *clusterSub) seqs() []uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]uint64(nil), s.got...)
}

func (s *clusterSub) last() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.got) == 0 {
		return 0
	}
	return s.got[len(s.got)-1]
}

// wait returns the last seq once the connection has ended.
func (s *clusterSub) wait(t testing.TB) uint64 {
	t.Helper()
	select {
	case <-s.done:
	case <-time.After(15 * time.Second):
		t.Fatal("subscriber still connected 15s after its node stopped")
	}
	return s.last()
}

// clusterSubscribe subscribes to everything from seq on n's native stream;
// a goroutine records the events until the connection ends (the test's
// cleanup closes it).
func clusterSubscribe(t testing.TB, n *testnode.Node, from uint64) *clusterSub {
	t.Helper()
	hdr := http.Header{"Authorization": {"Bearer " + n.AdminToken()}}
	d := ws.Dialer{Header: ws.HandshakeHeaderHTTP(hdr), Timeout: 5 * time.Second}
	conn, _, _, err := d.Dial(t.Context(), "ws://"+n.Addr()+"/api/v1/stream")
	if err != nil {
		t.Fatalf("subscribe on %s: %v", n.Addr(), err)
	}
	t.Cleanup(func() { conn.Close() })
	msg, _ := json.Marshal(map[string]any{"op": "subscribe", "id": "all", "filter": map[string]any{}, "from": map[string]any{"seq": from}})
	if err := wsutil.WriteClientText(conn, msg); err != nil {
		t.Fatal(err)
	}
	s := &clusterSub{done: make(chan struct{})}
	go func() { // reads until the connection ends
		defer close(s.done)
		for {
			b, err := wsutil.ReadServerText(conn)
			if err != nil {
				s.mu.Lock()
				s.end = err.Error()
				s.mu.Unlock()
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
				s.mu.Lock()
				s.end = string(b)
				s.mu.Unlock()
				return // the seq check reports the gap
			}
		}
	}()
	return s
}

// clusterWatchReady polls n's /readyz until stop closes and returns how
// many times it answered 503.
func clusterWatchReady(n *testnode.Node, stop <-chan struct{}) int {
	count := 0
	for {
		select {
		case <-stop:
			return count
		default:
		}
		if clusterStatus(n, "/readyz") == http.StatusServiceUnavailable {
			count++
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func clusterStatus(n *testnode.Node, path string) int {
	hc := &http.Client{Timeout: 5 * time.Second}
	resp, err := hc.Get(n.URL() + path)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func clusterGetJSON(t testing.TB, n *testnode.Node, path string, out any) {
	t.Helper()
	req, _ := http.NewRequest("GET", n.URL()+path, nil)
	req.Header.Set("Authorization", "Bearer "+n.AdminToken())
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: HTTP %d %s", path, resp.StatusCode, b)
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatal(err)
	}
}

func clusterStreamHead(t testing.TB, js jetstream.JetStream) uint64 {
	t.Helper()
	var head uint64
	clusterCheckFor(t, 10*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		s, err := js.Stream(ctx, store.StreamName)
		if err != nil {
			return err
		}
		head = s.CachedInfo().State.LastSeq
		return nil
	})
	return head
}

// clusterReadLog reads seqs 1..head with an ordered consumer and returns
// the seqs of every tenant/id.
func clusterReadLog(t testing.TB, js jetstream.JetStream, head uint64) map[string][]uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cons, err := js.OrderedConsumer(ctx, store.StreamName, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	it, err := cons.Messages()
	if err != nil {
		t.Fatal(err)
	}
	defer it.Stop()
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	out := map[string][]uint64{}
	for {
		msg, err := it.Next()
		if err != nil {
			t.Fatalf("read the log: %v", err)
		}
		meta, _ := msg.Metadata()
		var e struct {
			ID     string `json:"id"`
			Tenant string `json:"tenant"`
		}
		if err := json.Unmarshal(msg.Data(), &e); err != nil {
			t.Fatalf("seq %d: %v", meta.Sequence.Stream, err)
		}
		key := e.Tenant + "/" + e.ID
		out[key] = append(out[key], meta.Sequence.Stream)
		if meta.Sequence.Stream >= head {
			return out
		}
	}
}

// TestClusterReplicasDefault: the automatic choice is 3 only where three
// copies can be placed. A two-server JetStream cluster gets 1 (and says
// why), and an explicit 3 there is refused by JetStream, not lowered.
func TestClusterReplicasDefault(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a NATS cluster: skipped with -short")
	}
	cl := clusterStartNATS(t, 2)
	ctx := t.Context()
	var logged bytes.Buffer
	var mu sync.Mutex
	logger := slog.New(slog.NewTextHandler(&clusterLockedWriter{w: &logged, mu: &mu}, nil))
	l, err := store.Open(ctx, store.Config{NATSURL: cl.url(0), NodeID: "two", Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	if r := l.Replicas(); r != 1 {
		t.Errorf("replicas on a 2-server cluster = %d, want 1", r)
	}
	l.Close()
	mu.Lock()
	out := logged.String()
	mu.Unlock()
	if !strings.Contains(out, "replicas=1") || !strings.Contains(out, "cannot place 3 replicas") {
		t.Errorf("the replica choice is not logged with its reason:\n%s", out)
	}
	if l, err := store.Open(ctx, store.Config{NATSURL: cl.url(1), NodeID: "two", Replicas: 3}); err == nil {
		l.Close()
		t.Error("3 replicas on a 2-server cluster accepted")
	}
}

type clusterLockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (w *clusterLockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(p)
}

// TestClusterReadyzWithoutStreamLeader: on five servers the stream's three
// replicas live on three of them. With two of those down the JetStream
// cluster itself still works (three of five) but the stream has no leader:
// its remaining replica still answers stream info, with no leader in it.
// /readyz must answer 503, and 200 again once a leader is back.
func TestClusterReadyzWithoutStreamLeader(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a NATS cluster: skipped with -short")
	}
	cl := clusterStartNATS(t, 5)
	node := testnode.Start(t, func(c *config.Config) { c.NATS, c.NodeID = cl.url(0), "vigil-r" })
	if st := clusterStatus(node, "/readyz"); st != http.StatusOK {
		t.Fatalf("/readyz = %d before any fault", st)
	}
	nc, err := nats.Connect(cl.url(0))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	s, err := js.Stream(t.Context(), store.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	info := s.CachedInfo()
	if info.Config.Replicas != 3 || info.Cluster == nil {
		t.Fatalf("stream: %d replicas, cluster %+v", info.Config.Replicas, info.Cluster)
	}
	// Two of the stream's three servers go down, the leader among them.
	down := []string{info.Cluster.Leader, info.Cluster.Replicas[0].Name}
	var stopped []int
	for i, srv := range cl.servers {
		if slices.Contains(down, srv.Name()) {
			srv.Shutdown()
			stopped = append(stopped, i)
		}
	}
	clusterCheckFor(t, 10*time.Second, func() error {
		if st := clusterStatus(node, "/readyz"); st != http.StatusServiceUnavailable {
			return fmt.Errorf("/readyz answered %d while the stream has no leader", st)
		}
		return nil
	})
	for _, i := range stopped {
		cl.start(i)
	}
	clusterCheckFor(t, 20*time.Second, func() error {
		if st := clusterStatus(node, "/readyz"); st != http.StatusOK {
			return fmt.Errorf("/readyz answered %d after the servers came back", st)
		}
		return nil
	})
}
