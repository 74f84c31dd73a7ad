package tokens

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/vigil-sec/vigil/internal/auth"
)

// Conn is an open connection the enforcer may close. The hub's clients are
// the connections (auth/access adapts *hub.Client); tokens does not import
// the hub, so credentials stay inside the fan-out, not the reverse.
type Conn interface {
	ID() string
	Principal() *auth.Principal // nil: not authenticated, never kicked
	Kick(reason error)
}

// Conns lists the open connections a sweep checks.
type Conns interface {
	Conns() []Conn
}

// Enforcer closes open connections whose credential stopped being valid:
// opaque tokens revoked (on any node) or expired, JWTs past their exp, and
// JWTs revoked by jti or subject.
// Every streaming transport registers its connections as hub clients, so
// one sweep over the hub covers WebSocket (all dialects), SSE and GraphQL
// subscriptions. A kicked client ends with an error wrapping
// auth.ErrBadToken, which wsconn sends as close code 4001 and SSE as an
// end of stream. Connections that are not hub clients themselves (a
// GraphQL WebSocket carries any number of subscriptions, or none) register
// with Watch and are closed by the same sweep.
type Enforcer struct {
	Store    *Store          // nil: only expiry is enforced
	JWT      *JWTRevocations // nil: JWTs are not revocable
	Conns    Conns           // the hub's clients; nil: only Watch-ed connections
	Interval time.Duration   // default 1s
	Metrics  *auth.Metrics
	Logger   *slog.Logger

	kick chan struct{}

	mu     sync.Mutex
	kicked map[Conn]bool // kicked but not yet gone: do not count twice

	wmu     sync.Mutex
	watched map[*watch]struct{}
}

// watch is one connection registered with Watch.
type watch struct {
	p    *auth.Principal
	kick func(reason error)
}

// NewEnforcer returns an enforcer; call Run.
func NewEnforcer(s *Store, conns Conns, m *auth.Metrics, logger *slog.Logger) *Enforcer {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Enforcer{Store: s, Conns: conns, Interval: time.Second, Metrics: m, Logger: logger, kick: make(chan struct{}, 1)}
}

// Poke asks for a sweep now (after a local revocation) instead of at the
// next tick.
func (e *Enforcer) Poke() {
	select {
	case e.kick <- struct{}{}:
	default:
	}
}

// Run sweeps every Interval and on Poke until ctx ends. The caller owns
// this goroutine.
func (e *Enforcer) Run(ctx context.Context) {
	iv := e.Interval
	if iv <= 0 {
		iv = time.Second
	}
	t := time.NewTicker(iv)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-e.kick:
		}
		e.Sweep(time.Now())
	}
}

// Watch registers an open connection of p that is not a hub client: once
// p's credential is revoked or expires, a sweep calls kick (once, from the
// sweep's goroutine: it must not block) with an error wrapping
// auth.ErrBadToken. The caller must call the returned stop when the
// connection ends.
func (e *Enforcer) Watch(p *auth.Principal, kick func(reason error)) (stop func()) {
	w := &watch{p: p, kick: kick}
	e.wmu.Lock()
	if e.watched == nil {
		e.watched = map[*watch]struct{}{}
	}
	e.watched[w] = struct{}{}
	e.wmu.Unlock()
	return func() {
		e.wmu.Lock()
		delete(e.watched, w)
		e.wmu.Unlock()
	}
}

// Watching is the number of connections registered with Watch.
func (e *Enforcer) Watching() int {
	e.wmu.Lock()
	defer e.wmu.Unlock()
	return len(e.watched)
}

// invalid says why p's credential is no longer valid at now (nil: valid),
// with the metric label first.
func (e *Enforcer) invalid(p *auth.Principal, now time.Time) (string, error) {
	switch {
	case p.Expired(now):
		return "expired", auth.ErrTokenExpired
	case e.JWT != nil && e.JWT.Revoked(p):
		return "revoked", auth.ErrTokenRevoked
	case e.Store != nil:
		if ok, why := e.Store.Valid(p.ID, now); !ok {
			if why == "expired" {
				return why, auth.ErrTokenExpired
			}
			return why, auth.ErrTokenRevoked
		}
	}
	return "", nil
}

// sweepWatched kicks and forgets the watched connections whose credential
// is no longer valid, and returns how many.
func (e *Enforcer) sweepWatched(now time.Time) int {
	type kicked struct {
		w      *watch
		reason error
	}
	var gone []kicked
	e.wmu.Lock()
	for w := range e.watched {
		if label, reason := e.invalid(w.p, now); reason != nil {
			delete(e.watched, w) // kicked once
			gone = append(gone, kicked{w, reason})
			e.Logger.Info("closing connection: credential no longer valid", "token_id", w.p.ID, "reason", label)
			e.Metrics.ConnClosed(label)
		}
	}
	e.wmu.Unlock()
	for _, k := range gone {
		k.w.kick(k.reason)
	}
	return len(gone)
}

// Sweep closes every client whose principal is no longer valid at now and
// returns how many it closed.
func (e *Enforcer) Sweep(now time.Time) int {
	n := e.sweepWatched(now)
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.Conns == nil {
		return n
	}
	clients := e.Conns.Conns()
	if e.kicked == nil {
		e.kicked = map[Conn]bool{}
	}
	present := make(map[Conn]bool, len(e.kicked))
	defer func() {
		for c := range e.kicked {
			if !present[c] {
				delete(e.kicked, c)
			}
		}
	}()
	for _, c := range clients {
		if e.kicked[c] {
			present[c] = true
			continue
		}
		p := c.Principal()
		if p == nil {
			continue
		}
		label, reason := e.invalid(p, now)
		if reason == nil {
			continue
		}
		e.Logger.Info("closing connection: credential no longer valid", "client", c.ID(), "token_id", p.ID, "reason", label)
		e.Metrics.ConnClosed(label)
		c.Kick(reason)
		e.kicked[c] = true
		present[c] = true
		n++
	}
	return n
}
