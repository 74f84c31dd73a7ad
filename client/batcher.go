package client

import (
	"context"
	"sync"
	"time"
)

// Batcher collects events and publishes them in batches: when MaxEvents
// are waiting or MaxDelay has passed since the first one. Errors go to
// OnError; the batch is retried by Publish first.
type Batcher struct {
	c        *Client
	max      int
	delay    time.Duration
	onError  func(error)
	onAck    func([]Ack)
	in       chan *Event
	flushReq chan chan struct{}
	done     chan struct{}
	stopOnce sync.Once
}

// BatcherOptions configure NewBatcher.
type BatcherOptions struct {
	MaxEvents int           // default 1000
	MaxDelay  time.Duration // default 50 ms
	OnError   func(error)
	OnAck     func([]Ack)
}

// NewBatcher starts a batcher; Close flushes and stops it.
func (c *Client) NewBatcher(opts BatcherOptions) *Batcher {
	if opts.MaxEvents <= 0 {
		opts.MaxEvents = 1000
	}
	if opts.MaxDelay <= 0 {
		opts.MaxDelay = 50 * time.Millisecond
	}
	b := &Batcher{c: c, max: opts.MaxEvents, delay: opts.MaxDelay, onError: opts.OnError, onAck: opts.OnAck,
		in: make(chan *Event, opts.MaxEvents), flushReq: make(chan chan struct{}), done: make(chan struct{})}
	go b.loop() // owned by the batcher: ends on Close
	return b
}

// Add queues one event; it blocks while a full batch is being sent.
func (b *Batcher) Add(e *Event) { b.in <- e }

// Flush sends whatever is queued and waits for it.
func (b *Batcher) Flush() {
	ack := make(chan struct{})
	b.flushReq <- ack
	<-ack
}

// Close flushes and stops the batcher.
func (b *Batcher) Close() {
	b.stopOnce.Do(func() {
		close(b.in)
		<-b.done
	})
}

func (b *Batcher) loop() {
	defer close(b.done)
	var batch []*Event
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	send := func() {
		if len(batch) == 0 {
			return
		}
		acks, err := b.c.Publish(context.Background(), batch)
		if err != nil && b.onError != nil {
			b.onError(err)
		}
		if err == nil && b.onAck != nil {
			b.onAck(acks)
		}
		batch = nil
	}
	for {
		select {
		case e, ok := <-b.in:
			if !ok {
				send()
				return
			}
			if len(batch) == 0 {
				timer.Reset(b.delay)
			}
			batch = append(batch, e)
			if len(batch) >= b.max {
				timer.Stop()
				send()
			}
		case <-timer.C:
			send()
		case ack := <-b.flushReq:
			// Drain what Add already queued before flushing.
			for n := len(b.in); n > 0; n-- {
				batch = append(batch, <-b.in)
			}
			timer.Stop()
			send()
			close(ack)
		}
	}
}
