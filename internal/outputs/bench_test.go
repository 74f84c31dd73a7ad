package outputs_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/outputs/webhook"
)

// BenchmarkWebhookDelivery: events appended to the embedded log are
// delivered by one webhook output to a loopback receiver that accepts at
// once. Reports deliveries/s and the latency from the append's received_at
// to the receiver's arrival (p50, p99): "throughput" appends in batches of
// 100 as fast as ingest takes them (the latency then includes the
// backlog), "latency" appends one event and waits for its delivery.
// "receiver-20ms" is "throughput" to a receiver that answers each request
// after 20 ms (a SIEM's collector across a network), with the output's
// concurrency at 1 (the default: one request at a time, in log order)
// and 16.
//
//	go test -run '^$' -bench BenchmarkWebhookDelivery -benchtime 5000x ./internal/outputs/
//	go test -run '^$' -bench 'BenchmarkWebhookDelivery/receiver' -benchtime 1000x ./internal/outputs/
func BenchmarkWebhookDelivery(b *testing.B) {
	b.Run("throughput", func(b *testing.B) { benchWebhook(b, 100, 0, 1) })
	b.Run("latency", func(b *testing.B) { benchWebhook(b, 1, 0, 1) })
	for _, c := range []int{1, 16} {
		b.Run(fmt.Sprintf("receiver-20ms/concurrency=%d", c), func(b *testing.B) { benchWebhook(b, 100, 20*time.Millisecond, c) })
	}
}

func benchWebhook(b *testing.B, batch int, answerAfter time.Duration, concurrency int) {
	bn := newBench(b)
	var (
		mu   sync.Mutex
		lat  []time.Duration
		seen = map[string]bool{}
		n    atomic.Int64
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		now := time.Now()
		if answerAfter > 0 {
			time.Sleep(answerAfter) // the receiver's own pace, not measured
		}
		id := r.Header.Get(webhook.HeaderDelivery)
		var body struct {
			ReceivedAt time.Time `json:"received_at"`
		}
		_ = json.NewDecoder(r.Body).Decode(&body)
		mu.Lock()
		if !seen[id] {
			seen[id] = true
			lat = append(lat, now.Sub(body.ReceivedAt))
			n.Add(1)
		}
		mu.Unlock()
	}))
	defer srv.Close()
	bn.run(bn.managerOpts(defs(b, webhookYAML("bench", srv.URL, secretFile(b, "s"), fmt.Sprintf("  concurrency: %d\n", concurrency)))))
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i += batch {
		evs := make([]*event.Event, 0, batch)
		for j := i; j < min(i+batch, b.N); j++ {
			evs = append(evs, plainEvent("auth.login"))
		}
		bn.publish(evs...)
		if batch == 1 {
			for n.Load() < int64(i+1) {
				time.Sleep(20 * time.Microsecond)
			}
		}
	}
	deadline := time.Now().Add(5 * time.Minute)
	for n.Load() < int64(b.N) {
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d delivered", n.Load(), b.N)
		}
		time.Sleep(time.Millisecond)
	}
	took := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/took.Seconds(), "deliveries/s")
	mu.Lock()
	slices.Sort(lat)
	if len(lat) > 0 {
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	}
	mu.Unlock()
}
