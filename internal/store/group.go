package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/vigil-sec/vigil/internal/event"
)

// groupCommitter publishes the batches of an external NATS log in groups:
// a group is published only once every batch of the group before it has
// settled (acknowledged, or failed and looked up), and it holds every batch
// that arrived meanwhile.
//
// Why: a replicated stream that loses its leader drops what it is sent
// until a new one is elected, and then stores what comes next. Had the
// next batch been published while the previous one was still in flight,
// its first event could be stored linking the chain to an event the stream
// lost: `vigil verify` would report a broken link with nothing tampered
// with. Publishing after the previous group settled makes every link point
// at a stored event: a group with a failure marks the chain dirty, and the
// next group takes the chain position from the log first. Grouping keeps
// the throughput of concurrent producers: one acknowledgement round trip
// per group, not per batch.
//
// Events within one group are still published without waiting; a lost
// event followed by a stored one within a group needs the leader to fail
// inside the microseconds the group takes to publish and the rest of the
// group to reach a new leader, elected seconds later. Without a reconnect
// buffer (Open) nothing waits that long on the client. When the leader
// dies (kill -9) what it had replicated is a prefix of what it was sent,
// in order, and until a new leader is elected (seconds) nothing is stored:
// a group published before the death cannot have a hole followed by a
// stored event, and the groups after it wait for the chain recovery, which
// waits for a leader that has led for settleGrace (chainBounds).
type groupCommitter struct {
	l     *Log
	queue chan *appendReq
	stop  chan struct{}
	done  chan struct{}
	once  sync.Once
}

// maxGroup bounds how many batches one group publishes.
const maxGroup = 256

type appendReq struct {
	ctx    context.Context
	events []*event.Event
	fl     *inflight
	// state: reqQueued until the committer takes it (reqTaken) or its
	// caller gives up first (reqCancelled); whoever wins the swap owns fl.
	state     atomic.Int32
	published chan struct{}
	dups      []dupRef
	firstErr  error
	err       error
}

const (
	reqQueued int32 = iota
	reqTaken
	reqCancelled
)

var errClosed = errors.New("store: log closed")

func newGroupCommitter(l *Log) *groupCommitter {
	g := &groupCommitter{l: l, queue: make(chan *appendReq, maxGroup), stop: make(chan struct{}), done: make(chan struct{})}
	go g.run() // owned by the Log: stopped by close
	return g
}

// close stops the committer; batches still queued fail with errClosed.
func (g *groupCommitter) close() {
	g.once.Do(func() { close(g.stop) })
	<-g.done
}

// submit queues a batch for the next group and returns what publishLocked
// returned for it.
func (g *groupCommitter) submit(ctx context.Context, events []*event.Event, fl *inflight) ([]dupRef, error, error) {
	r := &appendReq{ctx: ctx, events: events, fl: fl, published: make(chan struct{})}
	giveUp := func(cause error) ([]dupRef, error, error) {
		if r.state.CompareAndSwap(reqQueued, reqCancelled) {
			g.l.failBatch(fl)
			return nil, nil, cause
		}
		// Taken: publishing it takes no longer than the bounded chain
		// recovery, and the caller's ctx then decides as for any batch.
		<-r.published
		return r.dups, r.firstErr, r.err
	}
	select {
	case g.queue <- r:
	case <-ctx.Done():
		_, _, _ = giveUp(nil) // withdraws the queued batch; the error to report is ours
		return nil, nil, fmt.Errorf("store: append: %w", ctx.Err())
	case <-g.stop:
		_, _, _ = giveUp(nil) // withdraws the queued batch; the error to report is ours
		return nil, nil, errClosed
	}
	select {
	case <-r.published:
		return r.dups, r.firstErr, r.err
	case <-ctx.Done():
		return giveUp(fmt.Errorf("store: append: waiting for the batches before it: %w", ctx.Err()))
	case <-g.stop:
		return giveUp(errClosed)
	}
}

func (g *groupCommitter) run() {
	defer close(g.done)
	var prev []*inflight
	group := make([]*appendReq, 0, maxGroup)
	for {
		// Each batch settles within the acknowledgement timeout plus its
		// lookups (publish.go); requests queue meanwhile.
		for _, fl := range prev {
			select {
			case <-fl.done:
			case <-g.stop:
				return
			}
		}
		prev = prev[:0]
		group = group[:0]
		select {
		case r := <-g.queue:
			group = append(group, r)
		case <-g.stop:
			return
		}
	more:
		for len(group) < maxGroup {
			select {
			case r := <-g.queue:
				group = append(group, r)
			default:
				break more
			}
		}
		g.l.mu.Lock()
		for _, r := range group {
			if !r.state.CompareAndSwap(reqQueued, reqTaken) {
				continue // its caller gave up and ended its batch
			}
			r.dups, r.firstErr, r.err = g.l.publishLocked(r.ctx, r.events, r.fl)
			if r.err == nil {
				prev = append(prev, r.fl)
			}
			close(r.published)
		}
		g.l.mu.Unlock()
	}
}
