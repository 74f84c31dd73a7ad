package auth

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Metrics counts what identity and access refuse. (Fields dropped at ingest
// are counted by internal/metrics as vigil_sensitive_fields_dropped_total,
// fed by ingest.Observer.) All methods are
// safe on a nil *Metrics (tests and tools that do not export metrics).
type Metrics struct {
	authFailures    *prometheus.CounterVec
	limitRejections *prometheus.CounterVec
	connsClosed     *prometheus.CounterVec
}

// NewMetrics creates the counters and registers them with reg (nil: not
// registered, still counted).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_auth_failures_total",
			Help: "Requests and connections refused by authentication or authorization, by reason.",
		}, []string{"reason"}),
		limitRejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_limit_rejections_total",
			Help: "Connections or client messages refused by a limit (conns_per_token, conns_per_ip, message_rate, subscriptions, origin).",
		}, []string{"limit"}),
		connsClosed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_auth_connections_closed_total",
			Help: "Open connections closed because their credential was revoked or expired.",
		}, []string{"reason"}),
	}
	if reg != nil {
		reg.MustRegister(m.authFailures, m.limitRejections, m.connsClosed)
	}
	return m
}

// Register adds the counters to reg (for a Metrics created before the
// server's registry existed).
func (m *Metrics) Register(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.authFailures, m.limitRejections, m.connsClosed} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("auth: register metrics: %w", err)
		}
	}
	return nil
}

// AuthFailure counts one refused request or connection.
func (m *Metrics) AuthFailure(reason string) {
	if m != nil {
		m.authFailures.WithLabelValues(reason).Inc()
	}
}

// LimitRejected counts one refusal by a limit.
func (m *Metrics) LimitRejected(limit string) {
	if m != nil {
		m.limitRejections.WithLabelValues(limit).Inc()
	}
}

// ConnClosed counts one connection closed for reason ("revoked", "expired").
func (m *Metrics) ConnClosed(reason string) {
	if m != nil {
		m.connsClosed.WithLabelValues(reason).Inc()
	}
}

// LimitRejections reads the count of refusals by one limit (for tests and
// status reports).
func (m *Metrics) LimitRejections(limit string) float64 {
	if m == nil {
		return 0
	}
	var out dto.Metric
	if err := m.limitRejections.WithLabelValues(limit).Write(&out); err != nil {
		return 0
	}
	return out.GetCounter().GetValue()
}
