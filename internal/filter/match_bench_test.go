package filter_test

import (
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/demo"
	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/filter"
)

func benchEvents(b *testing.B) []*event.Event {
	gen := demo.New(11)
	evs := make([]*event.Event, 1024)
	for i := range evs {
		evs[i] = gen.Next()
		if _, err := event.Normalize(evs[i], "default", time.Now(), event.DefaultLimits()); err != nil {
			b.Fatal(err)
		}
	}
	return evs
}

func benchMatch(b *testing.B, f filter.Filter) {
	m, err := filter.Compile(f)
	if err != nil {
		b.Fatal(err)
	}
	evs := benchEvents(b)
	b.ReportAllocs()
	b.ResetTimer()
	n := 0
	for i := 0; i < b.N; i++ {
		if m.Match(evs[i&1023]) {
			n++
		}
	}
	_ = n
}

// BenchmarkMatchStructured is the common subscription: categories,
// min_severity, a type wildcard and a CIDR.
func BenchmarkMatchStructured(b *testing.B) {
	benchMatch(b, filter.Filter{
		Categories:  []string{"authentication", "rate_limit", "fraud"},
		Types:       []string{"authentication.*", "rate_limit.blocked", "security.fraud.*"},
		MinSeverity: "low",
		SrcIPs:      []string{"203.0.113.0/24", "198.51.100.0/24"},
	})
}

// BenchmarkMatchTechnique exercises sub-technique prefix matching.
func BenchmarkMatchTechnique(b *testing.B) {
	benchMatch(b, filter.Filter{MitreTechniques: []string{"T1110", "T1498"}, MitreTactics: []string{"TA0006", "TA0040"}})
}

// BenchmarkMatchCEL adds an expr over data (the costly path).
func BenchmarkMatchCEL(b *testing.B) {
	benchMatch(b, filter.Filter{Categories: []string{"rate_limit"}, Expr: `has(data.blocked) && data.blocked == true`})
}

// BenchmarkMatchCELAll runs the expression on every event.
func BenchmarkMatchCELAll(b *testing.B) {
	benchMatch(b, filter.Filter{Expr: `risk_score > 70.0 || severity == "critical"`})
}
