package phase8_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gobwas/ws/wsutil"

	"github.com/vigil-sec/vigil/internal/phase8"
	"github.com/vigil-sec/vigil/internal/testenv"
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
		fuzzExchange(t, srv, "/ws/phase8/security?token="+testenv.Token, msg, `{"action":"ping"}`, "pong")
	})
}

// fuzzExchange opens a connection, sends msg then sync, and reads until a
// message of type syncType: every message on the way must be a JSON object
// with a type, and the connection must stay open.
func fuzzExchange(t *testing.T, srv *httptest.Server, path string, msg []byte, sync, syncType string) {
	t.Helper()
	c := testenv.Dial(t, srv, path).Conn // closed when t ends
	if err := wsutil.WriteClientText(c, msg); err != nil {
		t.Fatalf("write: %v", err)
	}
	if err := wsutil.WriteClientText(c, []byte(sync)); err != nil {
		t.Fatalf("write sync: %v", err)
	}
	for {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		b, err := wsutil.ReadServerText(c)
		if err != nil {
			var closed wsutil.ClosedError
			if errors.As(err, &closed) {
				t.Fatalf("message %q closed the connection: %d %s", msg, closed.Code, closed.Reason)
			}
			t.Fatalf("message %q: no answer: %v", msg, err)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("message %q: server sent non-JSON %q", msg, b)
		}
		typ, _ := m["type"].(string)
		if typ == "" {
			t.Fatalf("message %q: server message without a type: %s", msg, b)
		}
		if typ == syncType {
			return
		}
		if typ == "error" && fmt.Sprint(m["message"]) == "" {
			t.Fatalf("message %q: error without a message: %s", msg, b)
		}
	}
}
