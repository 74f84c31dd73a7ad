package server_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/vigil-sec/vigil/internal/auth/access"
)

// post sends a raw body to the ingest endpoint and decodes the answer.
func (e *env) post(body, contentType, tok string) (int, map[string]any) {
	e.t.Helper()
	req, _ := http.NewRequest("POST", e.srv.URL+"/api/v1/events", strings.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func TestIngestShapesAndErrors(t *testing.T) {
	e := newEnv(t, access.Config{})
	tok := matrixAdminToken
	for name, tc := range map[string]struct {
		body, ctype string
		want        int
	}{
		"object": {`{"type":"authentication.login","user":"alice"}`, "application/json", 1},
		"array":  {`[{"type":"audit.query"},{"type":"security.fraud.alert"}]`, "application/json", 2},
		"ndjson": {"{\"type\":\"audit.query\"}\n{\"type\":\"rate_limit.blocked\"}\n{\"type\":\"memory.guard_page_hit\"}\n", "application/x-ndjson", 3},
	} {
		st, out := e.post(tc.body, tc.ctype, tok)
		if st != 200 || out["accepted"] != float64(tc.want) {
			t.Errorf("%s: HTTP %d %v, want 200 with accepted %d", name, st, out, tc.want)
		}
	}
	// One bad event refuses the whole batch and names index and field.
	st, out := e.post(`[{"type":"audit.query"},{"type":"x.y","category":"nope"},{"severity":"hgih","type":"audit.q"}]`, "", tok)
	details, _ := out["details"].([]any)
	if st != 400 || len(details) != 2 {
		t.Fatalf("bad batch: HTTP %d %v", st, out)
	}
	first := details[0].(map[string]any)
	if first["index"] != float64(1) || first["field"] != "category" || !strings.Contains(first["reason"].(string), "authentication") {
		t.Errorf("first problem = %v, want index 1 field category listing the valid ones", first)
	}
	if second := details[1].(map[string]any); second["index"] != float64(2) || second["field"] != "severity" {
		t.Errorf("second problem = %v", second)
	}
	for name, body := range map[string]string{
		"malformed":     `{"type":`,
		"unknown field": `{"type":"audit.query","colour":"red"}`,
		"missing type":  `{"user":"alice"}`,
		"bad ip":        `{"type":"audit.query","src_ip":"300.1.1.1"}`,
	} {
		if st, out := e.post(body, "", tok); st != 400 || out["error"] == "" {
			t.Errorf("%s: HTTP %d %v, want 400 with an error", name, st, out)
		}
	}
	big := `{"type":"audit.query","message":"` + strings.Repeat("x", 70<<10) + `"}`
	if st, _ := e.post(big, "", tok); st != 413 {
		t.Errorf("oversized event: HTTP %d, want 413", st)
	}
	if st, _ := e.post(`{"type":"audit.query"}`, "", ""); st != 401 {
		t.Errorf("no token: HTTP %d, want 401", st)
	}
	if st, _ := e.post(`{"type":"audit.query"}`, "", "wrong"); st != 401 {
		t.Errorf("bad token: HTTP %d, want 401", st)
	}
	// Nothing of the refused batches was stored: 6 accepted events only.
	var hist struct {
		Events []map[string]any `json:"events"`
	}
	e.do("GET", "/api/v1/events?limit=100", tok, nil, &hist)
	if len(hist.Events) != 6 {
		t.Fatalf("history holds %d events, want the 6 accepted", len(hist.Events))
	}
}

func TestHistoryPagingAndGet(t *testing.T) {
	e := newEnv(t, access.Config{})
	tok := matrixAdminToken
	var lines []string
	for i := 0; i < 25; i++ {
		sev := "info"
		if i%5 == 0 {
			sev = "high"
		}
		lines = append(lines, fmt.Sprintf(`{"id":"h-%02d","type":"authentication.login","severity":%q,"user":"u%d"}`, i, sev, i))
	}
	if st, _ := e.post(strings.Join(lines, "\n"), "application/x-ndjson", tok); st != 200 {
		t.Fatal(st)
	}
	type page struct {
		Events []struct {
			ID  string `json:"id"`
			Seq uint64 `json:"seq"`
		} `json:"events"`
		Next *uint64 `json:"next"`
	}
	var seqs []uint64
	q := "/api/v1/events?order=asc&limit=10"
	for pages := 0; ; pages++ {
		var p page
		if st := e.do("GET", q, tok, nil, &p); st != 200 {
			t.Fatalf("history: HTTP %d", st)
		}
		for _, ev := range p.Events {
			seqs = append(seqs, ev.Seq)
		}
		if p.Next == nil {
			break
		}
		if pages > 5 {
			t.Fatal("paging does not end")
		}
		q = "/api/v1/events?order=asc&limit=10&cursor=" + strconv.FormatUint(*p.Next, 10)
	}
	if len(seqs) != 25 || seqs[0] != 1 || seqs[24] != 25 {
		t.Fatalf("asc pages gave %v", seqs)
	}
	var desc page
	e.do("GET", "/api/v1/events?min_severity=high&limit=2", tok, nil, &desc)
	if len(desc.Events) != 2 || desc.Events[0].ID != "h-20" || desc.Events[1].ID != "h-15" || desc.Next == nil {
		t.Fatalf("desc filtered page = %+v", desc)
	}
	var rest page
	e.do("GET", "/api/v1/events?min_severity=high&limit=10&cursor="+strconv.FormatUint(*desc.Next, 10), tok, nil, &rest)
	if len(rest.Events) != 3 || rest.Events[0].ID != "h-10" || rest.Next != nil {
		t.Fatalf("second desc page = %+v", rest)
	}
	if st := e.do("GET", "/api/v1/events?min_severity=hgih", tok, nil, nil); st != 400 {
		t.Errorf("bad filter in history: HTTP %d, want 400", st)
	}
	var one map[string]any
	if st := e.do("GET", "/api/v1/events/h-07", tok, nil, &one); st != 200 || one["user"] != "u7" || one["seq"] != float64(8) {
		t.Fatalf("get by id: HTTP %d %v", st, one)
	}
	if st := e.do("GET", "/api/v1/events/nope", tok, nil, nil); st != 404 {
		t.Errorf("unknown id: HTTP %d, want 404", st)
	}
}

// readMsg reads one server message of the native protocol.
func readMsg(t *testing.T, c net.Conn) map[string]any {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := wsutil.ReadServerText(c)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("server sent non-JSON %q", b)
	}
	return m
}

func TestNativeStreamProtocol(t *testing.T) {
	e := newEnv(t, access.Config{})
	tok := matrixAdminToken
	e.post(`[{"id":"old-1","type":"audit.query"},{"id":"old-2","type":"authentication.login","severity":"high"}]`, "", tok)

	c, err := e.wsDial(tok, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	wsSubscribe(t, c, "replay", map[string]any{"categories": []string{"authentication"}}, map[string]any{"seq": 1})
	if m := readMsg(t, c); m["type"] != "event" || m["sub"] != "replay" || m["event"].(map[string]any)["id"] != "old-2" {
		t.Fatalf("replay delivered %v", m)
	}
	wsSubscribe(t, c, "live", map[string]any{"min_severity": "medium"}, "latest")

	// Bad input: each gets an error on this connection, which stays usable.
	for _, tc := range []struct{ send, code, mention string }{
		{`not json`, "bad_message", "valid"},
		{`{"op":"subscribe","id":"x","filter":{"min_severity":"hgih"}}`, "bad_filter", "min_severity"},
		{`{"op":"subscribe","id":"y","filter":{"colour":"red"}}`, "bad_filter", "colour"},
		{`{"op":"subscribe","id":"z","filter":{"expr":"risk_score >"}}`, "bad_filter", "expr"},
		{`{"op":"subscribe","id":"w","from":{"seq":"one"}}`, "bad_cursor", "from"},
		{`{"op":"subscribe","id":"live"}`, "duplicate_subscription", "live"},
		{`{"op":"unsubscribe","id":"ghost"}`, "unknown_subscription", "ghost"},
		{`{"op":"dance"}`, "bad_message", "dance"},
	} {
		if err := wsutil.WriteClientText(c, []byte(tc.send)); err != nil {
			t.Fatal(err)
		}
		m := readMsg(t, c)
		if m["type"] != "error" || m["code"] != tc.code || !strings.Contains(fmt.Sprint(m["message"]), tc.mention) {
			t.Errorf("%s: got %v, want error %s mentioning %q", tc.send, m, tc.code, tc.mention)
		}
	}
	wsSend(t, c, map[string]any{"op": "ping"})
	if m := readMsg(t, c); m["type"] != "pong" {
		t.Fatalf("ping: %v", m)
	}
	e.post(`[{"id":"new-low","type":"audit.query"},{"id":"new-high","type":"authentication.login","severity":"critical"}]`, "", tok)
	got := map[string][]string{}
	for len(got["live"]) < 1 || len(got["replay"]) < 1 {
		m := readMsg(t, c)
		if m["type"] == "event" {
			sub := m["sub"].(string)
			got[sub] = append(got[sub], m["event"].(map[string]any)["id"].(string))
		}
	}
	if fmt.Sprint(got["live"]) != "[new-high]" || fmt.Sprint(got["replay"]) != "[new-high]" {
		t.Fatalf("live deliveries per subscription: %v", got)
	}
	wsSend(t, c, map[string]any{"op": "unsubscribe", "id": "live"})
	if m := readMsg(t, c); m["type"] != "unsubscribed" || m["id"] != "live" {
		t.Fatalf("unsubscribe: %v", m)
	}

	// An oversized frame closes the connection with 1009.
	big := bytes.Repeat([]byte("x"), 70<<10)
	_ = wsutil.WriteClientText(c, big)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		_, err := wsutil.ReadServerText(c)
		if err == nil {
			continue
		}
		var ce wsutil.ClosedError
		if !errors.As(err, &ce) || ce.Code != ws.StatusMessageTooBig {
			t.Fatalf("oversized frame: %v, want close 1009", err)
		}
		break
	}
}

func TestSSELastEventIDResume(t *testing.T) {
	e := newEnv(t, access.Config{})
	tok := matrixAdminToken
	e.post(`[{"id":"s1","type":"audit.query"},{"id":"s2","type":"audit.query"},{"id":"s3","type":"authentication.login"}]`, "", tok)
	req, _ := http.NewRequest("GET", e.srv.URL+"/api/v1/stream/sse?categories=audit", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Last-Event-ID", "1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || ct != "text/event-stream" {
		t.Fatalf("HTTP %d %s", resp.StatusCode, ct)
	}
	rd := bufio.NewReader(resp.Body)
	var id, data string
	for data == "" {
		line, err := rd.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if v, ok := strings.CutPrefix(line, "id: "); ok {
			id = strings.TrimSpace(v)
		}
		if v, ok := strings.CutPrefix(line, "data: "); ok {
			data = v
		}
	}
	if id != "2" || !strings.Contains(data, `"id":"s2"`) {
		t.Fatalf("first SSE message after Last-Event-ID 1: id %s data %s", id, data)
	}
	if st := e.do("GET", "/api/v1/stream/sse?min_severity=nope", tok, nil, nil); st != 400 {
		t.Errorf("bad SSE filter: HTTP %d, want 400", st)
	}
}

func TestProbesAndOpenAPI(t *testing.T) {
	e := newEnv(t, access.Config{})
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		resp, err := http.Get(e.srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("%s: HTTP %d without a token, want 200", path, resp.StatusCode)
		}
	}
	resp, err := http.Get(e.srv.URL + "/api/v1/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var doc struct {
		OpenAPI string         `json:"openapi"`
		Paths   map[string]any `json:"paths"`
	}
	if err := json.Unmarshal(b, &doc); err != nil || !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi.json: %v %q", err, doc.OpenAPI)
	}
	for _, p := range []string{"/api/v1/events", "/api/v1/stream", "/api/v1/detections", "/api/v1/tokens", "/graphql"} {
		if doc.Paths[p] == nil {
			t.Errorf("openapi.json lacks %s", p)
		}
	}
}
