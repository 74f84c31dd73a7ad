package event_test

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/vigil-sec/vigil/internal/demo"
	"github.com/vigil-sec/vigil/internal/event"
)

// BenchmarkStrictCheck is the strictness pass alone over the 1,000 demo
// events of BenchmarkDecodeRequest: its cost against the whole decode.
func BenchmarkStrictCheck(b *testing.B) {
	g := demo.New(9)
	var lines [][]byte
	n := 0
	for i := 0; i < 1000; i++ {
		raw, _ := json.Marshal(g.Next())
		lines = append(lines, bytes.TrimSpace(raw))
		n += len(raw) + 1
	}
	b.SetBytes(int64(n))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, l := range lines {
			if err := event.CheckStrict(l); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.N*1000)/b.Elapsed().Seconds(), "events/s")
}
