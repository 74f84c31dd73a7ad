package teams

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

const (
	flowPath  = "/workflows/0f1e2d3c/triggers/manual/paths/invoke"
	flowQuery = "api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig=S1GNATURESECRET"
)

// The format checked here is Microsoft's documented one:
//   - https://learn.microsoft.com/en-us/microsoftteams/platform/webhooks-and-connectors/how-to/add-incoming-webhook
//     ("Send Adaptive Cards using an Incoming Webhook", which the
//     Workflows "Post to a channel when a webhook request is received"
//     template accepts as is): POST, Content-Type: application/json,
//     {"type": "message", "attachments": [{"contentType":
//     "application/vnd.microsoft.card.adaptive", "contentUrl": null,
//     "content": {"$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
//     "type": "AdaptiveCard", "version": "1.x", "body": [...]}}]}; the
//     message must stay under 28 KB; the Workflow answers 202 Accepted.
//   - the card elements, https://adaptivecards.io/explorer/: TextBlock
//     (text required), FactSet (facts: [{title, value}] required),
//     Container (items required); actions: Action.OpenUrl (url required).
//   - "msteams": {"width": "Full"}, https://learn.microsoft.com/en-us/microsoftteams/platform/task-modules-and-cards/cards/cards-format#full-width-adaptive-card
type wireElement struct {
	Type      string        `json:"type"`
	Text      *string       `json:"text"`
	Size      string        `json:"size"`
	Weight    string        `json:"weight"`
	Color     string        `json:"color"`
	Wrap      bool          `json:"wrap"`
	IsSubtle  bool          `json:"isSubtle"`
	Separator bool          `json:"separator"`
	Style     string        `json:"style"`
	Facts     []wireFact    `json:"facts"`
	Items     []wireElement `json:"items"`
}

type wireFact struct {
	Title *string `json:"title"`
	Value *string `json:"value"`
}

type wireMessage struct {
	Type        string `json:"type"`
	Attachments []struct {
		ContentType string  `json:"contentType"`
		ContentURL  *string `json:"contentUrl"`
		Content     struct {
			Schema  string        `json:"$schema"`
			Type    string        `json:"type"`
			Version string        `json:"version"`
			Body    []wireElement `json:"body"`
			Actions []struct {
				Type  string `json:"type"`
				Title string `json:"title"`
				URL   string `json:"url"`
			} `json:"actions"`
			MSTeams *struct {
				Width string `json:"width"`
			} `json:"msteams"`
		} `json:"content"`
	} `json:"attachments"`
}

func oneOf(v string, set ...string) bool {
	for _, s := range set {
		if v == s {
			return true
		}
	}
	return v == ""
}

func checkElement(e wireElement) error {
	if !oneOf(e.Size, "Small", "Default", "Medium", "Large", "ExtraLarge") || !oneOf(e.Weight, "Lighter", "Default", "Bolder") ||
		!oneOf(e.Color, "Default", "Dark", "Light", "Accent", "Good", "Warning", "Attention", "default", "dark", "light", "accent", "good", "warning", "attention") {
		return fmt.Errorf("%s: size/weight/color %q %q %q", e.Type, e.Size, e.Weight, e.Color)
	}
	switch e.Type {
	case "TextBlock":
		if e.Text == nil || *e.Text == "" {
			return fmt.Errorf("TextBlock without text")
		}
	case "FactSet":
		if len(e.Facts) == 0 {
			return fmt.Errorf("FactSet without facts")
		}
		for _, f := range e.Facts {
			if f.Title == nil || f.Value == nil {
				return fmt.Errorf("fact without title or value")
			}
		}
	case "Container":
		if len(e.Items) == 0 {
			return fmt.Errorf("Container without items")
		}
		for _, it := range e.Items {
			if err := checkElement(it); err != nil {
				return err
			}
		}
	default:
		return fmt.Errorf("element type %q", e.Type)
	}
	return nil
}

func checkMessage(raw []byte) (wireMessage, error) {
	var m wireMessage
	if len(raw) > 28<<10 {
		return m, fmt.Errorf("message of %d bytes, over Teams' 28 KB", len(raw))
	}
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return m, err
	}
	if m.Type != "message" || len(m.Attachments) != 1 {
		return m, fmt.Errorf("type %q with %d attachments", m.Type, len(m.Attachments))
	}
	a := m.Attachments[0]
	c := a.Content
	if a.ContentType != "application/vnd.microsoft.card.adaptive" || a.ContentURL != nil ||
		c.Type != "AdaptiveCard" || c.Schema != "http://adaptivecards.io/schemas/adaptive-card.json" ||
		!strings.HasPrefix(c.Version, "1.") || len(c.Body) == 0 {
		return m, fmt.Errorf("attachment %+v", a)
	}
	for _, e := range c.Body {
		if err := checkElement(e); err != nil {
			return m, err
		}
	}
	for _, ac := range c.Actions {
		if ac.Type != "Action.OpenUrl" || ac.URL == "" || ac.Title == "" {
			return m, fmt.Errorf("action %+v", ac)
		}
	}
	return m, nil
}

type receiver struct {
	t *testing.T
	outputtest.Recorder[string]
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	bad := outputtest.Refusal(rc.t, w, http.StatusBadRequest, "")
	if !outputtest.JSONPost(r, flowPath+"?"+flowQuery, bad) {
		return
	}
	if rc.Replied(w) {
		return
	}
	raw, _ := io.ReadAll(r.Body)
	if _, err := checkMessage(raw); err != nil {
		bad("%v", err)
		return
	}
	rc.Record(string(raw))
	w.WriteHeader(http.StatusAccepted)
}

func newTest(t *testing.T) (*receiver, *httptest.Server, outputs.Sender, *outputtest.LogBuffer) {
	t.Helper()
	rc := &receiver{t: t}
	srv, env, logs := outputtest.Serve(t, rc)
	t.Setenv("VIGIL_TEST_TEAMS_URL", srv.URL+flowPath+"?"+flowQuery)
	opts := Type().NewOptions().(*Options)
	opts.WebhookURL = "${VIGIL_TEST_TEAMS_URL}"
	s := outputtest.NewSender(t, Type(), opts, env)
	return rc, srv, s, logs
}

func TestTeamsLifecycle(t *testing.T) {
	rc, _, s, _ := newTest(t)
	for _, c := range []struct {
		m    outputs.Message
		want []string
	}{
		{outputtest.Detection("ev1", "det-1", "active", 1), []string{"New detection: Brute force", `"attention"`, "T1110", "user=alice", `"ev1"`, "#/detections/det-1"}},
		{outputtest.Detection("ev2", "det-1", "active", 4), []string{"Updated:", `"value":"4"`}},
		{outputtest.Detection("ev3", "det-1", "investigating", 4), []string{"Investigating:", `"warning"`}},
		{outputtest.Detection("ev4", "det-1", "resolved", 4), []string{"Resolved:", `"good"`}},
		{outputtest.Event("ev5"), []string{"Event: login failed for root", "auth.login_failed"}},
		{outputtest.Test("ev6"), []string{"[TEST] Vigil output test"}},
	} {
		got := rc.Deliver(t, s, c.m)
		if len(got) != 1 {
			t.Fatalf("%s: %d messages", c.m.Event.ID, len(got))
		}
		for _, w := range c.want {
			if !strings.Contains(got[0], w) {
				t.Errorf("%s: %q missing in %s", c.m.Event.ID, w, got[0])
			}
		}
	}
}

func TestTeamsGrouped(t *testing.T) {
	rc, _, s, _ := newTest(t)
	var group []outputs.Message
	for i := range 3 {
		group = append(group, outputtest.Detection(fmt.Sprint("ev", i), fmt.Sprint("det-", i), "active", 1))
	}
	got := rc.Deliver(t, s, group...)
	if len(got) != 1 || !strings.Contains(got[0], "3 Vigil alerts") || strings.Count(got[0], `"Container"`) != 3 {
		t.Fatalf("group of 3: %v", got)
	}
	// A large group with long texts stays under 28 KB.
	group = nil
	for i := range 40 {
		m := outputtest.Detection(fmt.Sprint("ev", i), fmt.Sprint("det-", i), "active", 1)
		m.Text = strings.Repeat("long text ", 300)
		group = append(group, m)
	}
	got = rc.Deliver(t, s, group...)
	if len(got) != 1 || !strings.Contains(got[0], " more") {
		t.Fatalf("group of 40: %d messages", len(got))
	}
}

func TestTeamsErrors(t *testing.T) {
	rc, srv, s, logs := newTest(t)
	m := outputtest.Detection("ev1", "det-1", "active", 1)
	body := `{"error":{"code":"x","message":"trigger ` + flowQuery + `"}}`
	send := func(ctx context.Context) error { return s.Send(ctx, []outputs.Message{m}) }
	outputtest.CheckStatuses(t, rc.SetReply, send,
		[]outputtest.StatusCase{
			{Status: 400, Body: body, Permanent: true},
			{Status: 401, Body: body, Permanent: true},
			{Status: 404, Body: body, Permanent: true},
			{Status: 429, RetryAfter: "9", Body: body, After: 9 * time.Second},
			{Status: 502, Body: body},
		}, "S1GNATURE")
	outputtest.CheckDown(t, srv, send, "S1GNATURE")
	if strings.Contains(logs.String(), "S1GNATURE") {
		t.Error("the webhook URL is in the logs")
	}
}

func TestTeamsConfig(t *testing.T) {
	env, _ := outputtest.Env(t, nil)
	for _, c := range []struct {
		opts Options
		want string
	}{
		{Options{}, "webhook_url or webhook_url_file is required"},
		{Options{WebhookURL: "https://x.logic.azure.com/workflows?sig=SECRETPART"}, "must be ${ENV_NAME}"},
		{Options{WebhookURLFile: "/nonexistent"}, "webhook_url_file"},
	} {
		o := c.opts
		outputtest.ConfigError(t, Type(), &o, env, c.want, "SECRETPART")
	}
}

// FuzzTeamsBuild: whatever a detection says, the card follows the schema
// and stays under Teams' size limit.
func FuzzTeamsBuild(f *testing.F) {
	f.Add("title", "text", 3, 1)
	f.Add(strings.Repeat("é", 3000), strings.Repeat("x", 9000), 0, 60)
	f.Fuzz(func(t *testing.T, title, text string, count, n int) {
		if n < 1 || n > 100 {
			n = 1
		}
		var msgs []outputs.Message
		for i := range n {
			m := outputtest.Detection(fmt.Sprint("ev", i), "det", "active", count)
			m.Detection.Title, m.Text = title, text
			msgs = append(msgs, m)
		}
		b, _ := json.Marshal(Build(msgs, "https://vigil.example.com"))
		if _, err := checkMessage(b); err != nil {
			t.Fatal(err)
		}
	})
}
