package wsdetections_test

import (
	"encoding/json"
	"errors"
	"net/http/httptest"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gobwas/ws/wsutil"

	"github.com/vigil-sec/vigil/internal/testenv"
	"github.com/vigil-sec/vigil/internal/wsdetections"
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
		fuzzExchange(t, srv, "/ws/detections?token="+testenv.Token, msg, `{"action":"ping"}`, "pong")
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
		var m struct {
			Type      string          `json:"type"`
			Data      json.RawMessage `json:"data"`
			Timestamp string          `json:"timestamp"`
		}
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("message %q: server sent %q: %v", msg, b, err)
		}
		if m.Type == "" || m.Timestamp == "" {
			t.Fatalf("message %q: server message without a type or timestamp: %s", msg, b)
		}
		if m.Type == syncType {
			return
		}
	}
}
