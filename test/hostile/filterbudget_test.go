package hostile

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/vigil-sec/vigil/internal/config"
	"github.com/vigil-sec/vigil/internal/testnode"
)

// The dispatcher tests every routed event against every subscription's
// filter, and a filter with a CEL expr costs ~10× a structured one: the
// cost is the client's to choose. A token's subscriptions are therefore
// bounded by their filter cost across all its connections and transports
// (access.limits.max_filter_cost_per_token; 1 per subscription, 10 with an
// expr), so one viewer token cannot make dispatch — and, through ingest
// admission, every producer — wait. Admin tokens are not counted.
func TestFilterBudgetPerToken(t *testing.T) {
	n := testnode.Start(t, func(c *config.Config) { c.Access.Limits.MaxFilterCostPerToken = 25 })
	viewer := outputsToken(t, n, n.AdminToken(), map[string]any{"role": "viewer"})
	expr := map[string]any{"expr": `data.size > 100`}

	a := filterBudgetDial(t, n, viewer)
	b := filterBudgetDial(t, n, viewer)
	filterBudgetSubscribe(t, a, "e1", expr, "subscribed")             // 10
	filterBudgetSubscribe(t, b, "e2", expr, "subscribed")             // 20
	filterBudgetSubscribe(t, b, "p1", map[string]any{}, "subscribed") // 21
	// 31 > 25: refused on either connection, with no "subscribed" first,
	// and the connections stay usable.
	m := filterBudgetSubscribe(t, a, "e3", expr, "error")
	if m.Code != "too_many_subscriptions" || !strings.Contains(m.Message, "31 of its filter budget of 25") {
		t.Fatalf("refusal %+v, want too_many_subscriptions naming the budget", m)
	}
	// SSE counts against the same budget: 429 with the reason.
	if st, body := filterBudgetSSE(t, n, viewer, `data.size > 100`); st != http.StatusTooManyRequests || !strings.Contains(body, "filter budget") {
		t.Fatalf("SSE with an expr over the budget: HTTP %d %s", st, body)
	}
	filterBudgetSubscribe(t, a, "p2", map[string]any{}, "subscribed") // 22: plain ones still fit
	// Closing a connection returns what its subscriptions held.
	_ = b.conn.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		a.send(map[string]any{"op": "subscribe", "id": "e4", "filter": expr})
		m, _ := filterBudgetRead(t, a)
		if m.Type == "subscribed" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the closed connection's budget was not returned: %+v", m)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The admin token is not counted.
	adm := slowclientDial(t, n, "/api/v1/stream", 0)
	for i := range 5 {
		filterBudgetSubscribe(t, adm, fmt.Sprintf("a%d", i), expr, "subscribed")
	}
}

func filterBudgetDial(t *testing.T, n *testnode.Node, token string) *slowclientWS {
	t.Helper()
	d := ws.Dialer{Header: ws.HandshakeHeaderHTTP(http.Header{"Authorization": {"Bearer " + token}}), Timeout: 5 * time.Second}
	conn, br, _, err := d.Dial(context.Background(), "ws://"+n.Addr()+"/api/v1/stream")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return newSlowclientWS(t, conn, br)
}

type filterBudgetMsg struct {
	Type    string `json:"type"`
	ID      string `json:"id"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

func filterBudgetRead(t *testing.T, c *slowclientWS) (filterBudgetMsg, []byte) {
	t.Helper()
	b, _, err := c.next(5 * time.Second)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	var m filterBudgetMsg
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("message %.200s: %v", b, err)
	}
	return m, b
}

// filterBudgetSubscribe subscribes and checks the first answer's type.
func filterBudgetSubscribe(t *testing.T, c *slowclientWS, id string, filter map[string]any, want string) filterBudgetMsg {
	t.Helper()
	c.send(map[string]any{"op": "subscribe", "id": id, "filter": filter})
	m, raw := filterBudgetRead(t, c)
	if m.Type != want || m.ID != id {
		t.Fatalf("subscribe %s: %s, want %s", id, raw, want)
	}
	return m
}

func filterBudgetSSE(t *testing.T, n *testnode.Node, token, expr string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", n.URL()+"/api/v1/stream/sse?expr="+url.QueryEscape(expr), nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	return resp.StatusCode, string(b)
}

// TestFilterBudgetGraphQL: GraphQL subscriptions count against the same
// budget: of three subscriptions with an expr (3 × 10 > 25), started
// concurrently by the server, exactly one is refused with an error naming
// the budget.
func TestFilterBudgetGraphQL(t *testing.T) {
	g := gqlStart(t, func(c *config.Config) { c.Access.Limits.MaxFilterCostPerToken = 25 })
	c := g.gqlDial(t, "graphql-transport-ws")
	g.gqlInit(t, c, g.viewer)
	for i := 1; i <= 3; i++ {
		gqlSend(t, c, map[string]any{"type": "subscribe", "id": fmt.Sprint(i),
			"payload": map[string]any{"query": `subscription { events(filter: {expr: "data.size > 100"}) { id } }`}})
	}
	m, err := gqlNext(c)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(m["payload"]), "filter budget of 25") {
		t.Fatalf("got %s, want one subscription refused naming the budget", gqlShow(m))
	}
	// Nothing else within gqlNext's 5 s: the other two run (no event
	// matches them), only the refused one may be completed.
	for {
		m, err := gqlNext(c)
		if err != nil {
			break // the read deadline: nothing more
		}
		if typ := string(m["type"]); typ != `"complete"` {
			t.Fatalf("a second answer %s", gqlShow(m))
		}
	}
}
