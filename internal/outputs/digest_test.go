package outputs_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/outputs"
	"github.com/vigil-sec/vigil/internal/store"
)

// digestSend is one Send call a digest output received.
type digestSend struct {
	ids []string
	// ackPending is the consumer's NumAckPending during the Send: the
	// messages handed over must all still be unacknowledged.
	ackPending int
	err        error
	at         time.Time
}

// digestType is a Groups type whose Send fails once for the first
// digest of more than one message, and records every call.
type digestType struct {
	cons func(ctx context.Context) (*jetstream.ConsumerInfo, error)

	mu     sync.Mutex
	sends  []digestSend
	failed bool // set up front: no failure
}

func (g *digestType) Type() outputs.Type {
	return outputs.Type{Name: "digesttest", Groups: true, NewOptions: func() any { return &struct{}{} },
		New: func(any, outputs.Env) (outputs.Sender, error) { return g, nil }}
}

func (g *digestType) Send(ctx context.Context, msgs []outputs.Message) error {
	s := digestSend{at: time.Now(), ackPending: -1}
	for _, m := range msgs {
		s.ids = append(s.ids, m.Event.ID)
	}
	if ci, err := g.cons(ctx); err == nil {
		s.ackPending = ci.NumAckPending
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(msgs) > 1 && !g.failed {
		g.failed = true
		s.err = errors.New("mail server says 451")
	}
	g.sends = append(g.sends, s)
	return s.err
}
func (g *digestType) Close() error { return nil }

// consumerInfo reads the state of output name's durable consumer.
func (b *bench) consumerInfo(name string) func(ctx context.Context) (*jetstream.ConsumerInfo, error) {
	return func(ctx context.Context) (*jetstream.ConsumerInfo, error) {
		c, err := b.log.JetStream().Consumer(ctx, store.StreamName, outputs.ConsumerName(name))
		if err != nil {
			return nil, err
		}
		return c.Info(ctx)
	}
}

func (g *digestType) calls() []digestSend {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]digestSend(nil), g.sends...)
}

// TestDigestIntervalHoldsAndSendsOnce: with digest_interval the first
// detection goes out at once; the ones that follow within the interval go
// out in one Send when it ends, still unacknowledged while it runs; a
// failed digest is retried whole; only the accepted Send acknowledges.
func TestDigestIntervalHoldsAndSendsOnce(t *testing.T) {
	leakCheck(t)
	b := newBench(t)
	const interval = time.Second
	g := &digestType{cons: b.consumerInfo("digest")}
	b.run(b.managerOpts(defs(t, "- name: digest\n  type: digesttest\n  digest_interval: 1s\n  filter: {categories: [detection]}\n", g.Type())))
	first := detectionEvent("det-d0", "detection.created", "active", "default", 1)
	b.publish(first)
	checkFor(t, 5*time.Second, "the first detection at once", func() error {
		if len(g.calls()) == 0 {
			return errors.New("not yet")
		}
		return nil
	})
	var want []string
	for i := 1; i <= 5; i++ {
		e := detectionEvent(fmt.Sprintf("det-d%d", i), "detection.created", "active", "default", 1)
		b.publish(e)
		want = append(want, e.ID)
	}
	checkFor(t, 10*time.Second, "the digest accepted", func() error {
		c := g.calls()
		if len(c) < 3 {
			return fmt.Errorf("%d sends", len(c))
		}
		return nil
	})
	c := g.calls()
	if len(c) != 3 {
		t.Fatalf("%d sends, want 3 (first, failed digest, its retry)", len(c))
	}
	if len(c[0].ids) != 1 || c[0].ids[0] != first.ID {
		t.Fatalf("first send %v, want only %s", c[0].ids, first.ID)
	}
	if gap := c[1].at.Sub(c[0].at); gap < interval-100*time.Millisecond {
		t.Fatalf("digest sent %v after the first message, within digest_interval %v", gap, interval)
	}
	for i, s := range c[1:] {
		if fmt.Sprint(s.ids) != fmt.Sprint(want) {
			t.Fatalf("send %d: %v, want the whole digest %v", i+1, s.ids, want)
		}
		if s.ackPending != len(want) {
			t.Fatalf("send %d: %d messages unacknowledged during the Send, want %d (acknowledged before it?)", i+1, s.ackPending, len(want))
		}
	}
	if c[1].err == nil || c[2].err != nil {
		t.Fatalf("send results %v, %v: want the failure, then the retry accepted", c[1].err, c[2].err)
	}
	checkFor(t, 5*time.Second, "the digest acknowledged after its Send", func() error {
		ci, err := g.cons(context.Background())
		if err != nil {
			return err
		}
		if ci.NumAckPending != 0 || ci.NumRedelivered != 0 {
			return fmt.Errorf("ack pending %d, redelivered %d", ci.NumAckPending, ci.NumRedelivered)
		}
		return nil
	})
}

// TestDigestIntervalKeptAcrossRestart: a restart within digest_interval
// of the last digest does not send the next one early: the interval is
// counted from the last digest accepted before the restart (kept in the
// consumer's metadata), not from the start. Before, a node restarting (or
// crash-looping) mailed a digest at every start.
func TestDigestIntervalKeptAcrossRestart(t *testing.T) {
	leakCheck(t)
	b := newBench(t)
	const interval = 5 * time.Second
	g := &digestType{failed: true, cons: b.consumerInfo("digest")}
	opts := b.managerOpts(defs(t, "- name: digest\n  type: digesttest\n  digest_interval: 5s\n  filter: {categories: [detection]}\n", g.Type()))
	_, stop := b.run(opts)
	b.publish(detectionEvent("det-r0", "detection.created", "active", "default", 1))
	checkFor(t, 5*time.Second, "the first digest", func() error {
		if len(g.calls()) == 0 {
			return errors.New("not yet")
		}
		return nil
	})
	stop()
	b.run(opts) // the restart, well within the interval
	next := detectionEvent("det-r1", "detection.created", "active", "default", 1)
	b.publish(next)
	checkFor(t, 2*interval, "the digest after the restart", func() error {
		if len(g.calls()) < 2 {
			return errors.New("not yet")
		}
		return nil
	})
	c := g.calls()
	if gap := c[1].at.Sub(c[0].at); gap < interval-100*time.Millisecond {
		t.Fatalf("the digest after the restart came %v after the one before it, within digest_interval %v", gap, interval)
	}
	if len(c) != 2 || len(c[1].ids) != 1 || c[1].ids[0] != next.ID {
		t.Fatalf("sends %+v", c)
	}
}

// TestDigestSentEarlyAtItsBound: a digest window that fills the output's
// in-flight bound (MaxDigest, its consumer's MaxAckPending) is sent early
// instead of stalling the consumer until the interval ends; the next
// window fills and goes early too, and the rest waits for the interval.
func TestDigestSentEarlyAtItsBound(t *testing.T) {
	leakCheck(t)
	b := newBench(t)
	const bound = 4
	g := &digestType{failed: true, cons: b.consumerInfo("big")}
	opts := b.managerOpts(defs(t, "- name: big\n  type: digesttest\n  digest_interval: 1h\n  filter: {categories: [detection]}\n", g.Type()))
	opts.MaxDigest = bound
	b.run(opts)
	b.publish(detectionEvent("det-b0", "detection.created", "active", "default", 1))
	checkFor(t, 5*time.Second, "the first detection at once", func() error {
		if len(g.calls()) == 0 {
			return errors.New("not yet")
		}
		return nil
	})
	var evs []*event.Event
	for i := 1; i <= 2*bound+1; i++ {
		evs = append(evs, detectionEvent(fmt.Sprintf("det-b%d", i), "detection.created", "active", "default", 1))
	}
	b.publish(evs...)
	checkFor(t, 10*time.Second, "two full digests sent early, the last detection held", func() error {
		c := g.calls()
		ci, err := g.cons(context.Background())
		if err != nil {
			return err
		}
		if len(c) < 3 || ci.NumAckPending != 1 || ci.NumPending != 0 {
			return fmt.Errorf("%d sends, consumer ack pending %d, pending %d", len(c), ci.NumAckPending, ci.NumPending)
		}
		return nil
	})
	c := g.calls()
	if len(c) != 3 || len(c[1].ids) != bound || len(c[2].ids) != bound {
		var sizes []int
		for _, s := range c {
			sizes = append(sizes, len(s.ids))
		}
		t.Fatalf("send sizes %v, want [1 %d %d]", sizes, bound, bound)
	}
	if c[1].ids[0] != evs[0].ID || c[2].ids[0] != evs[bound].ID {
		t.Fatalf("digests out of log order: %v %v", c[1].ids, c[2].ids)
	}
}

// echoType is a Groups type whose receiver refuses every request and
// quotes it in its answer, as some receivers do.
type echoType struct{}

func (echoType) Type() outputs.Type {
	return outputs.Type{Name: "echotest", Groups: true, NewOptions: func() any { return &struct{}{} },
		New: func(any, outputs.Env) (outputs.Sender, error) { return echoType{}, nil }}
}

func (echoType) Send(_ context.Context, msgs []outputs.Message) error {
	var quoted []string
	for _, m := range msgs {
		quoted = append(quoted, m.Event.Message)
	}
	return outputs.Permanent(fmt.Errorf("HTTP 400: bad request: %s", strings.Join(quoted, " | ")))
}
func (echoType) Close() error { return nil }

// TestDeadLetterOfSeveralTenantsQuotesNoOther: a digest of an output of
// every tenant held acme's and globex's detections and was refused by a
// receiver quoting the request. Each record goes to its event's tenant,
// so the answer (globex's text in acme's record, found by an audit) is
// kept out of them; a request of one tenant keeps its answer.
func TestDeadLetterOfSeveralTenantsQuotesNoOther(t *testing.T) {
	leakCheck(t)
	b := newBench(t)
	b.run(b.managerOpts(defs(t, "- name: echo\n  type: echotest\n  digest_interval: 1h\n  filter: {categories: [detection]}\n"+
		"- name: echo-acme\n  type: echotest\n  tenants: [acme]\n  filter: {categories: [detection]}\n", echoType{}.Type())))
	acme := detectionEvent("det-a", "detection.created", "active", "acme", 1)
	globex := detectionEvent("det-g", "detection.created", "active", "globex", 1)
	acme.Message, globex.Message = "acme secret project", "globex secret project"
	b.publishAs(&auth.Principal{ID: "acme-admin", Role: auth.RoleAdmin, Tenant: "acme"}, acme)
	b.publishAs(&auth.Principal{ID: "globex-admin", Role: auth.RoleAdmin, Tenant: "globex"}, globex)
	var dl []*event.Event
	checkFor(t, 10*time.Second, "three dead-letter records (the digest's two, echo-acme's one)", func() error {
		if dl = deadLetters(t, b); len(dl) < 3 {
			return fmt.Errorf("%d so far", len(dl))
		}
		return nil
	})
	for _, r := range dl {
		for _, other := range []string{"acme", "globex"} {
			if other != r.Tenant && (strings.Contains(string(r.Data), other) || strings.Contains(r.Message, other)) {
				t.Errorf("%s's dead-letter record quotes %s: %s / %s", r.Tenant, other, r.Message, r.Data)
			}
		}
	}
	// One tenant alone (echo-acme; the digest output waits an hour): the
	// answer is kept.
	solo := detectionEvent("det-s", "detection.created", "active", "acme", 1)
	solo.Message = "acme alone"
	b.publishAs(&auth.Principal{ID: "acme-admin", Role: auth.RoleAdmin, Tenant: "acme"}, solo)
	checkFor(t, 10*time.Second, "the single tenant's record", func() error {
		for _, r := range deadLetters(t, b) {
			if strings.Contains(string(r.Data), solo.ID) {
				if !strings.Contains(string(r.Data), "acme alone") {
					return fmt.Errorf("the receiver's answer is missing: %s", r.Data)
				}
				return nil
			}
		}
		return errors.New("not yet")
	})
}
