package hostile

import (
	"os"
	"testing"

	"github.com/vigil-sec/vigil/internal/testkit"
)

// archVigilBin is cmd/vigil built once for every hostile test that runs it
// as a child process (startup, snapshot, fail-over, RELP) instead of once
// each (issue 14, item 7).
var archVigilBin = testkit.NewBinary("github.com/vigil-sec/vigil/cmd/vigil")

func TestMain(m *testing.M) {
	code := m.Run()
	archVigilBin.Remove()
	os.Exit(code)
}
