package main

import (
	"os"
	"strings"
)

// machineLoad is the 1, 5 and 15 minute load averages from /proc/loadavg
// ("unknown" elsewhere): every bench figure is printed with the load it
// was measured under, since the load generator and the server usually
// share the machine (docs/performance.md).
func machineLoad() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
