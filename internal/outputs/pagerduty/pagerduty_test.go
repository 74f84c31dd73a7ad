package pagerduty

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/outputs"
	"github.com/vigil-sec/vigil/internal/outputs/outputtest"
)

const testKey = "R0UT1NGK3Y0123456789abcdefABCDEF" // 32 characters, as PagerDuty's are

// pdEvent is the Events API v2 request as documented at
// https://developer.pagerduty.com/api-reference/368ae3d938c9e-send-an-event-to-pager-duty
// (and https://developer.pagerduty.com/docs/events-api-v2/trigger-events/):
//
//	POST https://events.pagerduty.com/v2/enqueue, Content-Type: application/json
//	routing_key   string, required: the 32-character integration key
//	event_action  string, required: trigger | acknowledge | resolve
//	dedup_key     string, required for acknowledge/resolve, at most 255 characters
//	payload       object, required for trigger:
//	  summary        string, required, at most 1024 characters
//	  source         string, required
//	  severity       string, required: critical | error | warning | info
//	  timestamp      ISO 8601, optional
//	  component, group, class  strings, optional
//	  custom_details object, optional
//	images, links  arrays, optional; links: [{href (required), text}]
//	client, client_url  strings, optional
//
// Answer: 202 {"status":"success","message":"Event processed","dedup_key":"..."};
// 400 invalid event; 429 too many requests.
type pdEvent struct {
	RoutingKey  string `json:"routing_key"`
	EventAction string `json:"event_action"`
	DedupKey    string `json:"dedup_key"`
	Payload     *struct {
		Summary       string         `json:"summary"`
		Source        string         `json:"source"`
		Severity      string         `json:"severity"`
		Timestamp     string         `json:"timestamp"`
		Component     string         `json:"component"`
		Group         string         `json:"group"`
		Class         string         `json:"class"`
		CustomDetails map[string]any `json:"custom_details"`
	} `json:"payload"`
	Images []any `json:"images"`
	Links  []struct {
		Href string `json:"href"`
		Text string `json:"text"`
	} `json:"links"`
	Client    string `json:"client"`
	ClientURL string `json:"client_url"`
}

// receiver is a loopback PagerDuty that checks each request against the
// documented format and records the accepted ones.
type receiver struct {
	t *testing.T
	outputtest.Recorder[pdEvent]
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	bad := outputtest.Refusal(rc.t, w, http.StatusBadRequest, `{"status":"invalid event","message":"Event object is invalid","errors":["bad"]}`)
	if !outputtest.JSONPost(r, "/v2/enqueue", bad) {
		return
	}
	if rc.Replied(w) {
		return
	}
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	var ev pdEvent
	if err := dec.Decode(&ev); err != nil {
		bad("body: %v", err)
		return
	}
	if ev.RoutingKey != testKey {
		bad("routing_key %q", ev.RoutingKey)
		return
	}
	if ev.DedupKey == "" || len(ev.DedupKey) > 255 {
		bad("dedup_key %q", ev.DedupKey)
		return
	}
	switch ev.EventAction {
	case "trigger":
		p := ev.Payload
		if p == nil || p.Summary == "" || len(p.Summary) > 1024 || p.Source == "" {
			bad("trigger payload %+v", p)
			return
		}
		switch p.Severity {
		case "critical", "error", "warning", "info":
		default:
			bad("severity %q", p.Severity)
			return
		}
		if p.Timestamp != "" {
			if _, err := time.Parse(time.RFC3339Nano, p.Timestamp); err != nil {
				bad("timestamp %q: %v", p.Timestamp, err)
				return
			}
		}
		for _, l := range ev.Links {
			if l.Href == "" {
				bad("link without href")
				return
			}
		}
	case "acknowledge", "resolve":
	default:
		bad("event_action %q", ev.EventAction)
		return
	}
	rc.Record(ev)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	json.NewEncoder(w).Encode(map[string]string{"status": "success", "message": "Event processed", "dedup_key": ev.DedupKey})
}

func newTest(t *testing.T) (*receiver, outputs.Sender, *outputtest.LogBuffer) {
	t.Helper()
	rc := &receiver{t: t}
	srv, env, logs := outputtest.Serve(t, rc)
	keyFile := filepath.Join(t.TempDir(), "pd.key")
	if err := os.WriteFile(keyFile, []byte(testKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	opts := Type().NewOptions().(*Options)
	opts.RoutingKeyFile = keyFile
	opts.APIURL = srv.URL + "/v2/enqueue"
	return rc, outputtest.NewSender(t, Type(), opts, env), logs
}

func TestPagerDutyLifecycle(t *testing.T) {
	rc, s, logs := newTest(t)
	steps := []struct {
		msg    outputs.Message
		action string
	}{
		{outputtest.Detection("ev1", "det-1", "active", 1), "trigger"},
		{outputtest.Detection("ev2", "det-1", "active", 5), "trigger"}, // count update: same key, no new page
		{outputtest.Detection("ev3", "det-1", "investigating", 5), "acknowledge"},
		{outputtest.Detection("ev4", "det-1", "resolved", 5), "resolve"},
		{outputtest.Detection("ev5", "det-2", "false_positive", 1), "resolve"},
	}
	for i, st := range steps {
		evs := rc.Deliver(t, s, st.msg)
		if len(evs) != 1 {
			t.Fatalf("step %d: %d requests, want 1", i, len(evs))
		}
		ev := evs[0]
		if ev.EventAction != st.action || ev.DedupKey != st.msg.Detection.ID {
			t.Errorf("step %d: %s %s, want %s %s", i, ev.EventAction, ev.DedupKey, st.action, st.msg.Detection.ID)
		}
		if st.action != "trigger" {
			if ev.Payload != nil {
				t.Errorf("step %d: %s carries a payload", i, ev.EventAction)
			}
			continue
		}
		p := ev.Payload
		if p.Summary != st.msg.Detection.Title || p.Severity != "error" || p.Source != "vigil" ||
			p.Class != "brute-force" || p.Group != "acme" {
			t.Errorf("step %d: payload %+v", i, p)
		}
		if p.CustomDetails["count"] != float64(st.msg.Detection.Count) || p.CustomDetails["event_id"] != st.msg.Event.ID ||
			p.CustomDetails["group_key"] != "user=alice" {
			t.Errorf("step %d: custom_details %v", i, p.CustomDetails)
		}
		want := "https://vigil.example.com/#/detections/det-1"
		if len(ev.Links) != 1 || ev.Links[0].Href != want || ev.ClientURL != want {
			t.Errorf("step %d: links %+v client_url %q, want %s", i, ev.Links, ev.ClientURL, want)
		}
	}
	if strings.Contains(logs.String(), testKey) {
		t.Error("the routing key is in the logs")
	}
}

func TestPagerDutyEventAndTestMessage(t *testing.T) {
	rc, s, _ := newTest(t)
	evs := rc.Deliver(t, s, outputtest.Event("ev-plain"))
	if len(evs) != 1 || evs[0].EventAction != "trigger" || evs[0].DedupKey != "ev-plain" ||
		evs[0].Payload.Severity != "warning" || evs[0].Payload.Summary != "login failed for root" {
		t.Fatalf("plain event: %+v", evs)
	}

	evs = rc.Deliver(t, s, outputtest.Test("ev-test"))
	if len(evs) != 2 {
		t.Fatalf("test message: %d requests, want a trigger and a resolve", len(evs))
	}
	if evs[0].EventAction != "trigger" || !strings.HasPrefix(evs[0].Payload.Summary, "[TEST] ") ||
		evs[0].Payload.CustomDetails["test"] != true {
		t.Errorf("test trigger is not labelled: %+v", evs[0].Payload)
	}
	if evs[1].EventAction != "resolve" || evs[1].DedupKey != evs[0].DedupKey {
		t.Errorf("test message left an open incident: %+v", evs[1])
	}
}

func TestPagerDutyErrors(t *testing.T) {
	rc, s, logs := newTest(t)
	m := outputtest.Detection("ev1", "det-1", "active", 1)
	// A hostile or buggy receiver echoing the key must not put it in the error.
	body := `{"status":"invalid event","message":"bad key ` + testKey + `"}`
	outputtest.CheckStatuses(t, rc.SetReply, func(ctx context.Context) error { return s.Send(ctx, []outputs.Message{m}) },
		[]outputtest.StatusCase{
			{Status: 400, Body: body, Permanent: true},
			{Status: 403, Body: body, Permanent: true},
			{Status: 429, RetryAfter: "30", Body: body, After: 30 * time.Second},
			{Status: 500, Body: body},
			{Status: 503, RetryAfter: "Mon, 30 Nov 2026 17:05:05 GMT", Body: body, After: 60 * time.Second}, // an HTTP date, one minute after outputtest.Now
		}, testKey)

	// A 2xx that is not a success is retried.
	rc.SetReply(func(w http.ResponseWriter) bool {
		w.WriteHeader(202)
		io.WriteString(w, `{"status":"throttled"}`)
		return true
	})
	if err := s.Send(context.Background(), []outputs.Message{m}); err == nil || outputs.IsPermanent(err) {
		t.Errorf("non-success 202: %v", err)
	}
	if strings.Contains(logs.String(), testKey) {
		t.Error("the routing key is in the logs")
	}
}

func TestPagerDutyConfig(t *testing.T) {
	env, _ := outputtest.Env(t, nil)
	for _, c := range []struct {
		opts Options
		want string
	}{
		{Options{}, "routing_key or routing_key_file is required"},
		{Options{RoutingKey: testKey}, "must be ${ENV_NAME}"},
		{Options{RoutingKey: "${VIGIL_TEST_PD_UNSET}"}, "VIGIL_TEST_PD_UNSET is not set"},
		{Options{RoutingKeyFile: "/nonexistent/pd.key"}, "routing_key_file"},
		{Options{RoutingKey: "${VIGIL_TEST_PD}", APIURL: "ftp://x"}, "api_url must be an absolute http(s) URL"},
	} {
		t.Setenv("VIGIL_TEST_PD", testKey)
		o := c.opts
		outputtest.ConfigError(t, Type(), &o, env, c.want, testKey)
	}
	o := Options{RoutingKey: "${VIGIL_TEST_PD}"}
	if _, err := Type().New(&o, env); err != nil {
		t.Errorf("key from the environment: %v", err)
	}
}

func TestPagerDutyResponses(t *testing.T) {
	for _, c := range []struct {
		body string
		ok   bool
	}{
		{`{"status":"success","message":"Event processed","dedup_key":"k"}`, true},
		{``, true},
		{`{}`, true},
		{`{"status":"invalid event","errors":["x"]}`, false},
		{`not json`, false},
		{`{"status":1}`, false},
	} {
		_, err := ParseResponse([]byte(c.body))
		if (err == nil) != c.ok {
			t.Errorf("%q: %v", c.body, err)
		}
	}
}

func FuzzPagerDutyResponse(f *testing.F) {
	f.Add([]byte(`{"status":"success","message":"Event processed","dedup_key":"k"}`))
	f.Add([]byte(`{"status":"invalid event","message":"Event object is invalid","errors":["a"]}`))
	f.Add([]byte("\x00\xff{"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, err := ParseResponse(b)
		if err != nil && len(err.Error()) > 600 {
			t.Fatalf("error text of %d bytes", len(err.Error()))
		}
		if err != nil && bytes.ContainsRune([]byte(err.Error()), '\n') {
			t.Fatal("control character in the error")
		}
	})
}
