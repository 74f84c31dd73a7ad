package outputs

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/domain"
)

// Status is one output as GET /api/v1/outputs shows it (never a secret:
// neither the type's options nor anything read from them).
type Status struct {
	Name    string   `json:"name"`
	Type    string   `json:"type"`
	Tenants []string `json:"tenants,omitempty"`
	// State: starting, running, retrying (the oldest message keeps
	// failing), stopped.
	State      string `json:"state"`
	Delivered  int64  `json:"delivered"`
	Failed     int64  `json:"failed"` // dead-lettered
	Suppressed int64  `json:"suppressed"`
	Retrying   int64  `json:"retrying"` // messages of the requests being retried
	// Pending is the consumer's lag: messages not yet acknowledged
	// (-1 when the consumer could not be asked).
	Pending       int64      `json:"pending"`
	LastError     string     `json:"last_error,omitempty"`
	LastErrorAt   *time.Time `json:"last_error_at,omitempty"`
	LastDelivered *time.Time `json:"last_delivered_at,omitempty"`
	MaxAge        string     `json:"max_age"`
	RateLimit     string     `json:"rate_limit,omitempty"`
	RepeatInt     string     `json:"repeat_interval,omitempty"`
	GroupWait     string     `json:"group_wait,omitempty"`
	// DigestInterval: the messages of the open digest show in Pending.
	DigestInterval string `json:"digest_interval,omitempty"`
	// Concurrency: requests in flight at once (omitted at 1).
	Concurrency int `json:"concurrency,omitempty"`
}

// lagTimeout bounds one consumer info request (REST and scrape).
const lagTimeout = 2 * time.Second

func (o *output) lag(ctx context.Context) int64 {
	ctx, cancel := context.WithTimeout(ctx, lagTimeout)
	defer cancel()
	info, err := o.cons.Info(ctx)
	if err != nil {
		return -1
	}
	return int64(info.NumPending) + int64(info.NumAckPending)
}

func (o *output) status(ctx context.Context) Status {
	s := Status{
		Name: o.def.Name, Type: o.def.Type.Name, Tenants: o.def.Tenants,
		Delivered: o.nDelivered.Load(), Failed: o.nFailed.Load(), Suppressed: o.nSuppressed.Load(), Retrying: o.nRetrying.Load(),
		Pending: o.lag(ctx), MaxAge: o.def.MaxAge.String(), RateLimit: o.def.RateLimit.String(),
	}
	if o.def.RepeatInterval > 0 {
		s.RepeatInt = o.def.RepeatInterval.String()
	}
	if o.def.GroupWait > 0 {
		s.GroupWait = o.def.GroupWait.String()
	}
	if o.def.DigestInterval > 0 {
		s.DigestInterval = o.def.DigestInterval.String()
	}
	if o.def.Concurrency > 1 {
		s.Concurrency = o.def.Concurrency
	}
	o.statMu.Lock()
	s.State, s.LastError = o.state, o.lastErr
	if !o.lastErrAt.IsZero() {
		t := o.lastErrAt.UTC()
		s.LastErrorAt = &t
	}
	if !o.lastOKAt.IsZero() {
		t := o.lastOKAt.UTC()
		s.LastDelivered = &t
	}
	o.statMu.Unlock()
	return s
}

// Statuses lists the outputs p may see, in config order.
func (m *Manager) Statuses(ctx context.Context, p *auth.Principal) []Status {
	out := []Status{}
	for _, o := range m.outputs {
		if visibleTo(p, o.def) {
			out = append(out, o.status(ctx))
		}
	}
	return out
}

// visibleTo: an admin of all tenants sees every output; a tenant admin
// only outputs limited to its own tenant (an output of every tenant, or
// of several, carries other tenants' events).
func visibleTo(p *auth.Principal, d Definition) bool {
	if p == nil || !p.IsAdmin() {
		return false
	}
	if p.IsGlobalAdmin() {
		return true
	}
	return len(d.Tenants) > 0 && !slices.ContainsFunc(d.Tenants, func(t string) bool { return !p.Administers(t) })
}

// TestResult is the answer of POST /api/v1/outputs/{name}/test.
type TestResult struct {
	Output string `json:"output"`
	OK     bool   `json:"ok"`
	Error  string `json:"error,omitempty"`
	// Permanent: retrying would not help (wrong key, refused request).
	Permanent bool    `json:"permanent,omitempty"`
	TookMS    float64 `json:"took_ms"`
	EventID   string  `json:"event_id"`
}

// ErrTestBusy: a test of this output is already running.
var ErrTestBusy = errors.New("a test of this output is already running")

// ErrNoOutput: no output by that name (or not visible to the caller).
var ErrNoOutput = errors.New("no such output")

// Test sends output name's labelled test message now and reports the
// result. One test per output at a time: a caller cannot pile up
// requests to a slow receiver.
func (m *Manager) Test(ctx context.Context, p *auth.Principal, name string) (TestResult, error) {
	o := m.byName[name]
	if o == nil || !visibleTo(p, o.def) {
		return TestResult{}, ErrNoOutput
	}
	if !o.testing.CompareAndSwap(false, true) {
		return TestResult{}, ErrTestBusy
	}
	defer o.testing.Store(false)
	tenant := ""
	if len(o.def.Tenants) > 0 {
		tenant = o.def.Tenants[0]
	}
	msg := TestMessage(name, tenant, m.opts.Now())
	if text, err := render(o.def.Template, name, m.opts.PublicURL, msg); err == nil {
		msg.Text = text
	} else {
		msg.Text, _ = render(defaultTemplate, name, m.opts.PublicURL, msg)
	}
	start := time.Now()
	err := o.send(ctx, []Message{msg})
	res := TestResult{Output: name, OK: err == nil, TookMS: float64(time.Since(start).Microseconds()) / 1000, EventID: msg.Event.ID}
	if err != nil {
		res.Error, res.Permanent = safeErr(err), IsPermanent(err)
	}
	return res, nil
}

// HandleList serves GET /api/v1/outputs (admin).
func (m *Manager) HandleList(w http.ResponseWriter, r *http.Request) {
	p, ok := auth.FromContext(r.Context())
	if !ok || !p.IsAdmin() {
		auth.WriteErr(w, domain.Errorf(domain.KindForbidden, "outputs are listed to admins only"))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"outputs": m.Statuses(r.Context(), p)})
}

// HandleTest serves POST /api/v1/outputs/{name}/test (admin).
func (m *Manager) HandleTest(w http.ResponseWriter, r *http.Request) {
	p, ok := auth.FromContext(r.Context())
	if !ok || !p.IsAdmin() {
		auth.WriteErr(w, domain.Errorf(domain.KindForbidden, "outputs are tested by admins only"))
		return
	}
	res, err := m.Test(r.Context(), p, r.PathValue("name"))
	switch {
	case errors.Is(err, ErrNoOutput):
		auth.WriteErr(w, domain.Errorf(domain.KindNotFound, "no output named %s", quote(r.PathValue("name"))))
	case errors.Is(err, ErrTestBusy):
		auth.WriteErr(w, domain.Errorf(domain.KindRateLimited, "%w", err))
	default:
		writeJSON(w, http.StatusOK, res)
	}
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// managerMetrics are the output metrics of one node.
type managerMetrics struct {
	deliveries *prometheus.CounterVec
	latency    *prometheus.HistogramVec
}

func newManagerMetrics(reg prometheus.Registerer, m *Manager) (*managerMetrics, error) {
	mm := &managerMetrics{
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_output_deliveries_total",
			Help: "Messages handled by each output, by result: delivered, retry (a failed attempt), dead_letter, suppressed (repeat_interval).",
		}, []string{"output", "result"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "vigil_output_delivery_seconds",
			Help:    "Time from an event's receipt (received_at) to its acceptance by the output's receiver.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 20),
		}, []string{"output"}),
	}
	if reg == nil {
		return mm, nil
	}
	lag := &lagCollector{m: m, desc: prometheus.NewDesc("vigil_output_lag", "Messages of the log not yet acknowledged by the output (its consumer's pending and in-flight).", []string{"output"}, nil)}
	for _, c := range []prometheus.Collector{mm.deliveries, mm.latency, lag} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return mm, nil
}

type lagCollector struct {
	m    *Manager
	desc *prometheus.Desc
}

func (c *lagCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *lagCollector) Collect(ch chan<- prometheus.Metric) {
	for _, o := range c.m.outputs {
		if n := o.lag(context.Background()); n >= 0 {
			ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n), o.def.Name)
		}
	}
}
