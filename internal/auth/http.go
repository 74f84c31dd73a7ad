package auth

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
)

// ErrBadToken is returned for a missing, unknown, expired or revoked token.
var ErrBadToken = errors.New("invalid or missing token")

// Authenticator turns a bearer token into a principal.
type Authenticator interface {
	Authenticate(ctx context.Context, token string) (*Principal, error)
}

// TokenFromRequest takes the bearer token from the Authorization header or,
// for browsers that cannot set headers on WebSockets and EventSource, from
// the token query parameter.
func TokenFromRequest(r *http.Request) string {
	if h := r.Header.Get("Authorization"); h != "" {
		if tok, ok := strings.CutPrefix(h, "Bearer "); ok {
			return strings.TrimSpace(tok)
		}
		if tok, ok := strings.CutPrefix(h, "bearer "); ok {
			return strings.TrimSpace(tok)
		}
	}
	return r.URL.Query().Get("token")
}

// Require wraps next so it runs only for an authenticated principal, which it
// finds in the request context. Unauthenticated requests get 401.
func Require(authn Authenticator, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok := TokenFromRequest(r)
		if tok == "" {
			WriteError(w, http.StatusUnauthorized, "missing bearer token (Authorization: Bearer <token> or ?token=)")
			return
		}
		p, err := authn.Authenticate(r.Context(), tok)
		if err != nil {
			WriteError(w, http.StatusUnauthorized, err.Error())
			return
		}
		next.ServeHTTP(w, r.WithContext(WithPrincipal(r.Context(), p)))
	})
}

// WriteError writes the JSON error body every REST endpoint uses.
func WriteError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}
