package detect

import (
	"fmt"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/event"
)

// TestCorrelationWindowsExpireFromTheStaleEnd: windows idle for longer than
// their timespan are dropped, live ones kept, whatever order they were
// touched in, and a full state keeps refusing new keys (counted) without
// losing the live ones.
func TestCorrelationWindowsExpireFromTheStaleEnd(t *testing.T) {
	ev := NewEvaluator(builtins(t), 100, 0)
	for i := range 100 { // 100 users, one failure each, at t=0..99 s
		ev.Evaluate(failure(t, time.Duration(i)*time.Second, fmt.Sprintf("u%d", i), "198.51.100.1"))
	}
	full := ev.Windows()
	// u0 is touched again: it moves to the recent end.
	ev.Evaluate(failure(t, 100*time.Second, "u0", "198.51.100.1"))
	// A new key on a full state: nothing is stale yet, so it overflows.
	ev.Evaluate(failure(t, 101*time.Second, "new-1", "198.51.100.1"))
	if ev.overflowTotal() == 0 {
		t.Fatalf("a new key on a full state was not counted as overflow (windows %d)", ev.Windows())
	}
	// Much later (past every 5-minute timespan of the brute-force rules
	// but u0's), the stale windows go and the new key finds room.
	late := 100*time.Second + 5*time.Minute - time.Second
	ev.Evaluate(failure(t, late, "u0", "198.51.100.1"))
	ev.Evaluate(failure(t, late+time.Second, "new-2", "198.51.100.2"))
	if ev.Windows() >= full {
		t.Fatalf("windows %d, was %d: the stale ones were not expired", ev.Windows(), full)
	}
	var st *corrState
	for _, s := range ev.state {
		if s != nil && s.windows["default\x1fu0"] != nil {
			st = s
		}
	}
	if st == nil {
		t.Fatal("u0's window was expired although it was touched within the timespan")
	}
	// The list and the map hold the same windows.
	n := 0
	for node := st.order.oldest; node != nil; node = node.next {
		if w := node.val; st.windows[w.key] != w {
			t.Fatalf("window %q in the list but not the map", w.key)
		}
		n++
	}
	if n != len(st.windows) {
		t.Fatalf("list holds %d windows, map %d", n, len(st.windows))
	}
}

// BenchmarkCorrelationDistinctUsers: every event a new user, more users
// than the correlation state holds (the state stays full). Before the
// windows were kept in touch order, each new key on a full state scanned
// every window (100,000) — an attacker cycling user names stalled the
// engine.
func BenchmarkCorrelationDistinctUsers(b *testing.B) {
	ev := NewEvaluator(builtins(b), 0, 0)
	for i := range 100_000 { // fill the state (maxKeys 100,000) with live windows
		ev.Evaluate(failure(b, time.Duration(i)*time.Microsecond, fmt.Sprintf("fill%d", i), "198.51.100.1"))
	}
	// New users (each overflows the full state, so each is new every time).
	events := make([]*event.Event, 20_000)
	for i := range events {
		events[i] = failure(b, time.Second, fmt.Sprintf("u%d", i), "198.51.100.1")
	}
	b.ResetTimer()
	for i := range b.N {
		ev.Evaluate(events[i%len(events)])
	}
}
