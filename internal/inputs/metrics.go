package inputs

import (
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the per-input counters every input shares (issue 9 item 7):
// received, stored, dropped and errors by reason, and the parse time.
// The collectors are labelled by input, so several inputs register them
// once on the server's registry and share them (NewMetrics returns the
// already registered collectors the second time).
type Metrics struct {
	Received  *prometheus.CounterVec   // {input}
	Stored    *prometheus.CounterVec   // {input}
	Dropped   *prometheus.CounterVec   // {input}
	Errors    *prometheus.CounterVec   // {input,reason}
	ParseTime *prometheus.HistogramVec // {input}

	// errLog bounds the error logging: one line per input and reason per
	// interval, carrying how many were not logged since.
	mu     sync.Mutex
	errLog map[string]*logSlot
	every  time.Duration
}

type logSlot struct {
	last       time.Time
	suppressed int
}

// NewMetrics registers the input metrics on reg (nil: not registered,
// for tests).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		Received: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vigil_input_received_total",
			Help: "Records an input received (syslog messages, OTLP log records, ...), before parsing."}, []string{"input"}),
		Stored: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vigil_input_stored_total",
			Help: "Events from an input acknowledged by the log."}, []string{"input"}),
		Dropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vigil_input_dropped_total",
			Help: "Records from an input that did not become a stored event (the reason is in vigil_input_errors_total)."}, []string{"input"}),
		Errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vigil_input_errors_total",
			Help: "Input errors by reason: undecodable records, oversize messages, refused peers, rejected events, failed appends."}, []string{"input", "reason"}),
		ParseTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "vigil_input_parse_seconds",
			Help:    "Time to decode and map one record into an event.",
			Buckets: []float64{1e-6, 5e-6, 1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 1e-2}}, []string{"input"}),
		errLog: map[string]*logSlot{},
		every:  10 * time.Second,
	}
	if reg == nil {
		return m, nil
	}
	var err error
	if m.Received, err = register(reg, m.Received); err != nil {
		return nil, err
	}
	if m.Stored, err = register(reg, m.Stored); err != nil {
		return nil, err
	}
	if m.Dropped, err = register(reg, m.Dropped); err != nil {
		return nil, err
	}
	if m.Errors, err = register(reg, m.Errors); err != nil {
		return nil, err
	}
	if m.ParseTime, err = register(reg, m.ParseTime); err != nil {
		return nil, err
	}
	return m, nil
}

// register registers c, or returns the collector already registered under
// its name (a second input's NewMetrics on the same registry).
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing, nil
			}
		}
		return c, err
	}
	return c, nil
}

// Error counts n errors of input for reason and logs the first one, and
// then at most one per reason every ten seconds (a hostile sender must not
// be able to flood the log), with how many were not logged in between.
func (m *Metrics) Error(logger *slog.Logger, input, reason string, n int, msg string, args ...any) {
	m.Errors.WithLabelValues(input, reason).Add(float64(n))
	if logger == nil {
		return
	}
	key := input + "\x00" + reason
	now := time.Now()
	m.mu.Lock()
	s := m.errLog[key]
	if s == nil {
		s = &logSlot{}
		m.errLog[key] = s
	}
	if !s.last.IsZero() && now.Sub(s.last) < m.every {
		s.suppressed += n
		m.mu.Unlock()
		return
	}
	suppressed := s.suppressed
	s.last, s.suppressed = now, 0
	m.mu.Unlock()
	args = append(args, "input", input, "reason", reason)
	if suppressed > 0 {
		args = append(args, "not_logged_since_last", suppressed)
	}
	logger.Warn(msg, args...)
}

// Count counts n refusals of input for reason without logging (for inputs
// that log their refusals themselves). A nil Metrics counts nothing (tests
// that build a handler without a registry).
func (m *Metrics) Count(input, reason string, n int) {
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
