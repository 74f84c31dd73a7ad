// Package testkit holds leaf helpers for tests, importable from any
// package's tests (it imports nothing of Vigil): CheckFor polls until a
// condition holds instead of sleeping, Binary builds a command once per
// test process instead of once per test.
package testkit

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// CheckFor calls cond every step until it returns nil, and fails the test
// with cond's last error if that does not happen within timeout
// (nats-server's checkFor). cond runs at least once.
func CheckFor(t testing.TB, timeout, step time.Duration, cond func() error) {
	t.Helper()
	if err := Poll(timeout, step, cond); err != nil {
		t.Fatal(err)
	}
}

// Poll is CheckFor without the test: it returns cond's last error (wrapped
// with the time waited) if cond did not return nil within timeout.
func Poll(timeout, step time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not true after %v: %w", timeout, err)
		}
		time.Sleep(step)
	}
}

// Binary is a Go command built at most once per test process (go build
// takes tens of seconds on a loaded CI machine; a package's tests that each
// need the binary share one). Declare one per package and remove it from
// TestMain after m.Run:
//
//	var vigilBin = testkit.NewBinary("github.com/vigil-sec/vigil/cmd/vigil")
//
//	func TestMain(m *testing.M) { code := m.Run(); vigilBin.Remove(); os.Exit(code) }
type Binary struct {
	pkg string

	once sync.Once
	dir  string
	path string
	out  []byte
	err  error
}

// NewBinary returns the (not yet built) binary of the Go package pkg.
func NewBinary(pkg string) *Binary { return &Binary{pkg: pkg} }

// Path builds the binary on first use and returns its path; a failed build
// fails every test that asks.
func (b *Binary) Path(t testing.TB) string {
	t.Helper()
	b.once.Do(func() {
		b.dir, b.err = os.MkdirTemp("", "vigil-testbin-")
		if b.err != nil {
			return
		}
		b.path = filepath.Join(b.dir, filepath.Base(b.pkg))
		b.out, b.err = exec.Command("go", "build", "-o", b.path, b.pkg).CombinedOutput()
	})
	if b.err != nil {
		t.Fatalf("go build %s: %v\n%s", b.pkg, b.err, b.out)
	}
	return b.path
}

// Built says whether Path has built the binary (for tests of the helper).
func (b *Binary) Built() bool { return b.path != "" && b.err == nil }

// Remove deletes the built binary, if any.
func (b *Binary) Remove() {
	if b.dir != "" {
		_ = os.RemoveAll(b.dir)
	}
}

// SyncBuffer is a bytes.Buffer that goroutines may write (a logger, a
// command's output) while the test reads it.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns what was written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
