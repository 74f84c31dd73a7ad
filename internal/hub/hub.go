// Package hub owns fan-out: one Hub per node reads the log's tail and offers
// each event to every subscription of every connected client. A client owns
// one bounded queue shared by its subscriptions; transports drain it with
// Next. Live streaming is the tail of the log, and a subscription that starts
// from a cursor replays from the log and then joins the live tail with no
// gap and no duplicate. A client whose queue overflows is marked lagged with
// a resume point per subscription; nobody else waits for it.
package hub

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/event"
)

// Source is the log as the hub needs it.
type Source interface {
	Head(ctx context.Context) (uint64, error)
	Tail(ctx context.Context, from uint64, fn func(*event.Event)) error
	ScanRange(ctx context.Context, from, to uint64, fn func(*event.Event) bool) error
	SeqForTime(ctx context.Context, t time.Time) (uint64, error)
}

// Policy decides whether a principal may see an event and returns the form
// it may see (masked for some roles). It is auth's one authorization
// function; the hub applies it to every delivery, live and replayed.
type Policy func(p *auth.Principal, e *event.Event) (*event.Event, bool)

// DefaultPolicy shows an event when the principal may read it, unmasked.
func DefaultPolicy(p *auth.Principal, e *event.Event) (*event.Event, bool) {
	return e, p.MayRead(e)
}

// Options configure a Hub.
type Options struct {
	QueueSize int // per client; default 4096 deliveries
	// QueueBytes bounds each client's queue in bytes of event JSON as
	// well (default 4 MiB): events of a few hundred bytes and of 64 KiB
	// must not cost a slow client's queue the same. A client past either
	// bound is lagged (told where to resume) and the others go on.
	QueueBytes int
	// PendingSize bounds live events buffered while a subscription replays.
	PendingSize int
	// ConsumerQueue is the queue of each in-process Consumer; default 65536.
	ConsumerQueue int
	Policy        Policy
	// Masked reports whether Policy shows p masked events (auth.Policy.Masks
	// of its role). Such a subscription's filter is matched against the
	// masked form only and is not routed by user or source, so a filter
	// cannot tell a masked reader anything the masked events do not.
	// Required when Policy masks.
	Masked func(p *auth.Principal) bool
	// Budget, when set, bounds each principal's subscriptions by their
	// filters' cost (auth.Limiter): a subscription over it is refused.
	Budget FilterBudget
	Logger *slog.Logger
}

// FilterBudget bounds what one principal's subscriptions may make the
// dispatcher spend per event: every routed event is tested against every
// subscription filed under its keys, so the cost is the client's to
// choose unless something counts it (docs/security.md).
type FilterBudget interface {
	// Take reserves cost for a subscription of p; release returns it.
	Take(p *auth.Principal, cost int) (release func(), err error)
}

// Hub fans events out to clients.
type Hub struct {
	src  Source
	opts Options
	log  *slog.Logger

	mu      sync.Mutex
	clients map[*Client]struct{}
	nextID  uint64

	// routesMu guards routes. dispatch holds the read lock while it offers
	// one event; subscribing and unsubscribing take the write lock, so a
	// subscription added after an event's offer began is not offered it
	// (and finds the event below its replay bound, see inflight).
	routesMu sync.RWMutex
	routes   *router

	dispatched atomic.Uint64 // seq of the last event offered to subscriptions
	// inflight is the seq being dispatched now (>= dispatched). It is set
	// before dispatch reads the subscription snapshot, so a replay that
	// reads its upper bound from it cannot miss an event that was offered
	// to a snapshot taken just before the subscription was added.
	inflight  atomic.Uint64
	started   chan struct{}
	startOnce sync.Once

	// The log's tail hands events to the dispatching goroutine through
	// pend (push, dispatchLoop): while the dispatcher offers one chunk of
	// events, the next ones gather, so under load each client is woken
	// once per chunk and its writer sends several deliveries per socket
	// write instead of one system call per delivery.
	pendMu    sync.Mutex
	pend      []*event.Event
	pendReady chan struct{} // cap 1: pend stopped being empty
	pendSpace chan struct{} // cap 1: pend has room again
	// wakes are the clients whose queues stopped being empty during the
	// current chunk; signalled once the chunk is offered. Owned by the
	// dispatching goroutine (dispatchChunk).
	wakes []*Client
	// staging are the clients with deliveries staged during the chunk
	// being dispatched (Client.staged); dispatching goroutine only.
	staging []*Client

	delivered atomic.Uint64
	dropped   atomic.Uint64
	lagged    atomic.Uint64
	// byCat counts deliveries per category, indexed by Category.Index:
	// sized from event.Categories() so a new category cannot index past it.
	byCat []atomic.Uint64
}

// DeliveredByCategory returns the deliveries queued per category.
func (h *Hub) DeliveredByCategory() map[event.Category]uint64 {
	out := map[event.Category]uint64{}
	for i, c := range event.Categories() {
		out[c] = h.byCat[i].Load()
	}
	return out
}

// New returns a hub reading from src. Call Run to start it.
func New(src Source, opts Options) *Hub {
	if opts.QueueSize <= 0 {
		opts.QueueSize = 4096
	}
	if opts.QueueBytes <= 0 {
		opts.QueueBytes = 4 << 20
	}
	if opts.PendingSize <= 0 {
		opts.PendingSize = 16384
	}
	if opts.ConsumerQueue <= 0 {
		opts.ConsumerQueue = 1 << 16
	}
	if opts.Policy == nil {
		opts.Policy = DefaultPolicy
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Hub{src: src, opts: opts, log: opts.Logger, clients: map[*Client]struct{}{},
		started: make(chan struct{}), routes: newRouter(),
		pendReady: make(chan struct{}, 1), pendSpace: make(chan struct{}, 1),
		byCat: make([]atomic.Uint64, len(event.Categories()))}
}

// Run tails the log from its current head and dispatches until ctx ends.
// It is the hub's one reading goroutine.
func (h *Hub) Run(ctx context.Context) error {
	head, err := h.src.Head(ctx)
	if err != nil {
		return fmt.Errorf("hub: head: %w", err)
	}
	h.dispatched.Store(head)
	h.inflight.Store(head)
	h.startOnce.Do(func() { close(h.started) })
	tailDone := make(chan struct{})
	dispatcherDone := make(chan struct{})
	go func() { // owned by Run: ends after the tail does, once pend is offered
		defer close(dispatcherDone)
		h.dispatchLoop(tailDone)
	}()
	err = h.src.Tail(ctx, head+1, func(e *event.Event) { h.push(ctx, e) })
	close(tailDone)
	<-dispatcherDone
	h.closeAll(false)
	if ctx.Err() != nil {
		return nil
	}
	if err == nil {
		// Tail must follow the log until ctx ends; returning early means
		// the live stream stopped, which must not look like a clean exit.
		return errTailEnded
	}
	return fmt.Errorf("hub: tail: %w", err)
}

// Started is closed once Run has positioned itself on the log.
func (h *Hub) Started() <-chan struct{} { return h.started }

// Head is the seq of the last event dispatched to live subscriptions.
func (h *Hub) Head() uint64 { return h.dispatched.Load() }

// Bounds of the hand-off between the tail and the dispatcher.
const (
	// maxPending events wait for the dispatcher; then the tail waits (the
	// log keeps the rest, as it did when the tail dispatched itself).
	maxPending = 1024
	// chunkEvents are offered under one read lock of the routes and with
	// one wake per client: up to that many deliveries per socket write,
	// and a bound on how long a new subscription or a writer waits for
	// the dispatcher (1,000 subscriptions × 16 events ≈ 5 ms).
	chunkEvents = 16
)

// push hands one event of the tail to the dispatcher, waiting while
// maxPending are already waiting (or until ctx ends: the hub stops).
func (h *Hub) push(ctx context.Context, e *event.Event) {
	for {
		h.pendMu.Lock()
		if len(h.pend) < maxPending {
			h.pend = append(h.pend, e)
			first := len(h.pend) == 1
			h.pendMu.Unlock()
			if first {
				select {
				case h.pendReady <- struct{}{}:
				default:
				}
			}
			return
		}
		h.pendMu.Unlock()
		select {
		case <-h.pendSpace:
		case <-ctx.Done():
			return
		}
	}
}

// dispatchLoop is the dispatching goroutine: it takes every event the
// tail has handed over and offers them in chunks, until tailDone is
// closed and nothing is left. An idle hub is one event per chunk: the
// hand-off adds a goroutine switch, not a wait.
func (h *Hub) dispatchLoop(tailDone <-chan struct{}) {
	var work []*event.Event
	for {
		h.pendMu.Lock()
		work, h.pend = h.pend, work[:0]
		h.pendMu.Unlock()
		if len(work) == 0 {
			select {
			case <-h.pendReady:
				continue
			case <-tailDone:
				h.pendMu.Lock()
				left := len(h.pend)
				h.pendMu.Unlock()
				if left == 0 {
					return
				}
				continue
			}
		}
		select {
		case h.pendSpace <- struct{}{}:
		default:
		}
		for i := 0; i < len(work); i += chunkEvents {
			h.dispatchChunk(work[i:min(i+chunkEvents, len(work))])
		}
		clear(work) // the events belong to the client queues now
	}
}

// dispatch offers one event (tests and benchmarks drive the hub with it).
func (h *Hub) dispatch(e *event.Event) { h.dispatchChunk([]*event.Event{e}) }

// dispatchChunk offers events (in seq order) to the subscriptions, then
// wakes each client whose queue stopped being empty, once.
func (h *Hub) dispatchChunk(events []*event.Event) {
	last := events[len(events)-1].Seq
	h.inflight.Store(last)
	h.routesMu.RLock()
	offer := (*subscription).offer
	if len(events) == 1 {
		offer = (*subscription).offerNow
	}
	for _, e := range events {
		h.routes.each(e, offer)
	}
	h.routesMu.RUnlock()
	for _, c := range h.staging {
		c.enqueueStaged()
	}
	clear(h.staging)
	h.staging = h.staging[:0]
	h.dispatched.Store(last)
	for _, c := range h.wakes {
		c.signal()
	}
	clear(h.wakes)
	h.wakes = h.wakes[:0]
}

// addSub indexes s unless it was stopped meanwhile (its client closed
// between registering it and this call): then it must not be routed.
func (h *Hub) addSub(s *subscription) {
	h.routesMu.Lock()
	defer h.routesMu.Unlock()
	if !s.stopped.Load() {
		h.routes.add(s)
	}
}

// removeSubs drops subscriptions from the index; callers mark them stopped
// first, so a concurrent addSub of the same subscription does not revive it.
func (h *Hub) removeSubs(subs ...*subscription) {
	h.routesMu.Lock()
	defer h.routesMu.Unlock()
	for _, s := range subs {
		h.routes.remove(s)
	}
}

// closeAll ends every client's stream; with networkOnly, in-process
// consumers keep reading (they drain what is still appended).
func (h *Hub) closeAll(networkOnly bool) {
	h.mu.Lock()
	clients := make([]*Client, 0, len(h.clients))
	for c := range h.clients {
		if networkOnly && c.info.Transport == InternalTransport {
			continue
		}
		clients = append(clients, c)
	}
	h.mu.Unlock()
	for _, c := range clients {
		c.Kick(ErrShutdown)
	}
}

// Shutdown closes every network client with ErrShutdown (graceful stop:
// transports tell their clients to reconnect elsewhere). In-process
// consumers keep going until their own context ends or Run returns.
func (h *Hub) Shutdown() { h.closeAll(true) }

// Stats are the hub's counters for metrics.
type Stats struct {
	Clients       int
	Subscriptions int
	Delivered     uint64
	Dropped       uint64
	Lagged        uint64
	QueuedTotal   int
	ByTransport   map[string]int
}

// Stats returns a snapshot of the counters.
func (h *Hub) Stats() Stats {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.routesMu.RLock()
	subs := h.routes.count
	h.routesMu.RUnlock()
	st := Stats{Clients: len(h.clients), Subscriptions: subs,
		Delivered: h.delivered.Load(), Dropped: h.dropped.Load(), Lagged: h.lagged.Load()}
	st.ByTransport = map[string]int{}
	for c := range h.clients {
		st.QueuedTotal += c.QueueDepth()
		st.ByTransport[c.info.Transport]++
	}
	return st
}

// Clients returns a snapshot of every connected client.
func (h *Hub) Clients() []*Client {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]*Client, 0, len(h.clients))
	for c := range h.clients {
		out = append(out, c)
	}
	return out
}

// Client finds a connected client by id.
func (h *Hub) Client(id string) (*Client, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for c := range h.clients {
		if c.id == id {
			return c, true
		}
	}
	return nil, false
}

// errTailEnded is Run's error when the log's tail stopped without an error
// while the hub was still running.
var errTailEnded = errors.New("hub: tail: the log's tail ended while the hub was running")

// Errors ending a client's stream.
var (
	ErrClosed   = errors.New("hub: client closed")
	ErrShutdown = errors.New("hub: server shutting down")
)

// LagError ends the stream of a client that fell behind. Resume holds, per
// subscription id, the seq to resubscribe from without a gap.
type LagError struct {
	Resume map[string]uint64
}

func (e *LagError) Error() string { return "hub: client fell behind" }

// First is the smallest resume point: where a client that reads the log
// as one stream (the compatibility dialects, SSE) resumes without a gap.
// 0 when the client had no subscription.
func (e *LagError) First() uint64 {
	var first uint64
	for _, seq := range e.Resume {
		if first == 0 || seq < first {
			first = seq
		}
	}
	return first
}

// WaitIdle waits until every network client has closed or ctx ends
// (shutdown drains connections before the server stops).
func (h *Hub) WaitIdle(ctx context.Context) {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		h.mu.Lock()
		n := 0
		for c := range h.clients {
			if c.info.Transport != InternalTransport {
				n++
			}
		}
		h.mu.Unlock()
		if n == 0 {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
