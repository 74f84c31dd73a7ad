package access

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"gopkg.in/yaml.v3"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/auth/jwtauth"
	"github.com/vigil-sec/vigil/internal/auth/tokens"
	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/store"
)

// TestConfigYAML: the access section decodes strictly, as config.Load
// decodes the serve configuration file.
func TestConfigYAML(t *testing.T) {
	src := `
jwt:
  hmac_secret: "0123456789abcdef0123456789abcdef-yaml"
  issuer: https://idp
  leeway: 10s
  role_claim: realm.role
masking:
  viewer: {truncate_ips: true, hide_emails: true, sql_literals: true, sql_fields: [query, statement]}
  analyst: {drop_fields: [data.card.number]}
limits:
  max_conns_per_token: 5
  messages_per_sec: 2.5
  allowed_origins: ["https://soc.example.com"]
`
	var c Config
	dec := yaml.NewDecoder(strings.NewReader(src))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		t.Fatal(err)
	}
	if c.JWT.Issuer != "https://idp" || c.JWT.RoleClaim != "realm.role" || c.Masking[auth.RoleViewer].SQLFields[1] != "statement" ||
		c.Limits.MaxConnsPerToken != 5 || c.Limits.MessagesPerSec != 2.5 || len(c.Limits.AllowedOrigins) != 1 {
		t.Fatalf("decoded %+v", c)
	}
	bad := yaml.NewDecoder(strings.NewReader("limits: {max_conn: 1}"))
	bad.KnownFields(true)
	if err := bad.Decode(&Config{}); err == nil {
		t.Fatal("unknown key accepted")
	}
}

func TestNewWiresChain(t *testing.T) {
	ctx := context.Background()
	l, err := store.Open(ctx, store.Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, err := New(ctx, Options{Config: Config{Masking: auth.MaskConfig{"root": {}}}}); err == nil {
		t.Fatal("masking for an unknown role accepted")
	}
	a, err := New(ctx, Options{JetStream: l.JetStream(), AdminToken: "the-admin-token"})
	if err != nil {
		t.Fatal(err)
	}
	if a.JWT != nil || a.Handler == nil || a.Tokens == nil {
		t.Fatalf("wiring %+v", a)
	}
	p, err := a.Auth.Authenticate(ctx, "the-admin-token")
	if err != nil || !p.IsAdmin() || p.Tenant != auth.AllTenants {
		t.Fatalf("admin: %+v %v", p, err)
	}
	tok, rec, err := a.Tokens.Create(ctx, tokensSpecViewer(), "test")
	if err != nil {
		t.Fatal(err)
	}
	p, err = a.Auth.Authenticate(ctx, tok)
	if err != nil || p.ID != rec.ID {
		t.Fatalf("opaque: %+v %v", p, err)
	}
	ev := &event.Event{ID: "e", Type: "audit.x", Category: event.CategoryAudit, Tenant: "acme"}
	if _, ok := a.Policy.Visible(p, ev); !ok {
		t.Fatal("viewer of acme cannot see an acme event")
	}
	if _, err := a.Tokens.Revoke(ctx, rec.ID); err != nil {
		t.Fatal(err)
	}
	if _, ok := a.Policy.Visible(p, ev); ok {
		t.Fatal("policy still delivers to a revoked token")
	}
	if _, err := a.Auth.Authenticate(ctx, tok); !errors.Is(err, auth.ErrTokenRevoked) {
		t.Fatalf("revoked token through the chain: %v (want the specific reason)", err)
	}
	if _, err := a.Auth.Authenticate(ctx, "nonsense"); err != auth.ErrBadToken {
		t.Fatalf("unknown token: %v", err)
	}
}

// TestPolicyRefusesRevokedJWT: as for opaque tokens, the delivery policy
// refuses every event to a JWT as soon as the node knows of its
// revocation (by jti or by subject), before the sweep closes its
// connections.
func TestPolicyRefusesRevokedJWT(t *testing.T) {
	ctx := context.Background()
	l, err := store.Open(ctx, store.Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	const secret = "policy-jwt-secret-0123456789abcdef0123456789"
	a, err := New(ctx, Options{JetStream: l.JetStream(), Config: Config{JWT: jwtauth.Config{HMACSecret: secret}}})
	if err != nil {
		t.Fatal(err)
	}
	mint := func(sub, jti string) *auth.Principal {
		t.Helper()
		tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": sub, "jti": jti, "role": "analyst", "tenant": "acme",
			"iat": time.Now().Add(-time.Minute).Unix(), "exp": time.Now().Add(time.Hour).Unix()}).SignedString([]byte(secret))
		if err != nil {
			t.Fatal(err)
		}
		p, err := a.Auth.Authenticate(ctx, tok)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	ev := &event.Event{ID: "e", Type: "audit.x", Category: event.CategoryAudit, Tenant: "acme"}
	byJTI, bySub, other := mint("ann", "ann-1"), mint("bob", "bob-1"), mint("cid", "cid-1")
	for _, p := range []*auth.Principal{byJTI, bySub, other} {
		if _, ok := a.Policy.Visible(p, ev); !ok {
			t.Fatalf("%s cannot see an acme event before any revocation", p.ID)
		}
	}
	if _, err := a.JWTRevs.Add(ctx, "ann-1", "", time.Time{}, nil, "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.JWTRevs.Add(ctx, "", "bob", time.Time{}, nil, "test"); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[*auth.Principal]bool{byJTI: false, bySub: false, other: true} {
		if _, ok := a.Policy.Visible(p, ev); ok != want {
			t.Errorf("%s (jti %s) after the revocations: visible=%v, want %v", p.ID, p.JTI, ok, want)
		}
	}
}

func tokensSpecViewer() tokens.Spec { return tokens.Spec{Role: auth.RoleViewer, Tenant: "acme"} }
