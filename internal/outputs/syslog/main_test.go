package syslog

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks that the sender's goroutines (the digest loop, the
// connection) end with Close.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
