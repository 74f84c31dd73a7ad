package store

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// RawDirectForBench reads [from, to] with batched direct gets exactly as
// directScan asks for them (directBatch messages per request, directAhead
// requests ahead, no headers) but only counts the bodies: no decode, no
// event. It measures what the JetStream transport alone costs per event,
// the floor under any decoding work (issue 12 item 5, second pass).
func (l *Log) RawDirectForBench(ctx context.Context, from, to uint64) (int, error) {
	inbox := nats.NewInbox()
	var n int
	eob := make(chan error, directAhead+1) // at most directAhead requests are out
	sub, err := l.nc.Subscribe(inbox, func(m *nats.Msg) {
		if len(m.Header) == 0 {
			n++ // only this handler's goroutine touches n until eob is read
			return
		}
		if status := m.Header.Get("Status"); status != "204" {
			eob <- fmt.Errorf("direct get: status %s %s", status, m.Header.Get("Description"))
			return
		}
		eob <- nil
	})
	if err != nil {
		return 0, err
	}
	defer func() { _ = sub.Unsubscribe() }()
	_ = sub.SetPendingLimits(-1, -1)
	subject := "$JS.API.DIRECT.GET." + StreamName
	issued, pending := from, 0
	for issued <= to || pending > 0 {
		for pending < directAhead && issued <= to {
			k := min(uint64(directBatch), to-issued+1)
			req := fmt.Appendf(nil, `{"seq":%d,"batch":%d,"max_bytes":%d,"no_hdr":true}`, issued, k, directMaxBytes)
			if err := l.nc.PublishRequest(subject, inbox, req); err != nil {
				return 0, err
			}
			issued += k
			pending++
		}
		select {
		case err := <-eob:
			if err != nil {
				return 0, err
			}
			pending--
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	// Every end-of-batch status was read after its batch's bodies, on
	// the same goroutine: n is complete.
	return n, nil
}

// RawConsumerForBench reads [from, to] through an ordered consumer with a
// pull window of window messages, reading each message's metadata (its
// seq, which the consumer path needs) but decoding nothing: the consumer
// transport's own cost per event, beside RawDirectForBench.
func (l *Log) RawConsumerForBench(ctx context.Context, from, to uint64, window int) (int, error) {
	cons, err := l.stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:   from,
	})
	if err != nil {
		return 0, err
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(window))
	if err != nil {
		return 0, err
	}
	defer it.Stop()
	n := 0
	for {
		msg, err := it.Next()
		if err != nil {
			return n, err
		}
		meta, err := msg.Metadata()
		if err != nil {
			return n, err
		}
		n++
		if meta.Sequence.Stream >= to {
			return n, nil
		}
	}
}

// DeleteForBench deletes the message at seq, to put a gap in the log.
func (l *Log) DeleteForBench(ctx context.Context, seq uint64) error {
	return l.stream.DeleteMsg(ctx, seq)
}
