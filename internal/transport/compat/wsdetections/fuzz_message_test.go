package wsdetections_test

import (
	"errors"
	"testing"
	"unicode/utf8"

	"github.com/vigil-sec/vigil/internal/testenv"
	"github.com/vigil-sec/vigil/internal/transport/compat/wsdetections"
)

// FuzzDetectionsMessage sends arbitrary client messages to /ws/detections
// (Dialect.Message: {"action":"filter","filters":{...}} or ping) over a
// real WebSocket. Whatever the message, the server must answer with
// well-formed {"type","data","timestamp"} messages and keep the
// connection: a ping sent behind it is answered with a pong.
// Seeds: testdata/fuzz/FuzzDetectionsMessage.
func FuzzDetectionsMessage(f *testing.F) {
	for _, seed := range []string{
		`{"action":"ping"}`,
		`{"action":"filter","filters":{"severity":["high","critical"],"status":["active"],"mitre_tactics":["TA0006"]}}`,
		`{"action":"filter","filters":null}`,
		`{"action":"filter"}`,
		`{"action":"filter","filters":{"severity":["nope"]}}`,
		`{"action":"filter","filters":{"status":["bogus"],"extra":1}}`,
		`{"action":"filter","filters":[1]}`,
		`{"action":"nope"}`, `{"action":7}`, `{}`, `[]`, `null`, `"ping"`, `{"action":`, ``,
	} {
		f.Add([]byte(seed))
	}
	e := testenv.New(f)
	srv := e.Serve(wsdetections.Handler(e.Deps))
	f.Fuzz(func(t *testing.T, msg []byte) {
		if !utf8.Valid(msg) {
			return // a text frame must be UTF-8: wsconn closes with 1007 before any dialect sees it
		}
		testenv.FuzzExchange(t, srv, "/ws/detections?token="+testenv.Token, msg, `{"action":"ping"}`, "pong", hasTimestamp)
	})
}

// hasTimestamp: every /ws/detections message is {"type","data","timestamp"}.
func hasTimestamp(m map[string]any) error {
	if ts, _ := m["timestamp"].(string); ts == "" {
		return errors.New("no timestamp")
	}
	return nil
}
