package inputs

import "github.com/prometheus/client_golang/prometheus"

// Metrics counts what every input receives, stores and fails on (issue 9,
// item 7), labelled by input ("syslog", "otlp", "falco", ...). One Metrics
// is registered once per server and shared by every input, so the metric
// names exist once in the registry.
type Metrics struct {
	Received *prometheus.CounterVec // records received, {input}
	Stored   *prometheus.CounterVec // records appended to the log, {input}
	Errors   *prometheus.CounterVec // records or requests refused, {input,reason}
}

// NewMetrics returns the input counters, not yet registered: register them
// once with Register.
func NewMetrics() *Metrics {
	return &Metrics{
		Received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_input_received_total", Help: "Records received by an input (syslog lines, OTLP log records, Falco alerts).",
		}, []string{"input"}),
		Stored: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_input_stored_total", Help: "Records of an input appended to the log as events.",
		}, []string{"input"}),
		Errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_input_errors_total", Help: "Records or requests an input refused or could not store, by reason.",
		}, []string{"input", "reason"}),
	}
}

// Register adds the counters to reg.
func (m *Metrics) Register(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.Received, m.Stored, m.Errors} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// Error counts n refusals of input for reason. A nil Metrics counts nothing
// (tests that build a handler without a registry).
func (m *Metrics) Error(input, reason string, n int) {
	if m != nil && n > 0 {
		m.Errors.WithLabelValues(input, reason).Add(float64(n))
	}
}

// Receive counts n records received by input.
func (m *Metrics) Receive(input string, n int) {
	if m != nil && n > 0 {
		m.Received.WithLabelValues(input).Add(float64(n))
	}
}

// Store counts n records of input appended to the log.
func (m *Metrics) Store(input string, n int) {
	if m != nil && n > 0 {
		m.Stored.WithLabelValues(input).Add(float64(n))
	}
}
