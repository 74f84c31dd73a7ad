package server_test

import (
	"context"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/auth/access"
)

// TestStreamTokenAsSubprotocol: a browser's WebSocket cannot set an
// Authorization header, so the console offers its token as the
// subprotocol "vigil.bearer.<base64url>" beside "vigil" instead of
// putting it in the URL. The server authenticates with it, selects
// "vigil" (never the token's), streams as for any other client, and
// refuses a wrong or undecodable token with 401.
func TestStreamTokenAsSubprotocol(t *testing.T) {
	e := newEnv(t, access.Config{})
	url := "ws" + strings.TrimPrefix(e.srv.URL, "http") + "/api/v1/stream"
	offer := func(tok string) []string {
		return []string{"vigil", auth.BearerSubprotocol + base64.RawURLEncoding.EncodeToString([]byte(tok))}
	}

	d := ws.Dialer{Protocols: offer(matrixAdminToken), Timeout: 5 * time.Second}
	c, _, hs, err := d.Dial(context.Background(), url)
	if err != nil {
		t.Fatalf("dial with the token as a subprotocol: %v", err)
	}
	defer c.Close()
	if hs.Protocol != "vigil" {
		t.Fatalf("selected subprotocol %q, want \"vigil\"", hs.Protocol)
	}
	wsSubscribe(t, c, "s", map[string]any{"categories": []string{"audit"}}, "latest")
	e.post(`[{"id":"via-subprotocol","type":"audit.query"}]`, "", matrixAdminToken)
	if m := readMsg(t, c); m["type"] != "event" || m["event"].(map[string]any)["id"] != "via-subprotocol" {
		t.Fatalf("delivered %v", m)
	}

	for name, protocols := range map[string][]string{
		"wrong token": offer("vgl_0000_wrong"),
		"undecodable": {"vigil", auth.BearerSubprotocol + "%%%"},
		"empty offer": {"vigil", auth.BearerSubprotocol},
	} {
		d := ws.Dialer{Protocols: protocols, Timeout: 5 * time.Second}
		c, _, _, err := d.Dial(context.Background(), url+"?token="+matrixAdminToken)
		if c != nil {
			_ = c.Close()
		}
		var se ws.StatusError
		if !errors.As(err, &se) || int(se) != 401 {
			t.Errorf("%s: %v, want the handshake refused with 401 (and no fall-back to ?token=)", name, err)
		}
	}
}
