package hub

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/filter"
)

type subscription struct {
	id      string
	client  *Client
	matcher *filter.Matcher
	// masked: the principal is shown masked events (Options.Masked), so
	// the filter is matched against the masked form only, and the router
	// never indexes it by a field masking changes.
	masked  bool
	stopped atomic.Bool
	// release returns the subscription's filter cost to the principal's
	// budget (Options.Budget); it runs once, when the subscription ends.
	release func()
	minSeq  uint64 // the cursor: nothing before it is delivered

	// catching is true while the subscription replays from the log. Live
	// events offered meanwhile wait in pending (bounded); if it overflows
	// the replay simply reads further from the log.
	catching atomic.Bool
	// liveFrom is the first seq the replay did not deliver, set when it
	// ends: the dispatcher may still be offering a chunk the replay read
	// from the log (it reads up to inflight, the chunk's last seq), and
	// those events must not arrive a second time, live.
	liveFrom atomic.Uint64
	mu       sync.Mutex
	next     uint64 // next seq the replay must deliver
	pending  []*event.Event
	overflow bool
	lastSeq  atomic.Uint64 // last seq delivered (for resume points)

	// Where the hub's router holds this subscription; guarded by Hub.routesMu.
	kind  routeKind
	slots []routeSlot
}

// releaseBudget returns the subscription's filter cost (a no-op without a
// budget; release functions run their effect once).
func (s *subscription) releaseBudget() {
	if s.release != nil {
		s.release()
	}
}

// offer is called by the hub's dispatch goroutine for every event of a
// chunk of several: the live deliveries are staged (stage).
func (s *subscription) offer(e *event.Event) { s.offerLive(e, true) }

// offerNow is offer for a chunk of one event (an idle hub): staging would
// only add a second pass over the clients.
func (s *subscription) offerNow(e *event.Event) { s.offerLive(e, false) }

func (s *subscription) offerLive(e *event.Event, stage bool) {
	if s.catching.Load() {
		s.mu.Lock()
		if s.catching.Load() {
			if len(s.pending) < s.client.hub.opts.PendingSize {
				s.pending = append(s.pending, e)
			} else {
				s.overflow = true
			}
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()
	}
	if e.Seq < s.liveFrom.Load() {
		return // the replay delivered it
	}
	if !stage {
		s.deliver(e, false)
		return
	}
	// Staged: the client's deliveries of this chunk are queued together
	// when the chunk has been offered (Hub.dispatchChunk).
	visible, ok := s.visible(e)
	if !ok {
		return
	}
	c := s.client
	if c.staged == nil {
		c.staged = new([]stagedDelivery)
	}
	if len(*c.staged) == 0 {
		c.hub.staging = append(c.hub.staging, c)
	}
	*c.staged = append(*c.staged, stagedDelivery{sub: s, d: Delivery{SubID: s.id, Event: visible}})
}

// visible is the form of e this subscription delivers (masked for its
// principal), or false when it delivers nothing.
func (s *subscription) visible(e *event.Event) (*event.Event, bool) {
	if s.stopped.Load() || e.Seq < s.minSeq {
		return nil, false
	}
	if s.masked {
		// Matched against what the principal sees, and only that: a
		// match on the unmasked event as well (what this did until an
		// audit) let a viewer probe unmasked values with a filter true
		// on every masked form, e.g. users "***@example.com" OR
		// "bob@example.com" (issue 5, the filter oracle).
		visible, ok := s.client.hub.opts.Policy(s.client.info.Principal, e)
		if !ok || !s.matcher.Match(visible) {
			return nil, false
		}
		return visible, true
	}
	if !s.matcher.Match(e) {
		return nil, false
	}
	visible, ok := s.client.hub.opts.Policy(s.client.info.Principal, e)
	if !ok || (visible != e && !s.matcher.Match(visible)) { // Options.Masked unset: at least the masked form must match
		return nil, false
	}
	return visible, true
}

func (s *subscription) deliver(e *event.Event, block bool) bool {
	visible, ok := s.visible(e)
	if !ok {
		return true
	}
	if !s.client.enqueue(Delivery{SubID: s.id, Event: visible}, block) {
		return false
	}
	s.delivered(e)
	return true
}

// delivered notes that e (or its masked form) was queued.
func (s *subscription) delivered(e *event.Event) {
	s.lastSeq.Store(e.Seq)
	if i := e.Category.Index(); i >= 0 && i < len(s.client.hub.byCat) {
		s.client.hub.byCat[i].Add(1)
	}
}

// resumePoint is where a client should resume this subscription.
func (s *subscription) resumePoint() uint64 {
	if last := s.lastSeq.Load(); last > 0 {
		return last + 1
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.next > 0 {
		return s.next
	}
	return s.client.hub.dispatched.Load() + 1
}

// catchUp replays from the log until it meets the live tail, then switches
// the subscription to live delivery.
func (s *subscription) catchUp(ctx context.Context) error {
	hub := s.client.hub
	for {
		// The log holds every event up to inflight; events after it will
		// be offered to this subscription's pending list.
		upto := hub.inflight.Load()
		s.mu.Lock()
		from := s.next
		s.mu.Unlock()
		if from <= upto {
			var lastErr error
			err := hub.src.ScanRange(ctx, from, upto, func(e *event.Event) bool {
				if !s.deliver(e, true) {
					lastErr = ctx.Err()
					return false
				}
				s.mu.Lock()
				s.next = e.Seq + 1
				s.mu.Unlock()
				return true
			})
			if err != nil {
				return err
			}
			if lastErr != nil || ctx.Err() != nil {
				return ctx.Err()
			}
			s.mu.Lock()
			if s.next <= upto {
				s.next = upto + 1 // the rest of the range was removed by retention
			}
			s.mu.Unlock()
		}
		// Deliver the live events parked meanwhile, waiting for queue space
		// like the replay (a resumed client must not lag on its own
		// backlog), but without holding the lock, so the hub's dispatch
		// never waits for this client: it keeps parking new events, which
		// the next round takes. Only an empty list under the lock ends the
		// catch-up; from then on events are delivered live.
		rescan := false
		for !rescan {
			s.mu.Lock()
			if s.overflow {
				// Live events were dropped from pending: read them from the log.
				s.overflow = false
				s.pending = nil
				s.mu.Unlock()
				rescan = true
				break
			}
			batch := s.pending
			s.pending = nil
			if len(batch) == 0 {
				s.liveFrom.Store(s.next) // before catching ends: offer reads them in this order
				s.catching.Store(false)
				s.mu.Unlock()
				return nil
			}
			next := s.next
			s.mu.Unlock()
			for _, e := range batch {
				if e.Seq < next {
					continue
				}
				if !s.deliver(e, true) {
					return ctx.Err()
				}
				next = e.Seq + 1
				s.mu.Lock()
				s.next = next
				s.mu.Unlock()
			}
		}
	}
}
