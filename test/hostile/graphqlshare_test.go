package hostile

// GraphQL shared execution (issue 12, item 6): subscriptions with the same
// query share one executed response per event, but never across
// principals who may see different things. Subscribers of different roles
// (masking) and tenants, all on the same query text, must each receive
// exactly their own view.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/auth/tokens"
)

// gqlShareSubs reads the node's live subscription count from /metrics.
func gqlShareSubs(t *testing.T, g *gqlNode) int {
	t.Helper()
	req, _ := http.NewRequest("GET", g.n.URL()+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+g.n.AdminToken())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "vigil_subscriptions "); ok {
			n, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("metrics: %q: %v", sc.Text(), err)
			}
			return int(n)
		}
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	t.Fatalf("metrics: no vigil_subscriptions (HTTP %d)", resp.StatusCode)
	return 0
}

// TestGraphQLSharedSubscriptionsKeepEachView: analysts and viewers of
// tenant acme, viewers of tenant beta and a cross-tenant admin all
// subscribe with the identical query, two connections each (so each group
// really shares). Every subscriber must get its own view: analysts and the
// admin the exact IP and e-mail, viewers them masked, beta nothing of
// acme's — and every subscriber all the events of its view, in order.
func TestGraphQLSharedSubscriptionsKeepEachView(t *testing.T) {
	g := gqlStart(t)
	pubBeta := g.token(tokens.CreateRequest{Role: "publisher", Tenant: "beta"})
	type sub struct {
		name, tenant string
		masked       bool
		tok          string
	}
	var subs []*sub
	for _, s := range []sub{
		{name: "analyst-acme", tenant: "acme", tok: g.token(tokens.CreateRequest{Role: "analyst", Tenant: "acme"})},
		{name: "viewer-acme", tenant: "acme", masked: true, tok: g.viewer},
		{name: "viewer-beta", tenant: "beta", masked: true, tok: g.token(tokens.CreateRequest{Role: "viewer", Tenant: "beta"})},
		{name: "analyst-beta", tenant: "beta", tok: g.token(tokens.CreateRequest{Role: "analyst", Tenant: "beta"})},
		{name: "admin", tenant: "*", tok: g.n.AdminToken()},
	} {
		for i := range 2 {
			c := s
			c.name = fmt.Sprintf("%s-%d", s.name, i)
			subs = append(subs, &c)
		}
	}
	const query = `subscription { events(filter: {types: ["authentication.login"]}) { seq tenant user srcIp message } }`
	base := gqlShareSubs(t, g)
	conns := make(map[*sub]func() (map[string]json.RawMessage, error), len(subs))
	for _, s := range subs {
		c := g.gqlDial(t, "graphql-transport-ws")
		g.gqlInit(t, c, s.tok)
		gqlSend(t, c, map[string]any{"id": "s", "type": "subscribe", "payload": map[string]any{"query": query}})
		conns[s] = func() (map[string]json.RawMessage, error) { return gqlNext(c) }
	}
	deadline := time.Now().Add(10 * time.Second)
	for gqlShareSubs(t, g) < base+len(subs) {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d subscriptions registered", gqlShareSubs(t, g)-base, len(subs))
		}
		time.Sleep(10 * time.Millisecond)
	}

	// Interleaved tenants: each event of acme is followed by one of beta,
	// so shared responses of both tenants are in flight together.
	const rounds = 20
	for i := range rounds {
		for _, tc := range []struct{ tenant, tok string }{{"acme", g.publisher}, {"beta", pubBeta}} {
			ev := []map[string]any{{"type": "authentication.login", "severity": "info",
				"user": fmt.Sprintf("%s%d@example.com", tc.tenant, i), "src_ip": fmt.Sprintf("10.1.2.%d", i+1),
				"message": fmt.Sprintf("%s %d", tc.tenant, i)}}
			if st, body := g.do("POST", "/api/v1/events", tc.tok, "application/json", gqlJSON(ev), nil); st != http.StatusOK {
				t.Fatalf("publish %s: HTTP %d: %s", tc.tenant, st, body)
			}
		}
	}

	type view struct {
		Seq     int    `json:"seq"`
		Tenant  string `json:"tenant"`
		User    string `json:"user"`
		SrcIP   string `json:"srcIp"`
		Message string `json:"message"`
	}
	for _, s := range subs {
		want := rounds
		if s.tenant == "*" {
			want = 2 * rounds
		}
		lastSeq := 0
		seen := map[string]int{}
		for n := 0; n < want; n++ {
			m, err := conns[s]()
			if err != nil {
				t.Fatalf("%s: after %d of %d events: %v", s.name, n, want, err)
			}
			if string(m["type"]) != `"next"` {
				t.Fatalf("%s: want next, got %s", s.name, gqlShow(m))
			}
			var p struct {
				Data struct {
					Events view `json:"events"`
				} `json:"data"`
				Errors json.RawMessage `json:"errors"`
			}
			if err := json.Unmarshal(m["payload"], &p); err != nil || len(p.Errors) > 0 {
				t.Fatalf("%s: payload %s: %v", s.name, m["payload"], err)
			}
			v := p.Data.Events
			if v.Seq <= lastSeq {
				t.Fatalf("%s: seq %d after %d", s.name, v.Seq, lastSeq)
			}
			lastSeq = v.Seq
			if s.tenant != "*" && v.Tenant != s.tenant {
				t.Fatalf("%s received an event of tenant %s: %+v", s.name, v.Tenant, v)
			}
			seen[v.Tenant]++
			var i int
			if _, err := fmt.Sscanf(v.Message, v.Tenant+" %d", &i); err != nil {
				t.Fatalf("%s: message %q: %v", s.name, v.Message, err)
			}
			wantUser, wantIP := fmt.Sprintf("%s%d@example.com", v.Tenant, i), fmt.Sprintf("10.1.2.%d", i+1)
			if s.masked {
				// The viewer's view: never the exact address or e-mail.
				if v.User == wantUser || v.SrcIP == wantIP || v.SrcIP == "" {
					t.Fatalf("%s (viewer) received an unmasked view: %+v", s.name, v)
				}
			} else if v.User != wantUser || v.SrcIP != wantIP {
				t.Fatalf("%s received %+v, want user %s and srcIp %s unmasked", s.name, v, wantUser, wantIP)
			}
		}
		if s.tenant == "*" && (seen["acme"] != rounds || seen["beta"] != rounds) {
			t.Fatalf("%s: saw %v, want %d of each tenant", s.name, seen, rounds)
		}
	}
}
