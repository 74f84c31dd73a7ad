package graphql

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/filter"
	"github.com/vigil-sec/vigil/internal/filter/dbsecfilter"
	"github.com/vigil-sec/vigil/internal/hub"
	"github.com/vigil-sec/vigil/internal/stats"
	"github.com/vigil-sec/vigil/internal/transport/graphql/generated"
)

// subscribe is every event subscription: one hub client per GraphQL
// subscription, its deliveries converted by conv (which may skip an event
// by returning false). A sharing subscription is read by its operation's
// goroutine (pullDeliveries); any other has a goroutine owned by the
// subscription. Either ends when the client completes or disconnects
// (ctx), or when the hub ends the stream (lag or shutdown); then the
// channel closes and gqlgen sends
// "complete" — or, after a lag, an "error" message for the operation whose
// error carries extensions {code: "LAGGED", resume_from: N}, sent after
// every event queued before the lag point (see lagError). The client
// resubscribes with fromSeq: resume_from; the connection and its other
// operations stay open.
func subscribe[T any](ctx context.Context, r *Resolver, m *filter.Matcher, from hub.Cursor, conv func(*event.Event) (T, bool)) (<-chan T, error) {
	p, err := reader(ctx)
	if err != nil {
		return nil, err
	}
	release, err := r.admitSub(ctx)
	if err != nil {
		return nil, err
	}
	c := r.deps.Hub.NewClient(hub.ClientInfo{Transport: Transport, Remote: remote(ctx), Principal: p, QueueSize: r.deps.QueueSize})
	if _, err := c.Subscribe(ctx, "graphql", m, from); err != nil {
		c.Close()
		release()
		return nil, fmt.Errorf("subscribe: %w", err)
	}
	// A subscription that can share (shareSource) is pulled by the
	// operation's slot, which executes only the events no subscriber of
	// its group has executed yet; otherwise a goroutine sends the
	// deliveries straight to gqlgen.
	if slot, shared, leave := shareSource[T](ctx, r, p); slot != nil {
		slot.pull = pullDeliveries(ctx, r, c, conv, func() { leave(); release() })
		return shared, nil
	}
	out := make(chan T, 64)
	send := func(v T) bool {
		select {
		case out <- v:
			return true
		case <-ctx.Done():
			return false
		}
	}
	go func() {
		defer release()
		defer close(out)
		defer c.Close()
		for {
			batch, err := c.Next(ctx)
			if err != nil {
				streamEnded(ctx, r, c, err)
				return
			}
			for _, d := range batch {
				if d.Event == nil {
					continue
				}
				v, ok := conv(d.Event)
				if !ok {
					continue
				}
				if !send(v) {
					return
				}
			}
		}
	}()
	return out, nil
}

// streamEnded handles the end of a subscription's hub stream (err from
// Next): after a lag, the operation's error names where to resume.
func streamEnded(ctx context.Context, r *Resolver, c *hub.Client, err error) {
	var lag *hub.LagError
	if errors.As(err, &lag) {
		r.deps.Logger.Warn("graphql subscription fell behind; closing it", "client", c.ID(), "resume_from", lag.Resume["graphql"])
		// Only a WebSocket operation (initWebsocket put its
		// connState in ctx) has gqlgen's subscription-error
		// slot; elsewhere the stream just ends.
		if _, ws := ctx.Value(connKey{}).(*connState); ws {
			transport.AddSubscriptionError(ctx, lagError(lag.Resume["graphql"]))
		}
	}
}

// pullDeliveries is the pull of a sharing subscription's slot: the next
// delivery of hub client c, converted by conv, read on the operation's
// own goroutine. When the stream ends (lag, shutdown) or the operation
// does (ctx, the subscription's context, ends: gqlgen cancels it when the
// client completes or disconnects, or the operation ends otherwise), the
// client is closed and done called, once.
func pullDeliveries[T any](ctx context.Context, r *Resolver, c *hub.Client, conv func(*event.Event) (T, bool), done func()) func(context.Context, func()) (shareItem, bool) {
	var once sync.Once
	finish := func() { once.Do(func() { c.Close(); done() }) }
	context.AfterFunc(ctx, finish)
	var (
		batch []hub.Delivery // valid until the next call of c.Next
		i     int
	)
	return func(opCtx context.Context, idle func()) (shareItem, bool) {
		for {
			for i < len(batch) {
				d := batch[i]
				i++
				if d.Event == nil {
					continue
				}
				if v, ok := conv(d.Event); ok {
					return shareItem{ev: d.Event, v: v}, true
				}
			}
			// What arrived meanwhile joins this wake-up's write; idle
			// (the held frames' write) only before waiting.
			b, err := c.TryNext()
			if b == nil && err == nil {
				if idle != nil {
					idle()
				}
				b, err = c.Next(opCtx)
			}
			if err != nil {
				streamEnded(ctx, r, c, err)
				finish()
				return shareItem{}, false
			}
			batch, i = b, 0
		}
	}
}

// lagError is the error that ends a subscription whose client fell behind:
// gqlgen sends it as the operation's "error" message after the events
// queued before the lag point.
func lagError(resumeFrom uint64) *gqlerror.Error {
	return &gqlerror.Error{
		Message:    fmt.Sprintf("subscription fell behind its queue; resubscribe with fromSeq: %d", resumeFrom),
		Extensions: map[string]any{"code": "LAGGED", "resume_from": resumeFrom},
	}
}

// named compiles a database-security subscription through the dialect's
// own translation (dbsecfilter.Config), plus an extra CEL condition if any.
func named(arg string, cat event.Category, c dbsecfilter.Config, extra string) (*filter.Matcher, error) {
	f, err := c.Filter([]event.Category{cat})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", arg, err)
	}
	if extra != "" {
		if f.Expr != "" {
			f.Expr = "(" + f.Expr + ") && (" + extra + ")"
		} else {
			f.Expr = extra
		}
	}
	return compile(arg, f)
}

func str(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

func lowerAll[T ~string](vs []T) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = strings.ToLower(string(v))
	}
	return out
}

// authActionsExpr is the CEL condition for a list of AuthAction values,
// consistent with authAction: a login with outcome failure is LOGIN_FAILED,
// not LOGIN.
func authActionsExpr(actions []generated.AuthAction) string {
	var terms []string
	for _, a := range actions {
		switch a {
		case generated.AuthActionLogin:
			terms = append(terms, `(action == "login" && outcome != "failure")`)
		case generated.AuthActionLoginFailed:
			terms = append(terms, `action == "login_failed" || (action == "login" && outcome == "failure")`)
		default:
			terms = append(terms, "action == "+strconv.Quote(strings.ToLower(string(a))))
		}
	}
	return strings.Join(terms, " || ")
}

func (s subscriptionResolver) AuthenticationEvents(ctx context.Context, filterUsername *string, filterActions []generated.AuthAction) (<-chan *generated.AuthenticationEvent, error) {
	m, err := named("authenticationEvents", event.CategoryAuthentication, dbsecfilter.Config{UsernameFilter: str(filterUsername)}, authActionsExpr(filterActions))
	if err != nil {
		return nil, err
	}
	return subscribe(ctx, s.Resolver, m, hub.Latest(), toAuthentication)
}

func (s subscriptionResolver) AuthorizationEvents(ctx context.Context, filterUsername, filterResource *string) (<-chan *generated.AuthorizationEvent, error) {
	m, err := named("authorizationEvents", event.CategoryAuthorization, dbsecfilter.Config{UsernameFilter: str(filterUsername), ResourceFilter: str(filterResource)}, "")
	if err != nil {
		return nil, err
	}
	return subscribe(ctx, s.Resolver, m, hub.Latest(), toAuthorization)
}

func (s subscriptionResolver) AuditLogStream(ctx context.Context, filterUsername *string, filterSeverity *generated.AuditSeverity, filterActions []string) (<-chan *generated.AuditLogEvent, error) {
	c := dbsecfilter.Config{UsernameFilter: str(filterUsername), EventTypes: filterActions}
	if filterSeverity != nil {
		c.SeverityFilter = strings.ToLower(string(*filterSeverity))
	}
	m, err := named("auditLogStream", event.CategoryAudit, c, "")
	if err != nil {
		return nil, err
	}
	return subscribe(ctx, s.Resolver, m, hub.Latest(), toAudit)
}

func (s subscriptionResolver) EncryptionEvents(ctx context.Context, filterActions []generated.EncryptionAction) (<-chan *generated.EncryptionEvent, error) {
	m, err := named("encryptionEvents", event.CategoryEncryption, dbsecfilter.Config{EventTypes: lowerAll(filterActions)}, "")
	if err != nil {
		return nil, err
	}
	return subscribe(ctx, s.Resolver, m, hub.Latest(), toEncryption)
}

func (s subscriptionResolver) RateLimitEvents(ctx context.Context, filterSourceIP *string, onlyBlocked *bool) (<-chan *generated.RateLimitEvent, error) {
	c := dbsecfilter.Config{SourceIPFilter: str(filterSourceIP), BlockedOnly: onlyBlocked != nil && *onlyBlocked}
	m, err := named("rateLimitEvents", event.CategoryRateLimit, c, "")
	if err != nil {
		return nil, err
	}
	return subscribe(ctx, s.Resolver, m, hub.Latest(), toRateLimit)
}

func (s subscriptionResolver) InsiderThreatAlerts(ctx context.Context, minThreatLevel *generated.ThreatLevel, filterUserID *string) (<-chan *generated.InsiderThreatEvent, error) {
	c := dbsecfilter.Config{UserIDFilter: str(filterUserID)}
	if minThreatLevel != nil {
		c.MinThreatLevel = strings.ToLower(string(*minThreatLevel))
	}
	m, err := named("insiderThreatAlerts", event.CategoryInsiderThreat, c, "")
	if err != nil {
		return nil, err
	}
	return subscribe(ctx, s.Resolver, m, hub.Latest(), toInsider)
}

func (s subscriptionResolver) MemoryHardeningEvents(ctx context.Context, filterEventTypes []generated.MemoryEventType) (<-chan *generated.MemoryHardeningEvent, error) {
	var terms []string
	for _, t := range filterEventTypes {
		stem := strconv.Quote(memoryStems[t])
		terms = append(terms, "action == "+stem+" || action.startsWith("+stem+` + "_")`)
	}
	m, err := named("memoryHardeningEvents", event.CategoryMemory, dbsecfilter.Config{}, strings.Join(terms, " || "))
	if err != nil {
		return nil, err
	}
	return subscribe(ctx, s.Resolver, m, hub.Latest(), toMemory)
}

func (s subscriptionResolver) CircuitBreakerEvents(ctx context.Context, filterCircuitID *string) (<-chan *generated.CircuitBreakerEvent, error) {
	m, err := named("circuitBreakerEvents", event.CategoryCircuitBreaker, dbsecfilter.Config{CircuitIDFilter: str(filterCircuitID)}, "")
	if err != nil {
		return nil, err
	}
	return subscribe(ctx, s.Resolver, m, hub.Latest(), toCircuit)
}

func (s subscriptionResolver) Events(ctx context.Context, f *generated.EventFilter, fromSeq *int) (<-chan *generated.Event, error) {
	m, err := compile("filter", nativeFilter(f))
	if err != nil {
		return nil, err
	}
	from := hub.Latest()
	if fromSeq != nil {
		if *fromSeq < 0 {
			return nil, errors.New("fromSeq: must be >= 0")
		}
		from = hub.FromSeq(uint64(*fromSeq))
	}
	return subscribe(ctx, s.Resolver, m, from, func(e *event.Event) (*generated.Event, bool) { return s.sharedEvent(e), true })
}

// detectionFilter maps DetectionFilter onto the native filter over
// detection events. Detection events carry the detection's severity and
// tactics as the event's own, and its status and rule id in data.
func detectionFilter(f *generated.DetectionFilter) (filter.Filter, hub.Cursor) {
	out := filter.Filter{Categories: []string{string(event.CategoryDetection)}, Types: []string{"detection.created", "detection.updated"}}
	from := hub.Latest()
	if f == nil {
		return out, from
	}
	out.Statuses = lowerAll(f.Statuses)
	out.Severities, out.MitreTactics = f.Severities, f.MitreTactics
	out.MinSeverity = str(f.MinSeverity)
	if len(f.RuleIds) > 0 {
		q := make([]string, len(f.RuleIds))
		for i, id := range f.RuleIds {
			q[i] = strconv.Quote(id)
		}
		out.Expr = "has(data.rule_id) && data.rule_id in [" + strings.Join(q, ", ") + "]"
	}
	if f.Since != nil {
		from = hub.FromTime(*f.Since) // replay changes since then, then live
	}
	return out, from
}

func (s subscriptionResolver) Detections(ctx context.Context, f *generated.DetectionFilter) (<-chan *generated.DetectionChange, error) {
	nf, from := detectionFilter(f)
	m, err := compile("filter", nf)
	if err != nil {
		return nil, err
	}
	return subscribe(ctx, s.Resolver, m, from, func(e *event.Event) (*generated.DetectionChange, bool) {
		d, ok := detectionFromData(e.Data)
		if !ok {
			return nil, false
		}
		return &generated.DetectionChange{Type: e.Type, Detection: toDetection(d), Event: toEvent(e)}, true
	})
}

// interval validates intervalSeconds (default 5, 1..3600).
func interval(arg *int) (time.Duration, int, error) {
	n := 5
	if arg != nil {
		n = *arg
	}
	if n < 1 || n > 3600 {
		return 0, 0, errors.New("intervalSeconds: must be from 1 to 3600")
	}
	return time.Duration(n) * time.Second, n, nil
}

// tick emits make(snapshot) right away and then every period until ctx
// ends. The goroutine is owned by the subscription.
func tick[T any](ctx context.Context, period time.Duration, release func(), produce func() T) <-chan T {
	out := make(chan T, 1)
	go func() {
		defer release()
		defer close(out)
		t := time.NewTicker(period)
		defer t.Stop()
		for {
			select {
			case out <- produce():
			case <-ctx.Done():
				return
			}
			select {
			case <-t.C:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}

func (s subscriptionResolver) SecurityMetrics(ctx context.Context, intervalSeconds *int) (<-chan *generated.SecurityMetrics, error) {
	p, err := reader(ctx)
	if err != nil {
		return nil, err
	}
	period, n, err := interval(intervalSeconds)
	if err != nil {
		return nil, err
	}
	if s.deps.Stats == nil {
		return nil, errors.New("metrics are not available")
	}
	release, err := s.admitSub(ctx)
	if err != nil {
		return nil, err
	}
	var prev int64 = -1
	return tick(ctx, period, release, func() *generated.SecurityMetrics {
		snap := s.withOpenDetections(ctx, p, s.deps.Stats.Snapshot(p))
		m := Metrics(snap, n, prev)
		prev = snap.TotalObserved
		return m
	}), nil
}

// Metrics builds one securityMetrics message. prevTotal is the previous
// message's total (-1 for the first message, whose interval count is the
// last minute scaled to the interval).
func Metrics(snap stats.Snapshot, intervalSeconds int, prevTotal int64) *generated.SecurityMetrics {
	inInterval := snap.TotalObserved - prevTotal
	if prevTotal < 0 {
		inInterval = snap.Events.LastMinute * int64(min(intervalSeconds, 60)) / 60
	}
	authN := snap.ByCategory[string(event.CategoryAuthentication)].LastMinute
	authF := snap.Failures[string(event.CategoryAuthentication)].LastMinute
	rate := 0.0
	if authN > 0 {
		rate = float64(authF) / float64(authN)
	}
	m := &generated.SecurityMetrics{
		Timestamp: snap.Timestamp, IntervalSeconds: intervalSeconds, EventsInInterval: int(inInterval),
		EventsPerSecond:  float64(inInterval) / float64(intervalSeconds),
		EventsLastMinute: int(snap.Events.LastMinute), EventsLastHour: int(snap.Events.LastHour),
		TotalEvents: int(snap.TotalObserved), AuthFailures: int(authF), AuthFailureRate: rate,
		BlockedRequests:    int(snap.Blocked.LastMinute),
		MemoryViolations:   int(snap.ByCategory[string(event.CategoryMemory)].LastMinute),
		InsiderThreats:     int(snap.ByCategory[string(event.CategoryInsiderThreat)].LastMinute),
		HighSeverityEvents: int(snap.HighSeverity.LastMinute),
		OpenDetections:     severityCounts(snap.OpenDetections),
		ByCategory:         []*generated.CategoryRate{},
	}
	for _, k := range stats.SortedKeys(snap.ByCategory) {
		w := snap.ByCategory[k]
		m.ByCategory = append(m.ByCategory, &generated.CategoryRate{Category: k, LastMinute: int(w.LastMinute),
			LastHour: int(w.LastHour), PerSecond: float64(w.LastMinute) / 60})
	}
	return m
}

func (s subscriptionResolver) SecurityPosture(ctx context.Context, intervalSeconds *int) (<-chan *generated.SecurityPosture, error) {
	p, err := reader(ctx)
	if err != nil {
		return nil, err
	}
	period, _, err := interval(intervalSeconds)
	if err != nil {
		return nil, err
	}
	if s.deps.Stats == nil {
		return nil, errors.New("posture is not available")
	}
	release, err := s.admitSub(ctx)
	if err != nil {
		return nil, err
	}
	return tick(ctx, period, release, func() *generated.SecurityPosture {
		snap := s.withOpenDetections(ctx, p, s.deps.Stats.Snapshot(p))
		post := stats.ComputePosture(snap)
		out := &generated.SecurityPosture{Timestamp: snap.Timestamp, Score: post.Score, Level: post.Level}
		for _, f := range post.Factors {
			out.Factors = append(out.Factors, &generated.PostureFactor{Name: f.Name, Description: f.Description,
				Value: f.Value, Penalty: f.Penalty, MaxPenalty: f.MaxPenalty})
		}
		return out
	}), nil
}
