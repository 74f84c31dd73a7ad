package otlp

import (
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/event"
)

// FuzzOTLPJSON feeds arbitrary bodies to the JSON decoder and the mapping:
// neither may panic, every record of a decoded request maps to exactly one
// event, and each event's type and category are ones ingest accepts.
func FuzzOTLPJSON(f *testing.F) {
	f.Add([]byte(exampleJSON))
	f.Add([]byte(`{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"arrayValue":{"values":[{"doubleValue":1.5},{"bytesValue":"AAE="}]}},"traceId":"00"}]}]}]}`))
	f.Add([]byte(`{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"eventName":"Auth.Login","severityNumber":99,"timeUnixNano":"18446744073709551615"}]}]}]}`))
	f.Add([]byte(`{"resource_logs":[{"scope_logs":[{"log_records":[{"attributes":[{"key":"client.address","value":{"stringValue":"::ffff:1.2.3.4"}}]}]}]}]}`))
	f.Add([]byte(`{}`))
	lim := event.DefaultLimits()
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := Decode(body, true)
		if err != nil {
			return
		}
		// The pre-decode count never says fewer records than there are
		// (else the record limit could be passed by).
		c, err := countJSON(body, 1<<30)
		if err == errTooDeep || err == errTooManyMessages {
			return // refused before decoding in the handler
		}
		if err != nil || c < Count(req.Logs) {
			t.Fatalf("countJSON = %d, %v; the request holds %d records", c, err, Count(req.Logs))
		}
		evs := Map(req, lim)
		if len(evs) != Count(req.Logs) {
			t.Fatalf("%d events for %d records", len(evs), Count(req.Logs))
		}
		for _, ev := range evs {
			if _, err := event.Normalize(ev, "t", time.Now(), lim); err != nil {
				if p := event.ProblemFrom(0, err); p.Field == "type" || p.Field == "category" || p.Field == "id" || p.Field == "src_ip" {
					t.Fatalf("mapped event refused for its %s: %v", p.Field, err)
				}
			}
		}
	})
}
