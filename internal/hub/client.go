package hub

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/filter"
)

// ClientInfo describes a connection for the connections API and metrics.
type ClientInfo struct {
	Transport string // "websocket", "sse", "graphql", "detections", ...
	Remote    string
	Principal *auth.Principal
	QueueSize int // 0: the hub default
	// QueueBytes bounds the queue in bytes of event JSON; 0: the hub
	// default, negative: no byte bound (in-process consumers, which read
	// decoded events and are bounded by QueueSize).
	QueueBytes int
	// OnReady, if set, is called (without blocking, possibly under the
	// client's lock: it must not call back into the client) whenever
	// deliveries or the end of the stream become available. Transports use
	// it to run a writer only while there is something to write, instead
	// of parking a goroutine per idle connection in Next.
	OnReady func()
	// OnEnd, if set, is called once, without the client's lock, when the
	// stream ends (Kick, Close, the hub's shutdown): a transport learns of
	// a kick without registering on Context (context.AfterFunc costs a
	// few hundred bytes per connection; SPEC 11 counts them).
	OnEnd func()
}

// Delivery is one item of a client's queue: an event for a subscription, or
// a pre-encoded control message (Raw) queued by the transport itself so
// that one writer owns the socket.
type Delivery struct {
	SubID string
	Event *event.Event
	Raw   []byte
}

// Client is one connection's view of the hub.
type Client struct {
	hub  *Hub
	id   string
	info ClientInfo // info.QueueBytes <= 0: no byte bound
	cap  int

	ctx    context.Context // ends when the client closes; stops replays
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	queue  []Delivery
	bytes  int // event JSON bytes in queue (when info.QueueBytes > 0)
	spare  []Delivery
	subs   map[string]*subscription
	closed bool
	err    error // why the stream ended (lag, kick, close)
	lag    map[string]uint64
	wake   chan struct{}
	space  chan struct{}
	depth  atomic.Int64
	since  int64 // connected at, UnixNano (8 bytes, not time.Time's 24: SPEC 11 counts them)

	// staged are this client's live deliveries of the chunk the hub is
	// dispatching, queued together by enqueueStaged; only the
	// dispatching goroutine touches them. A pointer, allocated on the
	// first delivery: a slice header would take the struct from the
	// 288-byte size class to 320 for every idle connection (SPEC 11).
	staged *[]stagedDelivery
}

// stagedDelivery is one live delivery waiting for the end of its chunk.
type stagedDelivery struct {
	sub *subscription
	d   Delivery
}

// NewClient registers a client. The caller must Close it.
func (h *Hub) NewClient(info ClientInfo) *Client {
	if info.QueueSize <= 0 {
		info.QueueSize = h.opts.QueueSize
	}
	if info.QueueBytes == 0 {
		info.QueueBytes = h.opts.QueueBytes
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &Client{hub: h, info: info, cap: info.QueueSize, ctx: ctx, cancel: cancel,
		subs: map[string]*subscription{}, space: make(chan struct{}, 1), since: time.Now().UnixNano()}
	if info.OnReady == nil {
		c.wake = make(chan struct{}, 1) // Next waits on it; OnReady clients never do
	}
	h.mu.Lock()
	h.nextID++
	c.id = "c" + strconv.FormatUint(h.nextID, 10)
	h.clients[c] = struct{}{}
	h.mu.Unlock()
	return c
}

// Context ends when the client's stream is ended by a kick (shutdown,
// revoked token, administrator) or by Close — not by a lag, whose notice
// the transport still has to deliver. A transport blocked on a stalled
// socket uses it to stop waiting.
func (c *Client) Context() context.Context { return c.ctx }

// ID is the client's id, unique within this node.
func (c *Client) ID() string { return c.id }

// Info returns what the client was created with.
func (c *Client) Info() ClientInfo { return c.info }

// ConnectedAt is when the client registered.
func (c *Client) ConnectedAt() time.Time { return time.Unix(0, c.since) }

// QueueDepth is the number of deliveries waiting for the writer.
func (c *Client) QueueDepth() int { return int(c.depth.Load()) }

// Filters returns the filter of each subscription by id.
func (c *Client) Filters() map[string]filter.Filter {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]filter.Filter, len(c.subs))
	for id, s := range c.subs {
		out[id] = s.matcher.Filter()
	}
	return out
}

// Cursor says where a subscription starts.
type Cursor struct {
	seq  uint64
	time time.Time
}

// Latest starts with the next event appended.
func Latest() Cursor { return Cursor{} }

// FromSeq starts at seq (inclusive).
func FromSeq(seq uint64) Cursor {
	if seq == 0 {
		seq = 1
	}
	return Cursor{seq: seq}
}

// FromTime starts at the first event stored at or after t.
func FromTime(t time.Time) Cursor { return Cursor{time: t} }

// ErrDuplicateSub is returned when a subscription id is already in use.
type ErrDuplicateSub string

func (e ErrDuplicateSub) Error() string {
	return fmt.Sprintf("subscription %q already exists", string(e))
}

// Subscribe adds a subscription and returns the head seq at that moment.
// With a cursor in the past, matching events from the log are delivered
// first, then live ones, with no gap and no duplicate. A subscription
// over the principal's filter budget (Options.Budget) is refused with
// the budget's error.
func (c *Client) Subscribe(ctx context.Context, id string, m *filter.Matcher, from Cursor) (uint64, error) {
	return c.SubscribeAnnounced(ctx, id, m, from, nil)
}

// SubscribeAnnounced is Subscribe with announce (when non-nil) called once
// the subscription is admitted and before it can deliver anything: a
// transport's acknowledgement sent there precedes the subscription's
// events and never precedes a refusal by the budget. An error from
// announce ends the call with it.
func (c *Client) SubscribeAnnounced(ctx context.Context, id string, m *filter.Matcher, from Cursor, announce func() error) (uint64, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return 0, ErrClosed
	}
	if _, dup := c.subs[id]; dup {
		c.mu.Unlock()
		return 0, ErrDuplicateSub(id)
	}
	c.mu.Unlock()

	start := from.seq
	if !from.time.IsZero() {
		seq, err := c.hub.src.SeqForTime(ctx, from.time)
		if err != nil {
			return 0, fmt.Errorf("hub: subscribe: %w", err)
		}
		start = seq
	}
	release := func() {}
	if b := c.hub.opts.Budget; b != nil {
		var err error
		if release, err = b.Take(c.info.Principal, m.Cost()); err != nil {
			return 0, err
		}
	}
	if announce != nil {
		if err := announce(); err != nil {
			release()
			return 0, err
		}
	}
	s := &subscription{id: id, client: c, matcher: m, minSeq: start, release: release,
		masked: c.hub.opts.Masked != nil && c.hub.opts.Masked(c.info.Principal)}
	head := c.hub.dispatched.Load()
	// Any cursor, even one past the hub's head (the hub may trail the log,
	// and a time cursor on a quiet log points past it), goes through the
	// catch-up: it reads what the log already has and parks live events,
	// so nothing between the cursor and the live tail is lost.
	replay := start != 0
	if replay {
		s.catching.Store(true)
		s.next = start
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		release()
		return 0, ErrClosed
	}
	if _, dup := c.subs[id]; dup { // a concurrent Subscribe with the same id won
		c.mu.Unlock()
		release()
		return 0, ErrDuplicateSub(id)
	}
	c.subs[id] = s
	c.mu.Unlock()
	c.hub.addSub(s)
	if replay {
		c.wg.Add(1)
		go func() { // owned by the client: stops with c.ctx
			defer c.wg.Done()
			if err := s.catchUp(c.ctx); err != nil && c.ctx.Err() == nil {
				c.hub.log.Warn("replay failed", "client", c.id, "sub", id, "err", err)
				c.end(fmt.Errorf("hub: replay: %w", err))
			}
		}()
	}
	return head, nil
}

// Unsubscribe removes a subscription; false if there was none.
func (c *Client) Unsubscribe(id string) bool {
	c.mu.Lock()
	s, ok := c.subs[id]
	delete(c.subs, id)
	c.mu.Unlock()
	if !ok {
		return false
	}
	s.stopped.Store(true)
	c.hub.removeSubs(s)
	s.releaseBudget()
	return true
}

// Subscriptions is the number of live subscriptions.
func (c *Client) Subscriptions() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.subs)
}

// SendRaw queues a control message behind the events already queued. It is
// not subject to the lag limit: control messages are few and answer the
// client's own requests.
func (c *Client) SendRaw(b []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	c.queue = append(c.queue, Delivery{Raw: b})
	c.depth.Store(int64(len(c.queue)))
	c.signal()
	return nil
}

func (c *Client) signal() {
	if c.info.OnReady != nil {
		c.info.OnReady()
		return
	}
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// enqueue adds an event delivery. Live deliveries never block: a full queue
// marks the client lagged. Replay deliveries (block=true) wait for space,
// since replay must not outrun the client but must not drop either.
func (c *Client) enqueue(d Delivery, block bool) bool {
	for {
		c.mu.Lock()
		if c.closed || c.lag != nil {
			if c.lag != nil {
				c.noteLag(d)
			}
			c.mu.Unlock()
			return false
		}
		size, capBytes := 0, c.info.QueueBytes
		if capBytes > 0 && d.Event != nil {
			size = len(d.Event.JSON()) // encoded once per event (per masked form), shared
		}
		// One delivery always fits an empty queue, whatever its size.
		if len(c.queue) < c.cap && (capBytes <= 0 || c.bytes+size <= capBytes || len(c.queue) == 0) {
			c.queue = append(c.queue, d)
			c.bytes += size
			c.depth.Store(int64(len(c.queue)))
			// Wake the reader only when the queue stops being empty: a
			// non-empty queue already has a wake pending or a reader
			// about to take it (TryNext takes the whole queue), and
			// waking per delivery was a tenth of the fan-out's CPU.
			// A live delivery comes from the dispatching goroutine,
			// which wakes the client once its chunk of events is
			// offered (dispatchChunk): a writer then takes them all.
			if len(c.queue) == 1 {
				if block {
					c.signal()
				} else {
					c.hub.wakes = append(c.hub.wakes, c)
				}
			}
			c.mu.Unlock()
			return true
		}
		if !block {
			c.lag = map[string]uint64{}
			c.noteLag(d)
			c.hub.lagged.Add(1)
			c.signal()
			c.mu.Unlock()
			return false
		}
		c.mu.Unlock()
		select {
		case <-c.space:
		case <-c.ctx.Done():
			return false
		}
	}
}

// enqueueStaged queues the deliveries the dispatcher staged for this
// client during one chunk, under one lock instead of one per delivery:
// with 1,000 writers reading their queues on the other core, each lock
// of a client's mutex moved its cache line between the cores, and that
// was a tenth of the server's CPU at saturation. The outcome of each
// delivery is what enqueue would have given it, in the same order.
func (c *Client) enqueueStaged() {
	staged := *c.staged
	accepted := 0
	c.mu.Lock()
	for i, sd := range staged {
		d := sd.d
		if c.closed || c.lag != nil {
			if c.lag != nil {
				for _, rest := range staged[i:] {
					c.noteLag(rest.d)
				}
			}
			break
		}
		size, capBytes := 0, c.info.QueueBytes
		if capBytes > 0 && d.Event != nil {
			size = len(d.Event.JSON())
		}
		if len(c.queue) < c.cap && (capBytes <= 0 || c.bytes+size <= capBytes || len(c.queue) == 0) {
			c.queue = append(c.queue, d)
			c.bytes += size
			if len(c.queue) == 1 {
				c.hub.wakes = append(c.hub.wakes, c)
			}
			accepted++
			continue
		}
		c.lag = map[string]uint64{}
		for _, rest := range staged[i:] {
			c.noteLag(rest.d)
		}
		c.hub.lagged.Add(1)
		c.signal()
		break
	}
	c.depth.Store(int64(len(c.queue)))
	c.mu.Unlock()
	for _, sd := range staged[:accepted] {
		sd.sub.delivered(sd.d.Event)
	}
	clear(staged) // the events belong to the queue now
	*c.staged = staged[:0]
	if cap(staged) > 4*chunkEvents {
		*c.staged = nil // many subscriptions matched at once: do not keep it
	}
}

// noteLag records the first undelivered seq of each subscription.
func (c *Client) noteLag(d Delivery) {
	if _, ok := c.lag[d.SubID]; !ok && d.Event != nil {
		c.lag[d.SubID] = d.Event.Seq
		c.hub.dropped.Add(1)
	}
}

// Next blocks until deliveries are queued and returns all of them, so the
// transport can write them in as few socket writes as possible. Once the
// queue is drained after a lag or close it returns the reason: a *LagError,
// ErrShutdown, ErrClosed or a kick reason. The returned slice is valid until
// the next call.
func (c *Client) Next(ctx context.Context) ([]Delivery, error) {
	if c.wake == nil {
		panic("hub: Next on a client created with OnReady; use TryNext")
	}
	for {
		batch, err := c.TryNext()
		if batch != nil || err != nil {
			return batch, err
		}
		select {
		case <-c.wake:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// TryNext is Next without waiting: (nil, nil) when nothing is queued and
// the stream has not ended.
func (c *Client) TryNext() ([]Delivery, error) {
	c.mu.Lock()
	// The batch handed out by the previous call is done with: drop its
	// event references, or every idle client would pin its last batch of
	// events in memory (~100 MB across 1,000 clients after a burst).
	clear(c.spare)
	if len(c.queue) > 0 {
		batch := c.queue
		c.queue = c.spare[:0]
		c.bytes = 0
		c.spare = batch
		if cap(batch) > 512 {
			c.spare = nil // do not keep a burst's capacity for an idle client
		}
		c.depth.Store(0)
		c.mu.Unlock()
		select {
		case c.space <- struct{}{}:
		default:
		}
		c.hub.delivered.Add(uint64(len(batch)))
		return batch, nil
	}
	if c.lag != nil {
		resume := make(map[string]uint64, len(c.subs))
		var others []*subscription
		for id, s := range c.subs {
			if seq, ok := c.lag[id]; ok {
				resume[id] = seq
			} else {
				others = append(others, s)
			}
		}
		c.mu.Unlock()
		// resumePoint takes the subscription's lock, which is ordered
		// before the client's: ask it only after releasing ours.
		for _, s := range others {
			resume[s.id] = s.resumePoint()
		}
		return nil, &LagError{Resume: resume}
	}
	defer c.mu.Unlock()
	if c.closed {
		if c.err == nil {
			return nil, ErrClosed
		}
		return nil, c.err
	}
	return nil, nil
}

// Kick ends the client's stream with reason (revoked token, shutdown,
// admin action); the transport sees it from Next after the queue drains.
func (c *Client) Kick(reason error) { c.end(reason) }

func (c *Client) end(reason error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	c.err = reason
	c.signal()
	c.mu.Unlock()
	c.cancel()
	if c.info.OnEnd != nil {
		c.info.OnEnd()
	}
}

// Close unregisters the client, stops its replays and waits for them.
func (c *Client) Close() {
	c.end(ErrClosed)
	c.mu.Lock()
	subs := make([]*subscription, 0, len(c.subs))
	for _, s := range c.subs {
		s.stopped.Store(true)
		subs = append(subs, s)
	}
	c.mu.Unlock()
	c.hub.removeSubs(subs...)
	for _, s := range subs {
		s.releaseBudget()
	}
	c.hub.mu.Lock()
	delete(c.hub.clients, c)
	c.hub.mu.Unlock()
	c.wg.Wait()
}

// HubHead is the seq of the last event the hub has dispatched.
func (c *Client) HubHead() uint64 { return c.hub.Head() }

// HasSubscription reports whether id names a live subscription.
func (c *Client) HasSubscription(id string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.subs[id]
	return ok
}

// Ended reports whether the stream has ended (closed or lagged): TryNext
// will return the reason once the queue is drained.
func (c *Client) Ended() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed || c.lag != nil
}
