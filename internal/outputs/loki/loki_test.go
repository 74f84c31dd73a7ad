package loki

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/outputs"
	"github.com/vigil-sec/vigil/internal/outputs/outputtest"
)

const testPass = "l0ki-S3CRET"

// The format checked here is Loki's push API, as documented at
// https://grafana.com/docs/loki/latest/reference/loki-http-api/#ingest-logs:
//
//	POST /loki/api/v1/push, Content-Type: application/json
//	{"streams": [{"stream": {"label": "value"}, "values": [["<unix epoch in nanoseconds, as a string>", "<log line>"]]}]}
//
// label names match [a-zA-Z_][a-zA-Z0-9_]* (https://grafana.com/docs/loki/latest/get-started/labels/);
// X-Scope-OrgID names the tenant in multi-tenant mode
// (https://grafana.com/docs/loki/latest/operations/multi-tenancy/);
// the answer is 204 No Content; 400 for entries Loki refuses (out of
// order, too old), 429 when rate limited.
type wirePush struct {
	Streams []struct {
		Stream map[string]string `json:"stream"`
		Values [][]string        `json:"values"`
	} `json:"streams"`
}

var (
	wireLabel = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
	wireTS    = regexp.MustCompile(`^[0-9]{1,19}$`)
)

type receiver struct {
	t    *testing.T
	auth string
	outputtest.Recorder[push]
}

// push is an accepted push and its X-Scope-OrgID.
type push struct {
	wirePush
	org string
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	bad := outputtest.Refusal(rc.t, w, http.StatusBadRequest, "bad")
	if !outputtest.JSONPost(r, "/loki/api/v1/push", bad) {
		return
	}
	if got := r.Header.Get("Authorization"); got != rc.auth {
		http.Error(w, "no org id / bad auth "+got, http.StatusUnauthorized)
		return
	}
	if rc.Replied(w) {
		return
	}
	b, _ := io.ReadAll(r.Body)
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	var p wirePush
	if err := dec.Decode(&p); err != nil {
		bad("%v", err)
		return
	}
	for _, st := range p.Streams {
		if len(st.Stream) == 0 {
			bad("stream without labels")
			return
		}
		for k, v := range st.Stream {
			if !wireLabel.MatchString(k) || v == "" {
				bad("label %q=%q", k, v)
				return
			}
		}
		var last int64
		for _, v := range st.Values {
			if len(v) != 2 || !wireTS.MatchString(v[0]) {
				bad("value %q", v)
				return
			}
			ts, _ := strconv.ParseInt(v[0], 10, 64)
			if ts < last {
				bad("entries out of order in a stream")
				return
			}
			last = ts
		}
	}
	rc.Record(push{p, r.Header.Get("X-Scope-OrgID")})
	w.WriteHeader(http.StatusNoContent)
}

func newLoki(t *testing.T, o Options, auth string) (*receiver, outputs.Sender, *outputtest.LogBuffer) {
	t.Helper()
	rc := &receiver{t: t, auth: auth}
	srv, env, logs := outputtest.Serve(t, rc)
	o.URL = srv.URL + "/"
	return rc, outputtest.NewSender(t, Type(), &o, env), logs
}

func TestLokiPush(t *testing.T) {
	t.Setenv("VIGIL_TEST_LOKI_PASS", testPass)
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte("vigil:"+testPass))
	rc, s, logs := newLoki(t, Options{OrgID: "soc", Labels: map[string]string{"env": "prod"}, Username: "vigil",
		Password: "${VIGIL_TEST_LOKI_PASS}"}, auth)
	early := outputtest.Event("ev0")
	early.Event.Time = outputtest.Now.Add(-time.Second)
	msgs := []outputs.Message{outputtest.Event("ev1"), outputtest.Detection("ev2", "det-1", "active", 1), early, outputtest.Test("ev3")}
	if s.(outputs.Batcher).MaxBatch() < 2 {
		t.Error("loki is a Batcher")
	}
	pushes := rc.Deliver(t, s, msgs...)
	if len(pushes) != 1 || pushes[0].org != "soc" {
		t.Fatalf("pushes %+v", pushes)
	}
	got := map[string][][]string{}
	for _, st := range pushes[0].Streams {
		if st.Stream["job"] != "vigil" || st.Stream["env"] != "prod" || st.Stream["tenant"] != "acme" {
			t.Errorf("labels %v", st.Stream)
		}
		key := st.Stream["category"] + "/" + st.Stream["severity"] + "/" + st.Stream["test"]
		got[key] = append(got[key], st.Values...)
	}
	auth0 := got["authentication/medium/"]
	if len(got) != 3 || len(auth0) != 2 || len(got["detection/high/"]) != 1 || len(got["system/medium/true"]) != 1 {
		t.Fatalf("streams %v", got)
	}
	if auth0[0][0] != fmt.Sprint(early.Event.Time.UnixNano()) || auth0[0][1] != string(early.Body) ||
		auth0[1][0] != fmt.Sprint(outputtest.Now.UnixNano()) {
		t.Errorf("entries %v", auth0)
	}
	if strings.Contains(logs.String(), testPass) {
		t.Error("the password is in the logs")
	}
}

func TestLokiErrors(t *testing.T) {
	t.Setenv("VIGIL_TEST_LOKI_TOKEN", testPass)
	rc, s, _ := newLoki(t, Options{BearerToken: "${VIGIL_TEST_LOKI_TOKEN}"}, "Bearer "+testPass)
	m := outputtest.Event("ev1")
	body := "entry for stream has timestamp too old\n"
	outputtest.CheckStatuses(t, rc.SetReply, func(ctx context.Context) error { return s.Send(ctx, []outputs.Message{m}) },
		[]outputtest.StatusCase{
			{Status: 400, Body: body, Permanent: true}, // "entry too far behind": retrying cannot help
			{Status: 429, RetryAfter: "2", Body: body, After: 2 * time.Second},
			{Status: 500, Body: body},
		}, testPass)
	rc.auth = "Bearer other"
	err := s.Send(context.Background(), []outputs.Message{m})
	if !outputs.IsPermanent(err) || strings.Contains(err.Error(), testPass) {
		t.Errorf("401: %v", err)
	}
}

func TestLokiConfig(t *testing.T) {
	env, _ := outputtest.Env(t, nil)
	t.Setenv("VIGIL_TEST_LOKI_PASS", testPass)
	for _, c := range []struct {
		o    Options
		want string
	}{
		{Options{}, "url must be"},
		{Options{URL: "http://loki:3100", Labels: map[string]string{"bad-name": "x"}}, "not a Loki label name"},
		{Options{URL: "http://loki:3100", Labels: map[string]string{"__name__": "x"}}, "not a Loki label name"},
		{Options{URL: "http://loki:3100", Labels: map[string]string{"tenant": "x"}}, "set per event"},
		{Options{URL: "http://loki:3100", Username: "u"}, "go together"},
		{Options{URL: "http://loki:3100", BearerToken: "${VIGIL_TEST_LOKI_PASS}", Username: "u", Password: "${VIGIL_TEST_LOKI_PASS}"}, "both set"},
		{Options{URL: "http://loki:3100", OrgID: "a\nb"}, "org_id"},
	} {
		o := c.o
		outputtest.ConfigError(t, Type(), &o, env, c.want, testPass)
	}
}
