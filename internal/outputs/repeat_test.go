package outputs_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/outputs"
)

const repeatYAML = "  repeat_interval: 1h\n  filter: {categories: [detection]}\n"

// delivered waits until the receiver has e.
func (r *receiver) delivered(t *testing.T, e *event.Event) {
	t.Helper()
	checkFor(t, 5*time.Second, "delivery of "+e.Type+" "+e.ID, func() error {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.byID[e.ID] == 0 {
			return errors.New("not yet")
		}
		return nil
	})
}

// recorded waits until the shared repeat memory holds detection for output.
func (b *bench) recorded(t *testing.T, output, detection string) {
	t.Helper()
	checkFor(t, 5*time.Second, "the repeat record of "+detection, func() error {
		kv, err := b.log.JetStream().KeyValue(context.Background(), outputs.RepeatBucket)
		if err != nil {
			return err
		}
		_, err = kv.Get(context.Background(), output+"."+detection)
		return err
	})
}

// repeatSent starts a manager with a repeat_interval webhook output
// "noisy" and waits until it has sent detection id's creation and
// recorded it in the shared memory.
func repeatSent(t *testing.T, id string) (b *bench, r *receiver, opts outputs.Options, m *outputs.Manager, stop func()) {
	t.Helper()
	b = newBench(t)
	r = newReceiver(t, "s", 0)
	opts = b.managerOpts(defs(t, webhookYAML("noisy", r.URL, secretFile(t, "s"), repeatYAML)))
	m, stop = b.run(opts)
	created := detectionEvent(id, "detection.created", "active", "default", 1)
	b.publish(created)
	r.delivered(t, created)
	b.recorded(t, "noisy", id)
	return b, r, opts, m, stop
}

func suppressed(m *outputs.Manager) int64 {
	return m.Statuses(context.Background(), &auth.Principal{Role: auth.RoleAdmin, Tenant: auth.AllTenants})[0].Suppressed
}

// TestRepeatIntervalKeptAcrossRestart: what an output sent is kept in the
// log's KV bucket, so after a restart an unchanged update within
// repeat_interval is still suppressed (it used to page again), and a
// status change still goes out.
func TestRepeatIntervalKeptAcrossRestart(t *testing.T) {
	leakCheck(t)
	b, r, opts, _, stop := repeatSent(t, "det-k")
	stop()

	m, _ := b.run(opts) // the restart
	update := detectionEvent("det-k", "detection.updated", "active", "default", 2)
	change := detectionEvent("det-k", "detection.updated", "investigating", "default", 2)
	b.publish(update, change)
	r.delivered(t, change) // in log order: the update was decided before it
	r.mu.Lock()
	n := r.byID[update.ID]
	r.mu.Unlock()
	if n != 0 {
		t.Fatal("an unchanged update within repeat_interval went out again after the restart")
	}
	if s := suppressed(m); s != 1 {
		t.Fatalf("suppressed %d, want 1", s)
	}
}

// TestRepeatIntervalSharedBetweenNodes: two nodes share an output's
// consumer, so a detection's updates land on either; what one node sent
// suppresses the other's repeats. Each node must have handled some of the
// updates, or the test proves nothing: JetStream hands the messages to
// the waiting pulls in turn.
func TestRepeatIntervalSharedBetweenNodes(t *testing.T) {
	leakCheck(t)
	b, r, opts, a, _ := repeatSent(t, "det-n")
	c, _ := b.run(opts) // the second node, after the first one sent
	const updates = 40
	for i := range updates {
		b.publish(detectionEvent("det-n", "detection.updated", "active", "default", 2+i))
		if i%4 == 3 {
			// Both nodes' pulls are waiting again before the next few.
			time.Sleep(20 * time.Millisecond)
		}
	}
	checkFor(t, 10*time.Second, "every update suppressed", func() error {
		if got := suppressed(a) + suppressed(c); got != updates {
			return fmt.Errorf("suppressed %d (%d + %d) of %d", got, suppressed(a), suppressed(c), updates)
		}
		return nil
	})
	if suppressed(c) == 0 || suppressed(a) == 0 {
		t.Fatalf("one node handled every update (%d, %d): the sharing was not exercised", suppressed(a), suppressed(c))
	}
	if n := r.distinct(); n != 1 {
		t.Fatalf("%d distinct deliveries, want only the created one", n)
	}
}

// TestRepeatBucketFullLosesNothing: the shared memory's bound
// (RepeatBucketBytes) filled, the output still delivers every message and
// says why the memory is not kept; the bucket stays within its bound.
func TestRepeatBucketFullLosesNothing(t *testing.T) {
	leakCheck(t)
	b := newBench(t)
	r := newReceiver(t, "s", 0)
	var (
		mu  sync.Mutex
		buf bytes.Buffer
	)
	opts := b.managerOpts(defs(t, webhookYAML("noisy", r.URL, secretFile(t, "s"), repeatYAML)))
	opts.RepeatBucketBytes = 1024
	opts.Logger = slog.New(slog.NewTextHandler(&lockedWriter{w: &buf, mu: &mu}, nil))
	b.run(opts)
	var evs []*event.Event
	for i := range 30 {
		evs = append(evs, detectionEvent(fmt.Sprintf("det-f%02d", i), "detection.created", "active", "default", 1))
	}
	b.publish(evs...)
	checkFor(t, 10*time.Second, "all 30 delivered", func() error {
		if n := r.distinct(); n != len(evs) {
			return fmt.Errorf("%d of %d", n, len(evs))
		}
		return nil
	})
	checkFor(t, 5*time.Second, "the warning", func() error {
		mu.Lock()
		defer mu.Unlock()
		if !strings.Contains(buf.String(), "repeat_interval memory not recorded") {
			return errors.New("not logged")
		}
		return nil
	})
	kv, err := b.log.JetStream().KeyValue(context.Background(), outputs.RepeatBucket)
	if err != nil {
		t.Fatal(err)
	}
	st, err := kv.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Bytes() > 1024 || st.Values() == 0 {
		t.Fatalf("bucket holds %d values in %d bytes, bound 1024", st.Values(), st.Bytes())
	}
}
