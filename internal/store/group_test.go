package store

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/vigil-sec/vigil/internal/event"
)

// startNATS runs a standalone JetStream server with a loopback client port:
// a Log given its URL takes the external path (groups of batches).
func startNATS(t *testing.T) string {
	t.Helper()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start() // stopped by the cleanup
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats not ready")
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	return ns.ClientURL()
}

// TestExternalAppendsInGroups: concurrent appends on an external NATS go
// through the group committer; every event gets its own seq, the chain
// verifies, and callers that give up at once (before or after their batch
// was taken into a group) disturb neither.
func TestExternalAppendsInGroups(t *testing.T) {
	ctx := context.Background()
	l, err := Open(ctx, Config{NATSURL: startNATS(t), NodeID: "ext"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if l.group == nil || l.Replicas() != 1 {
		t.Fatalf("external log: group %v, replicas %d", l.group != nil, l.Replicas())
	}
	const workers, batches, size = 8, 30, 5
	seqs := make(chan uint64, workers*batches*size)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() { // one producer
			defer wg.Done()
			for b := range batches {
				evs := make([]*event.Event, size)
				for i := range evs {
					evs[i] = &event.Event{ID: fmt.Sprintf("w%d-%d-%d", w, b, i), Type: "audit.query"}
				}
				acks, err := l.Append(ctx, normalized(t, evs...))
				if err != nil {
					t.Error(err)
					return
				}
				for _, a := range acks {
					seqs <- a.Seq
				}
			}
		}()
	}
	// Callers that give up at once: each batch is either never published or
	// published and linked like any other.
	for range 20 {
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		_, _ = l.Append(cctx, normalized(t, &event.Event{Type: "audit.query"}))
	}
	wg.Wait()
	close(seqs)
	seen := map[uint64]bool{}
	for s := range seqs {
		if seen[s] {
			t.Fatalf("seq %d acknowledged twice", s)
		}
		seen[s] = true
	}
	rep, err := l.Verify(ctx)
	if err != nil || !rep.OK {
		t.Fatalf("verify: %+v %v", rep, err)
	}
	if len(seen) != workers*batches*size || rep.Checked < uint64(len(seen)) {
		t.Fatalf("%d events acknowledged, %d in the log", len(seen), rep.Checked)
	}
}
