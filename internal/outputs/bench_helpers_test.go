package outputs_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/ingest"
	"github.com/vigil-sec/vigil/internal/outputs"
	"github.com/vigil-sec/vigil/internal/outputs/webhook"
	"github.com/vigil-sec/vigil/internal/store"
)

// bench is a real log (embedded JetStream in a temp dir) and the ingest
// path, for running a Manager against.
type bench struct {
	t     testing.TB
	log   *store.Log
	ing   *ingest.Service
	admin *auth.Principal
	dir   string
}

func newBench(t testing.TB) *bench {
	t.Helper()
	dir := t.TempDir()
	b := &bench{t: t, dir: dir, admin: &auth.Principal{ID: "admin", Role: auth.RoleAdmin, Tenant: auth.AllTenants}}
	b.open()
	t.Cleanup(func() { b.log.Close() })
	return b
}

func (b *bench) open() {
	lg, err := store.Open(context.Background(), store.Config{DataDir: b.dir})
	if err != nil {
		b.t.Fatalf("store.Open: %v", err)
	}
	b.log, b.ing = lg, ingest.New(lg, event.DefaultLimits(), nil)
}

func (b *bench) publish(evs ...*event.Event) {
	b.t.Helper()
	b.publishAs(b.admin, evs...)
}

func (b *bench) publishAs(p *auth.Principal, evs ...*event.Event) {
	b.t.Helper()
	if _, err := b.ing.Publish(context.Background(), p, evs); err != nil {
		b.t.Fatalf("publish: %v", err)
	}
}

// detectionEvent is a detection.created (or updated) event as the engine
// writes it: the detection in data.
func detectionEvent(id, typ, status, tenant string, count int) *event.Event {
	d := outputs.Detection{ID: id, RuleID: "brute-force", Title: "Brute force on " + id, Category: "authentication",
		Severity: "high", Status: status, Count: count, GroupKey: "user=alice", Tenant: tenant,
		MitreTactics: []string{"TA0006"}, MitreTechniques: []string{"T1110"}}
	data, _ := json.Marshal(d)
	return &event.Event{Type: typ, Category: event.CategoryDetection, Severity: event.SeverityHigh, Source: "vigil-detect",
		Tenant: tenant, Message: d.Title, Action: status, Data: data}
}

func plainEvent(typ string) *event.Event {
	return &event.Event{Type: typ, Category: event.CategoryAuthentication, Severity: event.SeverityLow, Source: "test", User: "bob"}
}

// managerOpts are fast-retry options over b's log.
func (b *bench) managerOpts(defs []outputs.Definition) outputs.Options {
	return outputs.Options{
		JetStream: b.log.JetStream(), Stream: store.StreamName, SubjectPrefix: store.SubjectPrefix, Definitions: defs,
		DeadLetter: func(ctx context.Context, e *event.Event) error {
			_, err := b.ing.Publish(ctx, &auth.Principal{ID: "outputs", Role: auth.RoleAdmin, Tenant: e.Tenant}, []*event.Event{e})
			return err
		},
		AckWait: 2 * time.Second, MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond,
	}
}

// run starts a manager until the returned stop is called (also at the end
// of the test); stop waits for it to end.
func (b *bench) run(opts outputs.Options) (*outputs.Manager, func()) {
	b.t.Helper()
	m, err := outputs.NewManager(context.Background(), opts)
	if err != nil {
		b.t.Fatalf("NewManager: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = m.Run(ctx) }()
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); <-done }) }
	b.t.Cleanup(stop)
	return m, stop
}

// defs parses an outputs: YAML list with the webhook type (and extra
// types).
func defs(t testing.TB, src string, extra ...outputs.Type) []outputs.Definition {
	t.Helper()
	var nodes []yaml.Node
	if err := yaml.Unmarshal([]byte(src), &nodes); err != nil {
		t.Fatalf("yaml: %v", err)
	}
	d, err := outputs.ParseDefinitions(nodes, append([]outputs.Type{webhook.Type()}, extra...))
	if err != nil {
		t.Fatalf("ParseDefinitions: %v", err)
	}
	return d
}

// receiver is a webhook receiver over loopback: it refuses the first
// refuse requests with 503, then accepts (or answers status), checks the
// signature of each request it accepts, and counts deliveries by
// X-Vigil-Delivery.
type receiver struct {
	*httptest.Server
	secret []byte

	mu        sync.Mutex
	refuse    int
	status    int           // answer after the refusals (0: 200)
	block     chan struct{} // when set, requests wait on it
	requests  int
	byID      map[string]int
	types     map[string]string
	bodies    map[string][]byte
	badSig    []string
	arrivedAt map[string]time.Time
}

func newReceiver(t testing.TB, secret string, refuse int) *receiver {
	r := &receiver{secret: []byte(secret), refuse: refuse, byID: map[string]int{}, types: map[string]string{}, bodies: map[string][]byte{}, arrivedAt: map[string]time.Time{}}
	r.Server = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(func() {
		r.mu.Lock()
		if r.block != nil {
			close(r.block)
			r.block = nil
		}
		r.mu.Unlock()
		r.Close()
	})
	return r
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	block := r.block
	r.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-req.Context().Done():
			return
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests++
	if r.refuse > 0 {
		r.refuse--
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	if r.status != 0 && r.status != http.StatusOK {
		w.WriteHeader(r.status)
		return
	}
	id := req.Header.Get(webhook.HeaderDelivery)
	if err := webhook.Verify(r.secret, req.Header.Get(webhook.HeaderSignature), body, time.Now(), 5*time.Minute); err != nil {
		r.badSig = append(r.badSig, id+": "+err.Error())
	}
	r.byID[id]++
	r.types[id] = req.Header.Get(webhook.HeaderEvent)
	r.bodies[id] = body
	if _, ok := r.arrivedAt[id]; !ok {
		r.arrivedAt[id] = time.Now()
	}
	w.WriteHeader(http.StatusOK)
}

func (r *receiver) distinct() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.byID)
}

func (r *receiver) set(f func(r *receiver)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f(r)
}

// checkFor polls cond until it holds or d passes.
func checkFor(t testing.TB, d time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	var err error
	for time.Now().Before(deadline) {
		if err = cond(); err == nil {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s: not within %s: %v", what, d, err)
}

func secretFile(t testing.TB, secret string) string {
	p := filepath.Join(t.TempDir(), "webhook.secret")
	if err := os.WriteFile(p, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func webhookYAML(name, url, secretPath, extra string) string {
	return fmt.Sprintf("- name: %s\n  type: webhook\n  url: %s\n  secret_file: %s\n%s", name, url, secretPath, extra)
}
