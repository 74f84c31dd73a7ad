package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// AdminTokenFile is the file, inside the data directory, that holds the
// admin token written on first start.
const AdminTokenFile = "admin.token"

// LoadOrCreateAdminToken reads <dataDir>/admin.token, creating it with a new
// random token (mode 0600) when absent. created tells the caller to log the
// path; the token itself is never logged.
func LoadOrCreateAdminToken(dataDir string) (token, path string, created bool, err error) {
	return LoadOrCreateSecretFile(dataDir, AdminTokenFile, "vgl_")
}

// LoadOrCreateSecretFile reads <dataDir>/<name>, creating it with a new
// random secret (mode 0600) when absent.
func LoadOrCreateSecretFile(dataDir, name, prefix string) (token, path string, created bool, err error) {
	path = filepath.Join(dataDir, name)
	b, err := os.ReadFile(path)
	if err == nil {
		tok := strings.TrimSpace(string(b))
		if tok == "" {
			return "", path, false, fmt.Errorf("auth: %s is empty", path)
		}
		return tok, path, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", path, false, fmt.Errorf("auth: read admin token: %w", err)
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return "", path, false, fmt.Errorf("auth: create data dir: %w", err)
	}
	tok, err := NewSecret(prefix)
	if err != nil {
		return "", path, false, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", path, false, fmt.Errorf("auth: create admin token: %w", err)
	}
	if _, err := f.WriteString(tok + "\n"); err != nil {
		_ = f.Close() // the write error is the one to report
		return "", path, false, fmt.Errorf("auth: write admin token: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", path, false, fmt.Errorf("auth: write admin token: %w", err)
	}
	return tok, path, true, nil
}

// NewSecret returns a random 256-bit token with a recognisable prefix.
func NewSecret(prefix string) (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("auth: random: %w", err)
	}
	return prefix + hex.EncodeToString(b), nil
}

// HashToken is how tokens are stored and compared: never in the clear.
func HashToken(tok string) [32]byte { return sha256.Sum256([]byte(tok)) }

// StaticToken authenticates one fixed token (the admin token) in constant time.
type StaticToken struct {
	hash      [32]byte
	principal Principal
}

// NewStaticToken returns an authenticator accepting tok as principal p.
func NewStaticToken(tok string, p Principal) *StaticToken {
	return &StaticToken{hash: HashToken(tok), principal: p}
}

// Authenticate implements Authenticator.
func (s *StaticToken) Authenticate(_ context.Context, tok string) (*Principal, error) {
	h := HashToken(tok)
	if subtle.ConstantTimeCompare(h[:], s.hash[:]) != 1 {
		return nil, ErrBadToken
	}
	// Principals are read-only once made: every connection of this token
	// shares one instead of holding a copy.
	return &s.principal, nil
}

// Chain tries each authenticator in turn and returns the first success.
// When all fail it returns the most specific reason one of them gave (for
// example "token expired" from the authenticator that recognised the token)
// rather than the generic ErrBadToken; every such reason wraps ErrBadToken.
type Chain []Authenticator

// Authenticate implements Authenticator.
func (c Chain) Authenticate(ctx context.Context, tok string) (*Principal, error) {
	var specific error
	for _, a := range c {
		p, err := a.Authenticate(ctx, tok)
		if err == nil {
			return p, nil
		}
		if specific == nil && err != ErrBadToken && errors.Is(err, ErrBadToken) {
			specific = err
		}
	}
	if specific != nil {
		return nil, specific
	}
	return nil, ErrBadToken
}
