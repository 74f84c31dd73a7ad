package inputs

import (
	"log/slog"
	"time"

	"golang.org/x/time/rate"
)

// Refusals counts what an HTTP input (Falco, OTLP, CEF over HTTP) refuses
// and logs it at a bounded rate: a misconfigured sender would otherwise
// write one log line per request. The first 3 are logged, then one per
// 10 s; the counters count every one.
type Refusals struct {
	input, msg string
	metrics    *Metrics     // nil: not counted
	logger     *slog.Logger // nil: not logged
	log        rate.Sometimes
}

// NewRefusals returns the refusal counter of input, logging msg; m and
// logger may be nil.
func NewRefusals(input, msg string, m *Metrics, logger *slog.Logger) *Refusals {
	return &Refusals{input: input, msg: msg, metrics: m, logger: logger, log: rate.Sometimes{First: 3, Interval: 10 * time.Second}}
}

// Refuse counts errors refusals for reason in vigil_input_errors_total and
// dropped records in vigil_input_dropped_total, and logs the refusal (with
// args) at the bounded rate.
func (r *Refusals) Refuse(remote, reason string, errors, dropped int, err error, args ...any) {
	r.metrics.Count(r.input, reason, errors)
	if r.metrics != nil && dropped > 0 {
		r.metrics.Dropped.WithLabelValues(r.input).Add(float64(dropped))
	}
	if r.logger == nil {
		return
	}
	r.log.Do(func() {
		r.logger.Warn(r.msg, append([]any{"remote", remote, "reason", reason, "err", err}, args...)...)
	})
}
