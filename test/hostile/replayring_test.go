package hostile

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/config"
	"github.com/vigil-sec/vigil/internal/testnode"
)

// Issue 12 item 5: a WebSocket replay from a cursor below the recent-event
// ring, while producers append (the ring evicting its low end), gets every
// event once and in order, straight on into the live stream; part of it
// comes from the ring, which stays within --replay-cache-mb, and part from
// the replay spill below it. After a clean restart the ring starts empty
// and the spill keeps what it held (a deploy: every client resumes at
// once), both refilling from the live tail.
func TestReplayRingResumeStraddlingAndRestart(t *testing.T) {
	n := testnode.Start(t, func(c *config.Config) { c.ReplayCacheMB = 1 })
	p := newSlowclientPublisher(t, n, "replayring")
	p.pad = strings.Repeat("r", 200)
	var published []uint64
	for range 20 {
		published = append(published, p.publish(100)...)
	}
	replayringWaitFor(t, "the ring to fill", func() bool { return slowclientMetric(t, n, "vigil_replay_cache_events") > 200 })
	// The spill's writer flushes every 250 ms: wait until it holds the
	// events below the ring.
	replayringWaitFor(t, "the spill to take the events", func() bool { return slowclientMetric(t, n, "vigil_replay_spill_events") >= 1000 })

	more := make(chan []uint64, 1)
	go func() { // producer during the replay; its result is read below
		var seqs []uint64
		for range 10 {
			seqs = append(seqs, p.publish(100)...)
		}
		more <- seqs
	}()
	got := replayringRead(t, n, 1, 3000)
	published = append(published, <-more...)
	if !slices.Equal(got, published) {
		t.Fatalf("replay from 1: %s; want %s", slowclientSeqString(got), slowclientSeqString(published))
	}
	if served := slowclientMetric(t, n, "vigil_replay_cache_served_total"); served == 0 {
		t.Fatal("no replayed event came from the ring")
	}
	if b := slowclientMetric(t, n, "vigil_replay_cache_bytes"); b > 1<<20 || b == 0 {
		t.Fatalf("ring holds %.0f B; want some, within 1 MiB", b)
	}
	// Below the ring, the replay spill on disk served part of it.
	if served := slowclientMetric(t, n, "vigil_replay_spill_served_total"); served == 0 {
		t.Fatal("no replayed event came from the replay spill")
	}

	n.Stop()
	n.Restart()
	if s := slowclientMetric(t, n, "vigil_replay_cache_events"); s != 0 {
		t.Fatalf("ring holds %.0f events right after a restart", s)
	}
	// A clean stop left the spill for the next start (spill_restart.go).
	if s := slowclientMetric(t, n, "vigil_replay_spill_events"); s < 500 {
		t.Fatalf("the replay spill holds %.0f events right after a clean restart, want the 500 replayed next", s)
	}
	got = replayringRead(t, n, published[len(published)-500], 500)
	if !slices.Equal(got, published[len(published)-500:]) {
		t.Fatalf("replay after restart: %s", slowclientSeqString(got))
	}
	if served := slowclientMetric(t, n, "vigil_replay_spill_served_total"); served < 500 {
		t.Fatalf("after a clean restart %.0f of the 500 replayed events came from the spill", served)
	}
	// Only events stored after the restart (the node's own, if any) may
	// have come from the ring.
	if served, held := slowclientMetric(t, n, "vigil_replay_cache_served_total"), slowclientMetric(t, n, "vigil_replay_cache_events"); served > held {
		t.Fatalf("after a restart %.0f events came from a ring holding %.0f", served, held)
	}
	fresh := p.publish(100)
	replayringWaitFor(t, "the ring to take the new events", func() bool { return slowclientMetric(t, n, "vigil_replay_cache_events") >= 100 })
	got = replayringRead(t, n, fresh[0], 100)
	if !slices.Equal(got, fresh) {
		t.Fatalf("replay of the new events: %s", slowclientSeqString(got))
	}
	if served := slowclientMetric(t, n, "vigil_replay_cache_served_total"); served < 100 {
		t.Fatalf("%.0f of the 100 new events came from the ring", served)
	}
}

// replayringRead subscribes on a fresh native connection from seq and
// returns the seqs of the next want events of the test's source (the node
// stores a few events of its own).
func replayringRead(t *testing.T, n *testnode.Node, from uint64, want int) []uint64 {
	t.Helper()
	c := slowclientDial(t, n, "/api/v1/stream", 0)
	defer c.conn.Close()
	c.send(map[string]any{"op": "subscribe", "id": "r", "filter": map[string]any{"sources": []string{"replayring"}}, "from": map[string]any{"seq": from}})
	var seqs []uint64
	for len(seqs) < want {
		b, code, err := c.next(10 * time.Second)
		if err != nil || code != 0 {
			t.Fatalf("replay from %d: after %d of %d events: close %d, %v", from, len(seqs), want, code, err)
		}
		if m := slowclientDecode(t, b); m.Type == "event" {
			var e struct{ Seq uint64 }
			if err := json.Unmarshal(m.Event, &e); err != nil {
				t.Fatal(err)
			}
			seqs = append(seqs, e.Seq)
		}
	}
	return seqs
}

// replayringWaitFor polls cond until it holds or 15 s pass.
func replayringWaitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
