package event_test

import (
	stdjson "encoding/json"
	"testing"
	"time"

	gojson "github.com/goccy/go-json"

	"github.com/vigil-sec/vigil/internal/demo"
	"github.com/vigil-sec/vigil/internal/event"
)

func sample(b *testing.B) []byte {
	g := demo.New(3)
	e := g.Next()
	for e.Type != "audit.query" {
		e = g.Next()
	}
	if _, err := event.Normalize(e, "default", time.Now(), event.DefaultLimits()); err != nil {
		b.Fatal(err)
	}
	raw, _ := stdjson.Marshal(e)
	return raw
}

func BenchmarkDecodeStd(b *testing.B) {
	raw := sample(b)
	b.SetBytes(int64(len(raw)))
	for i := 0; i < b.N; i++ {
		var e event.Event
		if err := stdjson.Unmarshal(raw, &e); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeGoccy(b *testing.B) {
	raw := sample(b)
	b.SetBytes(int64(len(raw)))
	for i := 0; i < b.N; i++ {
		var e event.Event
		if err := gojson.Unmarshal(raw, &e); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeStd(b *testing.B) {
	var e event.Event
	_ = stdjson.Unmarshal(sample(b), &e)
	for i := 0; i < b.N; i++ {
		if _, err := stdjson.Marshal(&e); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeGoccy(b *testing.B) {
	var e event.Event
	_ = stdjson.Unmarshal(sample(b), &e)
	for i := 0; i < b.N; i++ {
		if _, err := gojson.Marshal(&e); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeRequest decodes a 1,000-event NDJSON request body as the
// ingest endpoint does (strict: unknown fields are errors).
func BenchmarkDecodeRequest(b *testing.B) {
	g := demo.New(9)
	var body []byte
	for i := 0; i < 1000; i++ {
		raw, _ := stdjson.Marshal(g.Next())
		body = append(append(body, raw...), '\n')
	}
	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		evs, err := event.Decode(body, "application/x-ndjson", event.DefaultLimits())
		if err != nil || len(evs) != 1000 {
			b.Fatal(err, len(evs))
		}
	}
	b.ReportMetric(float64(b.N*1000)/b.Elapsed().Seconds(), "events/s")
}

// storedSamples are 1,000 demo events as the log stores them.
func storedSamples(b *testing.B) [][]byte {
	g := demo.New(3)
	var out [][]byte
	for i := 0; i < 1000; i++ {
		e := g.Next()
		if _, err := event.Normalize(e, "default", time.Now(), event.DefaultLimits()); err != nil {
			b.Fatal(err)
		}
		e.Chain, e.PrevHash = "node-1", "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
		e.Hash = e.PrevHash
		raw, err := e.AppendJSON(nil)
		if err != nil {
			b.Fatal(err)
		}
		out = append(out, raw)
	}
	return out
}

// BenchmarkDecodeStored: the replay decoder against goccy on stored events.
func BenchmarkDecodeStored(b *testing.B) {
	s := storedSamples(b)
	b.Run("scanner", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, err := event.DecodeStored(s[i%len(s)]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("goccy", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			var e event.Event
			if err := gojson.Unmarshal(s[i%len(s)], &e); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkAppendJSON: the canonical encoder against goccy's Marshal.
func BenchmarkAppendJSON(b *testing.B) {
	s := storedSamples(b)
	evs := make([]*event.Event, len(s))
	for i := range s {
		evs[i], _ = event.DecodeStored(s[i])
	}
	b.Run("appender", func(b *testing.B) {
		b.ReportAllocs()
		buf := make([]byte, 0, 4096)
		for i := 0; i < b.N; i++ {
			buf, _ = evs[i%len(evs)].AppendJSON(buf[:0])
		}
	})
	b.Run("goccy", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, err := gojson.Marshal(evs[i%len(evs)]); err != nil {
				b.Fatal(err)
			}
		}
	})
}
