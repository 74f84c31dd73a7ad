// Package access assembles identity and access for a running server: the
// authenticator chain (admin token, opaque tokens, JWTs), the one
// authorization and masking policy the hub and every REST read apply, the
// connection limiter every streaming transport calls, the admin token API
// and the enforcer that closes connections whose token was revoked. The
// server builds one Access and hands its parts to the transports; no
// transport constructs its own.
package access

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/auth/jwtauth"
	"github.com/vigil-sec/vigil/internal/auth/tokens"
	"github.com/vigil-sec/vigil/internal/config"
	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/hub"
)

// Config is the identity-and-access part of the serve configuration
// (YAML key "access"): config.Access, declared there so that the
// configuration model does not import this assembly.
type Config = config.Access

// Options are what New needs besides the configuration.
type Options struct {
	Config    Config
	JetStream jetstream.JetStream // for the token bucket
	// Replicas of the token and JWT revocation buckets (the stream's).
	Replicas   int
	AdminToken string // from auth.LoadOrCreateAdminToken; "" disables it
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

// Access is the assembled identity-and-access layer.
type Access struct {
	Auth     auth.Authenticator // admin token, then opaque tokens, then JWTs
	Policy   *auth.Policy
	Limiter  *auth.Limiter
	Tokens   *tokens.Store
	JWTRevs  *tokens.JWTRevocations // nil without JetStream
	Enforcer *tokens.Enforcer
	Handler  *tokens.Handler
	Metrics  *auth.Metrics
	JWT      *jwtauth.Authenticator // nil when no JWT key is configured
}

// AdminPrincipal is who the admin token authenticates as.
func AdminPrincipal() auth.Principal {
	return auth.Principal{ID: "admin", Name: "admin token", Role: auth.RoleAdmin, Tenant: auth.AllTenants}
}

// New builds the layer. ctx owns the JWKS refresh goroutine, if any.
func New(ctx context.Context, o Options) (*Access, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	for role := range o.Config.Masking {
		if _, err := auth.ParseRole(string(role)); err != nil {
			return nil, fmt.Errorf("access: masking: %w", err)
		}
	}
	a := &Access{Metrics: auth.NewMetrics(o.Registerer)}
	a.Policy = auth.NewPolicy(o.Config.Masking)
	a.Limiter = auth.NewLimiter(o.Config.Limits, a.Metrics)
	var chain auth.Chain
	if o.AdminToken != "" {
		chain = append(chain, auth.NewStaticToken(o.AdminToken, AdminPrincipal()))
	}
	if o.JetStream != nil {
		st, err := tokens.OpenWith(ctx, o.JetStream, o.Logger, tokens.BucketOptions{Replicas: o.Replicas})
		if err != nil {
			return nil, err
		}
		a.Tokens = st
		chain = append(chain, st)
		if a.JWTRevs, err = tokens.OpenJWTRevocationsWith(ctx, o.JetStream, o.Logger, tokens.BucketOptions{Replicas: o.Replicas}); err != nil {
			return nil, err
		}
		jwtRevs := a.JWTRevs
		a.Policy.SetRevocationCheck(func(p *auth.Principal) bool { return st.IsRevoked(p.ID) || jwtRevs.Revoked(p) })
	}
	if o.Config.JWT.Enabled() {
		j, err := jwtauth.New(ctx, o.Config.JWT)
		if err != nil {
			return nil, fmt.Errorf("access: %w", err)
		}
		a.JWT = j
		if a.JWTRevs != nil {
			chain = append(chain, a.JWTRevs.Checked(j))
		} else {
			chain = append(chain, j)
		}
	}
	a.Auth = countingAuth{chain: chain, m: a.Metrics}
	a.Enforcer = tokens.NewEnforcer(a.Tokens, nil, a.Metrics, o.Logger)
	a.Enforcer.JWT = a.JWTRevs
	if a.Tokens != nil {
		a.Handler = &tokens.Handler{Store: a.Tokens, JWT: a.JWTRevs, Enforcer: a.Enforcer, Logger: o.Logger}
	}
	return a, nil
}

// HubPolicy is the policy to put in hub.Options.Policy and rest.Events.
func (a *Access) HubPolicy() hub.Policy { return a.Policy.Visible }

// HubMasked is hub.Options.Masked: whether the principal's role is shown
// masked events.
func (a *Access) HubMasked(p *auth.Principal) bool { return p != nil && a.Policy.Masks(p.Role) }

// Run keeps the token cache current and closes connections whose token is
// revoked or expired, until ctx ends. h is the server's hub.
func (a *Access) Run(ctx context.Context, h *hub.Hub) {
	a.Enforcer.Conns = HubConns(h) // set before the goroutines below start: no race
	var wg sync.WaitGroup
	if a.Tokens != nil {
		wg.Add(1)
		go func() { // owned by Run: ends with ctx
			defer wg.Done()
			_ = a.Tokens.Run(ctx)
		}()
	}
	if a.JWTRevs != nil {
		wg.Add(1)
		go func() { // owned by Run: ends with ctx
			defer wg.Done()
			_ = a.JWTRevs.Run(ctx)
		}()
	}
	a.Enforcer.Run(ctx)
	wg.Wait()
}

// Register adds the admin token routes (/api/v1/tokens) to mux.
func (a *Access) Register(mux *http.ServeMux, wrap func(http.Handler) http.Handler) {
	if a.Handler != nil {
		a.Handler.Register(mux, wrap)
	}
}

// countingAuth counts refusals by reason; the token itself never reaches
// a log or a label.
type countingAuth struct {
	chain auth.Chain
	m     *auth.Metrics
}

func (c countingAuth) Authenticate(ctx context.Context, tok string) (*auth.Principal, error) {
	p, err := c.chain.Authenticate(ctx, tok)
	if err != nil {
		c.m.AuthFailure(reason(err))
	}
	return p, err
}

func reason(err error) string {
	switch {
	case errors.Is(err, auth.ErrTokenExpired):
		return "expired"
	case errors.Is(err, auth.ErrTokenNotYet):
		return "not_yet_valid"
	case errors.Is(err, auth.ErrTokenRevoked):
		return "revoked"
	case errors.Is(err, auth.ErrTokenMalformed):
		return "malformed"
	case err == auth.ErrBadToken:
		return "unknown_token"
	}
	return "rejected"
}

// ValidateCategories is a helper for CLI flags: it checks a list of names.
func ValidateCategories(names []string) error {
	for _, n := range names {
		if _, err := event.ParseCategory(n); err != nil {
			return err
		}
	}
	return nil
}

// HubConns gives the token enforcer the hub's clients as its connections
// (tokens does not import the hub).
func HubConns(h *hub.Hub) tokens.Conns { return hubConns{h} }

type hubConns struct{ h *hub.Hub }

func (hc hubConns) Conns() []tokens.Conn {
	cs := hc.h.Clients()
	out := make([]tokens.Conn, len(cs))
	for i, c := range cs {
		out[i] = hubConn{c}
	}
	return out
}

// hubConn is comparable (one pointer): the enforcer keys its kicked set on it.
type hubConn struct{ c *hub.Client }

func (c hubConn) ID() string                 { return c.c.ID() }
func (c hubConn) Principal() *auth.Principal { return c.c.Info().Principal }
func (c hubConn) Kick(reason error)          { c.c.Kick(reason) }
