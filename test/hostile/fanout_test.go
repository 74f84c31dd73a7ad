package hostile

import (
	"context"
	"encoding/json"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/client"
	"github.com/vigil-sec/vigil/internal/config"
	"github.com/vigil-sec/vigil/internal/testnode"
)

// Issue 12, item 1: a client's queue is bounded in bytes as well as in
// deliveries. With the default 4,096 deliveries and 256 KiB of queue, a
// client that stops reading 8 KiB events is lagged after a few dozen of
// them (not after 4,096, i.e. 32 MB held for it), told where to resume,
// and a client that reads is not lagged (the events come in requests of
// 4, 32 KiB, so it would have to fall 8 requests behind).
func TestFanoutQueueBytesLagsOnlyTheStalledClient(t *testing.T) {
	if testing.Short() {
		t.Skip("publishes a few MB of events")
	}
	t.Parallel()
	n := testnode.Start(t, func(c *config.Config) { c.QueueKiB = 256 })
	const src = "fanout-bytes"
	p := newSlowclientPublisher(t, n, src)
	stalled := slowclientDial(t, n, "/api/v1/stream", slowclientRcvBuf)
	stalled.send(map[string]any{"op": "subscribe", "id": "s1", "filter": map[string]any{"sources": []string{src}}})
	if b, _, err := stalled.next(5 * time.Second); err != nil || slowclientDecode(t, b).Type != "subscribed" {
		t.Fatalf("subscribe: %s %v", b, err)
	}
	c, err := client.New(n.URL(), n.AdminToken())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var read atomic.Int64
	up := make(chan struct{}, 1)
	go func() { // owned by the test: ends with ctx
		_ = c.Subscribe(ctx, client.SubscribeOptions{Filter: client.Filter{Sources: []string{src}},
			OnState: func(ok bool, _ error) {
				if ok {
					select {
					case up <- struct{}{}:
					default:
					}
				}
			}}, func(*client.Event) error { read.Add(1); return nil })
	}()
	<-up
	waitSubs := time.Now().Add(10 * time.Second)
	for slowclientConnections(t, n, "websocket") < 2 && time.Now().Before(waitSubs) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // the reader's subscribe message is processed after its connection counts

	// 1,000 events of 8 KiB: 8 MB, an eighth of what 4,096 deliveries
	// would hold before the delivery bound lags anybody.
	var published []uint64
	for len(published) < 1000 && slowclientMetric(t, n, "vigil_clients_lagged_total") < 1 {
		published = append(published, p.publish(fanoutBatch)...)
	}
	if lagged := slowclientMetric(t, n, "vigil_clients_lagged_total"); lagged != 1 {
		t.Fatalf("after %d events of 8 KiB, %v clients lagged; want the stalled one only", len(published), lagged)
	}
	published = append(published, p.publish(fanoutBatch)...)
	deadline := time.Now().Add(15 * time.Second)
	for read.Load() < int64(len(published)) {
		if time.Now().After(deadline) {
			t.Fatalf("the reading client got %d of %d events", read.Load(), len(published))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if lagged := slowclientMetric(t, n, "vigil_clients_lagged_total"); lagged != 1 {
		t.Fatalf("%v clients lagged; want the stalled one only", lagged)
	}

	// The stalled client reads again: its backlog, the lagged notice with
	// the resume point, then close 4000.
	var got []uint64
	var resume uint64
	for {
		b, code, err := stalled.next(10 * time.Second)
		if err != nil {
			t.Fatalf("after %d events the stream ended without close 4000: %v", len(got), err)
		}
		if code != 0 {
			if code != 4000 || resume == 0 {
				t.Fatalf("close %d, resume %d; want lagged then 4000", code, resume)
			}
			break
		}
		m := slowclientDecode(t, b)
		switch {
		case m.Type == "event" && resume == 0:
			var e struct{ Seq uint64 }
			if err := json.Unmarshal(m.Event, &e); err != nil {
				t.Fatal(err)
			}
			got = append(got, e.Seq)
		case m.Type == "lagged" && m.ID == "s1" && resume == 0:
			resume = m.ResumeFrom
		default:
			t.Fatalf("unexpected message %.200s", b)
		}
	}
	slowclientCheckResume(t, n, src, got, published, resume)
}

// fanoutBatch is the events (8 KiB each) per request of
// TestFanoutQueueBytesLagsOnlyTheStalledClient.
const fanoutBatch = 4

// Issue 12, item 2: a subscription with "batch": true receives
// {"type":"events","sub":...,"events":[...]} messages holding several
// events each, in order, with no gap; another subscription on the same
// connection keeps one {"type":"event"} message per event; a "batch" that
// is not a boolean is refused.
func TestFanoutBatchedFrames(t *testing.T) {
	n := testnode.Start(t)
	const src, total = "fanout-batch", 300
	p := newSlowclientPublisher(t, n, src)
	p.pad = "x"
	var published []uint64
	for len(published) < total {
		published = append(published, p.publish(100)...)
	}
	c := slowclientDial(t, n, "/api/v1/stream", 0)
	c.send(map[string]any{"op": "subscribe", "id": "bad", "batch": "yes"})
	if b, _, err := c.next(5 * time.Second); err != nil || slowclientDecode(t, b).Type != "error" {
		t.Fatalf(`"batch":"yes": %s %v; want an error`, b, err)
	}
	from := map[string]any{"seq": published[0]}
	filter := map[string]any{"sources": []string{src}}
	c.send(map[string]any{"op": "subscribe", "id": "b", "filter": filter, "from": from, "batch": true})
	var batched, single []uint64
	frames, largest := 0, 0
	for len(batched) < total || len(single) < total {
		if len(batched) == total && single == nil {
			// One after the other: the two replays would interleave.
			c.send(map[string]any{"op": "subscribe", "id": "single", "filter": filter, "from": from})
			single = []uint64{}
		}
		b, code, err := c.next(10 * time.Second)
		if err != nil || code != 0 {
			t.Fatalf("after %d batched and %d single events: close %d, %v", len(batched), len(single), code, err)
		}
		var m struct {
			Type   string
			Sub    string
			Event  json.RawMessage
			Events []json.RawMessage
		}
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("message %.200s: %v", b, err)
		}
		seqOf := func(raw json.RawMessage) uint64 {
			var e struct{ Seq uint64 }
			if err := json.Unmarshal(raw, &e); err != nil {
				t.Fatal(err)
			}
			return e.Seq
		}
		switch {
		case m.Type == "subscribed":
		case m.Type == "events" && m.Sub == "b":
			if len(m.Events) == 0 {
				t.Fatalf("empty batch: %s", b)
			}
			frames++
			largest = max(largest, len(m.Events))
			for _, raw := range m.Events {
				batched = append(batched, seqOf(raw))
			}
		case m.Type == "event" && m.Sub == "single":
			single = append(single, seqOf(m.Event))
		default:
			t.Fatalf("unexpected message %.200s", b)
		}
	}
	for i := range total {
		if batched[i] != published[i] || single[i] != published[i] {
			t.Fatalf("event %d: batched seq %d, single seq %d, published %d", i, batched[i], single[i], published[i])
		}
	}
	if largest < 2 || frames >= total {
		t.Fatalf("%d events came in %d frames (largest %d): not batched", total, frames, largest)
	}
	t.Logf("%d replayed events in %d batched frames (largest %d events)", total, frames, largest)
}
