package app

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-sec/vigil/internal/store"
)

// registerReplayCacheMetrics exposes the recent-event ring (issue 12 item
// 5): how much it holds and how many replayed events it served.
func registerReplayCacheMetrics(reg prometheus.Registerer, log *store.Log) error {
	for _, c := range []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "vigil_replay_cache_events",
			Help: "Newest events kept decoded in memory for replays (--replay-cache-mb).",
		}, func() float64 { return float64(log.ReplayCacheStats().Events) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "vigil_replay_cache_bytes",
			Help: "Estimated memory held by the replay cache's events (bounded by --replay-cache-mb).",
		}, func() float64 { return float64(log.ReplayCacheStats().Bytes) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "vigil_replay_cache_served_total",
			Help: "Replayed events served from the replay cache instead of JetStream.",
		}, func() float64 { return float64(log.ReplayCacheStats().Served) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "vigil_replay_spill_bytes",
			Help: "Bytes on disk in the replay spill, the events older than the replay cache (bounded by --replay-spill-mb).",
		}, func() float64 { return float64(log.ReplaySpillStats().Bytes) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "vigil_replay_spill_events",
			Help: "Events a replay can read from the replay spill.",
		}, func() float64 { return float64(log.ReplaySpillStats().Events) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "vigil_replay_spill_recovered_events",
			Help: "Events the replay spill kept at start from the previous run (its clean stop, or after a crash its last checkpoint, when that still agreed with the log; 0 otherwise).",
		}, func() float64 { return float64(log.ReplaySpillStats().Recovered) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "vigil_replay_spill_served_total",
			Help: "Replayed events read from the replay spill instead of JetStream.",
		}, func() float64 { return float64(log.ReplaySpillStats().Served) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "vigil_replay_spill_resets_total",
			Help: "Times the replay spill was emptied (a gap in what the tail delivered, a record it could not queue, a write error).",
		}, func() float64 { return float64(log.ReplaySpillStats().Resets) }),
	} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("app: replay cache metrics: %w", err)
		}
	}
	return nil
}

// replayBoundBytes maps --replay-cache-mb or --replay-spill-mb (0: off) to
// the store's bound
// (negative: off; 0 there means its default).
func replayBoundBytes(mb int) int64 {
	if mb <= 0 {
		return -1
	}
	return int64(mb) << 20
}
