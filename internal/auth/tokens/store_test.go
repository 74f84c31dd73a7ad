package tokens

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/domain"
	"github.com/vigil-sec/vigil/internal/store"
)

func openLog(t *testing.T) (*store.Log, string) {
	t.Helper()
	dir := t.TempDir()
	l, err := store.Open(context.Background(), store.Config{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	return l, dir
}

func TestCreateAuthenticateRevoke(t *testing.T) {
	ctx := context.Background()
	l, _ := openLog(t)
	defer l.Close()
	s, err := Open(ctx, l.JetStream(), nil)
	if err != nil {
		t.Fatal(err)
	}
	tok, rec, err := s.Create(ctx, Spec{Name: "soc", Role: auth.RoleAnalyst, Tenant: "acme", Categories: []string{"authentication", "audit"}, TTL: time.Hour}, "admin")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(tok, Prefix) || strings.Contains(rec.Hash, tok) {
		t.Fatalf("token %q / record %+v", tok, rec)
	}
	// The bucket holds the hash, never the token.
	e, err := s.kv.Get(ctx, rec.ID)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(e.Value()), tok[len(Prefix)+idHexLen+1:]) {
		t.Fatal("stored record contains the secret")
	}
	p, err := s.Authenticate(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	if p.ID != rec.ID || p.Role != auth.RoleAnalyst || p.Tenant != "acme" || len(p.Categories) != 2 || p.ExpiresAt.IsZero() {
		t.Fatalf("principal %+v", p)
	}
	// Wrong secret with a valid id.
	bad := tok[:len(tok)-1] + string("0123456789abcdef"[(strings.IndexByte("0123456789abcdef", tok[len(tok)-1])+1)%16])
	if _, err := s.Authenticate(ctx, bad); !errors.Is(err, auth.ErrBadToken) {
		t.Fatalf("wrong secret: %v", err)
	}
	// A second store (another node, or a restart) sees the token.
	s2, err := Open(ctx, l.JetStream(), nil)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { _ = s2.Run(runCtx) }()
	if _, err := s2.Authenticate(ctx, tok); err != nil {
		t.Fatalf("second store: %v", err)
	}
	if _, err := s.Revoke(ctx, rec.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate(ctx, tok); !errors.Is(err, auth.ErrTokenRevoked) {
		t.Fatalf("after revoke: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if ok, why := s2.Valid(rec.ID, time.Now()); !ok && why == "revoked" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("revocation did not reach the other store's cache")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := s.Revoke(ctx, "0000000000000000"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("revoke unknown: %v", err)
	}
}

func TestExpiredAndValidation(t *testing.T) {
	ctx := context.Background()
	l, _ := openLog(t)
	defer l.Close()
	s, err := Open(ctx, l.JetStream(), nil)
	if err != nil {
		t.Fatal(err)
	}
	tok, rec, err := s.Create(ctx, Spec{Role: auth.RoleViewer, TTL: time.Minute}, "admin")
	if err != nil {
		t.Fatal(err)
	}
	if rec.Tenant != auth.DefaultTenant {
		t.Fatalf("tenant %q", rec.Tenant)
	}
	s.now = func() time.Time { return time.Now().Add(2 * time.Minute) }
	if _, err := s.Authenticate(ctx, tok); !errors.Is(err, auth.ErrTokenExpired) {
		t.Fatalf("expired: %v", err)
	}
	for name, spec := range map[string]Spec{
		"bad role":              {Role: "root"},
		"bad category":          {Role: auth.RoleViewer, Categories: []string{"nope"}},
		"non-admin all tenants": {Role: auth.RoleAnalyst, Tenant: "*"},
		"bad tenant":            {Role: auth.RoleAnalyst, Tenant: "a b"},
	} {
		if _, _, err := s.Create(ctx, spec, "admin"); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	_, adm, err := s.Create(ctx, Spec{Role: auth.RoleAdmin}, "admin")
	if err != nil || adm.Tenant != auth.AllTenants {
		t.Fatalf("admin default tenant: %v %+v", err, adm)
	}
}

func TestHTTPAdminOnly(t *testing.T) {
	ctx := context.Background()
	l, _ := openLog(t)
	defer l.Close()
	s, err := Open(ctx, l.JetStream(), nil)
	if err != nil {
		t.Fatal(err)
	}
	adminTok := "admin-secret-token"
	analystTok, _, _ := s.Create(ctx, Spec{Role: auth.RoleAnalyst}, "admin")
	acmeAdminTok, _, _ := s.Create(ctx, Spec{Role: auth.RoleAdmin, Tenant: "acme"}, "admin")
	authn := auth.Chain{auth.NewStaticToken(adminTok, auth.Principal{ID: "admin", Role: auth.RoleAdmin, Tenant: auth.AllTenants}), s}
	mux := http.NewServeMux()
	(&Handler{Store: s}).Register(mux, func(h http.Handler) http.Handler { return auth.Require(authn, h) })
	srv := httptest.NewServer(mux)
	defer srv.Close()

	do := func(method, path, tok, body string) (int, map[string]any) {
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	if st, _ := do("GET", "/api/v1/tokens", "", ""); st != 401 {
		t.Fatalf("no token: %d", st)
	}
	if st, _ := do("GET", "/api/v1/tokens", analystTok, ""); st != 403 {
		t.Fatalf("analyst list: %d", st)
	}
	if st, _ := do("POST", "/api/v1/tokens", analystTok, `{"role":"admin"}`); st != 403 {
		t.Fatalf("analyst create: %d", st)
	}
	st, created := do("POST", "/api/v1/tokens", adminTok, `{"role":"viewer","tenant":"acme","categories":["audit"],"expires_in":"720h"}`)
	if st != 201 || created["token"] == nil || created["hash"] != nil {
		t.Fatalf("create: %d %v", st, created)
	}
	id := created["id"].(string)
	st, list := do("GET", "/api/v1/tokens", adminTok, "")
	if st != 200 || strings.Contains(toJSON(list), created["token"].(string)) || strings.Contains(toJSON(list), `"hash"`) {
		t.Fatalf("list: %d %v", st, list)
	}
	// A tenant-scoped admin cannot mint tokens elsewhere or all-tenant ones.
	if st, _ := do("POST", "/api/v1/tokens", acmeAdminTok, `{"role":"analyst","tenant":"globex"}`); st != 403 {
		t.Fatalf("acme admin creating for globex: %d", st)
	}
	if st, out := do("POST", "/api/v1/tokens", acmeAdminTok, `{"role":"analyst"}`); st != 201 || out["tenant"] != "acme" {
		t.Fatalf("acme admin create: %d %v", st, out)
	}
	if st, _ := do("POST", "/api/v1/tokens", adminTok, `{"role":"viewer","expires_in":"-1h"}`); st != 400 {
		t.Fatalf("negative expiry: %d", st)
	}
	if st, _ := do("DELETE", "/api/v1/tokens/"+id, analystTok, ""); st != 403 {
		t.Fatalf("analyst revoke: %d", st)
	}
	if st, out := do("DELETE", "/api/v1/tokens/"+id, adminTok, ""); st != 200 || out["status"] != "revoked" {
		t.Fatalf("revoke: %d %v", st, out)
	}
	if st, _ := do("DELETE", "/api/v1/tokens/ffffffffffffffff", adminTok, ""); st != 404 {
		t.Fatalf("revoke unknown: %d", st)
	}
	if st, _ := do("GET", "/api/v1/tokens", created["token"].(string), ""); st != 401 {
		t.Fatalf("revoked token still authenticates: %d", st)
	}
}

func toJSON(v any) string { b, _ := json.Marshal(v); return string(b) }

// TestLiveTokensPerTenantBounded: a tenant's live tokens are bounded
// (MaxLiveTokensPerTenant, lowered here to 3); past it Create refuses with
// a conflict naming the tenant, other tenants are unaffected, and a
// revoked token frees its place.
func TestLiveTokensPerTenantBounded(t *testing.T) {
	ctx := context.Background()
	l, _ := openLog(t)
	defer l.Close()
	s, err := Open(ctx, l.JetStream(), nil)
	if err != nil {
		t.Fatal(err)
	}
	s.maxLive = 3
	var ids []string
	for range 3 {
		_, rec, err := s.Create(ctx, Spec{Role: auth.RoleViewer, Tenant: "acme"}, "acme-admin")
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, rec.ID)
	}
	_, _, err = s.Create(ctx, Spec{Role: auth.RoleViewer, Tenant: "acme"}, "acme-admin")
	if domain.KindOf(err) != domain.KindConflict || !strings.Contains(err.Error(), "tenant acme has 3 live tokens") {
		t.Fatalf("a fourth acme token: %v", err)
	}
	if _, _, err := s.Create(ctx, Spec{Role: auth.RoleViewer, Tenant: "globex"}, "admin"); err != nil {
		t.Fatalf("another tenant's token: %v", err)
	}
	if _, err := s.Revoke(ctx, ids[0]); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Create(ctx, Spec{Role: auth.RoleViewer, Tenant: "acme"}, "acme-admin"); err != nil {
		t.Fatalf("after a revocation: %v", err)
	}
}
