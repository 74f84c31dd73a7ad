package main

import (
	"os"
	"testing"

	"github.com/vigil-sec/vigil/internal/testkit"
)

// vigilBin is this package's binary, built once for every test that runs
// it as a child process (kill -9, SIGHUP, outputs) instead of once each:
// a build took 20-30 s of the package's 90 s on the 2-core CI machine.
var vigilBin = testkit.NewBinary("github.com/vigil-sec/vigil/cmd/vigil")

func TestMain(m *testing.M) {
	code := m.Run()
	vigilBin.Remove()
	os.Exit(code)
}
