package testenv

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gobwas/ws/wsutil"
)

// FuzzExchange is the body of the dialects' message fuzz targets: it opens a
// connection to path, sends msg and then sync, and reads until a message
// whose "type" is syncType. A dialect must answer any client message and
// keep going, so every message on the way must be a JSON object with a
// "type" (an "error" with a "message"), pass check if one is given, and the
// connection must stay open.
func FuzzExchange(t *testing.T, srv *httptest.Server, path string, msg []byte, sync, syncType string, check func(m map[string]any) error) {
	t.Helper()
	c := Dial(t, srv, path).Conn // closed when t ends
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
		if check != nil {
			if err := check(m); err != nil {
				t.Fatalf("message %q: server sent %s: %v", msg, b, err)
			}
		}
		if typ == syncType {
			return
		}
		if typ == "error" && fmt.Sprint(m["message"]) == "" {
			t.Fatalf("message %q: error without a message: %s", msg, b)
		}
	}
}
