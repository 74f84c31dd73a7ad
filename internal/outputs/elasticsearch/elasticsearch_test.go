package elasticsearch

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/outputs"
	"github.com/vigil-sec/vigil/internal/outputs/outputtest"
)

const testPass = "es-p4ss-S3CRET"

// The format checked here is the bulk API's, as documented at
// https://www.elastic.co/guide/en/elasticsearch/reference/current/docs-bulk.html
// (OpenSearch: https://opensearch.org/docs/latest/api-reference/document-apis/bulk/):
//   - POST /_bulk, Content-Type: application/x-ndjson (application/json is
//     accepted too), body: action line, source line, ...; "the final line
//     of data must end with a newline character \n"
//   - action: {"index"|"create": {"_index": ..., "_id": ...}} — exactly one key
//   - answer: 200 {"took", "errors": bool, "items": [{"<action>": {"_index",
//     "_id", "status", "error": {"type", "reason"}}}]}, one item per action,
//     in order; a refused document has its own status (400, 409, 429, ...).
//   - auth: Authorization: Basic base64(user:pass), or ApiKey <encoded>
//     (https://www.elastic.co/guide/en/elasticsearch/reference/current/security-api-create-api-key.html)
//
// and the documents' field names are ECS's
// (https://www.elastic.co/guide/en/ecs/current/ecs-field-reference.html).
type doc struct {
	index, id, op string
	src           map[string]any
}

type receiver struct {
	t    *testing.T
	auth string
	outputtest.Recorder[doc]
	// status, when set, gives the item status of a document by its id
	// (200/201 otherwise).
	status func(id string) int
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	bad := func(format string, args ...any) {
		rc.t.Errorf("request does not follow the documented format: "+format, args...)
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprint(w, `{"error":{"type":"illegal_argument_exception","reason":"bad"},"status":400}`)
	}
	if r.Method != http.MethodPost || r.URL.Path != "/_bulk" {
		bad("%s %s", r.Method, r.URL.Path)
		return
	}
	if got := r.Header.Get("Authorization"); got != rc.auth {
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprintf(w, `{"error":{"type":"security_exception","reason":"unable to authenticate with %s"},"status":401}`, got)
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/x-ndjson" {
		bad("Content-Type %q", ct)
		return
	}
	sc := bufio.NewScanner(r.Body)
	sc.Buffer(nil, 10<<20)
	var lines []string
	var raw strings.Builder
	for sc.Scan() {
		lines = append(lines, sc.Text())
		raw.WriteString(sc.Text() + "\n")
	}
	if len(lines) == 0 || len(lines)%2 != 0 {
		bad("%d lines", len(lines))
		return
	}
	var items []string
	failed := false
	for i := 0; i < len(lines); i += 2 {
		var action map[string]struct {
			Index string `json:"_index"`
			ID    string `json:"_id"`
		}
		if err := json.Unmarshal([]byte(lines[i]), &action); err != nil || len(action) != 1 {
			bad("action line %q", lines[i])
			return
		}
		var d doc
		for op, a := range action {
			d.op, d.index, d.id = op, a.Index, a.ID
		}
		if d.op != "index" && d.op != "create" {
			bad("op %q", d.op)
			return
		}
		if err := json.Unmarshal([]byte(lines[i+1]), &d.src); err != nil {
			bad("source line: %v", err)
			return
		}
		st := 201
		if rc.status != nil {
			if s := rc.status(d.id); s != 0 {
				st = s
			}
		}
		item := fmt.Sprintf(`{%q:{"_index":%q,"_id":%q,"status":%d`, d.op, d.index, d.id, st)
		if st >= 300 {
			failed = true
			item += `,"error":{"type":"mapper_parsing_exception","reason":"failed to parse field [x]"}`
		} else {
			rc.Record(d)
		}
		items = append(items, item+"}}")
	}
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"took":3,"errors":%v,"items":[%s]}`, failed, strings.Join(items, ","))
}

func newES(t *testing.T, o Options, auth string) (*receiver, outputs.Sender, *outputtest.LogBuffer) {
	t.Helper()
	rc := &receiver{t: t, auth: auth}
	srv, env, logs := outputtest.Serve(t, rc)
	o.URL = srv.URL
	return rc, outputtest.NewSender(t, Type(), &o, env), logs
}

func get(m map[string]any, path string) any {
	var v any = m
	for _, k := range strings.Split(path, ".") {
		mm, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = mm[k]
	}
	return v
}

func TestElasticsearchBulkECS(t *testing.T) {
	t.Setenv("VIGIL_TEST_ES_PASS", testPass)
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("vigil:"+testPass))
	rc, s, logs := newES(t, Options{Username: "vigil", Password: "${VIGIL_TEST_ES_PASS}", IndexPrefix: "sec"}, basic)
	det := outputtest.Detection("ev1", "det-1", "active", 2)
	plain := outputtest.Event("ev2")
	plain.Event.Time = time.Date(2026, 12, 31, 23, 59, 59, 0, time.FixedZone("x", -3600)) // 2027-01-01 UTC
	docs := rc.Deliver(t, s, det, plain)
	if len(docs) != 2 {
		t.Fatalf("%d documents", len(docs))
	}
	d := docs[0]
	if d.op != "index" || d.index != "sec-2026.11.30" || d.id != "ev1" {
		t.Errorf("action %+v", d)
	}
	if docs[1].index != "sec-2027.01.01" || docs[1].id != "ev2" {
		t.Errorf("second action %+v (index per UTC day)", docs[1])
	}
	want := map[string]any{
		"@timestamp": outputtest.Now.Format(time.RFC3339Nano), "event.id": "ev1", "event.kind": "alert",
		"event.severity": float64(73), "event.module": "vigil", "user.name": "alice", "source.ip": "203.0.113.7",
		"organization.id": "acme", "rule.id": "brute-force", "threat.framework": "MITRE ATT&CK",
		"vigil.detection.id": "det-1", "vigil.detection.count": float64(2), "vigil.severity": "high", "log.level": "high",
		"vigil.type": "detection.updated",
	}
	for k, v := range want {
		if got := get(d.src, k); got != v {
			t.Errorf("%s = %v, want %v", k, got, v)
		}
	}
	if c, _ := get(d.src, "event.category").([]any); len(c) != 1 || c[0] != "intrusion_detection" {
		t.Errorf("event.category %v", get(d.src, "event.category"))
	}
	if c, _ := get(docs[1].src, "event.category").([]any); len(c) != 1 || c[0] != "authentication" ||
		get(docs[1].src, "event.outcome") != "failure" || get(docs[1].src, "vigil.data") != `{"port":22}` {
		t.Errorf("plain event %v", docs[1].src)
	}
	if strings.Contains(logs.String(), testPass) {
		t.Error("the password is in the logs")
	}
}

// TestElasticsearchPartialFailure: a document refused with 429 makes the
// batch fail (retryable); the retry sends only that document.
func TestElasticsearchPartialFailure(t *testing.T) {
	rc, s, _ := newES(t, Options{}, "")
	batch := []outputs.Message{outputtest.Event("ev1"), outputtest.Event("ev2"), outputtest.Event("ev3")}
	rc.status = func(id string) int {
		if id == "ev2" {
			return 429
		}
		return 0
	}
	err := s.Send(context.Background(), batch)
	if err == nil || outputs.IsPermanent(err) || !strings.Contains(err.Error(), "ev2: 429") {
		t.Fatalf("429 item: %v", err)
	}
	if n := len(rc.Take()); n != 2 {
		t.Fatalf("%d documents taken, want 2", n)
	}
	rc.status = nil
	docs := rc.Deliver(t, s, batch...)
	if len(docs) != 1 || docs[0].id != "ev2" {
		t.Fatalf("the retry sent %v, want only ev2", docs)
	}
	// Delivered: the batch is forgotten; sending it again sends it all (idempotent by _id).
	if err := s.Send(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	if n := len(rc.Take()); n != 3 {
		t.Errorf("a new send of the batch sent %d", n)
	}

	// A document refused for good: permanent, naming it.
	rc.status = func(id string) int {
		if id == "ev3" {
			return 400
		}
		return 0
	}
	err = s.Send(context.Background(), batch)
	if !outputs.IsPermanent(err) || !strings.Contains(err.Error(), "ev3: 400 mapper_parsing_exception") {
		t.Fatalf("400 item: %v", err)
	}
}

func TestElasticsearchCreateConflictIsDone(t *testing.T) {
	rc, s, _ := newES(t, Options{OpType: "create"}, "")
	rc.status = func(string) int { return 409 } // already there: a repeat
	if err := s.Send(context.Background(), []outputs.Message{outputtest.Event("ev1")}); err != nil {
		t.Fatalf("409 on create: %v", err)
	}
}

func TestElasticsearchAuthErrors(t *testing.T) {
	t.Setenv("VIGIL_TEST_ES_KEY", "aWQ6a2V5LVMzQ1JFVA==")
	rc, s, logs := newES(t, Options{APIKey: "${VIGIL_TEST_ES_KEY}"}, "ApiKey aWQ6a2V5LVMzQ1JFVA==")
	if err := s.Send(context.Background(), []outputs.Message{outputtest.Event("ev1")}); err != nil {
		t.Fatal(err)
	}
	rc.auth = "ApiKey other"
	err := s.Send(context.Background(), []outputs.Message{outputtest.Event("ev2")})
	var de *outputs.DeliveryError
	if !errors.As(err, &de) || !de.Permanent || strings.Contains(err.Error(), "aWQ6a2V5LVMzQ1JFVA") {
		t.Errorf("401: %v", err)
	}
	if strings.Contains(logs.String(), "aWQ6a2V5LVMzQ1JFVA") {
		t.Error("the key is in the logs")
	}
}

func TestElasticsearchConfig(t *testing.T) {
	env, _ := outputtest.Env(t, nil)
	t.Setenv("VIGIL_TEST_ES_PASS", testPass)
	for _, c := range []struct {
		o    Options
		want string
	}{
		{Options{}, "url must be"},
		{Options{URL: "http://es:9200", IndexPrefix: "Vigil"}, "index_prefix"},
		{Options{URL: "http://es:9200", IndexPrefix: "_x"}, "index_prefix"},
		{Options{URL: "http://es:9200", OpType: "update"}, "op_type"},
		{Options{URL: "http://es:9200", Username: "u"}, "go together"},
		{Options{URL: "http://es:9200", Username: "u", Password: "${VIGIL_TEST_ES_PASS}", APIKey: "${VIGIL_TEST_ES_PASS}"}, "both set"},
		{Options{URL: "http://es:9200", Password: testPass}, "must be ${ENV_NAME}"},
	} {
		o := c.o
		outputtest.ConfigError(t, Type(), &o, env, c.want, testPass)
	}
}

func TestElasticsearchParseBulk(t *testing.T) {
	for _, c := range []struct {
		body string
		n    int
		ok   bool
	}{
		{`{"errors":false,"items":[{"index":{"_id":"a","status":201}}]}`, 1, true},
		{`{"errors":false}`, 3, true},
		{`{"errors":true,"items":[{"index":{"_id":"a","status":429,"error":{"type":"es_rejected_execution_exception","reason":"queue full"}}}]}`, 1, true},
		{`{"errors":true,"items":[]}`, 1, false},
		{`{"errors":true,"items":[{"index":{},"create":{}}]}`, 1, false},
		{`<html>`, 1, false},
	} {
		if _, err := ParseBulk([]byte(c.body), c.n); (err == nil) != c.ok {
			t.Errorf("%s: %v", c.body, err)
		}
	}
}

func FuzzElasticsearchParseBulk(f *testing.F) {
	f.Add([]byte(`{"errors":true,"items":[{"index":{"_id":"a","status":429,"error":{"type":"x","reason":"y"}}}]}`), 1)
	f.Fuzz(func(t *testing.T, b []byte, n int) {
		if n < 0 || n > 1000 {
			return
		}
		items, err := ParseBulk(b, n)
		if err == nil && len(items) != n {
			t.Fatalf("%d items for %d", len(items), n)
		}
		for _, it := range items {
			if len(it.Error) > 200 {
				t.Fatal("long error")
			}
		}
	})
}
