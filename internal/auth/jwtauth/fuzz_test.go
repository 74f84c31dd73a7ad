package jwtauth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"

	"github.com/vigil-sec/vigil/internal/auth"
)

// fuzzSecret signs the HS256 seeds in testdata/fuzz/FuzzAuthenticate.
const fuzzSecret = "vigil-fuzz-secret-0123456789abcdef0123"

// FuzzAuthenticate feeds arbitrary bearer strings to the JWT path. It must
// never panic, and anything it accepts must carry a pinned algorithm and a
// well-formed principal.
func FuzzAuthenticate(f *testing.F) {
	a, err := New(context.Background(), Config{HMACSecret: fuzzSecret,
		PublicKeysPEM: []string{pubPEM(f, &rsaKey.PublicKey), pubPEM(f, &ecKey.PublicKey)}})
	if err != nil {
		f.Fatal(err)
	}
	f.Add("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.")
	f.Add("")
	f.Fuzz(func(t *testing.T, tok string) {
		p, err := a.Authenticate(context.Background(), tok)
		if err != nil {
			return
		}
		head, _, _ := strings.Cut(tok, ".")
		raw, derr := base64.RawURLEncoding.DecodeString(head)
		var h struct {
			Alg string `json:"alg"`
		}
		if derr != nil || json.Unmarshal(raw, &h) != nil || (h.Alg != "HS256" && h.Alg != "RS256" && h.Alg != "ES256") {
			t.Fatalf("accepted token with header %q", raw)
		}
		if _, err := auth.ParseRole(string(p.Role)); err != nil || p.Tenant == "" || p.ID == "" {
			t.Fatalf("accepted token gave principal %+v", p)
		}
		if p.Tenant == auth.AllTenants && p.Role != auth.RoleAdmin {
			t.Fatalf("non-admin spanning all tenants: %+v", p)
		}
		for _, c := range p.Categories {
			if !c.Valid() {
				t.Fatalf("invalid category %q", c)
			}
		}
	})
}
