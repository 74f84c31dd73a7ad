package filter_test

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/filter"
)

// FuzzFilterCompile feeds arbitrary filter JSON to Decode and Compile and
// matches the result against a fixed event. It must never panic, and every
// rejection must be an *filter.Error naming a field.
// Seeds: testdata/fuzz/FuzzFilterCompile.
func FuzzFilterCompile(f *testing.F) {
	for _, seed := range []string{
		`{"categories":["authentication"],"min_severity":"high"}`,
		`{"types":["security.fraud.*"],"src_ips":["203.0.113.0/24","2001:db8::/32"]}`,
		`{"mitre_techniques":["T1110"],"statuses":["active"],"min_confidence":0.5}`,
		`{"expr":"risk_score > 70.0 && data.blocked == true"}`,
		`{"expr":"data.x.y.z"}`, `{"min_severity":"hgih"}`, `{"colour":"red"}`, `{"types":["a*b"]}`,
	} {
		f.Add([]byte(seed))
	}
	conf, risk := 0.9, 80.0
	e := &event.Event{ID: "e1", Type: "authentication.login", Category: event.CategoryAuthentication, Severity: event.SeverityHigh,
		User: "alice", SrcIP: "203.0.113.7", Confidence: &conf, RiskScore: &risk, MitreTechniques: []string{"T1110.001"},
		Data: json.RawMessage(`{"blocked":true,"x":{"y":{"z":1}}}`)}
	f.Fuzz(func(t *testing.T, raw []byte) {
		fl, err := filter.Decode(raw)
		if err != nil {
			var fe *filter.Error
			if !errors.As(err, &fe) || fe.Field == "" {
				t.Fatalf("decode error does not name a field: %v", err)
			}
			return
		}
		m, err := filter.Compile(fl)
		if err != nil {
			var fe *filter.Error
			if !errors.As(err, &fe) || fe.Field == "" {
				t.Fatalf("compile error does not name a field: %v", err)
			}
			return
		}
		_ = m.Match(e)
	})
}
