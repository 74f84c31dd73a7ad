package graphql_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws/wsutil"

	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/testkit"
)

// rawFrame reads the next text message as sent, skipping keep-alives.
func (c *gqlWS) rawFrame() []byte {
	c.t.Helper()
	for {
		_ = c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		b, err := wsutil.ReadServerText(struct {
			io.Reader
			io.Writer
		}{c.r, c.conn})
		if err != nil {
			c.t.Fatalf("read: %v", err)
		}
		if bytes.Contains(b, []byte(`"type":"ka"`)) || bytes.Contains(b, []byte(`"type":"ping"`)) {
			continue
		}
		return b
	}
}

// TestSharedSubscriptionFramesWrittenDirectly: subscribers sharing one
// execution get their result messages written around the shared response
// bytes, not marshalled again per subscriber, on both protocols, byte for
// byte what gqlgen sends (payload, id, type; the id JSON-escaped as
// encoding/json does), each under its own operation's id — two operations
// of one connection on the same query included — with a response above the
// writev threshold (8 KiB) as well; and a completed operation releases its
// hub subscription. Refused and query operations on the same connection
// before them leave no id behind. Before, gqlgen marshalled every result message itself
// (SharedFramesWritten did not exist; with the direct writer left out it
// reports 0).
func TestSharedSubscriptionFramesWrittenDirectly(t *testing.T) {
	for _, proto := range []string{protoTransportWS, protoLegacyWS} {
		t.Run(proto, func(t *testing.T) {
			g := newGQL(t)
			typ := "next"
			if proto == protoLegacyWS {
				typ = "data"
			}
			const query = `subscription { events(filter: {types: ["direct.tick"]}) { seq data } }`
			a, err := dialGQL(t, g.srv.URL+"/graphql", proto, tokenParams)
			if err != nil {
				t.Fatal(err)
			}
			b, err := dialGQL(t, g.srv.URL+"/graphql", proto, tokenParams)
			if err != nil {
				t.Fatal(err)
			}
			// Operations that are refused, or are not subscriptions,
			// before the subscriptions: none may leave its id behind for
			// another operation.
			a.subscribe("bad", `subscription { nope }`, nil)
			if m := a.next("bad"); m["type"] != "error" {
				t.Fatalf("invalid subscription: %v", m)
			}
			if proto == protoTransportWS {
				a.subscribe("q", `query { __typename }`, nil)
				if m := a.next("q"); m["type"] != typ {
					t.Fatalf("query over the socket: %v", m)
				}
				if m := a.next("q"); m["type"] != "complete" {
					t.Fatalf("query over the socket: %v", m)
				}
			}
			ids := []string{`a<b&"c`, "2"} // two operations of connection a
			for _, id := range ids {
				a.subscribe(id, query, nil)
			}
			b.subscribe("x", query, nil)
			g.waitSubs(t, 1+3)
			big := strings.Repeat("y", 6<<10) // two: above the writev threshold
			datas := []string{`{"n":1}`, `{"big":"` + big + `","big2":"` + big + `"}`, `{"n":3}`}
			for _, d := range datas {
				g.Publish(&event.Event{Type: "direct.tick", Category: event.CategorySystem, Data: json.RawMessage(d)})
			}
			frames := map[string][][]byte{} // by operation id
			for n := 0; n < 2*len(datas); {
				f := a.rawFrame()
				var m struct{ ID, Type string }
				if err := json.Unmarshal(f, &m); err != nil {
					t.Fatalf("frame %.200s: %v", f, err)
				}
				if m.ID == "bad" && m.Type == "complete" {
					continue // gqlgen completes the refused operation too
				}
				frames[m.ID] = append(frames[m.ID], f)
				n++
			}
			for range datas {
				frames["x"] = append(frames["x"], b.rawFrame())
			}
			for _, id := range append(ids, "x") {
				if len(frames[id]) != len(datas) {
					t.Fatalf("operation %q: %d frames, want %d", id, len(frames[id]), len(datas))
				}
				qid, _ := json.Marshal(id)
				for i, f := range frames[id] {
					head, tail := `{"payload":`, `,"id":`+string(qid)+`,"type":"`+typ+`"}`
					if !bytes.HasPrefix(f, []byte(head)) || !bytes.HasSuffix(f, []byte(tail)) {
						t.Fatalf("operation %q, event %d: frame %.120s…%.80s, want %s<response>%s", id, i, f, f[max(0, len(f)-80):], head, tail)
					}
					payload := f[len(head) : len(f)-len(tail)]
					var p struct {
						Data struct {
							Events struct {
								Seq  int
								Data json.RawMessage
							}
						}
					}
					if err := json.Unmarshal(payload, &p); err != nil {
						t.Fatalf("operation %q, event %d: payload %.200s: %v", id, i, payload, err)
					}
					var got, want any
					_ = json.Unmarshal(p.Data.Events.Data, &got)
					_ = json.Unmarshal([]byte(datas[i]), &want)
					if fmt.Sprint(got) != fmt.Sprint(want) {
						t.Fatalf("operation %q, event %d: data %.100s, want %.100s", id, i, p.Data.Events.Data, datas[i])
					}
					// The same response bytes for every subscriber; the
					// envelope as gqlgen marshals its message type.
					if other := frames["x"][i]; !bytes.Equal(payload, other[len(head):len(other)-len(`,"id":"x","type":"`+typ+`"}`)]) {
						t.Fatalf("operation %q, event %d: payload differs from another subscriber's", id, i)
					}
					env, _ := json.Marshal(struct {
						Payload json.RawMessage `json:"payload,omitempty"`
						ID      string          `json:"id,omitempty"`
						Type    string          `json:"type"`
					}{payload, id, typ})
					if !bytes.Equal(env, f) {
						t.Fatalf("operation %q, event %d: frame differs from gqlgen's encoding:\n got %.200s\nwant %.200s", id, i, f, env)
					}
				}
			}
			// The writer counts a write once it has returned, which can be
			// after the client has read the frame: wait for the count.
			testkit.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
				if w := g.gql.SharedFramesWritten(); w != uint64(3*len(datas)) {
					return fmt.Errorf("%d result messages written directly, want %d (every one of the 3 sharing operations)", w, 3*len(datas))
				}
				return nil
			})
			// Completing an operation releases its hub subscription, and
			// the connection's other operation goes on.
			a.stop(ids[0])
			deadline := time.Now().Add(5 * time.Second)
			for g.Hub.Stats().Subscriptions > 1+2 {
				if time.Now().After(deadline) {
					t.Fatalf("%d hub subscriptions after one operation completed, want 3", g.Hub.Stats().Subscriptions)
				}
				time.Sleep(2 * time.Millisecond)
			}
			g.Publish(&event.Event{Type: "direct.tick", Category: event.CategorySystem, Data: json.RawMessage(`{"n":4}`)})
			for {
				m := a.next(ids[1])
				if m["type"] == typ {
					break
				}
				if m["type"] != "complete" {
					t.Fatalf("operation %q: %v", ids[1], m)
				}
			}
		})
	}
}
