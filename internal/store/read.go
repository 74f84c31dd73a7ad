package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigil-sec/vigil/internal/event"
)

// Read returns up to max events with seq >= from, in order. It uses one
// short-lived ordered consumer, which JetStream streams to us in batches:
// far faster than one request per message.
func (l *Log) Read(ctx context.Context, from uint64, max int) ([]*event.Event, error) {
	if from == 0 {
		from = 1
	}
	var out []*event.Event
	err := l.Scan(ctx, from, func(e *event.Event) bool {
		out = append(out, e)
		return len(out) < max
	})
	return out, err
}

// SeqForTime returns the seq of the first event stored at or after t, or
// head+1 when there is none.
func (l *Log) SeqForTime(ctx context.Context, t time.Time) (uint64, error) {
	cons, err := l.stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartTimePolicy,
		OptStartTime:  &t,
	})
	if err != nil {
		return 0, fmt.Errorf("store: seq for time: %w", err)
	}
	batch, err := cons.FetchNoWait(1)
	if err != nil {
		return 0, fmt.Errorf("store: seq for time: %w", err)
	}
	for msg := range batch.Messages() {
		meta, err := msg.Metadata()
		if err != nil {
			return 0, fmt.Errorf("store: seq for time: %w", err)
		}
		return meta.Sequence.Stream, nil
	}
	head, err := l.Head(ctx)
	return head + 1, err
}

// Scan calls fn for every event from seq `from` up to the head at the time
// of the call, in order, until fn returns false.
func (l *Log) Scan(ctx context.Context, from uint64, fn func(*event.Event) bool) error {
	head, err := l.Head(ctx)
	if err != nil {
		return err
	}
	if from == 0 {
		from = 1
	}
	if from > head {
		return nil
	}
	return l.ScanRange(ctx, from, head, fn)
}

// ScanRange calls fn for every event with from <= seq <= to, in order,
// until fn returns false. It streams through one ordered consumer with a
// deep pull window, so reading is pipelined rather than one round trip per
// batch.
func (l *Log) ScanRange(ctx context.Context, from, to uint64, fn func(*event.Event) bool) error {
	if from == 0 {
		from = 1
	}
	if from > to {
		return nil
	}
	cons, err := l.stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:   from,
	})
	if err != nil {
		return fmt.Errorf("store: scan: consumer: %w", err)
	}
	// A range that retention has emptied would never deliver: check first.
	info, err := l.stream.Info(ctx)
	if err != nil {
		return fmt.Errorf("store: scan: %w", err)
	}
	if info.State.LastSeq < from || info.State.FirstSeq > to {
		return nil
	}
	window := int(min(to-from+1, 8192))
	it, err := cons.Messages(jetstream.PullMaxMessages(window))
	if err != nil {
		return fmt.Errorf("store: scan: %w", err)
	}
	defer it.Stop()
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	for {
		msg, err := it.Next()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("store: scan: %w", err)
		}
		meta, err := msg.Metadata()
		if err != nil {
			return fmt.Errorf("store: scan: metadata: %w", err)
		}
		seq := meta.Sequence.Stream
		if seq > to {
			return nil
		}
		e, err := decode(msg.Data(), seq)
		if err == nil && !fn(e) {
			return nil // a body that is not an event is skipped
		}
		if seq >= to || meta.NumPending == 0 {
			return nil
		}
	}
}

// Tail delivers every event from seq `from` on, in order, until ctx ends:
// the one ordered consumer that feeds a node's hub.
func (l *Log) Tail(ctx context.Context, from uint64, fn func(*event.Event)) error {
	if from == 0 {
		from = 1
	}
	cons, err := l.stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:   from,
	})
	if err != nil {
		return fmt.Errorf("store: tail: consumer: %w", err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(4096))
	if err != nil {
		return fmt.Errorf("store: tail: %w", err)
	}
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	for {
		msg, err := it.Next()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return ctx.Err()
			}
			return fmt.Errorf("store: tail: %w", err)
		}
		meta, err := msg.Metadata()
		if err != nil {
			return fmt.Errorf("store: tail: metadata: %w", err)
		}
		e, err := decode(msg.Data(), meta.Sequence.Stream)
		if err != nil {
			// A body that is not an event (a NATS producer's mistake) is
			// skipped, not fatal: the log stays readable.
			continue
		}
		fn(e)
	}
}
