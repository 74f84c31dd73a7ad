package hub

import (
	"context"
	"errors"
	"fmt"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/filter"
)

// Consumer reads every event through the hub for an in-process component
// (the detection engine, the statistics). Live events are the ones the hub
// has already read and decoded, so such a component costs the log no
// second consumer and the CPU no second decode; events before the hub's
// head are replayed from the log as for any subscription.
type Consumer struct {
	hub  *Hub
	name string
}

// InternalTransport is the transport name of in-process consumers in the
// hub's client list (status reports leave them out of connection counts).
const InternalTransport = "internal"

// Consumer returns a consumer named for logs and the connections list.
func (h *Hub) Consumer(name string) *Consumer {
	return &Consumer{hub: h, name: name}
}

// Head waits until the hub is positioned on the log and returns the seq of
// the last event it dispatched.
func (c *Consumer) Head(ctx context.Context) (uint64, error) {
	select {
	case <-c.hub.Started():
		return c.hub.Head(), nil
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// Tail calls fn for every event with seq >= from, in order, on the
// caller's goroutine, until ctx ends (nil) or the hub shuts down. Every
// event is seen: a consumer that falls behind the hub resumes from the
// event it missed, replayed from the log. fn must treat the event as
// read-only; it is shared with every other subscriber.
func (c *Consumer) Tail(ctx context.Context, from uint64, fn func(*event.Event)) error {
	if from == 0 {
		from = 1
	}
	p := &auth.Principal{ID: "internal:" + c.name, Name: c.name, Role: auth.RoleAdmin, Tenant: auth.AllTenants}
	for {
		client := c.hub.NewClient(ClientInfo{Transport: InternalTransport, Remote: c.name, Principal: p, QueueSize: c.hub.opts.ConsumerQueue, QueueBytes: -1})
		next, err := c.consume(ctx, client, from, fn)
		client.Close()
		switch {
		case ctx.Err() != nil:
			return nil
		case next == 0:
			return fmt.Errorf("hub: consumer %s: %w", c.name, err)
		}
		c.hub.log.Warn("in-process consumer fell behind the stream; resuming", "consumer", c.name, "from", next)
		from = next
	}
}

// consume runs one hub client; after a lag it returns the seq to resume
// from, otherwise 0 and the reason the stream ended.
func (c *Consumer) consume(ctx context.Context, client *Client, from uint64, fn func(*event.Event)) (uint64, error) {
	if _, err := client.Subscribe(ctx, c.name, filter.MatchAll(), FromSeq(from)); err != nil {
		return 0, fmt.Errorf("subscribe: %w", err)
	}
	for {
		batch, err := client.Next(ctx)
		if err != nil {
			var lag *LagError
			if errors.As(err, &lag) && lag.Resume[c.name] > 0 {
				return lag.Resume[c.name], err
			}
			return 0, err
		}
		for _, d := range batch {
			if d.Event != nil {
				fn(d.Event)
			}
		}
	}
}
