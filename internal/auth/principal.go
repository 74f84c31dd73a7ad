// Package auth owns identity and access: who a bearer token belongs to (the
// Principal), what that principal may do, and the HTTP seam that puts an
// authenticated principal into each request's context. Every transport asks
// this package, and only this package, whether an event may be shown.
package auth

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/vigil-sec/vigil/internal/event"
)

// Role is one of the SPEC 9 roles.
type Role string

const (
	RoleAdmin     Role = "admin"
	RolePublisher Role = "publisher"
	RoleAnalyst   Role = "analyst"
	RoleViewer    Role = "viewer"
)

// AllTenants in Principal.Tenant means the principal spans every tenant.
const AllTenants = "*"

// DefaultTenant is the tenant of a single-tenant setup.
const DefaultTenant = "default"

// Principal is the authenticated caller behind a request or connection.
type Principal struct {
	ID         string           `json:"id"` // token id, never the token
	Name       string           `json:"name,omitempty"`
	Role       Role             `json:"role"`
	Tenant     string           `json:"tenant"`               // AllTenants for a cross-tenant admin
	Categories []event.Category `json:"categories,omitempty"` // empty: every category
	// ExpiresAt is when the credential behind this principal stops being
	// valid (zero: never). Open connections are closed once it passes.
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	// JTI and IssuedAt identify a JWT credential, for revocation before
	// its expiry (empty for other credentials).
	JTI      string    `json:"jti,omitempty"`
	IssuedAt time.Time `json:"issued_at,omitzero"`
}

// Roles lists every role, most privileged first.
func Roles() []Role { return []Role{RoleAdmin, RolePublisher, RoleAnalyst, RoleViewer} }

// ParseRole validates a role name.
func ParseRole(s string) (Role, error) {
	r := Role(strings.ToLower(strings.TrimSpace(s)))
	if slices.Contains(Roles(), r) {
		return r, nil
	}
	return "", fmt.Errorf("unknown role %q (valid: admin, publisher, analyst, viewer)", s)
}

// Expired reports whether the principal's credential has expired at now.
func (p *Principal) Expired(now time.Time) bool {
	return !p.ExpiresAt.IsZero() && !now.Before(p.ExpiresAt)
}

// CanPublish reports whether the principal may ingest events.
func (p *Principal) CanPublish() bool { return p.Role == RoleAdmin || p.Role == RolePublisher }

// CanRead reports whether the principal may read events and detections.
func (p *Principal) CanRead() bool { return p.Role != RolePublisher }

// CanUpdateDetections reports whether the principal may change a detection.
func (p *Principal) CanUpdateDetections() bool { return p.Role == RoleAdmin || p.Role == RoleAnalyst }

// IsAdmin reports whether the principal may manage tokens and connections.
// An admin's reach is still bounded by its tenant: see Administers.
func (p *Principal) IsAdmin() bool { return p.Role == RoleAdmin }

// IsGlobalAdmin reports whether the principal is an admin of all tenants:
// only such an admin may use what spans every tenant (profiles, the
// integrity walk over the whole log, JWT revocations).
func (p *Principal) IsGlobalAdmin() bool { return p.Role == RoleAdmin && p.Tenant == AllTenants }

// Administers reports whether admin p may see and act on something that
// belongs to tenant t (a connection of a principal of tenant t, a token of
// tenant t). A tenant-scoped admin administers only its own tenant; a
// thing of every tenant (t == AllTenants) or of no known tenant (t == "")
// belongs to the admins of all tenants only.
func (p *Principal) Administers(t string) bool {
	if p.Role != RoleAdmin {
		return false
	}
	return p.Tenant == AllTenants || (t != "" && t != AllTenants && p.Tenant == t)
}

// PublishTenant is the tenant stamped on events this principal publishes.
func (p *Principal) PublishTenant() string {
	if p.Tenant == AllTenants || p.Tenant == "" {
		return DefaultTenant
	}
	return p.Tenant
}

// SeesTenant reports whether events of tenant t are visible.
func (p *Principal) SeesTenant(t string) bool { return p.Tenant == AllTenants || p.Tenant == t }

// SeesCategory reports whether events of category c are visible.
func (p *Principal) SeesCategory(c event.Category) bool {
	return len(p.Categories) == 0 || slices.Contains(p.Categories, c)
}

// MayPublish reports whether the principal may publish events of category
// c. Detections are findings SOC analysts act on, so a publisher needs the
// detection category granted explicitly (a token "limited" to nothing does
// not qualify); the detection engine appends its own without a token.
func (p *Principal) MayPublish(c event.Category) bool {
	if !p.CanPublish() || !p.SeesCategory(c) {
		return false
	}
	return c != event.CategoryDetection || p.IsAdmin() || slices.Contains(p.Categories, event.CategoryDetection)
}

// MayRead is the one authorization check for showing an event: every
// transport, replay and history query goes through it.
func (p *Principal) MayRead(e *event.Event) bool {
	return p.CanRead() && p.SeesTenant(e.Tenant) && p.SeesCategory(e.Category)
}

type ctxKey struct{}

// WithPrincipal returns a context carrying p.
func WithPrincipal(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, ctxKey{}, p)
}

// FromContext returns the principal put there by the middleware.
func FromContext(ctx context.Context) (*Principal, bool) {
	p, ok := ctx.Value(ctxKey{}).(*Principal)
	return p, ok && p != nil
}
