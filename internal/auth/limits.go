package auth

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/vigil-sec/vigil/internal/domain"
)

// LimitConfig bounds what one token, one address and one connection may
// use (SPEC 9). Zero fields take the defaults of DefaultLimits; a negative
// value disables that limit.
type LimitConfig struct {
	MaxConnsPerToken int     `json:"max_conns_per_token" yaml:"max_conns_per_token"`
	MaxConnsPerIP    int     `json:"max_conns_per_ip" yaml:"max_conns_per_ip"`
	MessagesPerSec   float64 `json:"messages_per_sec" yaml:"messages_per_sec"` // client messages per connection
	MessageBurst     int     `json:"message_burst" yaml:"message_burst"`
	MaxSubscriptions int     `json:"max_subscriptions" yaml:"max_subscriptions"` // per connection
	// MaxFilterCostPerToken bounds the filter cost (filter.Matcher.Cost: 1
	// per subscription, 10 with an expr) of one token's subscriptions
	// across all its connections and transports: what it can make the
	// dispatcher spend per event. Admin tokens are not counted.
	MaxFilterCostPerToken int `json:"max_filter_cost_per_token" yaml:"max_filter_cost_per_token"`
	// AllowedOrigins lists the browser origins ("https://soc.example.com",
	// "https://*.example.com", or "*") allowed to open streaming connections.
	// Empty means same-origin only. A request without an Origin header is a
	// non-browser client and is always allowed.
	AllowedOrigins []string `json:"allowed_origins,omitempty" yaml:"allowed_origins,omitempty"`
}

// DefaultLimits returns the defaults.
func DefaultLimits() LimitConfig {
	// The connection caps are high enough for `vigil bench` and dashboards
	// with many tabs, and low enough that one leaked token or one host
	// cannot take every file descriptor of a node.
	return LimitConfig{MaxConnsPerToken: 10_000, MaxConnsPerIP: 10_000, MessagesPerSec: 20, MessageBurst: 50, MaxSubscriptions: 100,
		MaxFilterCostPerToken: DefaultMaxFilterCostPerToken}
}

// DefaultMaxFilterCostPerToken: 1,000 plain subscriptions or 100 with an
// expr per token, which at ~0.4 µs per expr test caps one token's share
// of dispatch at ~40 µs per event (docs/security.md, "Filter cost per
// token"). A console tab costs 2 (12 with an expr filter).
const DefaultMaxFilterCostPerToken = 1000

func (c LimitConfig) withDefaults() LimitConfig {
	d := DefaultLimits()
	if c.MaxConnsPerToken == 0 {
		c.MaxConnsPerToken = d.MaxConnsPerToken
	}
	if c.MaxConnsPerIP == 0 {
		c.MaxConnsPerIP = d.MaxConnsPerIP
	}
	if c.MessagesPerSec == 0 {
		c.MessagesPerSec = d.MessagesPerSec
	}
	if c.MessageBurst == 0 {
		c.MessageBurst = d.MessageBurst
	}
	if c.MaxSubscriptions == 0 {
		c.MaxSubscriptions = d.MaxSubscriptions
	}
	if c.MaxFilterCostPerToken == 0 {
		c.MaxFilterCostPerToken = d.MaxFilterCostPerToken
	}
	return c
}

// LimitError is a refusal by a limit; Limit names it for metrics and
// clients, Status is the HTTP status for a refused request.
type LimitError struct {
	Limit  string
	Status int
	Reason string
}

func (e *LimitError) Error() string { return e.Reason }

// ErrLimit matches every *LimitError with errors.Is.
var ErrLimit = errors.New("limit exceeded")

// Is makes errors.Is(err, ErrLimit) true for limit refusals, and the
// refusal match the domain sentinel of its status (origin: forbidden, caps:
// rate limited), so domain.HTTPStatus of a LimitError is its Status and
// auth.WriteErr writes it without the caller choosing a status.
func (e *LimitError) Is(target error) bool {
	if target == ErrLimit {
		return true
	}
	t, ok := target.(*domain.Error)
	return ok && t.Msg == "" && t.Err == nil && t.Kind == domain.KindForStatus(e.Status) && t.Kind != domain.KindInternal
}

// Limiter enforces LimitConfig for every streaming transport: WebSocket
// (all dialects, through wsconn.Guard), SSE and GraphQL subscriptions call
// the same Admit, AllowMessage and AllowSubscribe. It is safe for
// concurrent use.
type Limiter struct {
	cfg     LimitConfig
	metrics *Metrics

	mu        sync.Mutex
	perToken  map[string]int
	perIP     map[string]int
	costs     map[string]int           // filter cost held per token id
	msgRates  map[string]*rate.Limiter // by connection id
	lastPrune time.Time
}

// NewLimiter returns a limiter for cfg; m may be nil.
func NewLimiter(cfg LimitConfig, m *Metrics) *Limiter {
	return &Limiter{cfg: cfg.withDefaults(), metrics: m,
		perToken: map[string]int{}, perIP: map[string]int{}, costs: map[string]int{}, msgRates: map[string]*rate.Limiter{}}
}

// Config returns the effective configuration.
func (l *Limiter) Config() LimitConfig { return l.cfg }

// Admit checks the Origin header and the connection caps for a new
// streaming connection by p. On success the caller must call release when
// the connection ends. On refusal status is 403 (origin) or 429 (caps).
// It implements wsconn.Guard.
func (l *Limiter) Admit(r *http.Request, p *Principal) (release func(), status int, err error) {
	if err := l.CheckOrigin(r); err != nil {
		l.metrics.LimitRejected("origin")
		return nil, http.StatusForbidden, err
	}
	ip := ClientIP(r)
	tokenKey := ""
	if p != nil {
		tokenKey = p.ID
	}
	l.mu.Lock()
	if max := l.cfg.MaxConnsPerToken; max > 0 && tokenKey != "" && l.perToken[tokenKey] >= max {
		l.mu.Unlock()
		l.metrics.LimitRejected("conns_per_token")
		return nil, http.StatusTooManyRequests, &LimitError{"conns_per_token", http.StatusTooManyRequests,
			fmt.Sprintf("too many connections for this token (limit %d)", max)}
	}
	// Loopback peers are not capped per IP: behind a local reverse proxy
	// every client shares 127.0.0.1, and the per-token cap still applies.
	if max := l.cfg.MaxConnsPerIP; max > 0 && !isLoopback(ip) && l.perIP[ip] >= max {
		l.mu.Unlock()
		l.metrics.LimitRejected("conns_per_ip")
		return nil, http.StatusTooManyRequests, &LimitError{"conns_per_ip", http.StatusTooManyRequests,
			fmt.Sprintf("too many connections from this address (limit %d)", max)}
	}
	if tokenKey != "" {
		l.perToken[tokenKey]++
	}
	l.perIP[ip]++
	l.mu.Unlock()
	return l.releaseOnce(func() {
		if tokenKey != "" {
			decrement(l.perToken, tokenKey, 1)
		}
		decrement(l.perIP, ip, 1)
	}), 0, nil
}

// releaseOnce returns a release function that runs undo under l.mu the
// first time it is called and does nothing after.
func (l *Limiter) releaseOnce(undo func()) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			undo()
		})
	}
}

// decrement takes n from m[key], deleting the key at zero so the maps
// hold only what is in use.
func decrement(m map[string]int, key string, n int) {
	if m[key] -= n; m[key] <= 0 {
		delete(m, key)
	}
}

// AllowMessage takes one client message on connection connID from its
// token bucket. It implements wsconn.Guard.
func (l *Limiter) AllowMessage(connID string) bool {
	if l.cfg.MessagesPerSec < 0 {
		return true
	}
	now := time.Now()
	l.mu.Lock()
	if now.Sub(l.lastPrune) > 10*time.Second {
		l.pruneLocked(now) // before the lookup, so the bucket in use survives
	}
	lim, ok := l.msgRates[connID]
	if !ok {
		lim = rate.NewLimiter(rate.Limit(l.cfg.MessagesPerSec), max(l.cfg.MessageBurst, 1))
		l.msgRates[connID] = lim
	}
	l.mu.Unlock()
	if lim.AllowN(now, 1) {
		return true
	}
	l.metrics.LimitRejected("message_rate")
	return false
}

// pruneLocked forgets buckets that have refilled completely: a full bucket
// behaves exactly like a new one, so forgetting it changes nothing and
// keeps memory bounded by the connections that are actually busy (the
// Guard interface has no per-connection release).
func (l *Limiter) pruneLocked(now time.Time) {
	l.lastPrune = now
	for id, lim := range l.msgRates {
		if lim.TokensAt(now) >= float64(lim.Burst()) {
			delete(l.msgRates, id)
		}
	}
}

// Forget drops the message bucket of a finished connection (optional:
// pruning reclaims it anyway).
func (l *Limiter) Forget(connID string) {
	l.mu.Lock()
	delete(l.msgRates, connID)
	l.mu.Unlock()
}

// AllowSubscribe reports whether a connection that already has current
// subscriptions may add one more.
func (l *Limiter) AllowSubscribe(current int) error {
	if max := l.cfg.MaxSubscriptions; max > 0 && current >= max {
		l.metrics.LimitRejected("subscriptions")
		return &LimitError{"subscriptions", http.StatusTooManyRequests,
			fmt.Sprintf("too many subscriptions on this connection (limit %d)", max)}
	}
	return nil
}

// Take reserves cost (a subscription's filter.Matcher.Cost) against p's
// token's MaxFilterCostPerToken; release returns it (once, however often
// it is called). Admin principals and a negative limit are not counted.
// A refusal is a *LimitError "filter_cost" (429). It implements
// hub.FilterBudget.
func (l *Limiter) Take(p *Principal, cost int) (release func(), err error) {
	max := l.cfg.MaxFilterCostPerToken
	if p == nil || p.Role == RoleAdmin || max < 0 {
		return func() {}, nil
	}
	key := p.ID
	l.mu.Lock()
	held := l.costs[key]
	if held+cost > max {
		l.mu.Unlock()
		l.metrics.LimitRejected("filter_cost")
		return nil, &LimitError{"filter_cost", http.StatusTooManyRequests,
			fmt.Sprintf("subscription refused: this token's subscriptions would cost %d of its filter budget of %d (1 per subscription, 10 with an expr; max_filter_cost_per_token)", held+cost, max)}
	}
	l.costs[key] = held + cost
	l.mu.Unlock()
	return l.releaseOnce(func() { decrement(l.costs, key, cost) }), nil
}

// CheckOrigin applies the Origin allow-list. No Origin header: a
// non-browser client, allowed. Otherwise the origin must be listed, or,
// with an empty list, be the request's own host (same-origin).
func (l *Limiter) CheckOrigin(r *http.Request) error {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return nil
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return &LimitError{"origin", http.StatusForbidden, fmt.Sprintf("origin %q is not allowed", origin)}
	}
	if len(l.cfg.AllowedOrigins) == 0 {
		if strings.EqualFold(u.Host, r.Host) {
			return nil
		}
		return &LimitError{"origin", http.StatusForbidden,
			fmt.Sprintf("origin %q is not allowed (same-origin only; configure allowed_origins)", origin)}
	}
	for _, allowed := range l.cfg.AllowedOrigins {
		if originMatches(allowed, u) {
			return nil
		}
	}
	return &LimitError{"origin", http.StatusForbidden, fmt.Sprintf("origin %q is not in the allow-list", origin)}
}

func originMatches(pattern string, u *url.URL) bool {
	if pattern == "*" {
		return true
	}
	p, err := url.Parse(pattern)
	if err != nil || !strings.EqualFold(p.Scheme, u.Scheme) {
		return false
	}
	if rest, ok := strings.CutPrefix(p.Host, "*."); ok {
		host := strings.ToLower(u.Host)
		return strings.HasSuffix(host, "."+strings.ToLower(rest))
	}
	return strings.EqualFold(p.Host, u.Host)
}

func isLoopback(ip string) bool {
	a, err := netip.ParseAddr(ip)
	return err == nil && a.IsLoopback()
}

// ClientIP is the connection's remote address without port. Forwarded
// headers are deliberately ignored: they are client-controlled unless a
// trusted proxy sets them, and the caps must not be trivially evaded.
func ClientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
