package dbsec_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gobwas/ws/wsutil"

	"github.com/vigil-sec/vigil/internal/dbsec"
	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/testenv"
)

// FuzzDBSecMessage sends arbitrary client messages to a database-security
// endpoint (dialect.Message: {"type":"ping"} or a configuration object,
// translated into a native filter with CEL expressions by Config.Compile)
// over a real WebSocket. Whatever the message, the server must answer
// only with well-formed messages and keep the connection: a ping sent
// behind it is answered with a pong. Seeds: testdata/fuzz/FuzzDBSecMessage.
func FuzzDBSecMessage(f *testing.F) {
	for _, seed := range []string{
		`{"type":"ping"}`,
		`{"event_types":["LOGIN","LOGOUT"],"username_filter":"alice","severity_filter":"WARNING"}`,
		`{"blocked_only":true,"source_ip_filter":"203.0.113.7"}`,
		`{"min_threat_level":"high","user_id_filter":"u-1"}`,
		`{"key_id_filter":"k\") || true || (\"","circuit_id_filter":"c-1"}`,
		`{"resource_filter":"db.users","severity_filter":"nope"}`,
		`{"event_types":[""]}`, `{"min_threat_level":"extreme"}`, `{"unknown_key":1}`,
		`{"type":5}`, `{"type":"pong"}`, `{}`, `[]`, `null`, `"x"`, `{"event_types":`, ``,
	} {
		f.Add([]byte(seed))
	}
	e := testenv.New(f)
	mux := http.NewServeMux()
	dbsec.Register(mux, e.Deps)
	srv := e.Serve(mux)
	f.Fuzz(func(t *testing.T, msg []byte) {
		if !utf8.Valid(msg) {
			return // a text frame must be UTF-8: wsconn closes with 1007 before any dialect sees it
		}
		fuzzExchange(t, srv, "/api/v1/ws/security/events?token="+testenv.Token, msg, `{"type":"ping"}`, "pong")
	})
}

// FuzzDBSecConfigStrings: the string filters are quoted into CEL, so no
// value can break out of its literal: every configuration of strings
// compiles, and an event carrying the value matches it.
func FuzzDBSecConfigStrings(f *testing.F) {
	f.Add("k-1", "c-1")
	f.Add(`k") || true || ("`, `\`)
	f.Add("\x00\u2028'\"\n", "${x}")
	f.Fuzz(func(t *testing.T, keyID, circuitID string) {
		if !utf8.ValidString(keyID) || !utf8.ValidString(circuitID) || keyID == "" || circuitID == "" {
			return // values arrive as JSON strings: valid UTF-8; "" means "no filter"
		}
		c := dbsec.Config{KeyIDFilter: keyID, CircuitIDFilter: circuitID}
		m, err := c.Compile(dbsec.Categories())
		if err != nil {
			t.Fatalf("key %q circuit %q: %v", keyID, circuitID, err)
		}
		data, _ := json.Marshal(map[string]string{"key_id": keyID, "circuit_id": circuitID})
		ev := &event.Event{Type: "encryption.key_rotated", Category: event.CategoryEncryption, Data: data}
		if !m.Match(ev) {
			t.Fatalf("key %q circuit %q: an event carrying both does not match", keyID, circuitID)
		}
		other, _ := json.Marshal(map[string]string{"key_id": keyID + "x", "circuit_id": circuitID})
		if m.Match(&event.Event{Type: "encryption.key_rotated", Category: event.CategoryEncryption, Data: other}) {
			t.Fatalf("key %q: another key matches", keyID)
		}
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
		if typ == "error" && m["message"] == "" {
			t.Fatalf("message %q: error without a message: %s", msg, b)
		}
	}
}
