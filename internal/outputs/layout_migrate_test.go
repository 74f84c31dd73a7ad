package outputs_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigil-sec/vigil/internal/outputs"
	"github.com/vigil-sec/vigil/internal/store"
)

// TestMigratedConsumerKeepsItsStart (issue 12 item 8): `vigil migrate`
// creates an output's consumer again at its ack floor + 1 (deliver by
// start sequence); the manager keeps that start instead of asking for
// "deliver new", which JetStream refuses on an existing consumer, and
// the output delivers from there.
func TestMigratedConsumerKeepsItsStart(t *testing.T) {
	b := newBench(t)
	first, second := plainEvent("auth.login"), plainEvent("auth.login")
	b.publish(first)
	b.publish(second)
	if _, err := b.log.JetStream().CreateOrUpdateConsumer(context.Background(), store.StreamName, jetstream.ConsumerConfig{
		Durable: outputs.ConsumerName("soc"), DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: 2,
		AckPolicy: jetstream.AckExplicitPolicy,
	}); err != nil {
		t.Fatal(err)
	}
	r := newReceiver(t, "s", 0)
	b.run(b.managerOpts(defs(t, webhookYAML("soc", r.URL, secretFile(t, "s"), ""))))
	checkFor(t, 5*time.Second, "the second event", func() error {
		if r.distinct() == 0 {
			return errors.New("nothing yet")
		}
		return nil
	})
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.byID) != 1 || r.byID[second.ID] != 1 {
		t.Fatalf("deliveries %v, want only %s", r.byID, second.ID)
	}
}
