package hostile

// Issue 8, item 11: ingest is strict about what two parsers could read
// differently. Over a real node, through REST and the NATS request/reply
// ingest: a duplicate key, invalid UTF-8 and a body of another media type
// are refused naming the problem, nothing of the refused request is
// stored, and a good batch is still accepted.

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/vigil-sec/vigil/internal/config"
	"github.com/vigil-sec/vigil/internal/testnode"
)

// ingestPost posts body with the given Content-Type ("" : none) and
// returns the status, the decoded JSON answer and the response headers.
func ingestPost(t *testing.T, n *testnode.Node, tok, contentType string, body []byte) (int, map[string]any, http.Header) {
	t.Helper()
	req, err := http.NewRequest("POST", n.URL()+"/api/v1/events", strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("answer is not JSON: %v: %q", err, raw)
	}
	return resp.StatusCode, out, resp.Header
}

// ingestStored reports whether the event with id is in the log.
func ingestStored(t *testing.T, n *testnode.Node, tok, id string) bool {
	t.Helper()
	req, _ := http.NewRequest("GET", n.URL()+"/api/v1/events/"+id, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		return true
	case http.StatusNotFound:
		return false
	}
	t.Fatalf("GET event %s: HTTP %d", id, resp.StatusCode)
	return false
}

// ingestField returns the field named by the first problem of a refusal.
func ingestField(out map[string]any) string {
	details, _ := out["details"].([]any)
	if len(details) == 0 {
		return ""
	}
	d, _ := details[0].(map[string]any)
	f, _ := d["field"].(string)
	return f
}

func TestIngestStrictREST(t *testing.T) {
	n := testnode.Start(t)
	tok := n.AdminToken()

	for _, c := range []struct {
		name, id, body, field, says string
	}{
		{"duplicate type", "dup-type", `{"id":"dup-type","type":"audit.x","type":"authentication.login"}`, "type", `duplicate key "type"`},
		{"duplicate in data", "dup-data", `{"id":"dup-data","type":"audit.x","data":{"actor":{"role":"user","role":"admin"}}}`, "data.actor.role", `duplicate key "role"`},
		{"type in another case", "case-type", `{"id":"case-type","type":"audit.x","TYPE":"authentication.login"}`, "TYPE", "case-sensitive"},
		{"invalid UTF-8", "bad-utf8", "{\"id\":\"bad-utf8\",\"type\":\"audit.x\",\"user\":\"mall\xffory\"}", "user", "not valid UTF-8"},
		{"lone surrogate", "bad-surrogate", `{"id":"bad-surrogate","type":"audit.x","data":{"note":"\udc00"}}`, "data.note", "surrogate"},
	} {
		t.Run(c.name, func(t *testing.T) {
			st, out, _ := ingestPost(t, n, tok, "application/json", []byte(c.body))
			msg, _ := out["error"].(string)
			if st != http.StatusBadRequest || ingestField(out) != c.field || !strings.Contains(msg, c.says) {
				t.Errorf("HTTP %d %v, want 400 naming field %q and saying %q", st, out, c.field, c.says)
			}
			if ingestStored(t, n, tok, c.id) {
				t.Errorf("the refused event %s was stored", c.id)
			}
		})
	}

	t.Run("media types", func(t *testing.T) {
		body := []byte(`{"id":"typed","type":"audit.x"}`)
		for _, ct := range []string{"text/plain", "application/x-www-form-urlencoded", "application/xml", "application/json; charset=iso-8859-1"} {
			st, out, hdr := ingestPost(t, n, tok, ct, body)
			msg, _ := out["error"].(string)
			if st != http.StatusUnsupportedMediaType || !strings.Contains(msg, "Content-Type") {
				t.Errorf("Content-Type %q: HTTP %d %v, want 415 naming the Content-Type", ct, st, out)
			}
			if !strings.Contains(hdr.Get("Accept-Post"), "application/json") {
				t.Errorf("Content-Type %q: Accept-Post %q does not list application/json", ct, hdr.Get("Accept-Post"))
			}
		}
		if ingestStored(t, n, tok, "typed") {
			t.Error("an event of a refused media type was stored")
		}
	})

	t.Run("a good batch is accepted", func(t *testing.T) {
		for _, c := range []struct{ ct, body string }{
			{"application/x-ndjson", "{\"id\":\"good-1\",\"type\":\"authentication.login\",\"user\":\"zoë\"}\n{\"id\":\"good-2\",\"type\":\"audit.x\",\"data\":{\"a\":{\"k\":1},\"b\":{\"k\":2}}}\n"},
			{"application/json; charset=utf-8", `[{"id":"good-3","type":"audit.x","message":"\ud83d\udd12 locked"}]`},
			{"", `{"id":"good-4","type":"audit.x"}`}, // no Content-Type: the body's form decides
		} {
			st, out, _ := ingestPost(t, n, tok, c.ct, []byte(c.body))
			if st != http.StatusOK {
				t.Errorf("Content-Type %q: HTTP %d %v, want 200", c.ct, st, out)
			}
		}
		for _, id := range []string{"good-1", "good-2", "good-3", "good-4"} {
			if !ingestStored(t, n, tok, id) {
				t.Errorf("accepted event %s is not stored", id)
			}
		}
	})
}

// TestIngestStrictNATS: the NATS request/reply ingest refuses the same
// bodies with the same problems.
func TestIngestStrictNATS(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	natsAddr := ln.Addr().String()
	ln.Close()
	n := testnode.Start(t, func(c *config.Config) { c.NATSListen = natsAddr })
	natsTok, err := os.ReadFile(filepath.Join(n.Config.DataDir, "nats.token"))
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect("nats://"+natsAddr, nats.Token(strings.TrimSpace(string(natsTok))))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()

	request := func(contentType, body string) (reply struct {
		Accepted int
		Error    string
		Details  []struct{ Field, Reason string }
	}) {
		t.Helper()
		m := nats.NewMsg("vigil.ingest.acme")
		m.Data = []byte(body)
		if contentType != "" {
			m.Header.Set("Content-Type", contentType)
		}
		r, err := nc.RequestMsg(m, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(r.Data, &reply); err != nil {
			t.Fatalf("reply is not JSON: %v: %q", err, r.Data)
		}
		return reply
	}
	if r := request("", `{"id":"nats-dup","type":"audit.x","type":"authentication.login"}`); r.Accepted != 0 || len(r.Details) == 0 || r.Details[0].Field != "type" {
		t.Errorf("duplicate type over NATS: %+v, want a refusal naming type", r)
	}
	if r := request("", "{\"id\":\"nats-utf8\",\"type\":\"audit.x\",\"data\":{\"n\":\"\xfe\"}}"); r.Accepted != 0 || len(r.Details) == 0 || r.Details[0].Field != "data.n" {
		t.Errorf("invalid UTF-8 over NATS: %+v, want a refusal naming data.n", r)
	}
	if r := request("text/plain", `{"id":"nats-plain","type":"audit.x"}`); r.Accepted != 0 || !strings.Contains(r.Error, "Content-Type") {
		t.Errorf("text/plain over NATS: %+v, want a refusal naming the Content-Type", r)
	}
	if r := request("application/x-ndjson", "{\"id\":\"nats-ok-1\",\"type\":\"audit.x\"}\n{\"id\":\"nats-ok-2\",\"type\":\"audit.x\"}"); r.Accepted != 2 || r.Error != "" {
		t.Errorf("good NDJSON batch over NATS: %+v, want 2 accepted", r)
	}
	tok := n.AdminToken()
	for id, want := range map[string]bool{"nats-dup": false, "nats-utf8": false, "nats-plain": false, "nats-ok-1": true, "nats-ok-2": true} {
		if got := ingestStored(t, n, tok, id); got != want {
			t.Errorf("event %s stored: %v, want %v", id, got, want)
		}
	}
}

// TestIngestStrictGraphQL: publishEvent is an ingest path too; its
// request JSON (POST body, GET variables) is as strict as REST's.
func TestIngestStrictGraphQL(t *testing.T) {
	n := testnode.Start(t)
	tok := n.AdminToken()
	const mutation = `mutation($e: EventInput!) { publishEvent(input: $e) { id seq } }`
	post := func(body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("POST", n.URL()+"/graphql", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(raw)
	}
	q, _ := json.Marshal(mutation)
	for _, c := range []struct{ id, variables, says string }{
		{"gql-dup", `{"e":{"id":"gql-dup","type":"audit.x","type":"authentication.login"}}`, `duplicate key \"type\"`},
		{"gql-dup-data", `{"e":{"id":"gql-dup-data","type":"audit.x","data":{"role":"user","role":"admin"}}}`, `duplicate key \"role\"`},
		{"gql-utf8", "{\"e\":{\"id\":\"gql-utf8\",\"type\":\"audit.x\",\"user\":\"\xff\"}}", "not valid UTF-8"},
	} {
		st, body := post(`{"query":` + string(q) + `,"variables":` + c.variables + `}`)
		if st != http.StatusBadRequest || !strings.Contains(body, c.says) || strings.Contains(body, `"seq"`) {
			t.Errorf("%s: HTTP %d %s, want 400 saying %s", c.id, st, body, c.says)
		}
		if ingestStored(t, n, tok, c.id) {
			t.Errorf("%s: the refused event was stored", c.id)
		}
	}
	// The same through GET's variables.
	req, _ := http.NewRequest("GET", n.URL()+"/graphql?query="+url.QueryEscape(mutation)+
		"&variables="+url.QueryEscape(`{"e":{"id":"gql-get","type":"a.b","type":"c.d"}}`), nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(raw), "duplicate key") {
		t.Errorf("GET with duplicate variables: HTTP %d %s, want 400 naming the duplicate key", resp.StatusCode, raw)
	}
	// A well-formed mutation is still accepted.
	if st, body := post(`{"query":` + string(q) + `,"variables":{"e":{"id":"gql-ok","type":"audit.x","data":{"a":{"k":1},"b":{"k":2}}}}}`); st != http.StatusOK || !strings.Contains(body, `"seq"`) {
		t.Errorf("good mutation: HTTP %d %s", st, body)
	}
	if !ingestStored(t, n, tok, "gql-ok") {
		t.Error("the accepted GraphQL event is not stored")
	}
}
