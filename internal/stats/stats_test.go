package stats_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/hub"
	"github.com/vigil-sec/vigil/internal/ingest"
	"github.com/vigil-sec/vigil/internal/stats"
	"github.com/vigil-sec/vigil/internal/store"
)

func ev(seq uint64, tenant, typ string, at time.Time) *event.Event {
	c, _ := event.DeriveCategory(typ)
	return &event.Event{ID: typ + "-" + time.Duration(seq).String(), Seq: seq, Tenant: tenant, Type: typ, Category: c, ReceivedAt: at}
}

func TestWindowsAndVisibility(t *testing.T) {
	s := stats.New(nil)
	now := time.Now()
	s.Observe(ev(1, "a", "authentication.login", now.Add(-30*time.Minute))) // hour only
	s.Observe(ev(2, "a", "authentication.login", now))
	fail := ev(3, "a", "authentication.login", now)
	fail.Outcome = "failure"
	s.Observe(fail)
	s.Observe(ev(4, "b", "audit.query", now))
	s.Observe(ev(5, "a", "audit.query", now.Add(-2*time.Hour))) // too old for the windows and the total
	s.Observe(ev(3, "a", "authentication.login", now))          // already counted (seq)

	all := s.Snapshot(nil)
	if all.Events.LastMinute != 3 || all.Events.LastHour != 4 || all.TotalObserved != 4 {
		t.Fatalf("all: %+v", all.Events)
	}
	if w := all.ByType["authentication.login"]; w.LastMinute != 2 || w.LastHour != 3 {
		t.Fatalf("per type %+v", w)
	}
	if f := all.Failures["authentication"]; f.LastMinute != 1 {
		t.Fatalf("failures %+v", f)
	}
	// A principal sees only its tenant and categories.
	pa := &auth.Principal{Role: auth.RoleAnalyst, Tenant: "a", Categories: []event.Category{event.CategoryAudit}}
	if got := s.Snapshot(pa); got.Events.LastHour != 0 || len(got.ByType) != 0 {
		t.Fatalf("tenant a, audit only: %+v", got.Events)
	}
	pb := &auth.Principal{Role: auth.RoleViewer, Tenant: "b"}
	if got := s.Snapshot(pb); got.Events.LastMinute != 1 || got.ByType["audit.query"].LastMinute != 1 {
		t.Fatalf("tenant b: %+v", got)
	}
	if got := s.Snapshot(&auth.Principal{Role: auth.RolePublisher, Tenant: auth.AllTenants}); got.Events.LastHour != 0 {
		t.Fatal("a publisher may not read counts")
	}
}

func TestOpenDetectionsAndPosture(t *testing.T) {
	s := stats.New(nil)
	now := time.Now()
	det := func(seq uint64, id, sev, status string) *event.Event {
		e := ev(seq, "t", "detection.created", now)
		e.Data = json.RawMessage(`{"id":"` + id + `","severity":"` + sev + `","status":"` + status + `"}`)
		return e
	}
	s.Observe(det(1, "d1", "critical", "active"))
	s.Observe(det(2, "d2", "critical", "active"))
	s.Observe(det(3, "d3", "high", "investigating"))
	s.Observe(det(4, "d2", "critical", "resolved"))
	for i := range 20 {
		e := ev(uint64(10+i), "t", "authentication.login", now)
		if i < 5 {
			e.Outcome = "failure"
		}
		s.Observe(e)
	}
	mem := ev(40, "t", "memory.use_after_free", now)
	s.Observe(mem)
	cb := ev(41, "t", "circuit_breaker.state_changed", now)
	cb.Data = json.RawMessage(`{"state":"OPEN"}`)
	s.Observe(cb)
	snap := s.Snapshot(nil)
	if snap.OpenDetections["critical"] != 1 || snap.OpenDetections["high"] != 1 {
		t.Fatalf("open detections %v", snap.OpenDetections)
	}
	p := stats.ComputePosture(snap)
	// 100 − 15 (1 critical) − 5 (1 high) − 7.5 (failure rate .25 × 30) − 5 (memory) − 2 (circuit open) = 65.5 → 66
	if p.Score != 66 || p.Level != "poor" || len(p.Factors) != 7 {
		t.Fatalf("posture %+v", p)
	}
	if got := stats.ComputePosture(stats.Snapshot{}); got.Score != 100 || got.Level != "good" {
		t.Fatalf("empty posture %+v", got)
	}
}

// Run follows the real hub over a real log, replaying the last hour.
func TestRunReplaysAndFollows(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	lg, err := store.Open(ctx, store.Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	h := hub.New(lg, hub.Options{})
	hubDone := make(chan struct{})
	go func() { defer close(hubDone); _ = h.Run(ctx) }()
	<-h.Started()
	admin := &auth.Principal{Role: auth.RoleAdmin, Tenant: auth.AllTenants}
	ing := ingest.New(lg, event.DefaultLimits(), nil)
	// Stored before stats start: must be counted via replay.
	if _, err := ing.Publish(ctx, admin, []*event.Event{{Type: "audit.query"}, {Type: "audit.query"}}); err != nil {
		t.Fatal(err)
	}
	s := stats.New(nil)
	runDone := make(chan error, 1)
	go func() { runDone <- s.Run(ctx, h) }()
	t.Cleanup(func() {
		cancel()
		if err := <-runDone; err != nil {
			t.Errorf("Run: %v", err)
		}
		<-hubDone
		lg.Close()
	})
	waitFor := func(n int64) {
		deadline := time.Now().Add(5 * time.Second)
		for s.Snapshot(nil).Events.LastMinute != n {
			if time.Now().After(deadline) {
				t.Fatalf("want %d events, have %+v", n, s.Snapshot(nil).Events)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitFor(2)
	if _, err := ing.Publish(ctx, admin, []*event.Event{{Type: "rate_limit.blocked", Action: "blocked"}}); err != nil {
		t.Fatal(err)
	}
	waitFor(3)
	if b := s.Snapshot(nil).Blocked.LastMinute; b != 1 {
		t.Fatalf("blocked %d", b)
	}
	rep := &stats.Reporter{Stats: s, Hub: h, Checks: []stats.Check{{Name: "event_log", Probe: lg.Ready}}}
	st := rep.Status(ctx, admin)
	if st.Status != "operational" || st.LogHead != 3 || st.ConnectedClients != 0 || st.EventsLastMinute != 3 {
		t.Fatalf("status %+v", st)
	}
}
