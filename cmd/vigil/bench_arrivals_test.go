package main

import (
	"strings"
	"testing"

	"github.com/vigil-sec/vigil/internal/testnode"
)

// TestBenchArrivals: --arrivals even runs the same workload with the
// publishers' starts spread (every event delivered), and a value that is
// neither burst nor even is refused by name before anything is sent.
func TestBenchArrivals(t *testing.T) {
	n := testnode.Start(t)
	code, out, errOut := cliExitEnv(cliNodeVars(n), "bench", "--events", "400", "--batch", "10", "--publishers", "4",
		"--rate", "2000", "--subscribers", "4", "--spread", "4", "--arrivals", "even")
	if code != 0 || !strings.Contains(out, "arrivals even") || !strings.Contains(out, "400 deliveries of 400 expected") {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	code, _, errOut = cliExitEnv(cliNodeVars(n), "bench", "--events", "10", "--arrivals", "poisson")
	if code == 0 || !strings.Contains(errOut, `--arrivals "poisson": want burst or even`) {
		t.Fatalf("exit %d, want the bad --arrivals named:\n%s", code, errOut)
	}
}
