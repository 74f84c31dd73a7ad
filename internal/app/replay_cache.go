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
	} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("app: replay cache metrics: %w", err)
		}
	}
	return nil
}

// replayCacheBytes maps --replay-cache-mb (0: off) to the store's bound
// (negative: off; 0 there means its default).
func replayCacheBytes(mb int) int64 {
	if mb <= 0 {
		return -1
	}
	return int64(mb) << 20
}
