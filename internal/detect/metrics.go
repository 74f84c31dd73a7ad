package detect

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// RegisterMetrics exposes the engine's counters (SPEC 10: rule evaluation
// time among them) on reg. They are read at scrape time from the same
// atomics Stats uses, so evaluation pays nothing for them.
func (e *Engine) RegisterMetrics(reg prometheus.Registerer) error {
	cs := []prometheus.Collector{
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "vigil_detect_events_evaluated_total",
			Help: "Events evaluated against the detection rules."}, func() float64 { return float64(e.events.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "vigil_detect_rule_evaluation_seconds_total",
			Help: "Time spent evaluating detection rules (divide by events evaluated for the mean per event)."},
			func() float64 { return float64(e.evalNs.Load()) / 1e9 }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "vigil_detect_firings_total",
			Help: "Rule firings (new detections and updates of open ones)."}, func() float64 { return float64(e.firings.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "vigil_detect_correlation_keys_overflow_total",
			Help: "Correlation group keys refused because a rule already tracked its maximum."},
			func() float64 { return float64(e.overflowTotal()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "vigil_detect_open_detections",
			Help: "Detections in state active or investigating."}, func() float64 {
			n := 0
			for _, c := range e.OpenBySeverity() {
				n += c
			}
			return float64(n)
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "vigil_detect_cursor",
			Help: "Sequence of the last event the detection engine evaluated."}, func() float64 { return float64(e.lastSeq.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "vigil_detect_leader",
			Help: "1 while this node's detection engine holds the leadership lease and evaluates rules, else 0."},
			func() float64 {
				if e.leader.Load() {
					return 1
				}
				return 0
			}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "vigil_detect_rules_failed",
			Help: "Rules or rule files that failed to load."}, func() float64 { return float64(len(e.rules.Load().Errors())) }),
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("detect: metrics: %w", err)
		}
	}
	return nil
}
