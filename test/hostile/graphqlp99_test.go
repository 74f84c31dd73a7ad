package hostile

// GraphQL subscription p99 (issue 12, item 6): subscriptions that share an
// execution have their result messages written by Vigil around the shared
// response bytes instead of by gqlgen. The reference client must not see
// a difference: every operation gets every event, in order, under its own
// id, with the viewer's masked view.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// TestGraphQLP99NPMClientReceivesSharedDeliveries runs the reference
// graphql-ws client (npm, see TestGraphQLWSClientNoReconnectStorm for the
// install) with a viewer's token: three sockets, two subscriptions each on
// the same query (one group: one execution per event, six direct writes).
// Each subscription must receive all 10 events in publish order with the
// user masked and nothing else.
func TestGraphQLP99NPMClientReceivesSharedDeliveries(t *testing.T) {
	dir, node := graphqlWSClient(t)
	g := gqlStart(t)
	const clients, events = 3, 10
	const query = `subscription { events(filter: {types: ["authentication.login"]}) { seq user message } }`
	base := gqlShareSubs(t, g)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, filepath.Join(dir, "deliver.js"), "ws://"+g.n.Addr()+"/graphql", g.viewer,
		strconv.Itoa(clients), strconv.Itoa(events), query)
	cmd.Dir = dir
	outc := make(chan []byte, 1)
	errc := make(chan error, 1)
	go func() { // owned by the test: ends with the node process (ctx bounds it)
		out, err := cmd.Output()
		outc <- out
		errc <- err
	}()
	deadline := time.Now().Add(20 * time.Second)
	for gqlShareSubs(t, g) < base+2*clients {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d subscriptions registered", gqlShareSubs(t, g)-base, 2*clients)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for i := range events {
		ev := []map[string]any{{"type": "authentication.login", "severity": "info",
			"user": fmt.Sprintf("p99user%d@example.com", i), "message": fmt.Sprintf("p99 %d", i)}}
		if st, body := g.do("POST", "/api/v1/events", g.publisher, "application/json", gqlJSON(ev), nil); st != http.StatusOK {
			t.Fatalf("publish: HTTP %d: %s", st, body)
		}
	}
	out, err := <-outc, <-errc
	if err != nil {
		t.Fatalf("node client: %v\n%s", err, out)
	}
	var res struct {
		Subs []struct {
			Client, Sub int
			Results     []struct {
				Data struct {
					Events struct {
						Seq           int
						User, Message string
					}
				}
				Errors json.RawMessage
			}
			Errors []string
		}
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("node client printed %q: %v", out, err)
	}
	if len(res.Subs) != 2*clients {
		t.Fatalf("%d subscriptions reported, want %d", len(res.Subs), 2*clients)
	}
	var first []int
	for _, s := range res.Subs {
		if len(s.Errors) > 0 || len(s.Results) != events {
			t.Fatalf("client %d, subscription %d: %d results (want %d), errors %v", s.Client, s.Sub, len(s.Results), events, s.Errors)
		}
		var seqs []int
		for i, r := range s.Results {
			v := r.Data.Events
			if len(r.Errors) > 0 && string(r.Errors) != "null" {
				t.Fatalf("client %d, subscription %d, event %d: errors %s", s.Client, s.Sub, i, r.Errors)
			}
			if v.Message != fmt.Sprintf("p99 %d", i) {
				t.Fatalf("client %d, subscription %d: event %d is %q (out of order or another operation's)", s.Client, s.Sub, i, v.Message)
			}
			if v.User == fmt.Sprintf("p99user%d@example.com", i) || v.User == "" {
				t.Fatalf("client %d, subscription %d: the viewer received user %q, want it masked", s.Client, s.Sub, v.User)
			}
			seqs = append(seqs, v.Seq)
		}
		if first == nil {
			first = seqs
		} else if fmt.Sprint(seqs) != fmt.Sprint(first) {
			t.Fatalf("client %d, subscription %d: seqs %v, another subscription got %v", s.Client, s.Sub, seqs, first)
		}
	}
	t.Logf("graphql-ws client: %d subscriptions on %d sockets, %d events each, in order, masked", 2*clients, clients, events)
}
