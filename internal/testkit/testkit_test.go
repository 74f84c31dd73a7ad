package testkit

import (
	"errors"
	"os"
	"testing"
	"time"
)

func TestPoll(t *testing.T) {
	n := 0
	if err := Poll(time.Second, time.Millisecond, func() error {
		n++
		if n < 3 {
			return errors.New("not yet")
		}
		return nil
	}); err != nil || n != 3 {
		t.Fatalf("Poll: %v after %d calls", err, n)
	}
	want := errors.New("never")
	err := Poll(20*time.Millisecond, time.Millisecond, func() error { return want })
	if !errors.Is(err, want) {
		t.Fatalf("Poll of a false condition: %v", err)
	}
}

func TestBinaryBuildsOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go build")
	}
	b := NewBinary("github.com/vigil-sec/vigil/internal/testkit/testdata/hello")
	defer b.Remove()
	p1 := b.Path(t)
	st1, err := os.Stat(p1)
	if err != nil {
		t.Fatal(err)
	}
	p2 := b.Path(t)
	st2, err := os.Stat(p2)
	if err != nil || p1 != p2 || !st1.ModTime().Equal(st2.ModTime()) {
		t.Fatalf("built twice: %s, %s (%v)", p1, p2, err)
	}
	b.Remove()
	if _, err := os.Stat(p1); !os.IsNotExist(err) {
		t.Fatalf("binary left after Remove: %v", err)
	}
}
