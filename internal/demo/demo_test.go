package demo

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/event"
)

// TestDemoTrafficIsLabelledAndValid: every generated event says it is demo
// data (source and tag), passes the same validation as real traffic, and
// the generator covers every producer-side category of SPEC 2.
func TestDemoTrafficIsLabelledAndValid(t *testing.T) {
	g := New(42)
	seen := map[event.Category]bool{}
	for i := 0; i < 5000; i++ {
		e := g.Next()
		if e.Source != Source || !slices.Contains(e.Tags, "demo") {
			t.Fatalf("event %d not labelled as demo: source %q tags %v", i, e.Source, e.Tags)
		}
		if _, err := event.Normalize(e, "default", time.Now(), event.DefaultLimits()); err != nil {
			t.Fatalf("event %d (%s) invalid: %v", i, e.Type, err)
		}
		seen[e.Category] = true
	}
	for _, c := range event.Categories() {
		if c == event.CategoryDetection {
			continue // detections come from the rule engine
		}
		if !seen[c] {
			t.Errorf("no demo event of category %s", c)
		}
	}
	var services int
	e := New(1).Next()
	for _, tag := range e.Tags {
		if strings.HasPrefix(tag, "service:") {
			services++
		}
	}
	if services != 1 {
		t.Errorf("want one service:<name> tag, got %v", e.Tags)
	}
}
