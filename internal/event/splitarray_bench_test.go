package event_test

import (
	stdjson "encoding/json"
	"testing"

	"github.com/vigil-sec/vigil/internal/demo"
	"github.com/vigil-sec/vigil/internal/event"
)

// BenchmarkDecodeArrayRequest decodes a 10-event JSON array body (what
// the client package and vigil bench send) as the ingest endpoint does.
func BenchmarkDecodeArrayRequest(b *testing.B) {
	g := demo.New(9)
	evs := make([]*event.Event, 10)
	for i := range evs {
		evs[i] = g.Next()
	}
	body, err := stdjson.Marshal(evs)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := event.Decode(body, "application/json", event.DefaultLimits()); err != nil {
			b.Fatal(err)
		}
	}
}
