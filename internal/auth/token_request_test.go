package auth

import (
	"encoding/base64"
	"net/http/httptest"
	"testing"
)

// TestTokenFromRequest: the Authorization header wins, then a
// vigil.bearer. subprotocol (base64url, in any position of any header
// line), then ?token=; an undecodable subprotocol token is no token, not
// a fall-back to the query.
func TestTokenFromRequest(t *testing.T) {
	enc := func(s string) string { return BearerSubprotocol + base64.RawURLEncoding.EncodeToString([]byte(s)) }
	cases := []struct {
		name      string
		header    string
		protocols []string
		query     string
		want      string
	}{
		{name: "header", header: "Bearer h", protocols: []string{"vigil, " + enc("p")}, query: "?token=q", want: "h"},
		{name: "subprotocol second", protocols: []string{"vigil, " + enc("vgl_ab_cd")}, query: "?token=q", want: "vgl_ab_cd"},
		{name: "subprotocol own line", protocols: []string{"vigil", enc("p2")}, want: "p2"},
		{name: "query", protocols: []string{"vigil"}, query: "?token=q", want: "q"},
		{name: "undecodable", protocols: []string{"vigil, " + BearerSubprotocol + "not*base64"}, query: "?token=q", want: ""},
		{name: "none", want: ""},
	}
	for _, c := range cases {
		r := httptest.NewRequest("GET", "/api/v1/stream"+c.query, nil)
		if c.header != "" {
			r.Header.Set("Authorization", c.header)
		}
		for _, p := range c.protocols {
			r.Header.Add("Sec-WebSocket-Protocol", p)
		}
		if got := TokenFromRequest(r); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}
