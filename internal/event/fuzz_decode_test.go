package event_test

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/event"
)

// FuzzEventDecode feeds arbitrary request bodies to the ingest decoder and
// validator. It must never panic; a body it accepts must normalize, and a
// normalized event must survive an encode/decode round trip unchanged.
// Seeds: testdata/fuzz/FuzzEventDecode.
func FuzzEventDecode(f *testing.F) {
	for _, seed := range []string{
		`{"type":"authentication.login","user":"alice","src_ip":"203.0.113.7","severity":"high"}`,
		`[{"type":"audit.query","data":{"query":"SELECT 1","password":"x"}},{"type":"security.fraud.alert"}]`,
		"{\"type\":\"audit.query\"}\n{\"type\":\"rate_limit.blocked\",\"data\":{\"blocked\":true}}",
		`{"type":"x.y","category":"nope"}`,
		`{"type":"audit.query","data":{"a":{"b":{"c":[1,2,{"d":"e"}]}}}}`,
		`{"type":`, `[]`, `null`, `{"type":"audit.query","confidence":2}`,
	} {
		f.Add([]byte(seed), "application/json")
	}
	lim := event.DefaultLimits()
	lim.MaxBatchBytes = 1 << 20
	f.Fuzz(func(t *testing.T, body []byte, contentType string) {
		evs, err := event.Decode(body, contentType, lim)
		if err != nil {
			var be *event.BatchError
			if !errors.As(err, &be) || len(be.Problems) == 0 {
				t.Fatalf("error without problems: %v", err)
			}
			return
		}
		for _, e := range evs {
			if _, err := event.Normalize(e, "default", time.Unix(1700000000, 0), lim); err != nil {
				continue // rejected by validation: fine
			}
			b, err := json.Marshal(e)
			if err != nil {
				t.Fatalf("accepted event does not encode: %v", err)
			}
			back, err := event.DecodeOne(b)
			if err != nil {
				t.Fatalf("accepted event does not decode again: %v\n%s", err, b)
			}
			b2, _ := json.Marshal(back)
			if string(b) != string(b2) {
				t.Fatalf("round trip changed the event:\n%s\n%s", b, b2)
			}
		}
	})
}
