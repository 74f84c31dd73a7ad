package auth

import "fmt"

// Specific reasons a token is refused. Each wraps ErrBadToken, so callers
// that only care whether authentication failed keep using errors.Is with
// ErrBadToken (wsconn maps it to close code 4001).
var (
	ErrTokenExpired   = fmt.Errorf("%w: token expired", ErrBadToken)
	ErrTokenNotYet    = fmt.Errorf("%w: token not valid yet", ErrBadToken)
	ErrTokenRevoked   = fmt.Errorf("%w: token revoked", ErrBadToken)
	ErrTokenMalformed = fmt.Errorf("%w: malformed token", ErrBadToken)
)

// Refused wraps a detailed reason so that it still matches ErrBadToken.
func Refused(reason string) error { return fmt.Errorf("%w: %s", ErrBadToken, reason) }
