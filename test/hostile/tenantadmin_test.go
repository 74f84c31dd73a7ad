package hostile

// Issue 8, item 9: an admin token limited to one tenant administers that
// tenant only. Over a real node: tokens are created through the token API
// with the node's admin token, WebSocket clients of three tenancies are
// connected, and the acme admin tries to reach beyond acme through every
// admin endpoint.

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/vigil-sec/vigil/internal/testnode"
)

// taClient speaks JSON to one node with one token.
type taClient struct {
	t    *testing.T
	base string
	tok  string
}

// do sends in (JSON) and decodes the answer into out; it returns the status
// and the raw body.
func (c taClient) do(method, path string, in, out any) (int, string) {
	c.t.Helper()
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			c.t.Fatal(err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.base+path, body)
	if err != nil {
		c.t.Fatal(err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+c.tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(raw, out); err != nil {
			c.t.Fatalf("%s %s: %v: %s", method, path, err, raw)
		}
	}
	return resp.StatusCode, string(raw)
}

// with returns c reporting to t (a subtest).
func (c taClient) with(t *testing.T) taClient { c.t = t; return c }

type taToken struct {
	ID        string     `json:"id"`
	Tenant    string     `json:"tenant"`
	Role      string     `json:"role"`
	Token     string     `json:"token"`
	ExpiresAt *time.Time `json:"expires_at"`
}

// taCreate creates a token as c and fails the test unless it is created.
func (c taClient) taCreate(req map[string]any) taToken {
	c.t.Helper()
	var tk taToken
	if st, body := c.do("POST", "/api/v1/tokens", req, &tk); st != http.StatusCreated {
		c.t.Fatalf("create token %v: HTTP %d %s", req, st, body)
	}
	return tk
}

type taConn struct {
	ID        string `json:"id"`
	Principal string `json:"principal"`
	Tenant    string `json:"tenant"`
}

func (c taClient) connections() []taConn {
	c.t.Helper()
	var out struct{ Connections []taConn }
	if st, body := c.do("GET", "/api/v1/connections", nil, &out); st != http.StatusOK {
		c.t.Fatalf("list connections: HTTP %d %s", st, body)
	}
	return out.Connections
}

// taDial opens the native WebSocket with tok and subscribes to everything
// it may see.
func taDial(t *testing.T, n *testnode.Node, tok string) net.Conn {
	t.Helper()
	hdr := http.Header{"Authorization": {"Bearer " + tok}}
	d := ws.Dialer{Header: ws.HandshakeHeaderHTTP(hdr), Timeout: 5 * time.Second}
	conn, _, _, err := d.Dial(context.Background(), "ws"+strings.TrimPrefix(n.URL(), "http")+"/api/v1/stream")
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	b, _ := json.Marshal(map[string]any{"op": "subscribe", "id": "all", "filter": map[string]any{}, "from": "latest"})
	if err := wsutil.WriteClientText(conn, b); err != nil {
		t.Fatal(err)
	}
	taReadUntil(t, conn, func(m map[string]any) bool { return m["type"] == "subscribed" })
	return conn
}

// taReadUntil reads server messages until match accepts one (within 5 s)
// and returns it; every message read on the way is returned in skipped.
func taReadUntil(t *testing.T, conn net.Conn, match func(map[string]any) bool) (got map[string]any, skipped []string) {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	defer conn.SetReadDeadline(time.Time{})
	for {
		b, err := wsutil.ReadServerText(conn)
		if err != nil {
			t.Fatalf("reading the WebSocket: %v (read so far: %q)", err, skipped)
		}
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		if match(m) {
			return m, skipped
		}
		skipped = append(skipped, string(b))
	}
}

func TestTenantAdminConfined(t *testing.T) {
	n := testnode.Start(t)
	root := taClient{t: t, base: n.URL(), tok: n.AdminToken()}

	acmeAdminTok := root.taCreate(map[string]any{"role": "admin", "tenant": "acme", "name": "acme admin"})
	acme := taClient{t: t, base: n.URL(), tok: acmeAdminTok.Token}
	globexTok := root.taCreate(map[string]any{"role": "analyst", "tenant": "globex", "name": "globex analyst"})
	acmeViewerTok := root.taCreate(map[string]any{"role": "viewer", "tenant": "acme", "name": "acme viewer"})

	// Three connected clients: globex, acme, and the all-tenant admin.
	globexConn := taDial(t, n, globexTok.Token)
	acmeConn := taDial(t, n, acmeViewerTok.Token)
	_ = taDial(t, n, root.tok)

	// The admin of all tenants sees all three (poll: registration with
	// the hub is asynchronous to the subscribe answer on some transports).
	connOf := map[string]string{} // principal id -> connection id
	deadline := time.Now().Add(5 * time.Second)
	for len(connOf) < 3 {
		clear(connOf)
		for _, c := range root.connections() {
			switch c.Principal {
			case globexTok.ID, acmeViewerTok.ID, "admin":
				connOf[c.Principal] = c.ID
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the all-tenant admin lists %v, want the globex, acme and admin connections", connOf)
		}
		time.Sleep(20 * time.Millisecond)
	}

	t.Run("connections are listed for acme only", func(t *testing.T) {
		acme := acme.with(t)
		list := acme.connections()
		if len(list) != 1 || list[0].ID != connOf[acmeViewerTok.ID] || list[0].Tenant != "acme" {
			t.Fatalf("acme admin lists %+v, want only the acme connection %s", list, connOf[acmeViewerTok.ID])
		}
	})

	t.Run("messages reach acme connections only", func(t *testing.T) {
		acme, root := acme.with(t), root.with(t)
		// Another tenant's connection, and an all-tenant one, answer
		// exactly like an id that does not exist.
		_, unknownBody := acme.do("POST", "/api/v1/connections/no-such-connection/messages", map[string]any{"note": "x"}, nil)
		for _, who := range []string{globexTok.ID, "admin"} {
			id := connOf[who]
			st, body := acme.do("POST", "/api/v1/connections/"+id+"/messages", map[string]any{"type": "notice", "text": "from acme admin"}, nil)
			if st != http.StatusNotFound {
				t.Errorf("acme admin messages %s's connection: HTTP %d %s, want 404", who, st, body)
			}
			if strings.Replace(body, id, "no-such-connection", 1) != unknownBody {
				t.Errorf("the refusal reveals the connection exists: %q vs unknown id %q", body, unknownBody)
			}
		}
		// Its own tenant's connection is reachable.
		if st, body := acme.do("POST", "/api/v1/connections/"+connOf[acmeViewerTok.ID]+"/messages", map[string]any{"type": "notice", "text": "hello acme"}, nil); st != http.StatusAccepted {
			t.Fatalf("acme admin messages the acme connection: HTTP %d %s, want 202", st, body)
		}
		taReadUntil(t, acmeConn, func(m map[string]any) bool { return m["text"] == "hello acme" })
		// The globex client got nothing from the acme admin: the next
		// message it reads is a marker the all-tenant admin sends now.
		if st, body := root.do("POST", "/api/v1/connections/"+connOf[globexTok.ID]+"/messages", map[string]any{"type": "notice", "text": "marker"}, nil); st != http.StatusAccepted {
			t.Fatalf("all-tenant admin messages the globex connection: HTTP %d %s", st, body)
		}
		if _, skipped := taReadUntil(t, globexConn, func(m map[string]any) bool { return m["text"] == "marker" }); len(skipped) > 0 {
			t.Errorf("the globex client received before the marker: %q", skipped)
		}
	})

	t.Run("tokens", func(t *testing.T) {
		acme, root := acme.with(t), root.with(t)
		// No token wider than itself: all tenants, another tenant.
		for _, req := range []map[string]any{
			{"role": "admin", "tenant": "*"},
			{"role": "admin", "tenant": "globex"},
			{"role": "analyst", "tenant": "globex"},
		} {
			if st, body := acme.do("POST", "/api/v1/tokens", req, nil); st != http.StatusForbidden {
				t.Errorf("acme admin creates %v: HTTP %d %s, want 403", req, st, body)
			}
		}
		// An admin token without a tenant is one of acme's.
		own := acme.taCreate(map[string]any{"role": "admin"})
		if own.Tenant != "acme" {
			t.Errorf("acme admin created an admin token of tenant %q, want acme", own.Tenant)
		}
		var list struct{ Tokens []taToken }
		if st, body := acme.do("GET", "/api/v1/tokens", nil, &list); st != http.StatusOK {
			t.Fatalf("acme admin lists tokens: HTTP %d %s", st, body)
		}
		if len(list.Tokens) == 0 {
			t.Fatal("acme admin lists no tokens")
		}
		for _, tk := range list.Tokens {
			if tk.Tenant != "acme" {
				t.Errorf("acme admin lists a token of tenant %q: %+v", tk.Tenant, tk)
			}
		}
		// Another tenant's token is not found, for reading and revoking.
		for _, m := range []string{"GET", "DELETE"} {
			if st, body := acme.do(m, "/api/v1/tokens/"+globexTok.ID, nil, nil); st != http.StatusNotFound {
				t.Errorf("acme admin %s globex token: HTTP %d %s, want 404", m, st, body)
			}
		}
		if st, body := (taClient{t: t, base: n.URL(), tok: globexTok.Token}).do("GET", "/api/v1/events?limit=1", nil, nil); st != http.StatusOK {
			t.Errorf("the globex token stopped working: HTTP %d %s", st, body)
		}
		// JWT revocations span tenants: all-tenant admins only.
		if st, body := acme.do("GET", "/api/v1/tokens/jwt-revocations", nil, nil); st != http.StatusForbidden {
			t.Errorf("acme admin lists JWT revocations: HTTP %d %s, want 403", st, body)
		}
		// A token may not outlive the admin token that creates it.
		shortAdmin := root.taCreate(map[string]any{"role": "admin", "tenant": "acme", "expires_in": "1h"})
		short := taClient{t: t, base: n.URL(), tok: shortAdmin.Token}
		if st, body := short.do("POST", "/api/v1/tokens", map[string]any{"role": "analyst", "expires_in": "2h"}, nil); st != http.StatusForbidden {
			t.Errorf("an admin expiring in 1h creates a token for 2h: HTTP %d %s, want 403", st, body)
		}
		child := short.taCreate(map[string]any{"role": "analyst"})
		if child.ExpiresAt == nil || child.ExpiresAt.After(*shortAdmin.ExpiresAt) {
			t.Errorf("token created without expiry by an admin expiring at %v expires at %v", shortAdmin.ExpiresAt, child.ExpiresAt)
		}
	})

	t.Run("endpoints spanning every tenant", func(t *testing.T) {
		acme, root := acme.with(t), root.with(t)
		for _, path := range []string{"/debug/pprof/", "/debug/pprof/cmdline", "/debug/pprof/goroutine?debug=1", "/api/v1/integrity"} {
			if st, body := acme.do("GET", path, nil, nil); st != http.StatusForbidden {
				t.Errorf("acme admin GET %s: HTTP %d %.200s, want 403", path, st, body)
			}
			if st, body := root.do("GET", path, nil, nil); st != http.StatusOK {
				t.Errorf("all-tenant admin GET %s: HTTP %d %.200s, want 200", path, st, body)
			}
		}
		// Status counts the caller's tenant's connections only.
		var status struct {
			ConnectedClients int `json:"connected_clients"`
		}
		if st, body := acme.do("GET", "/api/v1/status", nil, &status); st != http.StatusOK || status.ConnectedClients != 1 {
			t.Errorf("acme admin status: HTTP %d, connected_clients %d, want 1 (the acme connection): %.300s", st, status.ConnectedClients, body)
		}
		if st, _ := root.do("GET", "/api/v1/status", nil, &status); st != http.StatusOK || status.ConnectedClients < 3 {
			t.Errorf("all-tenant admin status: HTTP %d, connected_clients %d, want >= 3", st, status.ConnectedClients)
		}
	})
}
