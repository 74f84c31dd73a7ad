package hub

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/filter"
)

// endingSource is a log whose tail ends at once, without an error (a
// broken Tail implementation, or a consumer closed underneath it).
type endingSource struct{ tailErr error }

func (endingSource) Head(context.Context) (uint64, error) { return 0, nil }
func (s endingSource) Tail(context.Context, uint64, func(*event.Event)) error {
	return s.tailErr
}
func (endingSource) ScanRange(context.Context, uint64, uint64, func(*event.Event) bool) error {
	return nil
}
func (endingSource) SeqForTime(context.Context, time.Time) (uint64, error) { return 0, nil }

// issue 8 item 5: Run used to wrap a nil error ("hub: tail: %!w(<nil>)").
func TestRunReportsATailThatEndsWithoutError(t *testing.T) {
	defer goleak.VerifyNone(t)
	err := New(endingSource{}, Options{}).Run(context.Background())
	if err == nil {
		t.Fatal("Run returned nil although the tail ended while the hub was running")
	}
	if strings.Contains(err.Error(), "%!") {
		t.Fatalf("Run's error is a formatting accident: %q", err)
	}
	if !strings.Contains(err.Error(), "tail") {
		t.Fatalf("Run's error does not say the tail ended: %q", err)
	}

	cause := errors.New("consumer deleted")
	err = New(endingSource{tailErr: cause}, Options{}).Run(context.Background())
	if !errors.Is(err, cause) {
		t.Fatalf("Run's error %v does not wrap the tail's %v", err, cause)
	}
}

// issue 8 item 5: the per-category counters were a [16] array indexed by
// Category.Index, so a 17th category panicked the dispatcher. They are
// sized from event.Categories(): every category indexes in range, whatever
// the list holds.
func TestCategoryCountersCoverEveryCategory(t *testing.T) {
	h := New(endingSource{}, Options{})
	cats := event.Categories()
	if len(h.byCat) != len(cats) {
		t.Fatalf("per-category counters: %d slots for %d categories", len(h.byCat), len(cats))
	}
	m, err := filter.Compile(filter.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	c := h.NewClient(ClientInfo{Transport: "test", Principal: &auth.Principal{ID: "t", Role: auth.RoleAdmin, Tenant: auth.AllTenants},
		QueueSize: len(cats) + 1})
	defer c.Close()
	s := &subscription{id: "all", client: c, matcher: m}
	for i, cat := range cats {
		if idx := cat.Index(); idx < 0 || idx >= len(h.byCat) {
			t.Fatalf("category %q indexes %d, outside [0,%d)", cat, idx, len(h.byCat))
		}
		s.deliver(&event.Event{Seq: uint64(i + 1), Type: string(cat) + ".x", Category: cat, Tenant: "default"}, false)
	}
	got := h.DeliveredByCategory()
	for _, cat := range cats {
		if got[cat] != 1 {
			t.Errorf("deliveries of %q counted %d, want 1", cat, got[cat])
		}
	}
	// An unknown category (a future one in a stored event) is not counted
	// and does not panic.
	s.deliver(&event.Event{Seq: 100, Type: "future.x", Category: "future", Tenant: "default"}, false)
}
