package dbsec_test

import (
	"encoding/json"
	"net/http"
	"testing"
	"unicode/utf8"

	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/testenv"
	"github.com/vigil-sec/vigil/internal/transport/compat/dbsec"
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
		testenv.FuzzExchange(t, srv, "/api/v1/ws/security/events?token="+testenv.Token, msg, `{"type":"ping"}`, "pong", nil)
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
