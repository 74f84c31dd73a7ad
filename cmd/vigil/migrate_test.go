package main

import (
	"context"
	"strings"
	"testing"

	"github.com/vigil-sec/vigil/internal/datadir"
	"github.com/vigil-sec/vigil/internal/store"
)

// TestMigrateCommand: `vigil migrate` on a log already in the current
// layout says so and changes nothing; on a data dir held by a running
// node it refuses (the lock); a missing dir is an error naming it. (The
// migration itself: store.TestMigrateLayout1KeepsEverySeq.)
func TestMigrateCommand(t *testing.T) {
	dir := t.TempDir()
	l, err := store.Open(context.Background(), store.Config{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	code, out, errOut := cliExit("migrate", "--data-dir", dir)
	if code != 0 || !strings.Contains(out, "layout "+store.Layout+" already") {
		t.Fatalf("migrate of a layout-%s dir: exit %d, %q %q", store.Layout, code, out, errOut)
	}
	lock, err := datadir.Acquire(dir)
	if err != nil {
		t.Fatal(err)
	}
	code, _, errOut = cliExit("migrate", "--data-dir", dir)
	_ = lock.Release()
	if code != 1 || !strings.Contains(errOut, "migrate") {
		t.Fatalf("migrate of a locked dir: exit %d, %q", code, errOut)
	}
	code, _, errOut = cliExit("migrate", "--data-dir", dir+"/missing")
	if code != 1 || !strings.Contains(errOut, "missing") {
		t.Fatalf("migrate of a missing dir: exit %d, %q", code, errOut)
	}
}
