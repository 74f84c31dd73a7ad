package app

import "testing"

// TestReplayCacheBytes: --replay-cache-mb 0 turns the store's ring off
// (negative there: its 0 would mean the 64 MiB default).
func TestReplayCacheBytes(t *testing.T) {
	for mb, want := range map[int]int64{0: -1, -1: -1, 1: 1 << 20, 64: 64 << 20} {
		if got := replayBoundBytes(mb); got != want {
			t.Errorf("replayBoundBytes(%d) = %d, want %d", mb, got, want)
		}
	}
}
