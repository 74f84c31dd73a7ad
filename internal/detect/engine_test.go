package detect

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/filter"
	"github.com/vigil-sec/vigil/internal/store"
	"github.com/vigil-sec/vigil/internal/testkit"
)

var (
	admin     = &auth.Principal{ID: "admin", Role: auth.RoleAdmin, Tenant: auth.AllTenants}
	analyst   = &auth.Principal{ID: "tok-analyst", Name: "ana", Role: auth.RoleAnalyst, Tenant: "default"}
	viewer    = &auth.Principal{ID: "tok-viewer", Role: auth.RoleViewer, Tenant: "default"}
	publisher = &auth.Principal{ID: "tok-pub", Role: auth.RolePublisher, Tenant: "default"}
	outsider  = &auth.Principal{ID: "tok-acme", Role: auth.RoleAnalyst, Tenant: "acme"}
)

func openLog(t *testing.T, dir string) *store.Log {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := store.Open(ctx, store.Config{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func publish(t *testing.T, l *store.Log, events ...*event.Event) {
	t.Helper()
	// Fresh times: the log is the real one, and receive times matter
	// nowhere here, but event times drive correlation windows.
	if _, err := l.Append(context.Background(), events); err != nil {
		t.Fatal(err)
	}
}

type running struct {
	e    *Engine
	stop func()
}

func startEngine(t *testing.T, l *store.Log, opts Options) running {
	t.Helper()
	opts.Source, opts.Appender, opts.JetStream = l, l, l.JetStream()
	if opts.FlushInterval == 0 {
		opts.FlushInterval = 20 * time.Millisecond
	}
	e, err := New(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := e.Run(ctx); err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	select {
	case <-e.Started():
	case <-time.After(10 * time.Second):
		t.Fatal("engine did not start")
	}
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); wg.Wait() }) }
	t.Cleanup(stop)
	return running{e, stop}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testkit.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		if cond() {
			return nil
		}
		return errors.New("waiting for " + what)
	})
}

func detectionsOf(e *Engine, p *auth.Principal, rule string) []Detection {
	return e.List(p, Query{RuleIDs: []string{rule}})
}

func patch(t *testing.T, e *Engine, p *auth.Principal, id, body string) (int, map[string]any) {
	t.Helper()
	r := httptest.NewRequest(http.MethodPatch, "/api/v1/detections/"+id, strings.NewReader(body))
	r.SetPathValue("id", id)
	r = r.WithContext(auth.WithPrincipal(r.Context(), p))
	w := httptest.NewRecorder()
	e.HandlePatch(w, r)
	var out map[string]any
	_ = json.Unmarshal(w.Body.Bytes(), &out)
	return w.Code, out
}

func get(t *testing.T, h http.HandlerFunc, p *auth.Principal, target, id string) (int, []byte) {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, target, nil)
	if id != "" {
		r.SetPathValue("id", id)
	}
	r = r.WithContext(auth.WithPrincipal(r.Context(), p))
	w := httptest.NewRecorder()
	h(w, r)
	return w.Code, w.Body.Bytes()
}

// logEvents reads the whole log.
func logEvents(t *testing.T, l *store.Log) []*event.Event {
	t.Helper()
	evs, err := l.Read(context.Background(), 1, 100000)
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

func TestEngineLifecycleAndRestart(t *testing.T) {
	defer goleak.VerifyNone(t) // engine, flusher, log: every goroutine stopped
	dir := t.TempDir()
	l := openLog(t, dir)
	run := startEngine(t, l, Options{})
	e := run.e

	now := time.Now().UTC()
	var burst []*event.Event
	for i := 0; i < 6; i++ {
		f := failure(t, 0, "alice", "203.0.113.7")
		f.Time = now.Add(time.Duration(i) * time.Second)
		burst = append(burst, f)
	}
	publish(t, l, burst...)
	waitFor(t, "brute-force detection with count 6", func() bool {
		ds := detectionsOf(e, admin, "SEC-AUTH-002")
		return len(ds) == 1 && ds[0].Count == 6
	})
	d := detectionsOf(e, admin, "SEC-AUTH-002")[0]
	if d.Status != StatusActive || d.GroupKey != "user=alice" || d.Tenant != "default" || d.Severity != "high" ||
		d.MitreTactics[0] != "TA0006" || d.MitreTechniques[0] != "T1110.001" || d.OWASPCategory != "A07:2021" || len(d.EventIDs) != 6 {
		t.Fatalf("detection = %+v", d)
	}
	if len(e.List(admin, Query{RuleIDs: []string{"SEC-AUTH-002"}})) != 1 {
		t.Fatal("a repeated firing created a second detection")
	}

	// The log holds detection.created (and, after the flush, an update).
	waitFor(t, "detection.updated in the log", func() bool {
		for _, ev := range logEvents(t, l) {
			if ev.Type == "detection.updated" {
				return true
			}
		}
		return false
	})
	active, _ := filter.Compile(filter.Filter{Categories: []string{"detection"}, Statuses: []string{"active"}, MitreTactics: []string{"TA0006"}})
	var created *event.Event
	for _, ev := range logEvents(t, l) {
		if ev.Type == "detection.created" {
			created = ev
		}
	}
	if created == nil || created.Category != event.CategoryDetection || created.Tenant != "default" || created.Source != SourceName ||
		created.Severity != event.SeverityHigh || created.User != "alice" || !active.Match(created) {
		t.Fatalf("detection.created = %+v", created)
	}
	var inData Detection
	if err := json.Unmarshal(created.Data, &inData); err != nil || inData.ID != d.ID || inData.Status != StatusActive || inData.RuleID != "SEC-AUTH-002" {
		t.Fatalf("data = %s (%v)", created.Data, err)
	}

	// Read access.
	if code, _ := get(t, e.HandleGet, publisher, "/", d.ID); code != http.StatusForbidden {
		t.Fatalf("publisher GET = %d", code)
	}
	if code, _ := get(t, e.HandleGet, outsider, "/", d.ID); code != http.StatusNotFound {
		t.Fatalf("other tenant GET = %d", code)
	}
	if code, body := get(t, e.HandleGet, viewer, "/", d.ID); code != http.StatusOK || !strings.Contains(string(body), d.ID) {
		t.Fatalf("viewer GET = %d %s", code, body)
	}

	// Lifecycle over PATCH.
	steps := []struct {
		p      *auth.Principal
		body   string
		code   int
		status string
	}{
		{viewer, `{"status":"investigating"}`, 403, ""},
		{outsider, `{"status":"investigating"}`, 404, ""},
		{analyst, `{"status":"bogus"}`, 400, ""},
		{analyst, `{"colour":"red"}`, 400, ""},
		{analyst, `{"status":"reopen"}`, 409, ""},
		{analyst, `{"status":"investigating","assignee":"ana","notes":"looking"}`, 200, "investigating"},
		{analyst, `{"status":"active"}`, 200, "active"},
		{analyst, `{"status":"resolved","notes":"password reset"}`, 200, "resolved"},
		{analyst, `{"status":"investigating"}`, 409, ""},
		{admin, `{"status":"false_positive"}`, 409, ""},
		{analyst, `{"notes":"closed with user"}`, 200, "resolved"},
		{analyst, `{"status":"reopen"}`, 200, "active"},
		{analyst, `{"status":"false_positive"}`, 200, "false_positive"},
	}
	for i, s := range steps {
		code, out := patch(t, e, s.p, d.ID, s.body)
		if code != s.code {
			t.Fatalf("step %d %s: %d %v, want %d", i, s.body, code, out, s.code)
		}
		if s.status != "" && out["status"] != s.status {
			t.Fatalf("step %d: status %v, want %s", i, out["status"], s.status)
		}
		if code == 409 && !strings.Contains(fmt.Sprint(out["error"]), "reopen") {
			t.Fatalf("step %d: 409 without reason: %v", i, out)
		}
	}
	after, err := e.Get(admin, d.ID)
	if err != nil {
		t.Fatal(err)
	}
	var statusChanges []string
	for _, c := range after.History {
		if c.Field == "status" {
			statusChanges = append(statusChanges, c.From+">"+c.To)
		}
		if c.By == "" || c.At.IsZero() {
			t.Fatalf("change without who/when: %+v", c)
		}
	}
	want := ">active active>investigating investigating>active active>resolved resolved>active active>false_positive"
	if got := strings.Join(statusChanges, " "); got != want {
		t.Fatalf("status history = %s", got)
	}
	if after.Notes != "closed with user" || after.Assignee != "ana" || after.History[1].By != "tok-analyst (ana)" {
		t.Fatalf("after = %+v", after)
	}
	// Every change is in the log as detection.updated with the new status.
	statuses := map[string]bool{}
	for _, ev := range logEvents(t, l) {
		if ev.Type == "detection.updated" {
			s, _ := ev.Field("data.status")
			statuses[fmt.Sprint(s)] = true
		}
	}
	for _, s := range []string{"investigating", "resolved", "false_positive"} {
		if !statuses[s] {
			t.Fatalf("no detection.updated with status %s: %v", s, statuses)
		}
	}

	// Restart: stop the engine and the log, publish while it is down,
	// and start both again on the same data directory.
	run.stop()
	l.Close()
	l = openLog(t, dir)
	defer l.Close()
	var bob []*event.Event
	for i := 0; i < 5; i++ {
		f := failure(t, 0, "bob", "198.51.100.3")
		f.Time = time.Now().UTC().Add(time.Duration(i) * time.Second)
		bob = append(bob, f)
	}
	publish(t, l, bob...)
	run2 := startEngine(t, l, Options{})
	e2 := run2.e
	restored, err := e2.Get(analyst, d.ID)
	if err != nil {
		t.Fatalf("detection lost on restart: %v", err)
	}
	if restored.Status != StatusFalsePositive || restored.Notes != "closed with user" || len(restored.History) != len(after.History) || restored.Count != 6 {
		t.Fatalf("restored = %+v", restored)
	}
	waitFor(t, "detection for events published while the engine was down", func() bool {
		return len(e2.List(admin, Query{RuleIDs: []string{"SEC-AUTH-002"}, Statuses: []string{"active"}})) == 1
	})
	// A new burst for alice opens a new detection: the old one is final.
	var again []*event.Event
	for i := 0; i < 5; i++ {
		f := failure(t, 0, "alice", "203.0.113.7")
		f.Time = time.Now().UTC().Add(time.Duration(i) * time.Second)
		again = append(again, f)
	}
	publish(t, l, again...)
	waitFor(t, "second alice detection", func() bool { return len(detectionsOf(e2, admin, "SEC-AUTH-002")) == 3 })
	run2.stop()
}

func TestTenantsAndListFilters(t *testing.T) {
	l := openLog(t, t.TempDir())
	defer l.Close()
	run := startEngine(t, l, Options{})
	e := run.e
	now := time.Now().UTC()
	var evs []*event.Event
	for i := 0; i < 5; i++ {
		f := failure(t, 0, "zoe", "203.0.113.1")
		f.Tenant, f.Time = "acme", now.Add(time.Duration(i)*time.Second)
		evs = append(evs, f)
	}
	evs = append(evs, ev(t, 0, `{"type":"memory.double_free_detected","action":"double_free_detected","source":"db-1","data":{"component":"parser"}}`))
	evs[len(evs)-1].Time = now
	publish(t, l, evs...)
	waitFor(t, "two detections", func() bool { return len(e.List(admin, Query{})) == 2 })
	if got := e.List(analyst, Query{}); len(got) != 1 || got[0].RuleID != "SEC-MEM-001" || got[0].Severity != "critical" {
		t.Fatalf("default analyst sees %+v", got)
	}
	if got := e.List(outsider, Query{}); len(got) != 1 || got[0].RuleID != "SEC-AUTH-002" || got[0].Tenant != "acme" {
		t.Fatalf("acme analyst sees %+v", got)
	}
	for target, want := range map[string]int{
		"/api/v1/detections":                                                  2,
		"/api/v1/detections?severity=critical":                                1,
		"/api/v1/detections?severity=high,critical":                           2,
		"/api/v1/detections?mitre_tactics=TA0006":                             1,
		"/api/v1/detections?status=resolved":                                  0,
		"/api/v1/detections?rule_id=SEC-MEM-001&status=active":                1,
		"/api/v1/detections?limit=1":                                          1,
		"/api/v1/detections?since=2000-01-01T00:00:00Z":                       2,
		"/api/v1/detections?since=" + now.Add(time.Hour).Format(time.RFC3339): 0,
	} {
		code, body := get(t, e.HandleList, admin, target, "")
		var out struct {
			Detections []Detection `json:"detections"`
			Count      int         `json:"count"`
		}
		if err := json.Unmarshal(body, &out); code != 200 || err != nil || out.Count != want || len(out.Detections) != want {
			t.Errorf("%s: %d %s, want %d", target, code, body, want)
		}
	}
	for _, bad := range []string{"?status=open", "?severity=severe", "?since=yesterday", "?limit=0"} {
		if code, _ := get(t, e.HandleList, admin, "/api/v1/detections"+bad, ""); code != 400 {
			t.Errorf("%s: %d, want 400", bad, code)
		}
	}
	code, body := get(t, e.HandleRules, viewer, "/api/v1/rules", "")
	if code != 200 || !strings.Contains(string(body), `"SEC-AUTH-002"`) || !strings.Contains(string(body), `"state":"enabled"`) {
		t.Fatalf("rules: %d %s", code, body)
	}
	if code, _ := get(t, e.HandleRules, publisher, "/api/v1/rules", ""); code != 403 {
		t.Fatalf("publisher rules = %d", code)
	}
}

func TestSuppressionWindow(t *testing.T) {
	e, err := New(context.Background(), Options{Suppression: 10 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	burst := func(start time.Duration) {
		for i := 0; i < 5; i++ {
			f := failure(t, start+time.Duration(i)*time.Second, "sam", "192.0.2.9")
			e.handle(ctx, f)
		}
	}
	burst(0)
	burst(time.Minute) // within suppression: same detection
	if ds := detectionsOf(e, admin, "SEC-AUTH-002"); len(ds) != 1 || ds[0].Count != 10 {
		t.Fatalf("after two bursts: %+v", ds)
	}
	burst(2 * time.Hour) // quiet for longer than the suppression window
	if ds := detectionsOf(e, admin, "SEC-AUTH-002"); len(ds) != 2 {
		t.Fatalf("after a quiet period: %d detections", len(ds))
	}
}
