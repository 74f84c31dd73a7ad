package phase8

import (
	"strconv"
	"testing"

	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/hub"
)

// The hub may deliver one event on two subscriptions while a connection
// swaps its subscription; Encode must send it once.
func TestEncodeDropsDuplicates(t *testing.T) {
	d := newDialect(Deps{DedupWindow: 4})
	e := &event.Event{ID: "e1", Type: TypeFraudAlert}
	if out := d.Encode(nil, hub.Delivery{SubID: "phase8-1", Event: e}); len(out) == 0 {
		t.Fatal("first delivery skipped")
	}
	if out := d.Encode(nil, hub.Delivery{SubID: "phase8-2", Event: e}); len(out) != 0 {
		t.Fatal("duplicate delivered")
	}
}

func TestIDRingIsBounded(t *testing.T) {
	r := newIDRing(3)
	for i := range 10 {
		if !r.add(strconv.Itoa(i)) {
			t.Fatalf("%d reported as seen", i)
		}
	}
	if len(r.set) != 3 {
		t.Fatalf("ring holds %d ids, want 3", len(r.set))
	}
	if r.add("9") {
		t.Fatal("recent id not remembered")
	}
	if !r.add("0") {
		t.Fatal("evicted id still remembered")
	}
}
