package datadir

import (
	"bufio"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestSecondLockRefusedWithDirAndPID(t *testing.T) {
	dir := t.TempDir()
	l, err := Acquire(dir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, LockFile))
	if err != nil || strings.TrimSpace(string(b)) != strconv.Itoa(os.Getpid()) {
		t.Fatalf("lock file holds %q (%v), want this pid %d", b, err, os.Getpid())
	}
	// flock locks belong to the open file description: a second Acquire in
	// the same process conflicts like another process would.
	_, err = Acquire(dir)
	var inUse *InUseError
	if !errors.As(err, &inUse) || !errors.Is(err, ErrInUse) {
		t.Fatalf("second Acquire: %v, want an *InUseError", err)
	}
	if inUse.PID != os.Getpid() || inUse.Dir != dir {
		t.Fatalf("in use by %+v, want dir %s pid %d", inUse, dir, os.Getpid())
	}
	for _, want := range []string{dir, "pid " + strconv.Itoa(os.Getpid())} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("message %q does not name %q", err, want)
		}
	}
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	l2, err := Acquire(dir)
	if err != nil {
		t.Fatalf("Acquire after Release: %v", err)
	}
	_ = l2.Release()
}

func TestLeftoverLockFileIsNotALock(t *testing.T) {
	dir := t.TempDir()
	// A lock file left by a process that died: a PID but no flock.
	if err := os.WriteFile(filepath.Join(dir, LockFile), []byte("999999999\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := Acquire(dir)
	if err != nil {
		t.Fatalf("leftover lock file: %v", err)
	}
	defer l.Release()
	b, _ := os.ReadFile(filepath.Join(dir, LockFile))
	if strings.TrimSpace(string(b)) != strconv.Itoa(os.Getpid()) {
		t.Fatalf("lock file holds %q, want this pid", b)
	}
}

// TestLockDiesWithItsHolder: a child process takes the lock and is killed
// with SIGKILL; the kernel releases the lock, and it can be taken at once.
func TestLockDiesWithItsHolder(t *testing.T) {
	if dir := os.Getenv("VIGIL_DATADIR_TEST_HOLD"); dir != "" {
		// The child: take the lock, say so, wait to be killed.
		if _, err := Acquire(dir); err != nil {
			os.Stdout.WriteString("error: " + err.Error() + "\n")
			os.Exit(1)
		}
		os.Stdout.WriteString("locked\n")
		// Hold it until killed (or until the parent goes: stdin closes).
		_, _ = io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run", "^TestLockDiesWithItsHolder$")
	cmd.Env = append(os.Environ(), "VIGIL_DATADIR_TEST_HOLD="+dir)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "locked\n" {
		t.Fatalf("child: %q %v", line, err)
	}
	var inUse *InUseError
	if _, err := Acquire(dir); !errors.As(err, &inUse) || inUse.PID != cmd.Process.Pid {
		t.Fatalf("while the child holds it: %v, want in use by pid %d", err, cmd.Process.Pid)
	}
	if err := cmd.Process.Signal(os.Kill); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait() // reaped: its descriptors are closed
	l, err := Acquire(dir)
	if err != nil {
		t.Fatalf("after kill -9 of the holder: %v", err)
	}
	_ = l.Release()
}
