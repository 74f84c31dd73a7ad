// Package metrics owns Vigil's Prometheus instrumentation: one registry per
// server (no global state), the ingest observer, delivery latency, and
// gauges read from the hub on scrape.
package metrics

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/hub"
)

// Metrics holds the collectors of one server.
type Metrics struct {
	Registry         *prometheus.Registry
	eventsIn         *prometheus.CounterVec
	ingestLatency    prometheus.Histogram
	ingestBatch      prometheus.Histogram
	ingestHeld       prometheus.Histogram
	deliveryLatency  prometheus.Histogram
	sensitiveDropped prometheus.Counter
}

// New registers Vigil's metrics, reading hub state on each scrape.
func New(h *hub.Hub) *Metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := &Metrics{
		Registry: reg,
		eventsIn: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_events_in_total", Help: "Events appended to the log, by category.",
		}, []string{"category"}),
		ingestLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "vigil_ingest_seconds", Help: "Time from request decode to log acknowledgement, per batch.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
		ingestBatch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "vigil_ingest_batch_events", Help: "Events per ingest batch.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 8),
		}),
		deliveryLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "vigil_delivery_seconds", Help: "Time from receipt (received_at) to the socket write, per event.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18),
		}),
		ingestHeld: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "vigil_ingest_held_seconds", Help: "How long publishes were held because live delivery lagged (only held ones).",
			Buckets: prometheus.ExponentialBuckets(0.002, 2, 10),
		}),
		sensitiveDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vigil_sensitive_fields_dropped_total", Help: "Secret-looking data fields dropped at ingest.",
		}),
	}
	reg.MustRegister(m.eventsIn, m.ingestLatency, m.ingestBatch, m.ingestHeld, m.deliveryLatency, m.sensitiveDropped)
	reg.MustRegister(&hubCollector{hub: h,
		out:     prometheus.NewDesc("vigil_events_out_total", "Event deliveries queued to clients, by category.", []string{"category"}, nil),
		conns:   prometheus.NewDesc("vigil_connections", "Connected clients, by transport.", []string{"transport"}, nil),
		subs:    prometheus.NewDesc("vigil_subscriptions", "Live subscriptions.", nil, nil),
		queued:  prometheus.NewDesc("vigil_queue_depth", "Deliveries waiting in client queues, summed.", nil, nil),
		dropped: prometheus.NewDesc("vigil_deliveries_dropped_total", "Deliveries dropped because a client fell behind.", nil, nil),
		lagged:  prometheus.NewDesc("vigil_clients_lagged_total", "Clients disconnected for falling behind.", nil, nil),
	})
	return m
}

// Handler serves /metrics.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{})
}

// Ingested implements ingest.Observer.
func (m *Metrics) Ingested(events []*event.Event, elapsed time.Duration) {
	m.ingestLatency.Observe(elapsed.Seconds())
	m.ingestBatch.Observe(float64(len(events)))
	for _, e := range events {
		m.eventsIn.WithLabelValues(string(e.Category)).Inc()
	}
}

// SensitiveDropped implements ingest.Observer.
func (m *Metrics) SensitiveDropped(n int) { m.sensitiveDropped.Add(float64(n)) }

// Held implements ingest.Observer.
func (m *Metrics) Held(d time.Duration) { m.ingestHeld.Observe(d.Seconds()) }

// Delivered records the receive-to-write latency of written events.
func (m *Metrics) Delivered(batch []hub.Delivery, at time.Time) {
	for _, d := range batch {
		if d.Event != nil {
			m.deliveryLatency.Observe(at.Sub(d.Event.ReceivedAt).Seconds())
		}
	}
}

type hubCollector struct {
	hub                                       *hub.Hub
	out, conns, subs, queued, dropped, lagged *prometheus.Desc
}

func (c *hubCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.out, c.conns, c.subs, c.queued, c.dropped, c.lagged} {
		ch <- d
	}
}

func (c *hubCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.hub.Stats()
	for cat, n := range c.hub.DeliveredByCategory() {
		ch <- prometheus.MustNewConstMetric(c.out, prometheus.CounterValue, float64(n), string(cat))
	}
	for tr, n := range st.ByTransport {
		ch <- prometheus.MustNewConstMetric(c.conns, prometheus.GaugeValue, float64(n), tr)
	}
	ch <- prometheus.MustNewConstMetric(c.subs, prometheus.GaugeValue, float64(st.Subscriptions))
	ch <- prometheus.MustNewConstMetric(c.queued, prometheus.GaugeValue, float64(st.QueuedTotal))
	ch <- prometheus.MustNewConstMetric(c.dropped, prometheus.CounterValue, float64(st.Dropped))
	ch <- prometheus.MustNewConstMetric(c.lagged, prometheus.CounterValue, float64(st.Lagged))
}
