package tokens

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/domain"
	"github.com/vigil-sec/vigil/internal/event"
)

// Handler serves the admin token API (SPEC 9). Routes must be wrapped by
// auth.Require; the handler itself insists on the admin role.
//
//	POST   /api/v1/tokens       create; the response holds the token, once
//	GET    /api/v1/tokens       list (never tokens or hashes)
//	GET    /api/v1/tokens/{id}  one record
//	DELETE /api/v1/tokens/{id}  revoke; open connections close within seconds
//
//	POST   /api/v1/tokens/jwt-revocations        revoke a JWT (jti) or a subject's JWTs (sub)
//	GET    /api/v1/tokens/jwt-revocations        list
//	DELETE /api/v1/tokens/jwt-revocations/{key}  lift a revocation
type Handler struct {
	Store    *Store
	JWT      *JWTRevocations // nil: no JWT revocation routes
	Enforcer *Enforcer       // poked after a revocation; may be nil
	Logger   *slog.Logger
}

// CreateRequest is the body of POST /api/v1/tokens.
type CreateRequest struct {
	Name       string   `json:"name,omitempty"`
	Role       string   `json:"role"`
	Tenant     string   `json:"tenant,omitempty"`
	Categories []string `json:"categories,omitempty"`
	// ExpiresIn is a Go duration ("720h"); empty: no expiry.
	ExpiresIn string `json:"expires_in,omitempty"`
}

// View is a record as the API shows it: everything but the hash.
type View struct {
	ID         string     `json:"id"`
	Name       string     `json:"name,omitempty"`
	Role       auth.Role  `json:"role"`
	Tenant     string     `json:"tenant"`
	Categories []string   `json:"categories,omitempty"`
	CreatedAt  time.Time  `json:"created_at"`
	CreatedBy  string     `json:"created_by,omitempty"`
	ExpiresAt  *time.Time `json:"expires_at,omitempty"`
	RevokedAt  *time.Time `json:"revoked_at,omitempty"`
	Status     string     `json:"status"` // active, expired, revoked
}

// CreateResponse is the answer to a create: the view plus the token.
type CreateResponse struct {
	View
	Token string `json:"token"`
}

func viewOf(r *Record, now time.Time) View {
	v := View{ID: r.ID, Name: r.Name, Role: r.Role, Tenant: r.Tenant, Categories: r.Categories,
		CreatedAt: r.CreatedAt, CreatedBy: r.CreatedBy, ExpiresAt: r.ExpiresAt, RevokedAt: r.RevokedAt, Status: "active"}
	switch {
	case r.Revoked():
		v.Status = "revoked"
	case r.Expired(now):
		v.Status = "expired"
	}
	return v
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store") // responses may carry a new token
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// admin returns the calling admin or answers 403.
func admin(w http.ResponseWriter, r *http.Request) (*auth.Principal, bool) {
	p, ok := auth.FromContext(r.Context())
	if !ok {
		auth.WriteErr(w, domain.Errorf(domain.KindUnauthenticated, "missing bearer token"))
		return nil, false
	}
	if !p.IsAdmin() {
		auth.WriteErr(w, domain.Errorf(domain.KindForbidden, "token management needs the admin role"))
		return nil, false
	}
	return p, true
}

// globalAdmin returns the calling admin of all tenants or answers 403: a
// JWT's tenant is unknown until it is presented, so only such an admin may
// manage JWT revocations.
func globalAdmin(w http.ResponseWriter, r *http.Request) (*auth.Principal, bool) {
	p, ok := admin(w, r)
	if ok && !p.IsGlobalAdmin() {
		auth.WriteErr(w, domain.Errorf(domain.KindForbidden, "JWT revocations need an admin of all tenants"))
		return nil, false
	}
	return p, ok
}

// manages reports whether admin p may see and change record r: a
// tenant-scoped admin manages only its own tenant's tokens, never an
// all-tenant one.
func manages(p *auth.Principal, r *Record) bool { return p.Administers(r.Tenant) }

// Create handles POST /api/v1/tokens.
func (h *Handler) Create(w http.ResponseWriter, r *http.Request) {
	p, ok := admin(w, r)
	if !ok {
		return
	}
	var req CreateRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		auth.WriteErr(w, domain.Errorf(domain.KindInvalid, "invalid body: %w", err))
		return
	}
	spec := Spec{Name: req.Name, Role: auth.Role(req.Role), Tenant: req.Tenant, Categories: req.Categories}
	if req.ExpiresIn != "" {
		d, err := time.ParseDuration(req.ExpiresIn)
		if err != nil || d <= 0 {
			auth.WriteErr(w, domain.Errorf(domain.KindInvalid, "expires_in: %q is not a positive duration (e.g. 720h)", req.ExpiresIn))
			return
		}
		spec.TTL = d
	}
	// A scoped admin cannot mint a token wider than itself: not for
	// another tenant or all tenants, not for categories it does not have,
	// and not outliving it.
	if p.Tenant != auth.AllTenants {
		if spec.Tenant == "" {
			spec.Tenant = p.Tenant
		}
		if spec.Tenant != p.Tenant {
			auth.WriteErr(w, domain.Errorf(domain.KindForbidden, "an admin of tenant %s may create tokens only for that tenant", p.Tenant))
			return
		}
	}
	if len(p.Categories) > 0 {
		if len(spec.Categories) == 0 {
			auth.WriteErr(w, domain.Errorf(domain.KindForbidden, "this admin token is limited to categories; name them for the new token"))
			return
		}
		for _, c := range spec.Categories {
			if !p.SeesCategory(event.Category(c)) {
				auth.WriteErr(w, domain.Errorf(domain.KindForbidden, "this admin token may not grant category %q", c))
				return
			}
		}
	}
	if !p.ExpiresAt.IsZero() {
		left := time.Until(p.ExpiresAt)
		switch {
		case left <= 0:
			auth.WriteErr(w, domain.Errorf(domain.KindUnauthenticated, "this admin token has expired"))
			return
		case spec.TTL > left:
			auth.WriteErr(w, domain.Errorf(domain.KindForbidden, "expires_in: a token may not outlive the admin token creating it (at most %s)", left.Truncate(time.Second)))
			return
		}
		// No expiry asked for: the creator's (the response's expires_at
		// says so); and a TTL just under left never ends past it.
		spec.NotAfter = p.ExpiresAt
	}
	tok, rec, err := h.Store.Create(r.Context(), spec, p.ID)
	if err != nil {
		if domain.KindOf(err) == domain.KindConflict {
			auth.WriteErr(w, err) // 409: the tenant's live tokens at their bound
			return
		}
		auth.WriteErr(w, domain.Errorf(domain.KindInvalid, "%w", err))
		return
	}
	if h.Logger != nil {
		h.Logger.Info("token created", "token_id", rec.ID, "role", rec.Role, "tenant", rec.Tenant, "by", p.ID)
	}
	writeJSON(w, http.StatusCreated, CreateResponse{View: viewOf(rec, time.Now()), Token: tok})
}

// List handles GET /api/v1/tokens.
func (h *Handler) List(w http.ResponseWriter, r *http.Request) {
	p, ok := admin(w, r)
	if !ok {
		return
	}
	recs, err := h.Store.List(r.Context())
	if err != nil {
		auth.WriteErr(w, domain.Errorf(domain.KindUnavailable, "%w", err))
		return
	}
	now := time.Now()
	out := make([]View, 0, len(recs))
	for _, rec := range recs {
		if manages(p, rec) {
			out = append(out, viewOf(rec, now))
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"tokens": out})
}

// Get handles GET /api/v1/tokens/{id}.
func (h *Handler) Get(w http.ResponseWriter, r *http.Request) {
	p, ok := admin(w, r)
	if !ok {
		return
	}
	rec, err := h.Store.Get(r.Context(), r.PathValue("id"))
	if err != nil || !manages(p, rec) {
		h.notFound(w, err)
		return
	}
	writeJSON(w, http.StatusOK, viewOf(rec, time.Now()))
}

// Revoke handles DELETE /api/v1/tokens/{id}.
func (h *Handler) Revoke(w http.ResponseWriter, r *http.Request) {
	p, ok := admin(w, r)
	if !ok {
		return
	}
	id := r.PathValue("id")
	rec, err := h.Store.Get(r.Context(), id)
	if err != nil || !manages(p, rec) {
		h.notFound(w, err)
		return
	}
	rec, err = h.Store.Revoke(r.Context(), id)
	if err != nil {
		h.notFound(w, err)
		return
	}
	if h.Enforcer != nil {
		h.Enforcer.Poke()
	}
	if h.Logger != nil {
		h.Logger.Info("token revoked", "token_id", id, "by", p.ID)
	}
	writeJSON(w, http.StatusOK, viewOf(rec, time.Now()))
}

func (h *Handler) notFound(w http.ResponseWriter, err error) {
	if err != nil && !errors.Is(err, ErrNotFound) {
		auth.WriteErr(w, domain.Errorf(domain.KindUnavailable, "%w", err))
		return
	}
	auth.WriteErr(w, domain.Errorf(domain.KindNotFound, "no such token"))
}

// Register adds the token routes to mux, each wrapped by wrap (auth.Require).
func (h *Handler) Register(mux *http.ServeMux, wrap func(http.Handler) http.Handler) {
	mux.Handle("POST /api/v1/tokens", wrap(http.HandlerFunc(h.Create)))
	mux.Handle("GET /api/v1/tokens", wrap(http.HandlerFunc(h.List)))
	mux.Handle("GET /api/v1/tokens/{id}", wrap(http.HandlerFunc(h.Get)))
	mux.Handle("DELETE /api/v1/tokens/{id}", wrap(http.HandlerFunc(h.Revoke)))
	if h.JWT != nil {
		mux.Handle("POST /api/v1/tokens/jwt-revocations", wrap(http.HandlerFunc(h.RevokeJWT)))
		mux.Handle("GET /api/v1/tokens/jwt-revocations", wrap(http.HandlerFunc(h.ListJWTRevocations)))
		mux.Handle("DELETE /api/v1/tokens/jwt-revocations/{key}", wrap(http.HandlerFunc(h.DeleteJWTRevocation)))
	}
}

// JWTRevokeRequest is the body of POST /api/v1/tokens/jwt-revocations:
// exactly one of JTI and Subject.
type JWTRevokeRequest struct {
	JTI     string `json:"jti,omitempty"`
	Subject string `json:"sub,omitempty"`
	// IssuedBefore (RFC 3339) limits a subject revocation to JWTs issued
	// at or before it; default now.
	IssuedBefore string `json:"issued_before,omitempty"`
	// ExpiresAt (RFC 3339) is when the revoked JWTs expire anyway; the
	// entry is dropped then. Default: kept until deleted.
	ExpiresAt string `json:"expires_at,omitempty"`
}

// RevokeJWT handles POST /api/v1/tokens/jwt-revocations. Only an admin of
// all tenants may revoke JWTs: a JWT's tenant is not known until it is
// presented.
func (h *Handler) RevokeJWT(w http.ResponseWriter, r *http.Request) {
	p, ok := globalAdmin(w, r)
	if !ok {
		return
	}
	var req JWTRevokeRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, 16<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		auth.WriteErr(w, domain.Errorf(domain.KindInvalid, "body: %w", err))
		return
	}
	var before time.Time
	var expires *time.Time
	for _, f := range []struct {
		name, v string
		dst     func(time.Time)
	}{
		{"issued_before", req.IssuedBefore, func(t time.Time) { before = t }},
		{"expires_at", req.ExpiresAt, func(t time.Time) { expires = &t }},
	} {
		if f.v == "" {
			continue
		}
		t, err := time.Parse(time.RFC3339, f.v)
		if err != nil {
			auth.WriteErr(w, domain.Errorf(domain.KindInvalid, "%s: not an RFC 3339 time: %s", f.name, f.v))
			return
		}
		f.dst(t)
	}
	if req.JTI != "" && !before.IsZero() {
		auth.WriteErr(w, domain.Errorf(domain.KindInvalid, "issued_before applies to sub revocations only"))
		return
	}
	rev, err := h.JWT.Add(r.Context(), req.JTI, req.Subject, before, expires, p.ID)
	if err != nil {
		kind := domain.KindUnavailable // the revocation store did not answer
		if errors.Is(err, ErrBadRevocation) {
			kind = domain.KindInvalid
		}
		auth.WriteErr(w, domain.Errorf(kind, "%w", err))
		return
	}
	if h.Enforcer != nil {
		h.Enforcer.Poke()
	}
	if h.Logger != nil {
		h.Logger.Info("jwt revoked", "key", rev.Key, "by", p.ID)
	}
	writeJSON(w, http.StatusCreated, rev)
}

// ListJWTRevocations handles GET /api/v1/tokens/jwt-revocations. Only an
// admin of all tenants may list: the entries name subjects of every tenant.
func (h *Handler) ListJWTRevocations(w http.ResponseWriter, r *http.Request) {
	if _, ok := globalAdmin(w, r); !ok {
		return
	}
	revs := h.JWT.List()
	writeJSON(w, http.StatusOK, map[string]any{"revocations": revs, "count": len(revs)})
}

// DeleteJWTRevocation handles DELETE /api/v1/tokens/jwt-revocations/{key}.
func (h *Handler) DeleteJWTRevocation(w http.ResponseWriter, r *http.Request) {
	if _, ok := globalAdmin(w, r); !ok {
		return
	}
	if err := h.JWT.Delete(r.Context(), r.PathValue("key")); err != nil {
		if errors.Is(err, ErrNotFound) {
			auth.WriteErr(w, domain.Errorf(domain.KindNotFound, "no jwt revocation with key %s", r.PathValue("key")))
			return
		}
		auth.WriteErr(w, domain.Errorf(domain.KindUnavailable, "%w", err))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
