package graphql_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/detect"
	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/server"
	"github.com/vigil-sec/vigil/internal/transport/graphql"
)

// The detection queries, the mutation and the detections subscription
// against the real detection engine (built-in rules, in memory) over the
// real log: a memory-safety violation fires SEC-MEM-001.
func TestDetectionsWithEngine(t *testing.T) {
	g2 := newGQLWith(t, func(e *env, d *graphql.Deps) {
		eng, err := detect.New(e.Ctx, detect.Options{Source: e.Log, Appender: e.Log, FlushInterval: 50 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(e.Ctx)
		done := make(chan struct{})
		go func() { defer close(done); _ = eng.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-done })
		<-eng.Started()
		d.Detections = server.GraphQLDetections(eng) // the app's wiring
	})
	g := g2
	c, err := dialGQL(t, g2.srv.URL+"/graphql", protoTransportWS, tokenParams)
	if err != nil {
		t.Fatal(err)
	}
	c.subscribe("d", `subscription { detections(filter: {minSeverity: "critical"}) { type detection { id ruleId status severity } } }`, nil)
	g2.waitSubs(t, 2) // the stats client + this one

	g.Publish(&event.Event{Type: "memory.violation", Action: "use_after_free_prevented", Source: "rustydb-1", Severity: event.SeverityCritical,
		Data: json.RawMessage(`{"component":"executor"}`)})
	ch := c.data("d", "detections")
	det := ch["detection"].(map[string]any)
	if ch["type"] != "detection.created" || det["ruleId"] != "SEC-MEM-001" || det["status"] != "ACTIVE" {
		t.Fatalf("detection change %v", ch)
	}
	id := det["id"].(string)

	data, errs := g2.post(t, `{ detections(filter: {statuses: [ACTIVE]}, limit: 5) { id ruleId severity } rules { id state } }`, nil)
	if errs != nil {
		t.Fatal(errs)
	}
	if list := data["detections"].([]any); len(list) != 1 || list[0].(map[string]any)["id"] != id {
		t.Fatalf("detections %v", list)
	}
	if len(data["rules"].([]any)) == 0 {
		t.Fatal("no rules listed")
	}
	data, errs = g2.post(t, `mutation($id: ID!) { updateDetection(id: $id, status: INVESTIGATING, assignee: "erin", notes: "looking") { id status assignee notes } }`,
		map[string]any{"id": id})
	if errs != nil {
		t.Fatal(errs)
	}
	if u := data["updateDetection"].(map[string]any); u["status"] != "INVESTIGATING" || u["assignee"] != "erin" {
		t.Fatalf("update %v", u)
	}
	// The update streams as detection.updated.
	if ch := c.data("d", "detections"); ch["type"] != "detection.updated" || ch["detection"].(map[string]any)["status"] != "INVESTIGATING" {
		t.Fatalf("update change %v", ch)
	}
	data, _ = g2.post(t, `query($id: ID!) { detection(id: $id) { status notes } }`, map[string]any{"id": id})
	if d := data["detection"].(map[string]any); d["notes"] != "looking" {
		t.Fatalf("detection %v", d)
	}

	// Posture counts open detections from the engine (still open while
	// investigated): one critical detection costs 15 points.
	c.subscribe("p", `subscription { securityPosture { factors { name value penalty } } }`, nil)
	post := c.data("p", "securityPosture")
	found := false
	for _, f := range post["factors"].([]any) {
		f := f.(map[string]any)
		if f["name"] == "open_critical_detections" {
			found = true
			if f["value"].(float64) != 1 || f["penalty"].(float64) != 15 {
				t.Fatalf("factor %v", f)
			}
		}
	}
	if !found {
		t.Fatalf("posture %v", post)
	}
}
