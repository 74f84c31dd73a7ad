package main

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/auth/tokens"
	"github.com/vigil-sec/vigil/internal/testnode"
)

// TestTokenCommand runs a real node (app.Run, embedded JetStream) and drives
// `vigil token create|list|revoke` against it, with the admin token found in
// the data directory.
func TestTokenCommand(t *testing.T) {
	n := testnode.Start(t)
	vigil := cliAgainst(n)
	// --expires takes days, as rules backtest --since does.
	out, stderr, err := vigil("token", "create", "--role", "analyst", "--categories", "authentication,audit", "--tenant", "acme", "--expires", "30d", "--name", "soc")
	if err != nil {
		t.Fatalf("create: %v\n%s", err, stderr)
	}
	tok := strings.TrimSpace(out)
	if !strings.HasPrefix(tok, "vgt_") || strings.Contains(tok, "\n") || !strings.Contains(stderr, "role analyst, tenant acme, categories authentication,audit") {
		t.Fatalf("create output %q / %q", out, stderr)
	}
	if _, after, ok := strings.Cut(stderr, ", expires "); !ok {
		t.Fatalf("create: no expiry in %q", stderr)
	} else if exp, err := time.Parse(time.RFC3339, strings.Fields(after)[0]); err != nil || time.Until(exp) < 719*time.Hour || time.Until(exp) > 721*time.Hour {
		t.Fatalf("create --expires 30d: expires %q (%v), want 30 days from now", strings.Fields(after)[0], err)
	}
	id := strings.Split(tok, "_")[1]

	// The new token works against the API (an analyst may read, not publish).
	get := func(tok string) int {
		req, _ := http.NewRequest("GET", n.URL()+"/api/v1/events", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if st := get(tok); st != 200 {
		t.Fatalf("new token: HTTP %d", st)
	}
	out, _, err = vigil("token", "list")
	if err != nil || !strings.Contains(out, id) || !strings.Contains(out, "active") || strings.Contains(out, tok) {
		t.Fatalf("list: %v\n%s", err, out)
	}
	// A non-admin token cannot manage tokens.
	if _, _, err := vigil("token", "list", "--token", tok); err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("analyst list: %v", err)
	}
	if _, _, err := vigil("token", "create", "--role", "root"); err == nil {
		t.Fatal("unknown role accepted")
	}
	out, _, err = vigil("token", "revoke", id)
	if err != nil || !strings.Contains(out, "revoked") {
		t.Fatalf("revoke: %v %s", err, out)
	}
	if st := get(tok); st != 401 {
		t.Fatalf("revoked token: HTTP %d", st)
	}
	out, _, _ = vigil("token", "list")
	if !strings.Contains(out, "revoked") {
		t.Fatalf("list after revoke:\n%s", out)
	}
}

// TestTokenRevokeJWTCommand: the CLI revokes, lists and lifts JWT
// revocations through the admin API (the REST behaviour is tested in
// internal/server).
func TestTokenRevokeJWTCommand(t *testing.T) {
	n := testnode.Start(t)
	vigil := cliAgainst(n)
	if _, _, err := vigil("token", "revoke-jwt"); err == nil || !strings.Contains(err.Error(), "exactly one of --jti and --sub") {
		t.Fatalf("no selector: %v", err)
	}
	out, stderr, err := vigil("token", "revoke-jwt", "--jti", "f3b1-77")
	if err != nil || !strings.Contains(out, "revoked (key jti-") {
		t.Fatalf("revoke-jwt: %v %s %s", err, out, stderr)
	}
	if _, _, err := vigil("token", "revoke-jwt", "--sub", "mallory", "--issued-before", "yesterday"); err == nil || !strings.Contains(err.Error(), "RFC 3339") {
		t.Fatalf("bad time: %v", err)
	}
	if _, _, err := vigil("token", "revoke-jwt", "--sub", "mallory"); err != nil {
		t.Fatal(err)
	}
	// --expires DURATION: the entry lives as long as the JWT would have.
	if _, _, err := vigil("token", "revoke-jwt", "--jti", "short-lived", "--expires", "48h", "--expires-at", "2030-01-01T00:00:00Z"); err == nil {
		t.Fatal("--expires and --expires-at together accepted")
	}
	if _, _, err := vigil("token", "revoke-jwt", "--jti", "short-lived", "--expires", "48h"); err != nil {
		t.Fatal(err)
	}
	out, _, err = vigil("token", "jwt-revocations", "--json")
	var listed struct{ Revocations []tokens.JWTRevocation }
	if err != nil || json.Unmarshal([]byte(out), &listed) != nil {
		t.Fatalf("list --json: %v\n%s", err, out)
	}
	found := false
	for _, r := range listed.Revocations {
		if r.JTI == "short-lived" {
			found = true
			if r.ExpiresAt == nil || time.Until(*r.ExpiresAt) < 47*time.Hour || time.Until(*r.ExpiresAt) > 48*time.Hour {
				t.Fatalf("--expires 48h stored expires_at %v", r.ExpiresAt)
			}
		}
	}
	if !found {
		t.Fatalf("revocation with --expires not listed:\n%s", out)
	}
	out, _, err = vigil("token", "jwt-revocations")
	if err != nil || !strings.Contains(out, "f3b1-77") || !strings.Contains(out, "mallory") {
		t.Fatalf("list: %v\n%s", err, out)
	}
	key := ""
	for _, f := range strings.Fields(out) {
		if strings.HasPrefix(f, "jti-") {
			key = f
		}
	}
	if out, _, err := vigil("token", "unrevoke-jwt", key); err != nil || !strings.Contains(out, "lifted") {
		t.Fatalf("unrevoke %q: %v %s", key, err, out)
	}
	out, _, _ = vigil("token", "jwt-revocations")
	if strings.Contains(out, "f3b1-77") || !strings.Contains(out, "mallory") {
		t.Fatalf("list after lifting:\n%s", out)
	}
}

// TestLifetimeFlag: --expires reads a Go duration or whole days or weeks,
// and a value it cannot read is a flag error saying what it wants.
func TestLifetimeFlag(t *testing.T) {
	for in, want := range map[string]time.Duration{"720h": 720 * time.Hour, "90m": 90 * time.Minute, "30d": 30 * 24 * time.Hour, "2w": 14 * 24 * time.Hour, "1h30m": 90 * time.Minute} {
		var l lifetime
		if err := l.Set(in); err != nil || time.Duration(l) != want {
			t.Errorf("--expires %s: %v, %v; want %v", in, time.Duration(l), err, want)
		}
	}
	for _, in := range []string{"30x", "d", "1.5d", ""} {
		var l lifetime
		if err := l.Set(in); err == nil {
			t.Errorf("--expires %q accepted (%v)", in, time.Duration(l))
		}
	}
	code, _, errOut := cliExit("token", "create", "--role", "viewer", "--expires", "30x")
	if code != 1 || !strings.HasSuffix(errOut, "vigil: invalid value \"30x\" for flag -expires: want a duration (720h, 90m) or days or weeks (30d, 2w)\n") {
		t.Errorf("--expires 30x: exit %d, stderr %q", code, errOut)
	}
}
