package graphql

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"sync"
	"sync/atomic"

	gql "github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/event"
)

// Shared execution of event subscriptions (issue 12, item 6).
//
// gqlgen executes a subscription's selection set and marshals the result
// once per subscriber and event. With many subscribers on the same query
// that is the dominant per-delivery cost (and most of the garbage), so
// subscriptions whose response for an event is necessarily identical share
// one executed, marshalled response:
//
//   - the share key is the operation as sent (query text, operation name,
//     variables as canonical JSON) plus everything that decides what the
//     principal may see: role (masking), tenant and category grant. Two
//     subscribers with a different role or tenant never share, even on the
//     same query;
//   - within a group, a response is shared only for the same delivered
//     *event.Event: the hub applies the policy (tenant, masking) before
//     delivery, and a masked copy is another pointer, so an event shown
//     masked to one subscriber and unmasked to another cannot collide
//     either (a second, independent guard).
//
// The first subscriber of a group to reach an event executes it (gqlgen,
// unchanged); the others of the group wait for it and reuse its response.
// A subscriber that is behind the group's window (shareWindow events)
// simply executes itself. Nothing is shared across groups.

// shareWindow is how many recent events each group keeps responses for.
const shareWindow = 32

// shareSlotKey carries a subscription operation's *shareSlot in ctx from
// shareExt.InterceptOperation to subscribe.
type shareSlotKey struct{}

// shareSlot connects one subscription operation to its resolver: subscribe
// fills it when the subscription can share, and the operation's response
// handler then pulls deliveries straight from the hub client (pull, on
// the operation's own goroutine: no goroutine in between to wake per
// delivery) and feeds gqlgen's channel only for the events it must
// execute itself.
type shareSlot struct {
	stats *shares
	group *shareGroup
	// pull returns the next delivery, or false once the stream has ended
	// (the subscription's resources are then released). It calls idle, if
	// not nil, before it waits for the hub.
	pull func(ctx context.Context, idle func()) (shareItem, bool)
	feed func(ctx context.Context, v any) bool // hands v to gqlgen's channel
	end  func()                                // closes gqlgen's channel
	// direct, when not nil, writes the operation's result messages
	// itself (directwrite.go); otherwise gqlgen sends them.
	direct *frameWriter
}

// shareItem is one delivery: the converted value for gqlgen and the hub's
// event it came from (the identity responses are shared by).
type shareItem struct {
	ev *event.Event
	v  any
}

// shareEntry is one event's response within a group. ready closes once
// resp is set; resp nil means the executing subscriber gave up (its
// context ended) and the others execute themselves. body is resp
// marshalled as gqlgen sends it (nil if that failed).
type shareEntry struct {
	ev    *event.Event
	resp  *gql.Response
	body  []byte
	ready chan struct{}
}

// shareGroup is the subscriptions with one share key.
type shareGroup struct {
	key  string
	refs int // guarded by shares.mu

	mu     sync.Mutex
	recent [shareWindow]*shareEntry
	next   int
	// latest is the entry claimed last: every subscriber of a group but
	// the first finds the event there without taking mu (with 1,000
	// subscribers on one query, mu was contended on every delivery).
	latest atomic.Pointer[shareEntry]
}

// claim returns ev's entry and whether the caller must execute it (it was
// not there: the caller now owns it and must call fill).
func (g *shareGroup) claim(ev *event.Event) (*shareEntry, bool) {
	if e := g.latest.Load(); e != nil && e.ev == ev {
		return e, false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, e := range g.recent {
		if e != nil && e.ev == ev {
			return e, false
		}
	}
	e := &shareEntry{ev: ev, ready: make(chan struct{})}
	g.recent[g.next] = e
	g.next = (g.next + 1) % shareWindow
	g.latest.Store(e)
	return e, true
}

// shares holds the live groups, so subscribers with one key find one
// another; a group leaves when its last subscription ends.
type shares struct {
	mu     sync.Mutex
	groups map[string]*shareGroup
	// executed and reused count responses executed by gqlgen for a
	// sharing subscription and responses taken from another's execution;
	// written the result frames written directly (directwrite.go).
	executed, reused, written atomic.Uint64
}

func (s *shares) join(key string) *shareGroup {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.groups == nil {
		s.groups = map[string]*shareGroup{}
	}
	g := s.groups[key]
	if g == nil {
		g = &shareGroup{key: key}
		s.groups[key] = g
	}
	g.refs++
	return g
}

func (s *shares) leave(g *shareGroup) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g.refs--
	if g.refs == 0 && s.groups[g.key] == g {
		delete(s.groups, g.key)
	}
}

// shareKey is the key of a subscription operation for principal p, or ""
// when it cannot be computed (then the subscription does not share).
func shareKey(oc *gql.OperationContext, p *auth.Principal) string {
	if oc == nil || p == nil {
		return ""
	}
	vars, err := json.Marshal(oc.Variables) // map keys sorted: canonical
	if err != nil {
		return ""
	}
	cats := make([]string, len(p.Categories))
	for i, c := range p.Categories {
		cats[i] = string(c)
	}
	slices.Sort(cats)
	// JSON-encoded parts: no separator inside a part can forge a key.
	k, err := json.Marshal([]any{string(p.Role), p.Tenant, cats, oc.OperationName, oc.RawQuery, json.RawMessage(vars)})
	if err != nil {
		return ""
	}
	return string(k)
}

// shareExt is the gqlgen extension that runs subscription operations
// through their slot (see the package comment above).
type shareExt struct{}

var _ interface {
	gql.HandlerExtension
	gql.OperationInterceptor
} = shareExt{}

func (shareExt) ExtensionName() string               { return "VigilSharedSubscriptions" }
func (shareExt) Validate(gql.ExecutableSchema) error { return nil }

func (shareExt) InterceptOperation(ctx context.Context, next gql.OperationHandler) gql.ResponseHandler {
	op := gql.GetOperationContext(ctx)
	if op == nil {
		return next(ctx)
	}
	var id string // the operation's WebSocket id, if known (directwrite.go)
	conn := wsConnOf(ctx)
	if conn != nil {
		id = conn.takeOperation(op)
	}
	if op.Operation == nil || op.Operation.Operation != ast.Subscription {
		return next(ctx)
	}
	slot := &shareSlot{}
	h := next(context.WithValue(ctx, shareSlotKey{}, slot))
	if slot.pull == nil {
		return h // the resolver did not share (or failed)
	}
	if id != "" {
		slot.direct = conn.resultWriter(id)
		if slot.direct != nil {
			slot.direct.written = &slot.stats.written
		}
	}
	return func(ctx context.Context) *gql.Response { return slot.respond(ctx, h) }
}

// respond produces the operation's next response: the group's shared one
// for the next delivered event if there is one, otherwise gqlgen's own
// execution (h), which it then shares. nil ends the stream, as in gqlgen.
// With a direct writer it writes the responses itself and returns only
// when the stream ends, or with a response it could not write directly.
//
// The direct writer's frames for the deliveries of one wake-up (the batch
// the hub handed over) go out together, in one write: a frame is held only
// while the next response is at hand, and everything held is written
// before the operation waits for anything (the hub, another subscriber's
// execution, its own) and before gqlgen sends a message of its own.
func (s *shareSlot) respond(ctx context.Context, h gql.ResponseHandler) *gql.Response {
	var flush func()
	if s.direct != nil {
		flush = func() {
			// A failed write closed the socket: the connection's reader
			// ends and cancels ctx, which ends this loop.
			_, _ = s.direct.flush()
		}
	}
	for {
		resp, body := s.nextResponse(ctx, h, flush)
		if resp == nil || s.direct == nil || body == nil {
			if flush != nil {
				flush()
			}
			return resp
		}
		if s.direct.add(body) != nil {
			continue // as above: ctx ends
		}
	}
}

// nextResponse is the response for the next delivered event and, when it
// is shared, its marshalled bytes. It calls idle, if not nil, before it
// waits or executes.
func (s *shareSlot) nextResponse(ctx context.Context, h gql.ResponseHandler, idle func()) (*gql.Response, []byte) {
	it, ok := s.pull(ctx, idle)
	if !ok {
		if ctx.Err() != nil {
			return nil, nil
		}
		s.end()
		return h(ctx), nil // gqlgen sees the closed channel and ends
	}
	e, owner := s.group.claim(it.ev)
	if !owner {
		select {
		case <-e.ready: // mostly: only the first subscriber of a group to reach an event waits
		default:
			if idle != nil {
				idle()
			}
			select {
			case <-e.ready:
			case <-ctx.Done():
				return nil, nil
			}
		}
		if e.resp != nil {
			s.stats.reused.Add(1)
			return e.resp, e.body // read-only from here on: only marshalled
		}
		// The executing subscriber gave up: execute this one ourselves.
		if idle != nil {
			idle()
		}
		if !s.feed(ctx, it.v) {
			return nil, nil
		}
		return h(ctx), nil
	}
	defer close(e.ready)
	if idle != nil {
		idle()
	}
	if !s.feed(ctx, it.v) {
		return nil, nil
	}
	resp := h(ctx)
	s.stats.executed.Add(1)
	if resp == nil {
		return nil, nil
	}
	// gqlgen reuses resp.Data's buffer for this operation's next
	// response: the shared one needs its own bytes.
	cp := *resp
	cp.Data = bytes.Clone(resp.Data)
	e.resp = &cp
	if b, err := json.Marshal(resp); err == nil { // as gqlgen's sendResponse
		e.body = b
	}
	return resp, e.body
}

// shareSource prepares the slot of ctx, when the operation can share: it
// returns the slot (nil: do not share, send to gqlgen's channel as usual),
// whose pull the caller must set, the channel to give gqlgen, and the
// function that leaves the group.
func shareSource[T any](ctx context.Context, r *Resolver, p *auth.Principal) (slot *shareSlot, out chan T, leave func()) {
	slot, _ = ctx.Value(shareSlotKey{}).(*shareSlot)
	if slot == nil {
		return nil, nil, nil
	}
	key := shareKey(gql.GetOperationContext(ctx), p)
	if key == "" {
		return nil, nil, nil
	}
	g := r.shares.join(key)
	// One slot: respond hands gqlgen one value right before it executes.
	out = make(chan T, 1)
	slot.stats, slot.group = &r.shares, g
	slot.feed = func(ctx context.Context, v any) bool {
		select {
		case out <- v.(T):
			return true
		case <-ctx.Done():
			return false
		}
	}
	slot.end = func() { close(out) }
	return slot, out, func() { r.shares.leave(g) }
}

// SharedExecutions reports, for subscriptions that share responses, how
// many responses gqlgen executed and how many were reused from another
// subscriber's execution of the same event.
func (s *Server) SharedExecutions() (executed, reused uint64) {
	return s.r.shares.executed.Load(), s.r.shares.reused.Load()
}

// SharedFramesWritten reports how many result messages of sharing
// subscriptions were written directly around the shared response bytes
// (directwrite.go) rather than marshalled again by gqlgen.
func (s *Server) SharedFramesWritten() uint64 { return s.r.shares.written.Load() }
