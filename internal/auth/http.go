package auth

import (
	"context"
	"encoding/base64"
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

// TokenFromRequest takes the bearer token from the Authorization header;
// for a browser's WebSocket, which cannot set headers, from a
// BearerSubprotocol it offers; else from the token query parameter
// (EventSource, and WebSocket clients that offer no subprotocol).
func TokenFromRequest(r *http.Request) string {
	if h := r.Header.Get("Authorization"); h != "" {
		if tok, ok := strings.CutPrefix(h, "Bearer "); ok {
			return strings.TrimSpace(tok)
		}
		if tok, ok := strings.CutPrefix(h, "bearer "); ok {
			return strings.TrimSpace(tok)
		}
	}
	if tok, ok := tokenFromSubprotocols(r.Header.Values("Sec-WebSocket-Protocol")); ok {
		return tok
	}
	return r.URL.Query().Get("token")
}

// BearerSubprotocol prefixes a WebSocket subprotocol that carries a token,
// base64url-encoded without padding: a browser offers
// ["vigil", "vigil.bearer.<base64url(token)>"] (new WebSocket(url,
// protocols)), so the token travels in a header instead of the URL, which
// proxies log and browsers keep in their history. The server never
// selects it (it answers "vigil"). The same idea as Kubernetes'
// "base64url.bearer.authorization.k8s.io." subprotocol.
const BearerSubprotocol = "vigil.bearer."

// tokenFromSubprotocols finds a BearerSubprotocol among the offered
// subprotocols (comma-separated, in one or more header lines). An offer
// that does not decode gives "" (no token: 401), never a fall-back to
// ?token=.
func tokenFromSubprotocols(lines []string) (string, bool) {
	for _, line := range lines {
		for p := range strings.SplitSeq(line, ",") {
			enc, ok := strings.CutPrefix(strings.TrimSpace(p), BearerSubprotocol)
			if !ok {
				continue
			}
			tok, err := base64.RawURLEncoding.DecodeString(enc)
			if err != nil {
				return "", true
			}
			return string(tok), true
		}
	}
	return "", false
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
