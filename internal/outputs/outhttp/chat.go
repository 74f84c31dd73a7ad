package outhttp

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-sec/vigil/internal/outputs"
)

// RequiredSecret resolves a credential that an output cannot work
// without, given as name (${ENV}) or name_file: the error names both keys
// when neither is set.
func RequiredSecret(name, inline, file string) (outputs.Secret, error) {
	s, err := outputs.ResolveSecret(name, inline, file)
	if err != nil {
		return "", err
	}
	if s == "" {
		return "", fmt.Errorf("%s or %s_file is required", name, name)
	}
	return s, nil
}

// Webhook is a chat webhook (Slack, Teams) whose URL is its credential:
// resolved from webhook_url or webhook_url_file, posted JSON, the URL
// scrubbed from every error.
type Webhook struct {
	URL outputs.Secret
	Env outputs.Env
	// What names the receiver in errors ("slack webhook").
	What string
}

// NewWebhook resolves and checks the webhook_url/webhook_url_file
// options; env.Now defaults to time.Now.
func NewWebhook(what, inline, file string, env outputs.Env) (*Webhook, error) {
	u, err := RequiredSecret("webhook_url", inline, file)
	if err != nil {
		return nil, err
	}
	if err := CheckURL("webhook_url", u.Reveal()); err != nil {
		return nil, err
	}
	if env.Now == nil {
		env.Now = time.Now
	}
	return &Webhook{URL: u, Env: env, What: what}, nil
}

// Post sends body as JSON and returns the (2xx) response body; errors are
// classified as Do does.
func (w *Webhook) Post(ctx context.Context, body []byte) ([]byte, error) {
	return Do(ctx, w.Env.HTTP, w.Env.Now, Request{
		Method: "POST", URL: w.URL.Reveal(), Body: body, What: w.What,
		Header:  map[string][]string{"Content-Type": {"application/json"}},
		Secrets: URLSecrets(w.URL),
	})
}

// Step is the detection lifecycle step a message shows to people (chat
// and mail outputs name it; paging outputs map it to their own actions).
type Step int

// The steps, in the words String gives them.
const (
	StepEvent Step = iota
	StepTest
	StepNew
	StepUpdated
	StepInvestigating
	StepResolved
	StepFalsePositive
)

// StepOf is the step m shows: a test, a new or updated (count > 1)
// detection, investigating, resolved or false positive, else a plain
// event.
func StepOf(m outputs.Message) Step {
	if m.Test {
		return StepTest
	}
	switch m.Lifecycle() {
	case outputs.LifecycleAcknowledge:
		return StepInvestigating
	case outputs.LifecycleResolve:
		if m.Detection.Status == "false_positive" {
			return StepFalsePositive
		}
		return StepResolved
	case outputs.LifecycleTrigger:
		if m.Detection.Count > 1 {
			return StepUpdated
		}
		return StepNew
	}
	return StepEvent
}

// String is the step's word as messages print it.
func (s Step) String() string {
	switch s {
	case StepTest:
		return "Test"
	case StepNew:
		return "New detection"
	case StepUpdated:
		return "Updated"
	case StepInvestigating:
		return "Investigating"
	case StepResolved:
		return "Resolved"
	case StepFalsePositive:
		return "False positive"
	}
	return "Event"
}

// GroupTitle is the title of a message grouping n > 1 alerts, labelled
// [TEST] when the first is a test.
func GroupTitle(msgs []outputs.Message) string {
	t := strconv.Itoa(len(msgs)) + " Vigil alerts"
	if len(msgs) > 0 && msgs[0].Test {
		t = "[TEST] " + t
	}
	return t
}

// Field is one name/value line of a message's details.
type Field struct{ Name, Value string }

// Fields are m's details in the order chat outputs show them: severity,
// then the detection's rule, status, count, group and MITRE ids, or for a
// plain event its type, user and source IP. Empty values are left out.
func Fields(m outputs.Message) []Field {
	var out []Field
	add := func(name, v string) {
		if v != "" {
			out = append(out, Field{name, v})
		}
	}
	add("Severity", Severity(m))
	if d := m.Detection; d != nil {
		add("Rule", d.RuleID)
		add("Status", d.Status)
		add("Count", strconv.Itoa(d.Count))
		add("Group", d.GroupKey)
		add("MITRE", strings.Join(append(append([]string{}, d.MitreTactics...), d.MitreTechniques...), ", "))
	} else if ev := m.Event; ev != nil {
		add("Type", ev.Type)
		add("User", ev.User)
		add("Source IP", ev.SrcIP)
	}
	return out
}

// WebhookOptions are the keys of a chat webhook output: WebhookURL is
// the webhook's URL, which is its credential, as ${ENV} or
// WebhookURLFile.
type WebhookOptions struct {
	WebhookURL     string `yaml:"webhook_url"`
	WebhookURLFile string `yaml:"webhook_url_file"`
}

// WebhookType is the output type of a chat webhook taking
// WebhookOptions: name is the type ("slack"), what names the receiver in
// errors ("slack webhook"), build and check are WebhookSender's Build and
// Check. Detections are grouped: a group becomes one message.
func WebhookType[M any](name, what string, build func(msgs []outputs.Message, publicURL string) M, check func(body []byte) error) outputs.Type {
	return outputs.Type{
		Name:       name,
		NewOptions: func() any { return &WebhookOptions{} },
		New: func(o any, env outputs.Env) (outputs.Sender, error) {
			opts, ok := o.(*WebhookOptions)
			if !ok {
				return nil, fmt.Errorf("%s: options are %T, not *outhttp.WebhookOptions", name, o)
			}
			hook, err := NewWebhook(what, opts.WebhookURL, opts.WebhookURLFile, env)
			if err != nil {
				return nil, err
			}
			return &WebhookSender{Webhook: hook, Name: name, Check: check,
				Build: func(msgs []outputs.Message, publicURL string) any { return build(msgs, publicURL) },
			}, nil
		},
		Groups: true,
	}
}

// WebhookSender is the outputs.Sender of a chat webhook output: each Send
// posts one message laid out by Build; the vendor's format stays in its
// package.
type WebhookSender struct {
	*Webhook
	// Name is the output type, prefixing logs and errors ("slack").
	Name string
	// Build lays out a group of messages as the JSON body.
	Build func(msgs []outputs.Message, publicURL string) any
	// Check, when set, reads a 2xx answer (a receiver may refuse in it).
	Check func(body []byte) error
}

// Send posts msgs as one message.
func (s *WebhookSender) Send(ctx context.Context, msgs []outputs.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	body, err := json.Marshal(s.Build(msgs, s.Env.PublicURL))
	if err != nil {
		return outputs.Permanent(fmt.Errorf("%s: encoding the message: %w", s.Name, err))
	}
	resp, err := s.Post(ctx, body)
	if err != nil {
		return err
	}
	if s.Check != nil {
		if err := s.Check(resp); err != nil {
			return err
		}
	}
	s.Env.Logger.Debug(s.Name+": delivered", "messages", len(msgs), "first_event_id", EventID(msgs[0]))
	return nil
}

// Close has nothing to release: requests end with Send.
func (s *WebhookSender) Close() error { return nil }

// PageAction is what a paging service (PagerDuty, Opsgenie) is asked to
// do with its alert for a message, keyed by Key.
type PageAction int

// The paging actions.
const (
	PageTrigger PageAction = iota // open the alert, or repeat it (a count update)
	PageAcknowledge
	PageResolve
)

// PageActions is what m asks of a paging service (SPEC 13): investigating
// acknowledges, resolved and false positive resolve, anything else
// triggers; a test message triggers and resolves right away, so that it
// leaves no open alert.
func PageActions(m outputs.Message) []PageAction {
	switch {
	case m.Test:
		return []PageAction{PageTrigger, PageResolve}
	case m.Lifecycle() == outputs.LifecycleAcknowledge:
		return []PageAction{PageAcknowledge}
	case m.Lifecycle() == outputs.LifecycleResolve:
		return []PageAction{PageResolve}
	}
	return []PageAction{PageTrigger}
}
