package main

import (
	"runtime"
	"testing"
)

// TestMemoryAvailable: the soft memory limit of `vigil serve` is derived
// from a real reading of the machine (or its cgroup) on Linux.
func TestMemoryAvailable(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc/meminfo and cgroup v2 files: Linux only")
	}
	got, ok := memoryAvailable()
	if !ok || got < 64<<20 {
		t.Fatalf("memoryAvailable() = %d, %v; want at least 64 MiB", got, ok)
	}
}
