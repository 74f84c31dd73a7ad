package hostile

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/auth/tokens"
	"github.com/vigil-sec/vigil/internal/config"
	"github.com/vigil-sec/vigil/internal/testnode"
)

// inputsNode is a real node with a publisher and a viewer of tenant acme,
// for the Falco and OTLP input tests (issue 9).
type inputsNode struct {
	t         *testing.T
	n         *testnode.Node
	publisher string
	viewer    string
}

func inputsStart(t *testing.T, configure ...func(*config.Config)) *inputsNode {
	t.Helper()
	in := &inputsNode{t: t, n: testnode.Start(t, configure...)}
	in.publisher = in.token(tokens.CreateRequest{Role: "publisher", Tenant: "acme"})
	in.viewer = in.token(tokens.CreateRequest{Role: "viewer", Tenant: "acme"})
	return in
}

func (in *inputsNode) token(req tokens.CreateRequest) string {
	in.t.Helper()
	body, _ := json.Marshal(req)
	st, resp, _ := in.do("POST", "/api/v1/tokens", in.n.AdminToken(), http.Header{"Content-Type": {"application/json"}}, body)
	if st != http.StatusCreated {
		in.t.Fatalf("create token: HTTP %d: %s", st, resp)
	}
	var out tokens.CreateResponse
	if err := json.Unmarshal(resp, &out); err != nil {
		in.t.Fatal(err)
	}
	return out.Token
}

// do sends one request with a bearer token and returns the status, the
// body and the response headers.
func (in *inputsNode) do(method, path, tok string, hdr http.Header, body []byte) (int, []byte, http.Header) {
	in.t.Helper()
	req, err := http.NewRequest(method, in.n.URL()+path, bytes.NewReader(body))
	if err != nil {
		in.t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		in.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b, resp.Header
}

// events reads the viewer's events matching query (GET /api/v1/events),
// oldest first. The viewer sees src_ip masked (default policy).
func (in *inputsNode) events(query url.Values) []map[string]any {
	in.t.Helper()
	return in.eventsAs(in.viewer, query)
}

// eventsAs reads events as tok.
func (in *inputsNode) eventsAs(tok string, query url.Values) []map[string]any {
	in.t.Helper()
	query.Set("order", "asc")
	query.Set("limit", "10000")
	st, body, _ := in.do("GET", "/api/v1/events?"+query.Encode(), tok, nil, nil)
	if st != http.StatusOK {
		in.t.Fatalf("history: HTTP %d: %s", st, body)
	}
	var out struct {
		Events []map[string]any `json:"events"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		in.t.Fatal(err)
	}
	return out.Events
}

// metric returns the /metrics line that starts with prefix ("" if none).
func (in *inputsNode) metric(prefix string) string {
	in.t.Helper()
	_, body, _ := in.do("GET", "/metrics", "", nil, nil)
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, prefix) {
			return line
		}
	}
	return ""
}
