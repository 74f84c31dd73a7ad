package wsdetections_test

import (
	"encoding/json"
	"testing"

	"github.com/vigil-sec/vigil/internal/hub"
	"github.com/vigil-sec/vigil/internal/transport/compat/wsdetections"
)

// issue 8 item 6: a lagging /ws/detections client is told where to resume,
// in the dialect's {type, data, timestamp} shape, from the earliest point
// of any of its subscriptions (two exist while a filter is swapped).
func TestLaggedMessageCarriesEarliestResumePoint(t *testing.T) {
	var d wsdetections.Dialect
	msgs := d.Lagged(nil, &hub.LagError{Resume: map[string]uint64{"detections-1": 42, "detections-2": 40}})
	if len(msgs) != 1 {
		t.Fatalf("%d lag messages, want 1", len(msgs))
	}
	var m struct {
		Type string
		Data struct {
			ResumeFrom uint64 `json:"resume_from"`
			Message    string
		}
		Timestamp string
	}
	if err := json.Unmarshal(msgs[0], &m); err != nil {
		t.Fatal(err)
	}
	if m.Type != "lagged" || m.Data.ResumeFrom != 40 || m.Data.Message == "" || m.Timestamp == "" {
		t.Fatalf("lag message %s", msgs[0])
	}
}
