package outputs_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"gopkg.in/yaml.v3"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/outputs"
	"github.com/vigil-sec/vigil/internal/outputs/webhook"
)

// leakCheck registers, first, a cleanup that runs last: every goroutine
// of the manager, its outputs and the log has ended.
func leakCheck(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t, goleak.IgnoreCurrent()) })
}

func TestParseDefinitionsRefusesBrokenEntries(t *testing.T) {
	sf := secretFile(t, "s3cret")
	ok := webhookYAML("good", "http://127.0.0.1:1/hook", sf, "")
	cases := []struct{ name, src, want string }{
		{"unknown key", ok + webhookYAML("bad", "http://127.0.0.1:1/", sf, "  colour: red\n"), `outputs[1] (bad): unknown key "colour"`},
		{"unknown type", ok + "- name: x\n  type: carrier-pigeon\n", `outputs[1] (x): type "carrier-pigeon" is unknown`},
		{"no name", "- type: webhook\n  url: http://a/\n", `outputs[0]: name is missing`},
		{"bad name", "- name: 'a b'\n  type: webhook\n", `outputs[0] (a b): name "a b"`},
		{"duplicate", ok + ok, `outputs[1] (good): name already used by outputs[0]`},
		{"bad filter field", webhookYAML("f", "http://a/", sf, "  filter: {colours: [red]}\n"), `outputs[0] (f): filter: colours: unknown filter field`},
		{"bad filter severity", webhookYAML("f", "http://a/", sf, "  filter: {min_severity: huge}\n"), `outputs[0] (f): filter: min_severity`},
		{"bad expr", webhookYAML("f", "http://a/", sf, "  filter: {expr: 'severity >'}\n"), `outputs[0] (f): filter: expr`},
		{"bad tenant", webhookYAML("f", "http://a/", sf, "  tenants: ['a.b']\n"), `tenants: "a.b"`},
		{"bad max_age", webhookYAML("f", "http://a/", sf, "  max_age: soon\n"), `outputs[0] (f): max_age`},
		{"zero timeout", webhookYAML("f", "http://a/", sf, "  timeout: 0s\n"), `timeout: 0s must be positive`},
		{"bad rate", webhookYAML("f", "http://a/", sf, "  rate_limit: fast\n"), `rate_limit "fast"`},
		{"group_wait on webhook", webhookYAML("f", "http://a/", sf, "  group_wait: 30s\n"), `group_wait: type webhook does not group`},
		{"digest_interval on webhook", webhookYAML("f", "http://a/", sf, "  digest_interval: 5m\n"), `digest_interval: type webhook does not group`},
		{"digest_interval too long", webhookYAML("f", "http://a/", sf, "  digest_interval: 25h\n"), `digest_interval: 25h is above the limit of 24h0m0s`},
		{"digest_interval too short", "- name: g\n  type: grouptest\n  digest_interval: 10ms\n", `digest_interval: 10ms is below the minimum of 100ms`},
		{"digest_interval not below max_age", "- name: g\n  type: grouptest\n  digest_interval: 2h\n  max_age: 2h\n", `digest_interval: 2h0m0s must be below max_age (2h0m0s)`},
		{"bad template", webhookYAML("f", "http://a/", sf, "  template: '{{.Nope}}'\n"), `outputs[0] (f): template`},
		{"concurrency zero", webhookYAML("f", "http://a/", sf, "  concurrency: 0\n"), `outputs[0] (f): concurrency: 0 must be at least 1`},
		{"concurrency too high", webhookYAML("f", "http://a/", sf, "  concurrency: 65\n"), `outputs[0] (f): concurrency: 65 is above the limit of 64`},
		{"concurrency not a number", webhookYAML("f", "http://a/", sf, "  concurrency: many\n"), `outputs[0] (f): concurrency: "many" is not a whole number`},
		{"concurrency on a serial type", "- name: g\n  type: grouptest\n  concurrency: 4\n", `outputs[0] (g): concurrency: type grouptest sends one request at a time`},
		{"not a mapping", "- just a string\n", `outputs[0]: not a mapping`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var nodes []yaml.Node
			if err := yaml.Unmarshal([]byte(c.src), &nodes); err != nil {
				t.Fatal(err)
			}
			_, err := outputs.ParseDefinitions(nodes, []outputs.Type{webhook.Type(), (&groupType{}).Type()})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want it to contain %q", err, c.want)
			}
		})
	}
}

// TestNewManagerRefusesWhatTheTypeRefuses: the type's own checks (a
// literal secret in the config, no url) stop the start with index and
// name, and the secret is not in the message.
func TestNewManagerRefusesWhatTheTypeRefuses(t *testing.T) {
	b := newBench(t)
	for _, c := range []struct{ src, want string }{
		{"- name: lit\n  type: webhook\n  url: http://127.0.0.1:1/\n  secret: hunter2\n", "outputs[0] (lit): secret must be ${ENV_NAME} or given as secret_file"},
		{"- name: nourl\n  type: webhook\n", "outputs[0] (nourl): url is missing"},
		{"- name: env\n  type: webhook\n  url: http://127.0.0.1:1/\n  secret: ${VIGIL_TEST_UNSET_SECRET}\n", "environment variable VIGIL_TEST_UNSET_SECRET is not set"},
	} {
		_, err := outputs.NewManager(context.Background(), b.managerOpts(defs(t, c.src)))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Fatalf("err = %v, want %q", err, c.want)
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Fatalf("the secret is in the error: %v", err)
		}
	}
}

// TestWebhookDeliversEveryDetectionThroughRefusals: the receiver refuses
// the first requests with 503; every matching detection still arrives,
// each signature verifies, and deduplicating by X-Vigil-Delivery leaves
// exactly the detections published (nothing the filter excludes).
func TestWebhookDeliversEveryDetectionThroughRefusals(t *testing.T) {
	leakCheck(t)
	b := newBench(t)
	r := newReceiver(t, "s3cret", 7)
	b.run(b.managerOpts(defs(t, webhookYAML("soc", r.URL, secretFile(t, "s3cret"), "  filter: {categories: [detection], min_severity: high}\n"))))
	const n = 40
	var want []string
	for i := 0; i < n; i++ {
		d := detectionEvent(fmt.Sprintf("det-%d", i), "detection.created", "active", "default", 1)
		b.publish(d, plainEvent("auth.login"))
		want = append(want, d.ID)
	}
	checkFor(t, 20*time.Second, "every detection delivered", func() error {
		if got := r.distinct(); got < n {
			return fmt.Errorf("%d of %d", got, n)
		}
		return nil
	})
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.badSig) > 0 {
		t.Fatalf("bad signatures: %v", r.badSig)
	}
	if len(r.byID) != n {
		t.Fatalf("%d distinct deliveries, want %d (something outside the filter was sent)", len(r.byID), n)
	}
	for _, id := range want {
		if r.byID[id] == 0 {
			t.Fatalf("detection event %s never arrived", id)
		}
		if r.types[id] != "detection.created" {
			t.Fatalf("X-Vigil-Event = %q", r.types[id])
		}
		var got map[string]any
		if err := json.Unmarshal(r.bodies[id], &got); err != nil || got["id"] != id {
			t.Fatalf("body is not the event: %s", r.bodies[id])
		}
		if data, _ := got["data"].(map[string]any); data["rule_id"] != "brute-force" {
			t.Fatalf("body's data is not the detection: %s", r.bodies[id])
		}
	}
	if r.requests < n+7 {
		t.Fatalf("%d requests: the 7 refusals were not retried", r.requests)
	}
}

// deadLetters reads the system.output_failed events of the log.
func deadLetters(t testing.TB, b *bench) []*event.Event {
	var out []*event.Event
	if err := b.log.Scan(context.Background(), 1, func(e *event.Event) bool {
		if e.Type == outputs.DeadLetterType {
			out = append(out, e)
		}
		return true
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestDeadLetterAfterMaxAge: a receiver that never accepts; after max_age
// the message is recorded as system.output_failed (output, event id, last
// error, attempts), counted, and acknowledged (the consumer's lag is 0).
func TestDeadLetterAfterMaxAge(t *testing.T) {
	leakCheck(t)
	b := newBench(t)
	r := newReceiver(t, "s", 1<<30)
	m, _ := b.run(b.managerOpts(defs(t, webhookYAML("down", r.URL, secretFile(t, "s"), "  max_age: 400ms\n  filter: {categories: [detection]}\n"))))
	d := detectionEvent("det-x", "detection.created", "active", "acme", 1)
	b.publishAs(&auth.Principal{ID: "acme-admin", Role: auth.RoleAdmin, Tenant: "acme"}, d)
	var dl []*event.Event
	checkFor(t, 10*time.Second, "dead-letter record", func() error {
		if dl = deadLetters(t, b); len(dl) == 0 {
			return errors.New("none yet")
		}
		return nil
	})
	var data outputs.DeadLetterData
	if err := json.Unmarshal(dl[0].Data, &data); err != nil {
		t.Fatal(err)
	}
	if data.Output != "down" || data.EventID != d.ID || data.Reason != "max_age" || data.Attempts < 2 || !strings.Contains(data.LastError, "HTTP 503") || data.DetectionID != "det-x" {
		t.Fatalf("dead-letter data = %+v", data)
	}
	if age := data.FailedAt.Sub(d.ReceivedAt); age < 400*time.Millisecond {
		t.Fatalf("dead-lettered %s after receipt, before max_age", age)
	}
	if dl[0].Tenant != "acme" || dl[0].Category != event.CategorySystem {
		t.Fatalf("dead-letter event tenant %q category %q", dl[0].Tenant, dl[0].Category)
	}
	checkFor(t, 5*time.Second, "counted and acknowledged", func() error {
		st := m.Statuses(context.Background(), &auth.Principal{Role: auth.RoleAdmin, Tenant: auth.AllTenants})
		if st[0].Failed != 1 || st[0].Pending != 0 || st[0].LastError == "" {
			return fmt.Errorf("status %+v", st[0])
		}
		return nil
	})
	if len(deadLetters(t, b)) != 1 {
		t.Fatal("more than one dead-letter record for one event")
	}
}

// TestPermanentErrorDeadLettersAtOnce: a 400 is not retried.
func TestPermanentErrorDeadLettersAtOnce(t *testing.T) {
	leakCheck(t)
	b := newBench(t)
	r := newReceiver(t, "s", 0)
	r.set(func(r *receiver) { r.status = 400 })
	b.run(b.managerOpts(defs(t, webhookYAML("strict", r.URL, secretFile(t, "s"), ""))))
	b.publish(plainEvent("auth.login"))
	checkFor(t, 10*time.Second, "dead-letter record", func() error {
		if len(deadLetters(t, b)) == 0 {
			return errors.New("none yet")
		}
		return nil
	})
	var data outputs.DeadLetterData
	_ = json.Unmarshal(deadLetters(t, b)[0].Data, &data)
	if data.Reason != "permanent" || data.Attempts != 1 {
		t.Fatalf("dead-letter data = %+v", data)
	}
}

// TestSlowOutputDoesNotDelayAnother: one receiver hangs every request; the
// other output still gets every event at once.
func TestSlowOutputDoesNotDelayAnother(t *testing.T) {
	leakCheck(t)
	b := newBench(t)
	slow := newReceiver(t, "s", 0)
	slow.set(func(r *receiver) { r.block = make(chan struct{}) })
	fast := newReceiver(t, "s", 0)
	sf := secretFile(t, "s")
	b.run(b.managerOpts(defs(t, webhookYAML("slow", slow.URL, sf, "  timeout: 1m\n")+webhookYAML("fast", fast.URL, sf, ""))))
	const n = 30
	for i := 0; i < n; i++ {
		b.publish(plainEvent("auth.login"))
	}
	checkFor(t, 5*time.Second, "the fast output delivered everything", func() error {
		if got := fast.distinct(); got < n {
			return fmt.Errorf("%d of %d", got, n)
		}
		return nil
	})
	if slow.distinct() != 0 {
		t.Fatal("the slow receiver answered")
	}
}

// TestRestartResumesFromAckFloor: a manager stopped while its receiver is
// down, events appended while no manager runs, a new manager on the same
// durable consumer: every event arrives.
func TestRestartResumesFromAckFloor(t *testing.T) {
	leakCheck(t)
	b := newBench(t)
	r := newReceiver(t, "s", 1<<30)
	d := defs(t, webhookYAML("soc", r.URL, secretFile(t, "s"), ""))
	_, stop := b.run(b.managerOpts(d))
	var ids []string
	for i := 0; i < 10; i++ {
		e := plainEvent("auth.login")
		b.publish(e)
		ids = append(ids, e.ID)
	}
	checkFor(t, 5*time.Second, "attempts while down", func() error {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.requests < 2 {
			return errors.New("no retries yet")
		}
		return nil
	})
	stop()
	for i := 0; i < 5; i++ {
		e := plainEvent("auth.logout")
		b.publish(e)
		ids = append(ids, e.ID)
	}
	r.set(func(r *receiver) { r.refuse = 0 })
	b.run(b.managerOpts(d))
	checkFor(t, 10*time.Second, "everything delivered after the restart", func() error {
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, id := range ids {
			if r.byID[id] == 0 {
				return fmt.Errorf("%s missing (%d of %d)", id, len(r.byID), len(ids))
			}
		}
		return nil
	})
}

// TestNewOutputStartsAtTheEndOfTheLog: an output that appears on a log
// with history does not replay it.
func TestNewOutputStartsAtTheEndOfTheLog(t *testing.T) {
	b := newBench(t)
	old := plainEvent("auth.login")
	b.publish(old)
	r := newReceiver(t, "s", 0)
	b.run(b.managerOpts(defs(t, webhookYAML("late", r.URL, secretFile(t, "s"), ""))))
	e := plainEvent("auth.logout")
	b.publish(e)
	checkFor(t, 5*time.Second, "the new event", func() error {
		if r.distinct() == 0 {
			return errors.New("nothing yet")
		}
		return nil
	})
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.byID[old.ID] != 0 || r.byID[e.ID] != 1 {
		t.Fatalf("deliveries %v: want only %s", r.byID, e.ID)
	}
}

// TestRepeatIntervalAndStatusChanges: count updates of one detection
// within repeat_interval are sent once; a status change always goes out.
func TestRepeatIntervalAndStatusChanges(t *testing.T) {
	b := newBench(t)
	r := newReceiver(t, "s", 0)
	m, _ := b.run(b.managerOpts(defs(t, webhookYAML("noisy", r.URL, secretFile(t, "s"), "  repeat_interval: 1h\n  filter: {categories: [detection]}\n"))))
	created := detectionEvent("det-r", "detection.created", "active", "default", 1)
	b.publish(created)
	var updates []*event.Event
	for i := 2; i <= 6; i++ {
		u := detectionEvent("det-r", "detection.updated", "active", "default", i)
		updates = append(updates, u)
		b.publish(u)
	}
	ack := detectionEvent("det-r", "detection.updated", "investigating", "default", 6)
	b.publish(ack)
	checkFor(t, 5*time.Second, "the status change", func() error {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.byID[ack.ID] == 0 {
			return errors.New("not yet")
		}
		return nil
	})
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.byID[created.ID] != 1 {
		t.Fatal("created not sent")
	}
	// The first update after created has the same status within the
	// interval: all 5 are suppressed.
	for _, u := range updates {
		if r.byID[u.ID] != 0 {
			t.Fatalf("count update %s sent within repeat_interval", u.ID)
		}
	}
	r.mu.Unlock()
	// The receiver answers before the output counts: poll the counts.
	checkFor(t, 5*time.Second, "the counts", func() error {
		st := m.Statuses(context.Background(), &auth.Principal{Role: auth.RoleAdmin, Tenant: auth.AllTenants})
		if st[0].Suppressed != 5 || st[0].Delivered != 2 {
			return fmt.Errorf("status %+v", st[0])
		}
		return nil
	})
	r.mu.Lock()
}

// groupType records the groups a Groups output is handed.
type groupType struct {
	mu     sync.Mutex
	groups [][]outputs.Message
}

func (g *groupType) Type() outputs.Type {
	return outputs.Type{Name: "grouptest", Groups: true, NewOptions: func() any { return &struct{}{} },
		New: func(any, outputs.Env) (outputs.Sender, error) { return g, nil }}
}

func (g *groupType) Send(_ context.Context, msgs []outputs.Message) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.groups = append(g.groups, append([]outputs.Message(nil), msgs...))
	return nil
}
func (g *groupType) Close() error { return nil }

// TestGroupWaitGroupsDetections: detections created within group_wait go
// out in one Send, each with its text rendered; another event taken
// meanwhile follows on its own.
func TestGroupWaitGroupsDetections(t *testing.T) {
	b := newBench(t)
	g := &groupType{}
	b.run(b.managerOpts(defs(t, "- name: chat\n  type: grouptest\n  group_wait: 1s\n", g.Type())))
	for i := 0; i < 5; i++ {
		b.publish(detectionEvent(fmt.Sprintf("det-g%d", i), "detection.created", "active", "default", 1))
		if i == 2 {
			b.publish(plainEvent("auth.login")) // taken within the window, not a created detection
		}
	}
	checkFor(t, 5*time.Second, "one group and the event", func() error {
		g.mu.Lock()
		defer g.mu.Unlock()
		n := 0
		for _, gr := range g.groups {
			n += len(gr)
		}
		if n < 6 {
			return fmt.Errorf("%d messages", n)
		}
		return nil
	})
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.groups) != 2 || len(g.groups[0]) != 5 || len(g.groups[1]) != 1 || g.groups[1][0].Event.Type != "auth.login" {
		var sizes []int
		for _, gr := range g.groups {
			sizes = append(sizes, len(gr))
		}
		t.Fatalf("group sizes %v, want the 5 detections, then the event alone", sizes)
	}
	if txt := g.groups[0][0].Text; !strings.Contains(txt, "[HIGH] Brute force on det-g0") || !strings.Contains(txt, "T1110") || !strings.Contains(txt, "user=alice") {
		t.Fatalf("text = %q", txt)
	}
}

// TestRateLimitPaces: rate_limit 5/1s delays deliveries past the burst
// instead of dropping them.
func TestRateLimitPaces(t *testing.T) {
	b := newBench(t)
	r := newReceiver(t, "s", 0)
	b.run(b.managerOpts(defs(t, webhookYAML("paced", r.URL, secretFile(t, "s"), "  rate_limit: 5/1s\n"))))
	start := time.Now()
	for i := 0; i < 8; i++ {
		b.publish(plainEvent("auth.login"))
	}
	checkFor(t, 10*time.Second, "all 8 delivered", func() error {
		if n := r.distinct(); n < 8 {
			return fmt.Errorf("%d", n)
		}
		return nil
	})
	// A burst of 5, then one per 200ms: the 8th at ≥ 600ms.
	if took := time.Since(start); took < 550*time.Millisecond {
		t.Fatalf("8 deliveries took %s: not paced", took)
	}
}

// TestOwnDeadLettersAreNotDeliveredBack: an output whose filter takes
// system events does not deliver its own system.output_failed records
// (one failure would feed the next).
func TestOwnDeadLettersAreNotDeliveredBack(t *testing.T) {
	b := newBench(t)
	r := newReceiver(t, "s", 0)
	r.set(func(r *receiver) { r.status = 400 })
	m, _ := b.run(b.managerOpts(defs(t, webhookYAML("loop", r.URL, secretFile(t, "s"), ""))))
	b.publish(plainEvent("auth.login"))
	checkFor(t, 5*time.Second, "one dead letter, acknowledged", func() error {
		st := m.Statuses(context.Background(), &auth.Principal{Role: auth.RoleAdmin, Tenant: auth.AllTenants})
		if st[0].Failed != 1 || st[0].Pending != 0 {
			return fmt.Errorf("%+v", st[0])
		}
		return nil
	})
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.requests != 1 {
		t.Fatalf("%d requests: the dead-letter record was sent back to the failing output", r.requests)
	}
}

// TestChangedFilterUpdatesTheConsumer: an output whose filter changes
// between two starts keeps its consumer (and position); its subject
// filter follows the new categories.
func TestChangedFilterUpdatesTheConsumer(t *testing.T) {
	b := newBench(t)
	r := newReceiver(t, "s", 0)
	sf := secretFile(t, "s")
	_, stop := b.run(b.managerOpts(defs(t, webhookYAML("soc", r.URL, sf, ""))))
	stop()
	b.publish(plainEvent("auth.login")) // appended while stopped: no longer wanted by the new filter
	det := detectionEvent("det-f", "detection.created", "active", "default", 1)
	b.publish(det)
	b.run(b.managerOpts(defs(t, webhookYAML("soc", r.URL, sf, "  filter: {categories: [detection]}\n  tenants: [default]\n"))))
	checkFor(t, 5*time.Second, "the detection", func() error {
		if r.distinct() == 0 {
			return errors.New("nothing yet")
		}
		return nil
	})
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.byID) != 1 || r.byID[det.ID] != 1 {
		t.Fatalf("deliveries %v", r.byID)
	}
	info, err := b.log.JetStream().Consumer(context.Background(), "VIGIL_EVENTS", outputs.ConsumerName("soc"))
	if err != nil {
		t.Fatal(err)
	}
	if got := info.CachedInfo().Config.FilterSubjects; len(got) != 1 || got[0] != "vigil.events.default.detection.>" {
		t.Fatalf("filter subjects %v", got)
	}
}

// TestRetryAfterIsHonoured: a 503 with Retry-After: 1 makes the next
// attempt wait a second, not the (10 ms) backoff.
func TestRetryAfterIsHonoured(t *testing.T) {
	b := newBench(t)
	var (
		mu    sync.Mutex
		times []time.Time
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		times = append(times, time.Now())
		if len(times) == 1 {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	b.run(b.managerOpts(defs(t, webhookYAML("hinted", srv.URL, secretFile(t, "s"), ""))))
	b.publish(plainEvent("auth.login"))
	checkFor(t, 5*time.Second, "the retry", func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(times) < 2 {
			return errors.New("one attempt so far")
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	if gap := times[1].Sub(times[0]); gap < 900*time.Millisecond {
		t.Fatalf("retried after %s, Retry-After said 1s", gap)
	}
}

// TestLongSendIsNotDeliveredTwice: a request that takes longer than the
// consumer's ack wait does not make JetStream hand the message out again
// (the core keeps it in progress while it holds it).
func TestLongSendIsNotDeliveredTwice(t *testing.T) {
	b := newBench(t)
	r := newReceiver(t, "s", 0)
	release := make(chan struct{})
	r.set(func(r *receiver) { r.block = release })
	opts := b.managerOpts(defs(t, webhookYAML("slowack", r.URL, secretFile(t, "s"), "  timeout: 30s\n")))
	opts.AckWait = time.Second
	b.run(opts)
	e := plainEvent("auth.login")
	b.publish(e)
	time.Sleep(3 * opts.AckWait) // the request is held past three ack waits
	r.set(func(r *receiver) { r.block = nil })
	close(release)
	checkFor(t, 5*time.Second, "the delivery", func() error {
		if r.distinct() == 0 {
			return errors.New("not yet")
		}
		return nil
	})
	// Anything delivered twice would be sent right after the first.
	later := plainEvent("auth.logout")
	b.publish(later)
	checkFor(t, 5*time.Second, "the next event", func() error {
		if r.distinct() < 2 {
			return errors.New("not yet")
		}
		return nil
	})
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.byID[e.ID] != 1 || r.requests != 2 {
		t.Fatalf("%d deliveries of %s, %d requests: redelivered while in progress", r.byID[e.ID], e.ID, r.requests)
	}
}

// TestSecretsStayOutOfLogsAndStatus: a webhook URL that carries a
// credential in its path (as Slack's and Teams' do) and a signing secret
// appear neither in the log lines nor in the status's last error.
func TestSecretsStayOutOfLogsAndStatus(t *testing.T) {
	b := newBench(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens: connection refused
	const pathSecret, signSecret = "T000/B000/XXXXpathsecretXXXX", "signing-secret-value"
	var logs bytes.Buffer
	var logMu sync.Mutex
	opts := b.managerOpts(defs(t, webhookYAML("leaky", "http://"+addr+"/services/"+pathSecret, secretFile(t, signSecret), "")))
	opts.Logger = slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &logMu}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	m, _ := b.run(opts)
	b.publish(plainEvent("auth.login"))
	var st outputs.Status
	checkFor(t, 5*time.Second, "a failed attempt", func() error {
		st = m.Statuses(context.Background(), &auth.Principal{Role: auth.RoleAdmin, Tenant: auth.AllTenants})[0]
		if st.LastError == "" {
			return errors.New("no error yet")
		}
		return nil
	})
	logMu.Lock()
	text := logs.String() + st.LastError
	logMu.Unlock()
	if !strings.Contains(text, "http://"+addr+"/…") {
		t.Fatalf("the error does not name the receiver: %s", text)
	}
	for _, s := range []string{"pathsecret", signSecret} {
		if strings.Contains(text, s) {
			t.Fatalf("%q leaked: %s", s, text)
		}
	}
}

type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// TestWebhookConcurrency: concurrency: 8 keeps eight requests in flight to
// a receiver that answers slowly, and never a ninth, though the output
// holds far more messages; a stop while all eight wait releases them, and
// the next start delivers every event. Before concurrency an output sent
// one request at a time: a receiver 50 ms away bounded it at 20 events/s.
func TestWebhookConcurrency(t *testing.T) {
	leakCheck(t)
	const conc, n = 8, 100
	var (
		mu       sync.Mutex
		inFlight int
		most     int
		seen     = map[string]int{}
		gate     = make(chan struct{})
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		_, _ = io.Copy(io.Discard, req.Body)
		mu.Lock()
		inFlight++
		most = max(most, inFlight)
		g := gate
		mu.Unlock()
		defer func() { mu.Lock(); inFlight--; mu.Unlock() }()
		select {
		case <-g:
		case <-req.Context().Done():
			return // the output gave up on it: not delivered
		}
		mu.Lock()
		seen[req.Header.Get(webhook.HeaderDelivery)]++
		mu.Unlock()
	}))
	defer srv.Close()
	state := func() (int, int, int) { mu.Lock(); defer mu.Unlock(); return inFlight, most, len(seen) }

	b := newBench(t)
	d := defs(t, webhookYAML("siem", srv.URL, secretFile(t, "s3cret"), fmt.Sprintf("  concurrency: %d\n  filter: {categories: [authentication]}\n", conc)))
	m, stop := b.run(b.managerOpts(d))
	for range n {
		b.publish(plainEvent("auth.login"))
	}
	checkFor(t, 10*time.Second, "eight requests in flight", func() error {
		if in, _, _ := state(); in != conc {
			return fmt.Errorf("%d in flight", in)
		}
		return nil
	})
	// The output holds up to 256 messages: were the bound not kept, more
	// requests would be on their way by now.
	time.Sleep(200 * time.Millisecond)
	if in, most, _ := state(); in != conc || most != conc {
		t.Fatalf("%d requests in flight, at most %d, want %d", in, most, conc)
	}
	if st := m.Statuses(context.Background(), b.admin); len(st) != 1 || st[0].Concurrency != conc {
		t.Fatalf("status: %+v, want concurrency %d", st, conc)
	}
	stop() // all eight waiting: released, not lost
	if _, _, got := state(); got != 0 {
		t.Fatalf("%d delivered while the receiver held every request", got)
	}
	mu.Lock()
	close(gate)
	mu.Unlock()
	b.run(b.managerOpts(d))
	checkFor(t, 20*time.Second, "every event delivered after the restart", func() error {
		if _, _, got := state(); got < n {
			return fmt.Errorf("%d of %d", got, n)
		}
		return nil
	})
	if _, most, _ := state(); most > conc {
		t.Fatalf("%d requests were in flight at once, the limit is %d", most, conc)
	}
}
