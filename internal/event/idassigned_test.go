package event

import (
	"testing"
	"time"
)

// TestNormalizeSaysWhetherItAssignedTheID: the log skips the late-retry
// lookup of an id only when Normalize generated it (issue 12 item 4); an
// id the producer sent, or an event normalized again after it got one,
// is looked up.
func TestNormalizeSaysWhetherItAssignedTheID(t *testing.T) {
	now := time.Now()
	e := &Event{Type: "audit.query"}
	if _, err := Normalize(e, "default", now, DefaultLimits()); err != nil {
		t.Fatal(err)
	}
	if e.ID == "" || !e.IDAssigned() {
		t.Fatalf("no id sent: id %q, assigned %v", e.ID, e.IDAssigned())
	}
	if c := e.Clone(); c.IDAssigned() {
		t.Fatal("a clone claims an assigned id")
	}
	// Normalized again (the id is now set): the producer's id from here on.
	if _, err := Normalize(e, "default", now, DefaultLimits()); err != nil {
		t.Fatal(err)
	}
	if e.IDAssigned() {
		t.Fatal("an event that came with an id is marked assigned")
	}
	given := &Event{ID: "given-1", Type: "audit.query"}
	if _, err := Normalize(given, "default", now, DefaultLimits()); err != nil {
		t.Fatal(err)
	}
	if given.IDAssigned() {
		t.Fatal("a producer's id is marked assigned")
	}
}
