package tokens

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/hub"
)

// Enforcer closes open connections whose credential stopped being valid:
// opaque tokens revoked (on any node) or expired, JWTs past their exp, and
// JWTs revoked by jti or subject.
// Every streaming transport registers its connections as hub clients, so
// one sweep over the hub covers WebSocket (all dialects), SSE and GraphQL.
// A kicked client ends with an error wrapping auth.ErrBadToken, which
// wsconn sends as close code 4001 and SSE as an end of stream.
type Enforcer struct {
	Store    *Store          // nil: only expiry is enforced
	JWT      *JWTRevocations // nil: JWTs are not revocable
	Hub      *hub.Hub
	Interval time.Duration // default 1s
	Metrics  *auth.Metrics
	Logger   *slog.Logger

	kick chan struct{}

	mu     sync.Mutex
	kicked map[*hub.Client]bool // kicked but not yet gone: do not count twice
}

// NewEnforcer returns an enforcer; call Run.
func NewEnforcer(s *Store, h *hub.Hub, m *auth.Metrics, logger *slog.Logger) *Enforcer {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Enforcer{Store: s, Hub: h, Interval: time.Second, Metrics: m, Logger: logger, kick: make(chan struct{}, 1)}
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

// Sweep closes every client whose principal is no longer valid at now and
// returns how many it closed.
func (e *Enforcer) Sweep(now time.Time) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	clients := e.Hub.Clients()
	if e.kicked == nil {
		e.kicked = map[*hub.Client]bool{}
	}
	present := make(map[*hub.Client]bool, len(e.kicked))
	n := 0
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
		p := c.Info().Principal
		if p == nil {
			continue
		}
		var reason error
		label := ""
		switch {
		case p.Expired(now):
			reason, label = auth.ErrTokenExpired, "expired"
		case e.JWT != nil && e.JWT.Revoked(p):
			reason, label = auth.ErrTokenRevoked, "revoked"
		case e.Store != nil:
			if ok, why := e.Store.Valid(p.ID, now); !ok {
				label = why
				reason = auth.ErrTokenRevoked
				if why == "expired" {
					reason = auth.ErrTokenExpired
				}
			}
		}
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
