package graphql_test

import (
	"testing"

	"github.com/vigil-sec/vigil/internal/event"
)

// TestSubscriptionsShareOneExecution: three subscribers with the same
// principal and query get each event from one execution (one executed,
// two reused per event); a fourth with another selection set executes its
// own. Before shared execution every subscriber executed every event.
func TestSubscriptionsShareOneExecution(t *testing.T) {
	g := newGQL(t)
	const same = `subscription { events(filter: {types: ["share.tick"]}) { seq type } }`
	var clients []*gqlWS
	for i := range 4 {
		c, err := dialGQL(t, g.srv.URL+"/graphql", protoTransportWS, tokenParams)
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		q := same
		if i == 3 {
			q = `subscription { events(filter: {types: ["share.tick"]}) { seq } }`
		}
		c.subscribe("s", q, nil)
		clients = append(clients, c)
	}
	g.waitSubs(t, 1+len(clients))
	const events = 5
	for range events {
		g.Publish(&event.Event{Type: "share.tick", Category: event.CategorySystem})
	}
	for i, c := range clients {
		prev := 0.0
		for n := range events {
			d := c.data("s", "events")
			seq, _ := d["seq"].(float64)
			if seq <= prev {
				t.Fatalf("client %d, event %d: seq %v after %v", i, n, seq, prev)
			}
			prev = seq
			if _, hasType := d["type"]; hasType != (i != 3) {
				t.Fatalf("client %d received another selection set: %v", i, d)
			}
		}
	}
	executed, reused := g.gql.SharedExecutions()
	if executed != 2*events || reused != 2*events {
		t.Fatalf("executed %d, reused %d responses; want %d and %d (one execution per event and selection set)", executed, reused, 2*events, 2*events)
	}
}
