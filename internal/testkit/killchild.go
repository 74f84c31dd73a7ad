package testkit

import (
	"bufio"
	"math/rand/v2"
	"os"
	"os/exec"
	"testing"
	"time"
)

// KillChild re-executes the test binary running only the test named test,
// with env (NAME=value) added to its environment, reads lines lines of its
// standard output (its progress reports), waits a random time below
// jitter so the kill lands anywhere in its work, kills it with SIGKILL and
// returns the last line it printed. A child that stops before printing
// lines lines fails the test. The crash tests of the store and its id
// index use it: the child writes until killed, the parent reopens.
func KillChild(t testing.TB, test, env string, lines int, jitter time.Duration) (lastReport string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run", "^"+test+"$")
	cmd.Env = append(os.Environ(), env)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	for range lines {
		if !sc.Scan() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			t.Fatalf("the child %s stopped before its report %d: %v", test, lines, sc.Err())
		}
	}
	if jitter > 0 {
		time.Sleep(time.Duration(rand.Int64N(int64(jitter))))
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	// The output is drained after the kill, so the child never blocked on
	// the pipe; its last complete line is what it last reported.
	last := sc.Text()
	for sc.Scan() {
		last = sc.Text()
	}
	_ = cmd.Wait()
	return last
}
