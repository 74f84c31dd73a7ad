package phase8_test

import (
	"net/http"
	"testing"
	"unicode/utf8"

	"github.com/vigil-sec/vigil/internal/testenv"
	"github.com/vigil-sec/vigil/internal/transport/compat/phase8"
)

// FuzzPhase8Message sends arbitrary client messages to the Phase 8 dialect
// (dialect.Message: the action envelope, subscribe/unsubscribe lists and
// filter_criteria) over a real WebSocket. Whatever the message, the server
// must answer with well-formed messages and keep the connection: a ping
// sent behind it is answered with a pong. Seeds: testdata/fuzz/FuzzPhase8Message.
func FuzzPhase8Message(f *testing.F) {
	for _, seed := range []string{
		`{"action":"ping"}`,
		`{"action":"subscribe","event_types":["fraud_alert","behavioral_anomaly"]}`,
		`{"action":"unsubscribe","event_types":[]}`,
		`{"action":"filter_events","filter_criteria":{"min_severity":"high","min_confidence":0.7,"event_types":["threat_detection"]}}`,
		`{"action":"filter_events","filter_criteria":null}`,
		`{"action":"filter_events","filter_criteria":{"min_severity":"nope"}}`,
		`{"action":"get_security_status"}`,
		`{"action":"get_event_schema"}`,
		`{"action":"subscribe","event_types":["nope"]}`,
		`{"action":"filter_events","filter_criteria":{"min_confidence":1e400}}`,
		`{"action":5}`, `{"action":"x","extra":1}`, `{}`, `[]`, `null`, `"ping"`, `{"action":`, ``,
	} {
		f.Add([]byte(seed))
	}
	e := testenv.New(f)
	mux := http.NewServeMux()
	mux.Handle("GET /ws/phase8/security", phase8.Handler(phase8.Deps{WS: e.Deps}))
	srv := e.Serve(mux)
	f.Fuzz(func(t *testing.T, msg []byte) {
		if !utf8.Valid(msg) {
			return // a text frame must be UTF-8: wsconn closes with 1007 before any dialect sees it
		}
		testenv.FuzzExchange(t, srv, "/ws/phase8/security?token="+testenv.Token, msg, `{"action":"ping"}`, "pong", nil)
	})
}
