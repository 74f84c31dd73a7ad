//go:build !unix

package datadir

import (
	"errors"
	"os"
)

var errWouldBlock = errors.New("would block")

// flock is not implemented off Unix: Vigil refuses to start rather than run
// unguarded (docs/operations.md, "Data directory lock").
func flock(*os.File) error {
	return errors.New("data directory locking needs flock(2), available on Unix only")
}
