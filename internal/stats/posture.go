package stats

import (
	"math"

	"github.com/vigil-sec/vigil/internal/event"
)

// Factor is one contribution to the posture score: what was measured and
// how many points it cost.
type Factor struct {
	Name        string  `json:"name"`
	Description string  `json:"description"`
	Value       float64 `json:"value"`
	Penalty     float64 `json:"penalty"`
	MaxPenalty  float64 `json:"max_penalty"`
}

// Posture is the 0–100 security posture score (100 is best).
type Posture struct {
	Score   int      `json:"score"`
	Level   string   `json:"level"` // good, fair, poor, critical
	Factors []Factor `json:"factors"`
}

// minAuthSample is how many authentication events the last hour needs
// before its failure rate counts: two failed logins out of three are noise,
// not a posture problem.
const minAuthSample = 10

// ComputePosture derives the score from a snapshot. The score starts at 100
// and each factor subtracts points, capped per factor so one noisy signal
// cannot hide the others (docs/protocol-dialects.md lists the factors):
//
//	open_critical_detections  15 per open critical detection, at most 40
//	open_high_detections       5 per open high detection, at most 20
//	auth_failure_rate         authentication failure ratio (last hour) × 30, at most 30
//	                          (only once the hour has ≥ 10 authentication events)
//	blocked_requests          1 per 10 blocked requests in the last minute, at most 10
//	memory_violations         5 per memory-safety event in the last hour, at most 15
//	insider_threats           3 per insider-threat event in the last hour, at most 15
//	circuit_breaker_opens     2 per circuit breaker opening in the last hour, at most 10
//
// The score is clamped to 0..100 and rounded; level is good (≥ 90), fair
// (≥ 70), poor (≥ 40) or critical.
func ComputePosture(s Snapshot) Posture {
	var factors []Factor
	add := func(name, desc string, value, perUnit, max float64) {
		pen := math.Min(value*perUnit, max)
		factors = append(factors, Factor{Name: name, Description: desc, Value: value, Penalty: round2(pen), MaxPenalty: max})
	}
	add("open_critical_detections", "open (not resolved) critical detections", float64(s.OpenDetections["critical"]), 15, 40)
	add("open_high_detections", "open (not resolved) high detections", float64(s.OpenDetections["high"]), 5, 20)

	auth := s.ByCategory[string(event.CategoryAuthentication)].LastHour
	rate := 0.0
	if auth > 0 {
		rate = float64(s.Failures[string(event.CategoryAuthentication)].LastHour) / float64(auth)
	}
	ratePen := 0.0
	if auth >= minAuthSample {
		ratePen = math.Min(rate*30, 30)
	}
	factors = append(factors, Factor{Name: "auth_failure_rate",
		Description: "share of authentication events with outcome failure in the last hour",
		Value:       round2(rate), Penalty: round2(ratePen), MaxPenalty: 30})

	add("blocked_requests", "blocked requests in the last minute", float64(s.Blocked.LastMinute), 0.1, 10)
	add("memory_violations", "memory-safety events in the last hour", float64(s.ByCategory[string(event.CategoryMemory)].LastHour), 5, 15)
	add("insider_threats", "insider-threat events in the last hour", float64(s.ByCategory[string(event.CategoryInsiderThreat)].LastHour), 3, 15)
	add("circuit_breaker_opens", "circuit breakers that opened in the last hour", float64(s.CircuitOpens.LastHour), 2, 10)

	score := 100.0
	for _, f := range factors {
		score -= f.Penalty
	}
	score = math.Max(0, math.Min(100, score))
	p := Posture{Score: int(math.Round(score)), Factors: factors}
	switch {
	case p.Score >= 90:
		p.Level = "good"
	case p.Score >= 70:
		p.Level = "fair"
	case p.Score >= 40:
		p.Level = "poor"
	default:
		p.Level = "critical"
	}
	return p
}

func round2(f float64) float64 { return math.Round(f*100) / 100 }
