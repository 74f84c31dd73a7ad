package jwtauth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/event"
)

const secret = "0123456789abcdef0123456789abcdef-test-secret"

var (
	rsaKey, _ = rsa.GenerateKey(rand.Reader, 2048)
	ecKey, _  = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
)

func pubPEM(t testing.TB, k any) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

func claims(mod func(jwt.MapClaims)) jwt.MapClaims {
	now := time.Now()
	c := jwt.MapClaims{"sub": "alice", "role": "analyst", "tenant": "acme", "categories": []string{"authentication", "audit"},
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
	if mod != nil {
		mod(c)
	}
	return c
}

func sign(t testing.TB, m jwt.SigningMethod, key any, c jwt.MapClaims, kid string) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, c)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// unsigned builds alg=none tokens by hand (the library refuses to).
func unsigned(c jwt.MapClaims) string {
	h, _ := json.Marshal(map[string]string{"alg": "none", "typ": "JWT"})
	b, _ := json.Marshal(c)
	return base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(b) + "."
}

func newAuth(t testing.TB, cfg Config) *Authenticator {
	t.Helper()
	a, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestAcceptsAndMapsClaims(t *testing.T) {
	a := newAuth(t, Config{HMACSecret: secret, PublicKeysPEM: []string{pubPEM(t, &rsaKey.PublicKey), pubPEM(t, &ecKey.PublicKey)}})
	for name, tok := range map[string]string{
		"HS256": sign(t, jwt.SigningMethodHS256, []byte(secret), claims(nil), ""),
		"RS256": sign(t, jwt.SigningMethodRS256, rsaKey, claims(nil), ""),
		"ES256": sign(t, jwt.SigningMethodES256, ecKey, claims(nil), ""),
	} {
		p, err := a.Authenticate(context.Background(), tok)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if p.Role != auth.RoleAnalyst || p.Tenant != "acme" || p.ID != "jwt:alice" || len(p.Categories) != 2 || p.Categories[0] != event.CategoryAuthentication || p.ExpiresAt.IsZero() {
			t.Fatalf("%s: principal %+v", name, p)
		}
	}
}

func TestRefusals(t *testing.T) {
	otherRSA, _ := rsa.GenerateKey(rand.Reader, 2048)
	otherEC, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rsaPEM := pubPEM(t, &rsaKey.PublicKey)
	rsaOnly := newAuth(t, Config{PublicKeysPEM: []string{rsaPEM}})
	all := newAuth(t, Config{HMACSecret: secret, PublicKeysPEM: []string{rsaPEM, pubPEM(t, &ecKey.PublicKey)}})
	hsOnly := newAuth(t, Config{HMACSecret: secret})
	ago := func(d time.Duration) int64 { return time.Now().Add(-d).Unix() }
	cases := []struct {
		name string
		a    *Authenticator
		tok  string
		want error
	}{
		{"expired", all, sign(t, jwt.SigningMethodHS256, []byte(secret), claims(func(c jwt.MapClaims) { c["exp"] = ago(2 * time.Minute) }), ""), auth.ErrTokenExpired},
		{"not yet valid", all, sign(t, jwt.SigningMethodHS256, []byte(secret), claims(func(c jwt.MapClaims) { c["nbf"] = ago(-5 * time.Minute) }), ""), auth.ErrTokenNotYet},
		{"issued in the future", all, sign(t, jwt.SigningMethodHS256, []byte(secret), claims(func(c jwt.MapClaims) { c["iat"] = ago(-5 * time.Minute) }), ""), auth.ErrTokenNotYet},
		{"no exp", all, sign(t, jwt.SigningMethodHS256, []byte(secret), claims(func(c jwt.MapClaims) { delete(c, "exp") }), ""), auth.ErrBadToken},
		{"alg none", all, unsigned(claims(nil)), auth.ErrBadToken},
		{"alg none, hs only", hsOnly, unsigned(claims(nil)), auth.ErrBadToken},
		// HS/RS confusion: the attacker signs HS256 with the server's public key as the HMAC secret.
		{"HS256 keyed with RSA public key, rsa only", rsaOnly, sign(t, jwt.SigningMethodHS256, []byte(rsaPEM), claims(nil), ""), auth.ErrBadToken},
		{"HS256 keyed with RSA public key, all", all, sign(t, jwt.SigningMethodHS256, []byte(rsaPEM), claims(nil), ""), auth.ErrBadToken},
		{"RS256 wrong key", all, sign(t, jwt.SigningMethodRS256, otherRSA, claims(nil), ""), auth.ErrBadToken},
		{"ES256 wrong key", all, sign(t, jwt.SigningMethodES256, otherEC, claims(nil), ""), auth.ErrBadToken},
		{"HS256 wrong secret", all, sign(t, jwt.SigningMethodHS256, []byte(strings.Repeat("x", 40)), claims(nil), ""), auth.ErrBadToken},
		{"RS256 not configured", hsOnly, sign(t, jwt.SigningMethodRS256, rsaKey, claims(nil), ""), auth.ErrBadToken},
		{"RS384 not pinned", all, sign(t, jwt.SigningMethodRS384, rsaKey, claims(nil), ""), auth.ErrBadToken},
		{"PS256 not pinned", all, sign(t, jwt.SigningMethodPS256, rsaKey, claims(nil), ""), auth.ErrBadToken},
		{"no role", all, sign(t, jwt.SigningMethodHS256, []byte(secret), claims(func(c jwt.MapClaims) { delete(c, "role") }), ""), auth.ErrBadToken},
		{"unknown role", all, sign(t, jwt.SigningMethodHS256, []byte(secret), claims(func(c jwt.MapClaims) { c["role"] = "root" }), ""), auth.ErrBadToken},
		{"two roles", all, sign(t, jwt.SigningMethodHS256, []byte(secret), claims(func(c jwt.MapClaims) { c["role"] = []string{"viewer", "admin"} }), ""), auth.ErrBadToken},
		{"bad category", all, sign(t, jwt.SigningMethodHS256, []byte(secret), claims(func(c jwt.MapClaims) { c["categories"] = []string{"nope"} }), ""), auth.ErrBadToken},
		{"non-string categories", all, sign(t, jwt.SigningMethodHS256, []byte(secret), claims(func(c jwt.MapClaims) { c["categories"] = []any{1} }), ""), auth.ErrBadToken},
		{"non-admin all tenants", all, sign(t, jwt.SigningMethodHS256, []byte(secret), claims(func(c jwt.MapClaims) { c["tenant"] = "*" }), ""), auth.ErrBadToken},
		{"no subject", all, sign(t, jwt.SigningMethodHS256, []byte(secret), claims(func(c jwt.MapClaims) { delete(c, "sub") }), ""), auth.ErrBadToken},
		{"garbage", all, "eyJ.eyJ.x", auth.ErrBadToken},
		{"opaque", all, "vgt_0123", auth.ErrBadToken},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := c.a.Authenticate(context.Background(), c.tok)
			if err == nil {
				t.Fatalf("accepted: %+v", p)
			}
			if !errors.Is(err, c.want) {
				t.Fatalf("err %v, want %v", err, c.want)
			}
		})
	}
}

func TestClockSkewAllowed(t *testing.T) {
	a := newAuth(t, Config{HMACSecret: secret, Leeway: 30 * time.Second})
	tok := sign(t, jwt.SigningMethodHS256, []byte(secret), claims(func(c jwt.MapClaims) {
		c["exp"] = time.Now().Add(-10 * time.Second).Unix()
		c["nbf"] = time.Now().Add(10 * time.Second).Unix()
	}), "")
	if _, err := a.Authenticate(context.Background(), tok); err != nil {
		t.Fatalf("within leeway: %v", err)
	}
}

func TestIssuerAudienceAndClaimNames(t *testing.T) {
	a := newAuth(t, Config{HMACSecret: secret, Issuer: "https://idp", Audience: "vigil",
		RoleClaim: "vigil.role", TenantClaim: "org", CategoriesClaim: "scope"})
	good := claims(func(c jwt.MapClaims) {
		delete(c, "role")
		delete(c, "tenant")
		delete(c, "categories")
		c["iss"], c["aud"] = "https://idp", "vigil"
		c["vigil"] = map[string]any{"role": "viewer"}
		c["org"] = "globex"
		c["scope"] = "fraud audit"
	})
	p, err := a.Authenticate(context.Background(), sign(t, jwt.SigningMethodHS256, []byte(secret), good, ""))
	if err != nil {
		t.Fatal(err)
	}
	if p.Role != auth.RoleViewer || p.Tenant != "globex" || len(p.Categories) != 2 {
		t.Fatalf("principal %+v", p)
	}
	good["aud"] = "other"
	if _, err := a.Authenticate(context.Background(), sign(t, jwt.SigningMethodHS256, []byte(secret), good, "")); err == nil {
		t.Fatal("wrong audience accepted")
	}
}

func jwk(kid string, k any) map[string]any {
	switch k := k.(type) {
	case *rsa.PublicKey:
		return map[string]any{"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig",
			"n": base64.RawURLEncoding.EncodeToString(k.N.Bytes()),
			"e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(k.E)).Bytes())}
	case *ecdsa.PublicKey:
		b, err := k.Bytes() // uncompressed point: 0x04 || X || Y, 32 bytes each on P-256
		if err != nil || len(b) != 65 {
			panic(fmt.Sprintf("jwk: P-256 key encoding: %v", err))
		}
		return map[string]any{"kty": "EC", "kid": kid, "alg": "ES256", "crv": "P-256", "use": "sig",
			"x": base64.RawURLEncoding.EncodeToString(b[1:33]),
			"y": base64.RawURLEncoding.EncodeToString(b[33:])}
	case []byte:
		return map[string]any{"kty": "oct", "kid": kid, "k": base64.RawURLEncoding.EncodeToString(k)}
	}
	panic("key type")
}

func TestJWKS(t *testing.T) {
	rotated, _ := rsa.GenerateKey(rand.Reader, 2048)
	var keys atomic.Value
	keys.Store([]map[string]any{jwk("k1", &rsaKey.PublicKey), jwk("e1", &ecKey.PublicKey), jwk("sym", []byte(secret))})
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": keys.Load()})
	}))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, err := New(ctx, Config{JWKSURL: srv.URL, JWKSRefresh: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	for name, tok := range map[string]string{
		"RS256 kid":    sign(t, jwt.SigningMethodRS256, rsaKey, claims(nil), "k1"),
		"ES256 kid":    sign(t, jwt.SigningMethodES256, ecKey, claims(nil), "e1"),
		"RS256 no kid": sign(t, jwt.SigningMethodRS256, rsaKey, claims(nil), ""),
	} {
		if _, err := a.Authenticate(context.Background(), tok); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	for name, tok := range map[string]string{
		"HS256 with symmetric JWKS key": sign(t, jwt.SigningMethodHS256, []byte(secret), claims(nil), "sym"),
		"RS256 with EC kid":             sign(t, jwt.SigningMethodRS256, rsaKey, claims(nil), "e1"),
		"alg none":                      unsigned(claims(nil)),
	} {
		if _, err := a.Authenticate(context.Background(), tok); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// Key rotation: a token naming a new kid triggers a (rate-limited)
	// refetch of the JWKS.
	keys.Store([]map[string]any{jwk("k1", &rsaKey.PublicKey), jwk("k3", &rotated.PublicKey)})
	before := hits.Load()
	if _, err := a.Authenticate(context.Background(), sign(t, jwt.SigningMethodRS256, rotated, claims(nil), "k3")); err != nil {
		t.Fatalf("rotated key: %v", err)
	}
	if hits.Load() == before {
		t.Fatal("JWKS was not refetched for an unknown kid")
	}
	// Another unknown kid right away: refused for its kid without waiting
	// for the refresh limiter (no second fetch; a wait would end with the
	// context's deadline instead of the refusal), not timed by the clock.
	after := hits.Load()
	kidCtx, kidCancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer kidCancel()
	_, kidErr := a.Authenticate(kidCtx, sign(t, jwt.SigningMethodRS256, rotated, claims(nil), "k9"))
	if kidErr == nil {
		t.Fatal("unknown kid accepted")
	}
	if errors.Is(kidErr, context.DeadlineExceeded) || kidCtx.Err() != nil {
		t.Fatalf("unknown kid waited for the refresh limiter: %v", kidErr)
	}
	if hits.Load() != after {
		t.Fatal("JWKS refetched again right away: the refresh is not rate-limited")
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	if _, err := New(context.Background(), Config{HMACSecret: "short"}); err == nil {
		t.Fatal("short secret accepted")
	}
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	if _, err := New(context.Background(), Config{PublicKeysPEM: []string{pubPEM(t, &small.PublicKey)}}); err == nil {
		t.Fatal("1024-bit RSA key accepted")
	}
	if _, err := New(context.Background(), Config{}); err == nil {
		t.Fatal("no keys accepted")
	}
	if _, err := New(context.Background(), Config{PublicKeysPEM: []string{"not pem"}}); err == nil {
		t.Fatal("garbage PEM accepted")
	}
}
