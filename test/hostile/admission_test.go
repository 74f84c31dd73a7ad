package hostile

import (
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/config"
	"github.com/vigil-sec/vigil/internal/testnode"
)

// Issue 12 item 1: ingest admission holds publishers while the node's
// dispatch lags, never because clients read slowly. Twenty connections
// that subscribe and then read nothing (4 KiB receive windows, 8 KiB
// events) must not slow a producer: were the clients' queues part of the
// lag, every one of these publishes would be held for --ingest-max-hold
// until the twenty overflowed their queues — a lever any viewer token
// could pull against the whole node's ingestion.
func TestAdmissionIgnoresSlowReaders(t *testing.T) {
	const hold = 500 * time.Millisecond
	n := testnode.Start(t, func(c *config.Config) {
		c.IngestMaxDeliveryLag = 25 * time.Millisecond
		c.IngestMaxHold = hold
	})
	for i := 0; i < 20; i++ {
		c := slowclientDial(t, n, "/api/v1/stream", slowclientRcvBuf)
		c.send(map[string]any{"op": "subscribe", "id": "s", "filter": map[string]any{"sources": []string{"admission"}}})
		if b, _, err := c.next(5 * time.Second); err != nil || slowclientDecode(t, b).Type != "subscribed" {
			t.Fatalf("subscribe %d: %s %v", i, b, err)
		}
	}
	p := newSlowclientPublisher(t, n, "admission")
	const batches = 30
	var seqs []uint64
	for i := 0; i < batches; i++ {
		seqs = append(seqs, p.publish(slowclientBatch)...)
	}
	if len(seqs) != batches*slowclientBatch {
		t.Fatalf("%d events acknowledged, want %d", len(seqs), batches*slowclientBatch)
	}
	// Dispatch itself may lag now and then on a loaded machine; holds
	// caused by the readers would add up to about batches × hold (15 s).
	held := slowclientMetric(t, n, "vigil_ingest_held_seconds_sum")
	if limit := (batches * hold / 8).Seconds(); held > limit {
		t.Fatalf("publishers were held %.2f s in all behind 20 clients reading nothing; want under %.2f s", held, limit)
	}
	holds := int(slowclientMetric(t, n, "vigil_ingest_held_seconds_count"))
	if holds >= batches {
		t.Fatalf("every one of %d publishes was held (%d holds, %.3f s): a publish let straight in must not count as held", batches, holds, held)
	}
	t.Logf("held %.3f s over %d publishes (%d holds)", held, batches, holds)
}
