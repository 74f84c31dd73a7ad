// Package datadir guards a node's data directory against a second process:
// two Vigil processes appending to one embedded JetStream store hand out the
// same seq numbers and lose acknowledged events (issue 8). Lock takes an
// exclusive flock(2) on <dir>/vigil.lock; the kernel releases it when the
// holder exits, however it exits, so a kill -9 never leaves a stale lock.
package datadir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// LockFile is the name of the lock file inside the data directory. It holds
// the holder's PID (for the message to the next process); the lock itself
// is the flock on it, not the file's existence.
const LockFile = "vigil.lock"

// ErrInUse is wrapped by the error Lock returns when another process holds
// the directory.
var ErrInUse = errors.New("data directory in use")

// InUseError names the locked directory and, when it could be read, the
// holder's PID.
type InUseError struct {
	Dir string
	PID int // 0 when the holder had not written it yet
}

func (e *InUseError) Error() string {
	holder := "another process (pid unknown)"
	if e.PID > 0 {
		holder = "another process (pid " + strconv.Itoa(e.PID) + ")"
	}
	return fmt.Sprintf("data directory %s is in use by %s: one data directory serves one vigil process; stop it first or use another --data-dir", e.Dir, holder)
}

func (e *InUseError) Unwrap() error { return ErrInUse }

// Lock is a held data directory lock.
type Lock struct {
	f    *os.File
	path string
}

// Acquire locks dir, which must exist, without waiting: it fails at once
// with an *InUseError when another process (or another Lock in this one)
// holds it.
func Acquire(dir string) (*Lock, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		abs = dir
	}
	path := filepath.Join(abs, LockFile)
	// O_CLOEXEC (Go's default) keeps the lock out of child processes.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("datadir: lock %s: %w", path, err)
	}
	if err := flock(f); err != nil {
		if errors.Is(err, errWouldBlock) {
			pid := readPID(f)
			_ = f.Close()
			return nil, &InUseError{Dir: abs, PID: pid}
		}
		_ = f.Close()
		return nil, fmt.Errorf("datadir: lock %s: %w", path, err)
	}
	// Taken: record who holds it. A PID left by an earlier holder that was
	// killed is overwritten here.
	if err := writePID(f); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("datadir: lock %s: write pid: %w", path, err)
	}
	return &Lock{f: f, path: path}, nil
}

// Path is the lock file's path.
func (l *Lock) Path() string { return l.path }

// Release drops the lock. The file stays: removing it would let a process
// that opened it before the removal and one that creates it afresh both
// hold "the" lock.
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close() // closing the last descriptor releases the flock
	l.f = nil
	if err != nil {
		return fmt.Errorf("datadir: unlock %s: %w", l.path, err)
	}
	return nil
}

func writePID(f *os.File) error {
	if err := f.Truncate(0); err != nil {
		return err
	}
	_, err := f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return err
}

// readPID reads the holder's PID; 0 if it has not written it yet.
func readPID(f *os.File) int {
	var buf [32]byte
	n, _ := f.ReadAt(buf[:], 0)
	pid, err := strconv.Atoi(strings.TrimSpace(string(buf[:n])))
	if err != nil || pid <= 0 {
		return 0
	}
	return pid
}
