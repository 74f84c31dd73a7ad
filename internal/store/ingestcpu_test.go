package store

import (
	"context"
	"testing"

	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/store/idindex"
)

// TestAssignedIDSkipsTheLateRetryLookup (issue 12 item 4): an event whose
// id ingest generated is not looked up in the id index (it cannot have
// been stored before); one whose id the producer sent still is. Both ids
// are planted in the index as if stored at seq 1: only the producer's is
// answered as a duplicate, the generated one is stored.
func TestAssignedIDSkipsTheLateRetryLookup(t *testing.T) {
	ctx := context.Background()
	l := open(t, t.TempDir())
	defer l.Close()
	if _, err := l.Append(ctx, normalized(t, &event.Event{ID: "filler", Type: "audit.query"})); err != nil {
		t.Fatal(err)
	}
	assigned := normalized(t, &event.Event{Type: "audit.query"})[0]
	given := normalized(t, &event.Event{ID: "given-1", Type: "audit.query"})[0]
	if !assigned.IDAssigned() || given.IDAssigned() {
		t.Fatal("Normalize did not mark the generated id")
	}
	if err := l.index.idx.Put([]idindex.Entry{{Key: "default/" + assigned.ID, Seq: 1}, {Key: "default/given-1", Seq: 1}}, 1); err != nil {
		t.Fatal(err)
	}
	acks, err := l.Append(ctx, []*event.Event{assigned, given})
	if err != nil {
		t.Fatal(err)
	}
	if a := acks[0]; a.Duplicate || a.Seq != 2 {
		t.Fatalf("generated id: %+v, want stored at seq 2 without a lookup", a)
	}
	if a := acks[1]; !a.Duplicate || a.Seq != 1 {
		t.Fatalf("producer's id: %+v, want the duplicate of seq 1 from the index", a)
	}
}
