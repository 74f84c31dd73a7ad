// Package jwtauth owns JWT bearer tokens: verifying HS256 (shared secret),
// RS256 and ES256 (PEM public keys or a JWKS URL, cached and refreshed),
// enforcing exp/nbf with a small clock skew, and mapping claims onto an
// auth.Principal. Each key type is pinned to its one algorithm, so "none",
// HS/RS confusion and a JWKS key used with the wrong algorithm are refused.
package jwtauth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/event"
)

// Config says which JWTs are accepted and how their claims map to a
// principal. At least one of HMACSecret, PublicKeyFiles/PublicKeysPEM or
// JWKSURL must be set for JWTs to be accepted at all.
type Config struct {
	// HMACSecret enables HS256 with this shared secret (at least 32 bytes).
	HMACSecret string `json:"-" yaml:"hmac_secret"`
	// HMACSecretFile reads the secret from a file instead (trimmed).
	HMACSecretFile string `json:"hmac_secret_file,omitempty" yaml:"hmac_secret_file"`
	// PublicKeyFiles are PEM files with RSA (RS256) or EC P-256 (ES256)
	// public keys or certificates.
	PublicKeyFiles []string `json:"public_key_files,omitempty" yaml:"public_key_files"`
	// PublicKeysPEM are PEM blocks given inline (tests, secrets managers).
	PublicKeysPEM []string `json:"-" yaml:"public_keys_pem"`
	// JWKSURL is fetched at start and refreshed every JWKSRefresh (default
	// 15m) and, rate-limited, when a token names an unknown kid.
	JWKSURL     string        `json:"jwks_url,omitempty" yaml:"jwks_url"`
	JWKSRefresh time.Duration `json:"jwks_refresh,omitempty" yaml:"jwks_refresh"`
	// Issuer and Audience, when set, must match iss and aud.
	Issuer   string `json:"issuer,omitempty" yaml:"issuer"`
	Audience string `json:"audience,omitempty" yaml:"audience"`
	// Leeway is the clock skew allowed on exp and nbf (default 30s).
	Leeway time.Duration `json:"leeway,omitempty" yaml:"leeway"`
	// Claim names (defaults "role", "tenant", "categories"). A dotted name
	// ("realm_access.role") looks into nested objects.
	RoleClaim       string `json:"role_claim,omitempty" yaml:"role_claim"`
	TenantClaim     string `json:"tenant_claim,omitempty" yaml:"tenant_claim"`
	CategoriesClaim string `json:"categories_claim,omitempty" yaml:"categories_claim"`
	// HTTPClient fetches the JWKS (default: a client with a 10s timeout).
	HTTPClient *http.Client `json:"-" yaml:"-"`
	// Now is the clock (tests); default time.Now.
	Now func() time.Time `json:"-" yaml:"-"`
}

// Enabled reports whether any JWT key source is configured.
func (c Config) Enabled() bool {
	return c.HMACSecret != "" || c.HMACSecretFile != "" || len(c.PublicKeyFiles) > 0 || len(c.PublicKeysPEM) > 0 || c.JWKSURL != ""
}

// Authenticator verifies JWTs. It implements auth.Authenticator.
type Authenticator struct {
	cfg     Config
	hmac    []byte
	rsaKeys []*rsa.PublicKey
	ecKeys  []*ecdsa.PublicKey
	jwks    keyfunc.Keyfunc
	methods []string
	parser  *jwt.Parser
}

// New builds an authenticator. The JWKS refresh goroutine, if any, is
// owned by ctx: it stops when ctx ends.
func New(ctx context.Context, cfg Config) (*Authenticator, error) {
	if cfg.Leeway == 0 {
		cfg.Leeway = 30 * time.Second
	}
	if cfg.RoleClaim == "" {
		cfg.RoleClaim = "role"
	}
	if cfg.TenantClaim == "" {
		cfg.TenantClaim = "tenant"
	}
	if cfg.CategoriesClaim == "" {
		cfg.CategoriesClaim = "categories"
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	a := &Authenticator{cfg: cfg}
	secret := cfg.HMACSecret
	if cfg.HMACSecretFile != "" {
		b, err := os.ReadFile(cfg.HMACSecretFile)
		if err != nil {
			return nil, fmt.Errorf("jwtauth: read hmac secret: %w", err)
		}
		secret = strings.TrimSpace(string(b))
	}
	if secret != "" {
		if len(secret) < 32 {
			return nil, errors.New("jwtauth: hmac secret must be at least 32 bytes")
		}
		a.hmac = []byte(secret)
		a.methods = append(a.methods, jwt.SigningMethodHS256.Alg())
	}
	var pems [][]byte
	for _, f := range cfg.PublicKeyFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("jwtauth: read public key: %w", err)
		}
		pems = append(pems, b)
	}
	for _, p := range cfg.PublicKeysPEM {
		pems = append(pems, []byte(p))
	}
	for i, b := range pems {
		if err := a.addPEM(b); err != nil {
			return nil, fmt.Errorf("jwtauth: public key %d: %w", i+1, err)
		}
	}
	if cfg.JWKSURL != "" {
		refresh := cfg.JWKSRefresh
		if refresh <= 0 {
			refresh = 15 * time.Minute
		}
		client := cfg.HTTPClient
		if client == nil {
			client = &http.Client{Timeout: 10 * time.Second}
		}
		noErrFirst := false // a JWKS that cannot be fetched at start is a configuration error
		kf, err := keyfunc.NewDefaultOverrideCtx(ctx, []string{cfg.JWKSURL}, keyfunc.Override{
			Client:                    client,
			HTTPTimeout:               10 * time.Second,
			NoErrorReturnFirstHTTPReq: &noErrFirst,
			RefreshInterval:           refresh,
			RefreshUnknownKID:         rate.NewLimiter(rate.Every(30*time.Second), 1),
			// Never hold a request waiting for the refresh limiter: tokens
			// naming random kids must not be a way to stall the server.
			RateLimitWaitMax: 100 * time.Millisecond,
		})
		if err != nil {
			return nil, fmt.Errorf("jwtauth: jwks %s: %w", cfg.JWKSURL, err)
		}
		a.jwks = kf
	}
	if len(a.rsaKeys) > 0 || a.jwks != nil {
		a.methods = append(a.methods, jwt.SigningMethodRS256.Alg())
	}
	if len(a.ecKeys) > 0 || a.jwks != nil {
		a.methods = append(a.methods, jwt.SigningMethodES256.Alg())
	}
	if len(a.methods) == 0 {
		return nil, errors.New("jwtauth: no key configured (hmac secret, public keys or JWKS URL)")
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods(a.methods),
		jwt.WithLeeway(cfg.Leeway),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithTimeFunc(cfg.Now),
	}
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	if cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(cfg.Audience))
	}
	a.parser = jwt.NewParser(opts...)
	return a, nil
}

func (a *Authenticator) addPEM(b []byte) error {
	found := false
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			break
		}
		var key any
		switch block.Type {
		case "PUBLIC KEY":
			k, err := x509.ParsePKIXPublicKey(block.Bytes)
			if err != nil {
				return fmt.Errorf("parse public key: %w", err)
			}
			key = k
		case "RSA PUBLIC KEY":
			k, err := x509.ParsePKCS1PublicKey(block.Bytes)
			if err != nil {
				return fmt.Errorf("parse rsa public key: %w", err)
			}
			key = k
		case "CERTIFICATE":
			c, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return fmt.Errorf("parse certificate: %w", err)
			}
			key = c.PublicKey
		default:
			// A private key in a public-key file is a mistake worth stopping for.
			return fmt.Errorf("unsupported PEM block %q (want PUBLIC KEY or CERTIFICATE)", block.Type)
		}
		switch k := key.(type) {
		case *rsa.PublicKey:
			if k.N.BitLen() < 2048 {
				return errors.New("rsa key shorter than 2048 bits")
			}
			a.rsaKeys = append(a.rsaKeys, k)
		case *ecdsa.PublicKey:
			if k.Curve != elliptic.P256() {
				return errors.New("ec key is not on P-256 (ES256)")
			}
			a.ecKeys = append(a.ecKeys, k)
		default:
			return fmt.Errorf("unsupported key type %T (want RSA or EC P-256)", key)
		}
		found = true
	}
	if !found {
		return errors.New("no PEM block found")
	}
	return nil
}

// Methods lists the accepted algorithms.
func (a *Authenticator) Methods() []string { return slices.Clone(a.methods) }

// LooksLikeJWT reports whether tok has the three-segment JWS shape, so a
// chain can skip JWT parsing for opaque tokens.
func LooksLikeJWT(tok string) bool {
	return strings.Count(tok, ".") == 2 && strings.HasPrefix(tok, "eyJ")
}

// maxTokenLen bounds what is parsed at all.
const maxTokenLen = 16 << 10

// Authenticate implements auth.Authenticator.
func (a *Authenticator) Authenticate(ctx context.Context, tok string) (*auth.Principal, error) {
	if !LooksLikeJWT(tok) {
		return nil, auth.ErrBadToken // not ours: let the chain's other authenticators say why
	}
	if len(tok) > maxTokenLen {
		return nil, auth.ErrTokenMalformed
	}
	claims := jwt.MapClaims{}
	_, err := a.parser.ParseWithClaims(tok, claims, a.keyFor(ctx))
	if err != nil {
		switch {
		case errors.Is(err, jwt.ErrTokenExpired):
			return nil, auth.ErrTokenExpired
		case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
			return nil, auth.ErrTokenNotYet
		case errors.Is(err, jwt.ErrTokenMalformed):
			return nil, auth.ErrTokenMalformed
		case errors.Is(err, jwt.ErrTokenSignatureInvalid), errors.Is(err, jwt.ErrTokenUnverifiable):
			return nil, auth.Refused("jwt signature or algorithm not accepted")
		case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
			return nil, auth.Refused("jwt has no exp claim")
		case errors.Is(err, jwt.ErrTokenInvalidIssuer), errors.Is(err, jwt.ErrTokenInvalidAudience):
			return nil, auth.Refused("jwt issuer or audience not accepted")
		}
		return nil, auth.Refused("jwt not accepted")
	}
	return a.principal(claims)
}

// keyFor pins each algorithm to its key type: HS256 gets only the HMAC
// secret, RS256 only RSA keys, ES256 only P-256 keys. A public key is never
// handed out as an HMAC secret, which is what HS/RS confusion relies on.
func (a *Authenticator) keyFor(ctx context.Context) jwt.Keyfunc {
	return func(t *jwt.Token) (any, error) {
		switch t.Method {
		case jwt.SigningMethodHS256:
			if a.hmac == nil {
				return nil, errors.New("HS256 not configured")
			}
			return a.hmac, nil
		case jwt.SigningMethodRS256:
			keys := make([]jwt.VerificationKey, 0, len(a.rsaKeys)+2)
			for _, k := range a.rsaKeys {
				keys = append(keys, k)
			}
			keys = append(keys, a.jwksKeys(ctx, t, func(k any) bool { _, ok := k.(*rsa.PublicKey); return ok })...)
			return keySet(keys)
		case jwt.SigningMethodES256:
			keys := make([]jwt.VerificationKey, 0, len(a.ecKeys)+2)
			for _, k := range a.ecKeys {
				keys = append(keys, k)
			}
			keys = append(keys, a.jwksKeys(ctx, t, func(k any) bool {
				ec, ok := k.(*ecdsa.PublicKey)
				return ok && ec.Curve == elliptic.P256()
			})...)
			return keySet(keys)
		}
		return nil, fmt.Errorf("algorithm %v not accepted", t.Header["alg"])
	}
}

func keySet(keys []jwt.VerificationKey) (any, error) {
	if len(keys) == 0 {
		return nil, errors.New("no key for this algorithm")
	}
	return jwt.VerificationKeySet{Keys: keys}, nil
}

// jwksKeys returns the JWKS keys that fit the token (by kid when it has
// one) and pass typeOK.
func (a *Authenticator) jwksKeys(ctx context.Context, t *jwt.Token, typeOK func(any) bool) []jwt.VerificationKey {
	if a.jwks == nil {
		return nil
	}
	var out []jwt.VerificationKey
	if _, hasKID := t.Header["kid"]; hasKID {
		k, err := a.jwks.KeyfuncCtx(ctx)(t) // also checks the JWK's own alg
		if err == nil && typeOK(k) {
			out = append(out, k)
		}
		return out
	}
	set, err := a.jwks.VerificationKeySet(ctx)
	if err != nil {
		return nil
	}
	for _, k := range set.Keys {
		if typeOK(k) {
			out = append(out, k)
		}
	}
	return out
}

// principal maps claims onto a Principal. Missing or unknown values fail
// closed: a token without a valid role is refused, never defaulted.
func (a *Authenticator) principal(claims jwt.MapClaims) (*auth.Principal, error) {
	roleV, _ := lookup(claims, a.cfg.RoleClaim)
	roles := stringsOf(roleV)
	if len(roles) != 1 {
		return nil, auth.Refused(fmt.Sprintf("jwt claim %q must name exactly one role", a.cfg.RoleClaim))
	}
	role, err := auth.ParseRole(roles[0])
	if err != nil {
		return nil, auth.Refused("jwt " + err.Error())
	}
	p := &auth.Principal{Role: role}
	sub, _ := claims.GetSubject()
	if sub == "" {
		if jti, ok := claims["jti"].(string); ok {
			sub = jti
		}
	}
	if sub == "" {
		return nil, auth.Refused("jwt has neither sub nor jti")
	}
	iss, _ := claims.GetIssuer()
	p.ID = "jwt:" + sub
	p.Name = sub
	if iss != "" {
		p.Name = sub + " (" + iss + ")"
	}
	tenantV, _ := lookup(claims, a.cfg.TenantClaim)
	tenants := stringsOf(tenantV)
	switch {
	case len(tenants) > 1:
		return nil, auth.Refused(fmt.Sprintf("jwt claim %q must name one tenant", a.cfg.TenantClaim))
	case len(tenants) == 1 && tenants[0] == auth.AllTenants:
		if role != auth.RoleAdmin {
			return nil, auth.Refused("only admin tokens may span all tenants")
		}
		p.Tenant = auth.AllTenants
	case len(tenants) == 1:
		if !event.ValidTenant(tenants[0]) {
			return nil, auth.Refused(fmt.Sprintf("jwt tenant %q is not a valid tenant name", tenants[0]))
		}
		p.Tenant = tenants[0]
	case role == auth.RoleAdmin:
		p.Tenant = auth.AllTenants
	default:
		p.Tenant = auth.DefaultTenant
	}
	catV, hasCats := lookup(claims, a.cfg.CategoriesClaim)
	cats := stringsOf(catV)
	if hasCats && catV != nil && len(cats) == 0 {
		// A present but unreadable or empty restriction must not widen to
		// "every category".
		return nil, auth.Refused(fmt.Sprintf("jwt claim %q must list categories", a.cfg.CategoriesClaim))
	}
	for _, c := range cats {
		cat, err := event.ParseCategory(c)
		if err != nil {
			return nil, auth.Refused("jwt " + err.Error())
		}
		p.Categories = append(p.Categories, cat)
	}
	if jti, ok := claims["jti"].(string); ok {
		p.JTI = jti // for revocation of this one JWT
	}
	if iat, err := claims.GetIssuedAt(); err == nil && iat != nil {
		p.IssuedAt = iat.Time // for revocation of a subject's older JWTs
	}
	if exp, err := claims.GetExpirationTime(); err == nil && exp != nil {
		p.ExpiresAt = exp.Time.Add(a.cfg.Leeway)
	}
	return p, nil
}

// lookup finds a claim by a possibly dotted name.
func lookup(claims jwt.MapClaims, name string) (any, bool) {
	if v, ok := claims[name]; ok {
		return v, true
	}
	var cur any = map[string]any(claims)
	for _, part := range strings.Split(name, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[part]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// stringsOf accepts a string (comma- or space-separated) or an array of
// strings; anything else yields nothing.
func stringsOf(v any) []string {
	var out []string
	add := func(s string) {
		out = append(out, strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' })...)
	}
	switch x := v.(type) {
	case string:
		add(x)
	case []any:
		for _, e := range x {
			s, ok := e.(string)
			if !ok {
				return nil
			}
			add(s)
		}
	}
	return out
}
