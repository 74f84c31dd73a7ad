package slack

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/outputs"
	"github.com/vigil-sec/vigil/internal/outputs/outputtest"
)

const hookPath = "/services/T0000/B0000/XXXXXXXXXXXXXXXXXXXXXXXX"

// The format checked here is Slack's documented one:
//   - incoming webhooks, https://api.slack.com/messaging/webhooks: POST
//     the webhook URL, Content-Type: application/json, body {"text": ...,
//     "blocks": [...]}; "text" is the notification fallback; the answer is
//     HTTP 200 "ok", errors are 4xx with a code (invalid_payload,
//     no_service, channel_is_archived, ...).
//   - Block Kit, https://api.slack.com/reference/block-kit/blocks: at most
//     50 blocks per message; header: text plain_text ≤ 150 characters;
//     section: text ≤ 3000 and/or fields ≤ 10 items each ≤ 2000, optional
//     accessory (a button: text plain_text ≤ 75, url ≤ 3000); context:
//     elements ≤ 10 (text objects or images); divider: no other fields.
//   - text objects, https://api.slack.com/reference/block-kit/composition-objects#text:
//     {"type": "plain_text"|"mrkdwn", "text": ...}.
type wireText struct {
	Type  string `json:"type"`
	Text  string `json:"text"`
	Emoji *bool  `json:"emoji"`
}

type wireElement struct {
	Type string          `json:"type"`
	Text json.RawMessage `json:"text"`
	URL  string          `json:"url"`
}

type wireBlock struct {
	Type      string        `json:"type"`
	BlockID   string        `json:"block_id"`
	Text      *wireText     `json:"text"`
	Fields    []wireText    `json:"fields"`
	Elements  []wireElement `json:"elements"`
	Accessory *wireElement  `json:"accessory"`
}

type wireMessage struct {
	Text   string      `json:"text"`
	Blocks []wireBlock `json:"blocks"`
}

func checkText(t wireText, max int, kinds ...string) error {
	ok := false
	for _, k := range kinds {
		ok = ok || t.Type == k
	}
	if !ok {
		return fmt.Errorf("text type %q, want one of %v", t.Type, kinds)
	}
	if t.Text == "" || len([]rune(t.Text)) > max {
		return fmt.Errorf("text of %d characters (1..%d)", len([]rune(t.Text)), max)
	}
	return nil
}

func checkMessage(m wireMessage) error {
	if m.Text == "" {
		return fmt.Errorf("no fallback text")
	}
	if len(m.Blocks) == 0 || len(m.Blocks) > 50 {
		return fmt.Errorf("%d blocks (1..50)", len(m.Blocks))
	}
	for i, b := range m.Blocks {
		var err error
		switch b.Type {
		case "header":
			if b.Text == nil {
				err = fmt.Errorf("header without text")
			} else {
				err = checkText(*b.Text, 150, "plain_text")
			}
		case "section":
			if b.Text == nil && len(b.Fields) == 0 {
				err = fmt.Errorf("section without text or fields")
			}
			if b.Text != nil && err == nil {
				err = checkText(*b.Text, 3000, "mrkdwn", "plain_text")
			}
			if len(b.Fields) > 10 {
				err = fmt.Errorf("%d fields", len(b.Fields))
			}
			for _, f := range b.Fields {
				if err == nil {
					err = checkText(f, 2000, "mrkdwn", "plain_text")
				}
			}
			if a := b.Accessory; a != nil && err == nil {
				var bt wireText
				if a.Type != "button" || json.Unmarshal(a.Text, &bt) != nil || a.URL == "" || len(a.URL) > 3000 {
					err = fmt.Errorf("accessory %+v", a)
				} else {
					err = checkText(bt, 75, "plain_text")
				}
			}
		case "context":
			if len(b.Elements) == 0 || len(b.Elements) > 10 {
				err = fmt.Errorf("context with %d elements", len(b.Elements))
			}
			for _, e := range b.Elements {
				var s string
				if err == nil && (e.Type != "mrkdwn" && e.Type != "plain_text" || json.Unmarshal(e.Text, &s) != nil || s == "") {
					err = fmt.Errorf("context element %+v", e)
				}
			}
		case "divider":
			if b.Text != nil || b.Fields != nil || b.Elements != nil || b.Accessory != nil {
				err = fmt.Errorf("divider with content")
			}
		default:
			err = fmt.Errorf("block type %q", b.Type)
		}
		if err != nil {
			return fmt.Errorf("block %d (%s): %w", i, b.Type, err)
		}
	}
	return nil
}

type receiver struct {
	t *testing.T
	outputtest.Recorder[wireMessage]
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	bad := outputtest.Refusal(rc.t, w, http.StatusBadRequest, "invalid_payload")
	if !outputtest.JSONPost(r, hookPath, bad) {
		return
	}
	if rc.Replied(w) {
		return
	}
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	var m wireMessage
	if err := dec.Decode(&m); err != nil {
		bad("body: %v", err)
		return
	}
	if err := checkMessage(m); err != nil {
		bad("%v", err)
		return
	}
	rc.Record(m)
	io.WriteString(w, "ok")
}

func newTest(t *testing.T) (*receiver, *httptest.Server, outputs.Sender, *outputtest.LogBuffer) {
	t.Helper()
	rc := &receiver{t: t}
	srv, env, logs := outputtest.Serve(t, rc)
	t.Setenv("VIGIL_TEST_SLACK_URL", srv.URL+hookPath)
	opts := Type().NewOptions().(*Options)
	opts.WebhookURL = "${VIGIL_TEST_SLACK_URL}"
	s := outputtest.NewSender(t, Type(), opts, env)
	return rc, srv, s, logs
}

// all is the concatenated text of a message, for assertions.
func all(m wireMessage) string {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(m)
	return b.String()
}

func TestSlackLifecycle(t *testing.T) {
	rc, _, s, _ := newTest(t)
	for _, c := range []struct {
		m    outputs.Message
		want []string
	}{
		{outputtest.Detection("ev1", "det-1", "active", 1), []string{"New detection", "Brute force against admin", "brute-force", "T1110", "user=alice", "ev1"}},
		{outputtest.Detection("ev2", "det-1", "active", 4), []string{"Updated", "*Count*\\n4"}},
		{outputtest.Detection("ev3", "det-1", "investigating", 4), []string{"Investigating"}},
		{outputtest.Detection("ev4", "det-1", "resolved", 4), []string{"Resolved"}},
		{outputtest.Event("ev5"), []string{"Event", "login failed for root", "auth.login_failed"}},
		{outputtest.Test("ev6"), []string{"[TEST]", "Vigil output test"}},
	} {
		got := rc.Deliver(t, s, c.m)
		if len(got) != 1 {
			t.Fatalf("%s: %d messages", c.m.Event.ID, len(got))
		}
		text := all(got[0])
		for _, w := range c.want {
			if !strings.Contains(text, w) {
				t.Errorf("%s: %q missing in %s", c.m.Event.ID, w, text)
			}
		}
		if c.m.Detection != nil {
			acc := got[0].Blocks[1].Accessory
			if acc == nil || acc.URL != "https://vigil.example.com/#/detections/det-1" {
				t.Errorf("%s: no console link: %+v", c.m.Event.ID, acc)
			}
		}
	}
}

func TestSlackGroupedAndEscaped(t *testing.T) {
	rc, _, s, _ := newTest(t)
	var group []outputs.Message
	for i := range 3 {
		group = append(group, outputtest.Detection(fmt.Sprint("ev", i), fmt.Sprint("det-", i), "active", 1))
	}
	// mrkdwn control characters in a title must not become a mention or a link.
	group[1].Detection.Title = "<!channel> <http://evil.example|click> & co"
	group[1].Text = group[1].Detection.Title
	got := rc.Deliver(t, s, group...)
	if len(got) != 1 {
		t.Fatalf("%d messages for a group, want 1", len(got))
	}
	text := all(got[0])
	if !strings.Contains(got[0].Blocks[0].Text.Text, "3 Vigil alerts") {
		t.Errorf("header %q", got[0].Blocks[0].Text.Text)
	}
	for i := range 3 {
		if !strings.Contains(text, fmt.Sprintf("ev%d", i)) {
			t.Errorf("detection %d missing", i)
		}
	}
	if strings.Contains(text, "<!channel>") || strings.Contains(text, "<http://evil") ||
		!strings.Contains(text, "&lt;!channel&gt;") || !strings.Contains(text, "&amp; co") {
		t.Errorf("not escaped: %s", text)
	}

	// A large group stays within Block Kit's 50 blocks and says how many were left out.
	group = nil
	for i := range 40 {
		group = append(group, outputtest.Detection(fmt.Sprint("ev", i), fmt.Sprint("det-", i), "active", 1))
	}
	group[0].Text = strings.Repeat("long ", 2000)
	got = rc.Deliver(t, s, group...)
	if len(got) != 1 || !strings.Contains(all(got[0]), "and 28 more") {
		t.Fatalf("large group: %d messages %v", len(got), got)
	}
}

func TestSlackErrors(t *testing.T) {
	rc, srv, s, logs := newTest(t)
	m := outputtest.Detection("ev1", "det-1", "active", 1)
	send := func(ctx context.Context) error { return s.Send(ctx, []outputs.Message{m}) }
	outputtest.CheckStatuses(t, rc.SetReply, send,
		[]outputtest.StatusCase{
			{Status: 400, Body: "invalid_payload " + hookPath, Permanent: true},
			{Status: 404, Body: "no_service " + hookPath, Permanent: true},
			{Status: 410, Body: "channel_is_archived", Permanent: true},
			{Status: 429, RetryAfter: "5", Body: "rate_limited", After: 5 * time.Second},
			{Status: 500, Body: "rollup_error " + hookPath},
			{Status: 200, Body: `{"ok":false,"error":"invalid_token"}`, Permanent: true},
		}, "XXXXXXXX")
	outputtest.CheckDown(t, srv, send, "XXXXXXXX")
	if strings.Contains(logs.String(), "XXXXXXXX") {
		t.Error("the webhook URL is in the logs")
	}
}

func TestSlackConfig(t *testing.T) {
	env, _ := outputtest.Env(t, nil)
	for _, c := range []struct {
		opts Options
		want string
	}{
		{Options{}, "webhook_url or webhook_url_file is required"},
		{Options{WebhookURL: "https://hooks.slack.com/services/T/B/SECRETPART"}, "must be ${ENV_NAME}"},
	} {
		o := c.opts
		outputtest.ConfigError(t, Type(), &o, env, c.want, "SECRETPART")
	}
	t.Setenv("VIGIL_TEST_SLACK_BAD", "hooks.slack.com/SECRETPART")
	o := Options{WebhookURL: "${VIGIL_TEST_SLACK_BAD}"}
	if _, err := Type().New(&o, env); err == nil || strings.Contains(err.Error(), "SECRETPART") {
		t.Errorf("relative URL: %v", err)
	}
}

func TestSlackResponses(t *testing.T) {
	for _, c := range []struct {
		body string
		ok   bool
	}{
		{"ok", true}, {"", true}, {`{"ok":true}`, true}, {"accepted", true},
		{`{"ok":false,"error":"invalid_token"}`, false}, {`{"ok":false}`, false}, {`{broken`, true},
	} {
		if err := CheckResponse([]byte(c.body)); (err == nil) != c.ok {
			t.Errorf("%q: %v", c.body, err)
		}
	}
}

func FuzzSlackResponse(f *testing.F) {
	f.Add([]byte("ok"))
	f.Add([]byte(`{"ok":false,"error":"x"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if err := CheckResponse(b); err != nil && (len(err.Error()) > 400 || strings.ContainsAny(err.Error(), "\n\r")) {
			t.Fatalf("error %q", err)
		}
	})
}

// FuzzSlackBuild: whatever a detection says, the message stays within
// Block Kit's documented limits.
func FuzzSlackBuild(f *testing.F) {
	f.Add("title", "text", "rule", 3, 1)
	f.Add(strings.Repeat("é", 200), strings.Repeat("<", 4000), "", 0, 60)
	f.Fuzz(func(t *testing.T, title, text, rule string, count, n int) {
		if n < 1 || n > 100 {
			n = 1
		}
		var msgs []outputs.Message
		for i := range n {
			m := outputtest.Detection(fmt.Sprint("ev", i), "det", "active", count)
			m.Detection.Title, m.Text, m.Detection.RuleID = title, text, rule
			msgs = append(msgs, m)
		}
		b, _ := json.Marshal(Build(msgs, "https://vigil.example.com"))
		var w wireMessage
		if err := json.Unmarshal(b, &w); err != nil {
			t.Fatal(err)
		}
		if err := checkMessage(w); err != nil {
			t.Fatal(err)
		}
	})
}
