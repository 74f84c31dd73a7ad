package store

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/vigil-sec/vigil/internal/event"
)

// mergeRecorder collects what a tailMerge delivers.
type mergeRecorder struct {
	m              tailMerge
	got            []uint64
	dropped, local atomic.Uint64
}

func newMergeRecorder(next uint64) *mergeRecorder {
	r := &mergeRecorder{}
	r.m = tailMerge{next: next, dropped: &r.dropped, fromLocal: &r.local, deliver: func(seq uint64, body []byte) {
		if want := fmt.Sprint(seq); string(body) != want {
			panic(fmt.Sprintf("seq %d delivered with the body of %s", seq, body))
		}
		r.got = append(r.got, seq)
	}}
	return r
}

func bodyOf(seq uint64) []byte { return []byte(fmt.Sprint(seq)) }

func appendsOf(seqs ...uint64) []localAppend {
	b := make([]localAppend, len(seqs))
	for i, s := range seqs {
		b[i] = localAppend{seq: s, body: bodyOf(s)}
	}
	return b
}

// The two sources of a tail, arriving in any interleaving: the stored
// messages in order (some seqs deleted), this node's acknowledged appends
// in batches, late, early or reordered between batches. Every stored seq
// is delivered once, in order, and most of the local ones by the local
// path.
func TestTailMergeDeliversEachStoredSeqOnceInOrder(t *testing.T) {
	for round := range 200 {
		rng := rand.New(rand.NewPCG(uint64(round), 7))
		const n = 600
		var stored, mine []uint64
		for seq := uint64(1); seq <= n; seq++ {
			switch x := rng.IntN(10); {
			case x == 0: // deleted before the tail reads it (never ours)
			case x < 4: // another node's, or a NATS producer's
				stored = append(stored, seq)
			default:
				stored = append(stored, seq)
				mine = append(mine, seq)
			}
		}
		// Our acknowledgements come in batches of 1–10; batches may be
		// reordered a little (two producers settling out of order).
		var batches [][]localAppend
		for i := 0; i < len(mine); {
			k := min(1+rng.IntN(10), len(mine)-i)
			batches = append(batches, appendsOf(mine[i:i+k]...))
			i += k
		}
		for i := 0; i+1 < len(batches); i++ {
			if rng.IntN(5) == 0 {
				batches[i], batches[i+1] = batches[i+1], batches[i]
			}
		}
		r := newMergeRecorder(1)
		si, bi := 0, 0
		for si < len(stored) || bi < len(batches) {
			if bi < len(batches) && (si == len(stored) || rng.IntN(3) > 0) {
				r.m.local(batches[bi])
				bi++
				continue
			}
			r.m.stored(stored[si], bodyOf(stored[si]))
			si++
		}
		if !slices.Equal(r.got, stored) {
			t.Fatalf("round %d: delivered %v\nwant %v", round, r.got, stored)
		}
		if r.dropped.Load() != 0 {
			t.Fatalf("round %d: %d local appends dropped", round, r.dropped.Load())
		}
		if round == 0 && r.local.Load() == 0 {
			t.Fatalf("nothing delivered from the local path")
		}
	}
}

// A local append waiting for an earlier seq that the log no longer holds
// (deleted after it was acknowledged, before the tail got there) is
// dropped when the consumer shows the gap, not delivered out of order.
func TestTailMergeDropsWhatTheLogSkipped(t *testing.T) {
	r := newMergeRecorder(1)
	r.m.local(appendsOf(3, 5))
	r.m.stored(1, bodyOf(1))
	if !slices.Equal(r.got, []uint64{1}) {
		t.Fatalf("delivered %v, want [1]: 2 is not known yet", r.got)
	}
	r.m.stored(4, bodyOf(4)) // 2 and 3 are gone
	r.m.stored(5, bodyOf(5)) // delivered already, from the local copy
	r.m.local(appendsOf(6))
	if want := []uint64{1, 4, 5, 6}; !slices.Equal(r.got, want) {
		t.Fatalf("delivered %v, want %v", r.got, want)
	}
	if r.dropped.Load() != 1 || r.local.Load() != 2 {
		t.Fatalf("dropped %d (want 1: seq 3), local %d (want 2: 5, 6)", r.dropped.Load(), r.local.Load())
	}
}

// The look-ahead is bounded: beyond localAhead, local copies are dropped
// and the consumer delivers those seqs.
func TestTailMergeBoundsTheLookAhead(t *testing.T) {
	r := newMergeRecorder(1)
	const n = localAhead + 100
	for seq := uint64(2); seq <= n; seq++ {
		r.m.local(appendsOf(seq))
	}
	if len(r.m.ahead) != localAhead || r.dropped.Load() != n-1-localAhead {
		t.Fatalf("look-ahead %d, dropped %d; want %d and %d", len(r.m.ahead), r.dropped.Load(), localAhead, n-1-localAhead)
	}
	for seq := uint64(1); seq <= n; seq++ {
		r.m.stored(seq, bodyOf(seq))
	}
	if len(r.got) != n || r.got[0] != 1 || r.got[n-1] != n || !slices.IsSorted(r.got) {
		t.Fatalf("delivered %d seqs (%v…%v), want 1…%d", len(r.got), r.got[:3], r.got[len(r.got)-3:], n)
	}
}

// On a real log: this node's appends and messages other producers write
// into the stream directly (valid events and bodies that are not events)
// interleave; the tail delivers every stored event once, in seq order,
// and takes this node's own appends from their acknowledgements.
func TestTailTakesOwnAppendsAndOtherProducersInOrder(t *testing.T) {
	ctx := context.Background()
	l := open(t, t.TempDir())
	defer l.Close()

	tctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu   sync.Mutex
		seqs []uint64
		ids  = map[string]int{}
	)
	tailDone := make(chan error, 1)
	go func() { // owned by this test: ends with tctx
		tailDone <- l.Tail(tctx, 1, func(e *event.Event) {
			mu.Lock()
			seqs = append(seqs, e.Seq)
			ids[e.ID]++
			mu.Unlock()
		})
	}()

	const batches, per, foreign = 60, 10, 120
	var wg sync.WaitGroup
	wg.Add(2)
	errs := make(chan error, 2)
	go func() { // appends of this node
		defer wg.Done()
		for b := range batches {
			if _, err := l.Append(ctx, manyEvents(t, per, fmt.Sprintf("own%d", b))); err != nil {
				errs <- err
				return
			}
		}
	}()
	go func() { // another producer writing to the stream directly
		defer wg.Done()
		for i, e := range manyEvents(t, foreign, "foreign") {
			body, _, err := canonical(e)
			if i%10 == 9 {
				body = []byte("not an event")
			}
			if err == nil {
				_, err = l.js.Publish(ctx, Subject(e), body)
			}
			if err != nil {
				errs <- err
				return
			}
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	head, err := l.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wantEvents := batches*per + foreign - foreign/10
	replayjsWaitFor(t, "the tail to deliver every event", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seqs) >= wantEvents
	}, func() string {
		mu.Lock()
		defer mu.Unlock()
		return fmt.Sprintf("%d of %d events, head %d", len(seqs), wantEvents, head)
	})
	cancel()
	if err := <-tailDone; err != context.Canceled {
		t.Fatalf("tail ended with %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seqs) != wantEvents || uint64(len(seqs)+foreign/10) != head {
		t.Fatalf("%d events delivered, want %d (head %d, %d not events)", len(seqs), wantEvents, head, foreign/10)
	}
	for i := 1; i < len(seqs); i++ {
		if seqs[i] <= seqs[i-1] {
			t.Fatalf("seq %d delivered after %d", seqs[i], seqs[i-1])
		}
	}
	for id, n := range ids {
		if n != 1 {
			t.Fatalf("%s delivered %d times", id, n)
		}
	}
	if d, _ := l.LocalTail(); d == 0 {
		t.Fatalf("no event came from the local path (all %d through the consumer)", len(seqs))
	}
	if got := l.UndecodableSkipped(); got != foreign/10 {
		t.Fatalf("%d bodies skipped as not events, want %d", got, foreign/10)
	}
}

// What a stalled tail pins is bounded in bytes, not only in batches: big
// events offered while nobody takes them are dropped past
// localFeedMaxBytes (the consumer brings them), and the look-ahead keeps
// at most localAheadBytes of bodies.
func TestLocalPathBoundsItsMemory(t *testing.T) {
	var f localFeed
	ch := f.attach()
	defer f.detach(ch)
	big := make([]byte, 1<<20)
	offered := 0
	for seq := uint64(1); f.dropped.Load() == 0; seq++ {
		if seq > 2*localFeedBatches {
			t.Fatalf("%d batches of 1 MiB queued without a drop (%d bytes)", seq, f.queued.Load())
		}
		f.offer(localBatch{appends: []localAppend{{seq: seq, body: big}}, bytes: int64(len(big))})
		offered++
	}
	if q := f.queued.Load(); q > localFeedMaxBytes || len(ch) != offered-1 {
		t.Fatalf("queued %d bytes in %d batches (limit %d)", q, len(ch), localFeedMaxBytes)
	}
	for len(ch) > 0 {
		f.taken(<-ch)
	}
	if q := f.queued.Load(); q != 0 {
		t.Fatalf("%d bytes still counted as queued after the tail took everything", q)
	}

	// A tail that stops with batches still queued does not leave them
	// counted against the next one.
	f.offer(localBatch{appends: []localAppend{{seq: 1, body: big}}, bytes: int64(len(big))})
	f.detach(ch)
	if next := f.attach(); next == nil || f.queued.Load() != 0 {
		t.Fatalf("after a detach with a batch queued: attach %v, %d bytes counted", next != nil, f.queued.Load())
	} else {
		ch = next
	}

	r := newMergeRecorder(1)
	for seq := uint64(2); seq < 100; seq++ {
		r.m.local([]localAppend{{seq: seq, body: big}})
	}
	if r.m.aheadBytes > localAheadBytes || len(r.m.ahead) != localAheadBytes/len(big) {
		t.Fatalf("look-ahead holds %d bytes in %d events (limit %d bytes)", r.m.aheadBytes, len(r.m.ahead), localAheadBytes)
	}
}
