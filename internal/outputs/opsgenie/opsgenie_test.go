package opsgenie

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/outputs"
	"github.com/vigil-sec/vigil/internal/outputs/outputtest"
)

const testKey = "eb243592-faa2-4ba2-a551q-1afdf565c889"

// The format checked here is the one documented at
// https://docs.opsgenie.com/docs/alert-api:
//   - every request: Authorization: GenieKey <api key>, Content-Type: application/json
//   - create: POST /v2/alerts {message (required, ≤ 130 chars), alias (≤ 512),
//     description (≤ 15000), responders [{type: team|user|escalation|schedule,
//     id|name|username}], visibleTo, actions, tags (≤ 20, each ≤ 50),
//     details (string map, ≤ 8000 chars in all), entity (≤ 512),
//     source (≤ 100), priority (P1..P5), user (≤ 100), note (≤ 25000)}
//   - acknowledge: POST /v2/alerts/{identifier}/acknowledge?identifierType=alias {user, source, note}
//   - close: POST /v2/alerts/{identifier}/close?identifierType=alias {user, source, note}
//   - answer: 202 {"result": "Request will be processed", "took": 0.302, "requestId": "..."};
//     errors 400/422 (validation), 401/403 (key), 429 (rate limit), 5xx.
type wireCreate struct {
	Message     string              `json:"message"`
	Alias       string              `json:"alias"`
	Description string              `json:"description"`
	Responders  []map[string]string `json:"responders"`
	VisibleTo   []map[string]string `json:"visibleTo"`
	Actions     []string            `json:"actions"`
	Tags        []string            `json:"tags"`
	Details     map[string]string   `json:"details"`
	Entity      string              `json:"entity"`
	Source      string              `json:"source"`
	Priority    string              `json:"priority"`
	User        string              `json:"user"`
	Note        string              `json:"note"`
}

type wireAction struct {
	User   string `json:"user"`
	Source string `json:"source"`
	Note   string `json:"note"`
}

// call is one accepted request: the action and the alias it names.
type call struct {
	action, alias string
	create        wireCreate
}

type receiver struct {
	t *testing.T
	outputtest.Recorder[call]
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	bad := outputtest.Refusal(rc.t, w, http.StatusUnprocessableEntity, `{"message":"Request body is not processable","took":0.0,"requestId":"x"}`)
	if !outputtest.JSONPost(r, "", bad) {
		return
	}
	if got := r.Header.Get("Authorization"); got != "GenieKey "+testKey {
		bad("Authorization %q", got)
		return
	}
	if rc.Replied(w) {
		return
	}
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	var c call
	switch {
	case r.URL.Path == "/v2/alerts" && r.URL.RawQuery == "":
		c.action = "create"
		if err := dec.Decode(&c.create); err != nil {
			bad("create body: %v", err)
			return
		}
		cr := c.create
		if cr.Message == "" || len([]rune(cr.Message)) > 130 || len(cr.Alias) > 512 || len(cr.Description) > 15000 ||
			len(cr.Tags) > 20 || len(cr.Entity) > 512 || len(cr.Source) > 100 {
			bad("create limits: %+v", cr)
			return
		}
		n := 0
		for k, v := range cr.Details {
			n += len(k) + len(v)
		}
		if n > 8000 {
			bad("details of %d characters", n)
			return
		}
		for _, t := range cr.Tags {
			if len(t) > 50 {
				bad("tag %q", t)
				return
			}
		}
		switch cr.Priority {
		case "", "P1", "P2", "P3", "P4", "P5":
		default:
			bad("priority %q", cr.Priority)
			return
		}
		c.alias = cr.Alias
	case strings.HasPrefix(r.URL.Path, "/v2/alerts/"):
		rest := strings.TrimPrefix(r.URL.Path, "/v2/alerts/")
		i := strings.LastIndexByte(rest, '/')
		if i < 0 || r.URL.Query().Get("identifierType") != "alias" {
			bad("%s", r.URL)
			return
		}
		c.alias, c.action = rest[:i], rest[i+1:]
		if c.action != "acknowledge" && c.action != "close" {
			bad("action %q", c.action)
			return
		}
		var a wireAction
		if err := dec.Decode(&a); err != nil {
			bad("%s body: %v", c.action, err)
			return
		}
	default:
		bad("path %s", r.URL)
		return
	}
	rc.Record(c)
	w.WriteHeader(http.StatusAccepted)
	io.WriteString(w, `{"result":"Request will be processed","took":0.302,"requestId":"43a29c5c-3dbf-4fa4-9c26-f4f71023e120"}`)
}

func newTest(t *testing.T, opts Options) (*receiver, outputs.Sender, *outputtest.LogBuffer) {
	t.Helper()
	rc := &receiver{t: t}
	srv, env, logs := outputtest.Serve(t, rc)
	t.Setenv("VIGIL_TEST_GENIE", testKey)
	opts.APIKey = "${VIGIL_TEST_GENIE}"
	opts.APIURL = srv.URL
	return rc, outputtest.NewSender(t, Type(), &opts, env), logs
}

func TestOpsgenieLifecycle(t *testing.T) {
	rc, s, logs := newTest(t, Options{Tags: []string{"vigil"}, Responders: []Responder{{Type: "team", Name: "soc"}}})
	for i, st := range []struct {
		m      outputs.Message
		action string
	}{
		{outputtest.Detection("ev1", "det-1", "active", 1), "create"},
		{outputtest.Detection("ev2", "det-1", "active", 6), "create"}, // same alias: a repeat, not a new alert
		{outputtest.Detection("ev3", "det-1", "investigating", 6), "acknowledge"},
		{outputtest.Detection("ev4", "det-1", "resolved", 6), "close"},
		{outputtest.Detection("ev5", "det-2", "false_positive", 1), "close"},
	} {
		calls := rc.Deliver(t, s, st.m)
		if len(calls) != 1 || calls[0].action != st.action || calls[0].alias != st.m.Detection.ID {
			t.Fatalf("step %d: %+v, want %s %s", i, calls, st.action, st.m.Detection.ID)
		}
		if st.action != "create" {
			continue
		}
		c := calls[0].create
		if c.Priority != "P2" || c.Source != "vigil" || c.Entity != "acme" || c.Details["event_id"] != st.m.Event.ID ||
			c.Details["count"] != fmt.Sprint(st.m.Detection.Count) || c.Details["vigil_url"] != "https://vigil.example.com/#/detections/det-1" ||
			len(c.Responders) != 1 || c.Responders[0]["name"] != "soc" || c.Tags[0] != "vigil" || c.Tags[1] != "T1110" {
			t.Errorf("step %d: create %+v", i, c)
		}
	}
	if strings.Contains(logs.String(), testKey) {
		t.Error("the key is in the logs")
	}
}

func TestOpsgenieEventAndTestMessage(t *testing.T) {
	rc, s, _ := newTest(t, Options{})
	calls := rc.Deliver(t, s, outputtest.Event("ev-plain"))
	if len(calls) != 1 || calls[0].action != "create" || calls[0].alias != "ev-plain" || calls[0].create.Priority != "P3" {
		t.Fatalf("plain event: %+v", calls)
	}
	calls = rc.Deliver(t, s, outputtest.Test("ev-test"))
	if len(calls) != 2 || calls[0].action != "create" || !strings.HasPrefix(calls[0].create.Message, "[TEST] ") ||
		calls[1].action != "close" || calls[1].alias != calls[0].alias {
		t.Fatalf("test message must be created labelled and closed: %+v", calls)
	}
}

func TestOpsgenieErrors(t *testing.T) {
	rc, s, logs := newTest(t, Options{})
	m := outputtest.Detection("ev1", "det-1", "active", 1)
	body := `{"message":"Key ` + testKey + ` is invalid","took":0.1,"requestId":"r"}`
	outputtest.CheckStatuses(t, rc.SetReply, func(ctx context.Context) error { return s.Send(ctx, []outputs.Message{m}) },
		[]outputtest.StatusCase{
			{Status: 401, Body: body, Permanent: true},
			{Status: 422, Body: body, Permanent: true},
			{Status: 429, RetryAfter: "4", Body: body, After: 4 * time.Second},
			{Status: 503, Body: body},
		}, testKey)
	if strings.Contains(logs.String(), testKey) {
		t.Error("the key is in the logs")
	}
}

func TestOpsgenieConfig(t *testing.T) {
	env, _ := outputtest.Env(t, nil)
	t.Setenv("VIGIL_TEST_GENIE", testKey)
	k := "${VIGIL_TEST_GENIE}"
	for _, c := range []struct {
		opts Options
		want string
	}{
		{Options{}, "api_key or api_key_file is required"},
		{Options{APIKey: testKey}, "must be ${ENV_NAME}"},
		{Options{APIKey: k, Region: "apac"}, `region "apac": must be us or eu`},
		{Options{APIKey: k, Responders: []Responder{{Type: "group", Name: "x"}}}, "responders[0].type"},
		{Options{APIKey: k, Responders: []Responder{{Type: "team"}}}, "responders[0]: needs id, name or username"},
		{Options{APIKey: k, Tags: []string{strings.Repeat("t", 51)}}, "tags[0]"},
	} {
		o := c.opts
		outputtest.ConfigError(t, Type(), &o, env, c.want, testKey)
	}
	o := Options{APIKey: k, Region: "eu"}
	s, err := Type().New(&o, env)
	if err != nil || s.(*sender).base != EUURL {
		t.Errorf("eu region: %v", err)
	}
}

func TestOpsgenieLimits(t *testing.T) {
	_, s, _ := newTest(t, Options{})
	m := outputtest.Detection("ev1", "det-1", "active", 1)
	m.Detection.Title = strings.Repeat("é", 500)
	m.Detection.GroupKey = strings.Repeat("g", 20000)
	m.Text = strings.Repeat("t", 40000)
	m.Detection.MitreTechniques = make([]string, 40)
	for i := range m.Detection.MitreTechniques {
		m.Detection.MitreTechniques[i] = fmt.Sprint("T", 1000+i)
	}
	// the receiver checks every documented limit
	if err := s.Send(context.Background(), []outputs.Message{m}); err != nil {
		t.Fatal(err)
	}
}

func TestOpsgenieResponses(t *testing.T) {
	for _, c := range []struct {
		body string
		ok   bool
	}{
		{`{"result":"Request will be processed","took":0.302,"requestId":"x"}`, true},
		{``, true}, {" \n", true}, {`<html>`, false}, {`{"took":"x"}`, false},
	} {
		if _, err := ParseResponse([]byte(c.body)); (err == nil) != c.ok {
			t.Errorf("%q: %v", c.body, err)
		}
	}
}

func FuzzOpsgenieResponse(f *testing.F) {
	f.Add([]byte(`{"result":"Request will be processed","took":0.302,"requestId":"x"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, err := ParseResponse(b); err != nil && (len(err.Error()) > 400 || strings.ContainsAny(err.Error(), "\r\n")) {
			t.Fatalf("error %q", err)
		}
	})
}
