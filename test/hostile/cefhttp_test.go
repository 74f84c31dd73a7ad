package hostile

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

var cefhttpText = http.Header{"Content-Type": {"text/plain"}}

// TestCEFHTTPLinesStored posts two CEF lines (one behind a syslog header,
// with the escapes \| in a header field and \= in an extension value) to
// POST /api/v1/inputs/cef on a real node, and reads them back through
// GET /api/v1/events with the mapped user and src_ip. A body with one bad
// line is then refused with 400 naming it, and nothing of it is stored.
func TestCEFHTTPLinesStored(t *testing.T) {
	in := inputsStart(t)
	body := `CEF:0|Acme|Gate\|way|2.1|4625|Failed logon|7|suser=alice src=203.0.113.7 outcome=failure msg=bad pass\=word` + "\n\n" +
		`<134>Nov 30 10:00:00 fw1 CEF:0|Acme|Fire\|wall|1.0|100|Blocked|3|suser=bob src=198.51.100.9 act=Block request=/a?x\=1` + "\n"
	st, resp, _ := in.do("POST", "/api/v1/inputs/cef", in.publisher, cefhttpText, []byte(body))
	if st != http.StatusOK || !strings.Contains(string(resp), `"accepted":2`) {
		t.Fatalf("POST cef: HTTP %d: %s", st, resp)
	}
	admin := in.n.AdminToken() // reads src_ip unmasked (the viewer's is masked)
	evs := in.eventsAs(admin, url.Values{"sources": {"cef"}})
	if len(evs) != 2 {
		t.Fatalf("%d events stored, want 2: %v", len(evs), evs)
	}
	for i, want := range []map[string]any{
		{"type": "authentication.cef.gate_way.4625", "user": "alice", "src_ip": "203.0.113.7", "outcome": "failure",
			"message": "bad pass=word", "severity": "high", "tenant": "acme", "source": "cef"},
		{"type": "audit.cef.fire_wall.100", "user": "bob", "src_ip": "198.51.100.9", "action": "block",
			"resource": "/a?x=1", "severity": "low", "tenant": "acme"},
	} {
		for k, v := range want {
			if evs[i][k] != v {
				t.Errorf("event %d: %s = %v, want %v", i, k, evs[i][k], v)
			}
		}
	}
	if data, _ := evs[1]["data"].(map[string]any); data["cef_product"] != "Fire|wall" {
		t.Errorf("event 1 data %v", evs[1]["data"])
	}

	bad := "CEF:0|Acme|X|1|1|ok|1|suser=carol\nnot a cef line\n"
	st, resp, _ = in.do("POST", "/api/v1/inputs/cef", in.publisher, cefhttpText, []byte(bad))
	if st != http.StatusBadRequest || !strings.Contains(string(resp), "line 2") {
		t.Fatalf("bad line: HTTP %d: %s", st, resp)
	}
	if n := len(in.eventsAs(admin, url.Values{})); n != 2 {
		t.Fatalf("%d events after the refused request, want 2 (nothing of it stored)", n)
	}
	if m := in.metric(`vigil_input_errors_total{input="cef",reason="decode"}`); !strings.HasSuffix(m, " 1") {
		t.Errorf("decode metric %q", m)
	}
	if m := in.metric(`vigil_input_stored_total{input="cef"}`); !strings.HasSuffix(m, " 2") {
		t.Errorf("stored metric %q", m)
	}
}
