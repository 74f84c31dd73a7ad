// Package opsgenie is the opsgenie output: the Opsgenie Alert API
// (https://docs.opsgenie.com/docs/alert-api), following the detection
// lifecycle (SPEC 13).
//
// A detection creates an alert whose alias is the detection id; a count
// update creates it again with the same alias, which Opsgenie counts as a
// repeat of the open alert (no new notification); investigating
// acknowledges it (POST /v2/alerts/{alias}/acknowledge?identifierType=alias)
// and resolved/false_positive closes it (.../close). Any other event
// creates an alert aliased by its event id, so a retried request is
// deduplicated too. A test message is created labelled [TEST] and closed
// right away.
package opsgenie

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-sec/vigil/internal/outputs"
	"github.com/vigil-sec/vigil/internal/outputs/outhttp"
)

// API endpoints of Opsgenie's two service regions.
const (
	USURL = "https://api.opsgenie.com"
	EUURL = "https://api.eu.opsgenie.com"
)

// Field limits of the create alert request (see the reference above).
const (
	maxMessage     = 130
	maxAlias       = 512
	maxDescription = 15000
	maxTags        = 20
	maxTag         = 50
	maxDetailsLen  = 8000
	maxSource      = 100
)

// Options are the opsgenie output's own keys.
type Options struct {
	// APIKey is an API integration's key, as ${ENV} or APIKeyFile.
	APIKey     string `yaml:"api_key"`
	APIKeyFile string `yaml:"api_key_file"`
	// Region is us (default) or eu; APIURL overrides it (a proxy).
	Region string `yaml:"region"`
	APIURL string `yaml:"api_url"`
	// Responders and Tags are set on created alerts.
	Responders []Responder `yaml:"responders"`
	Tags       []string    `yaml:"tags"`
	// Source is the alert's source field (default "vigil").
	Source string `yaml:"source"`
}

// Responder is a team, user, escalation or schedule, by id or name
// (username for a user).
type Responder struct {
	Type     string `yaml:"type" json:"type"`
	ID       string `yaml:"id" json:"id,omitempty"`
	Name     string `yaml:"name" json:"name,omitempty"`
	Username string `yaml:"username" json:"username,omitempty"`
}

// Type is the opsgenie output type.
func Type() outputs.Type {
	return outputs.Type{
		Name:       "opsgenie",
		NewOptions: func() any { return &Options{} },
		New:        newSender,
	}
}

type sender struct {
	key    outputs.Secret
	base   string
	opts   Options
	source string
	env    outputs.Env
}

func newSender(o any, env outputs.Env) (outputs.Sender, error) {
	opts, ok := o.(*Options)
	if !ok {
		return nil, fmt.Errorf("opsgenie: options are %T, not *opsgenie.Options", o)
	}
	key, err := outhttp.RequiredSecret("api_key", opts.APIKey, opts.APIKeyFile)
	if err != nil {
		return nil, err
	}
	s := &sender{key: key, opts: *opts, source: opts.Source, env: env}
	switch strings.ToLower(opts.Region) {
	case "", "us":
		s.base = USURL
	case "eu":
		s.base = EUURL
	default:
		return nil, fmt.Errorf("region %q: must be us or eu", opts.Region)
	}
	if opts.APIURL != "" {
		if err := outhttp.CheckURL("api_url", opts.APIURL); err != nil {
			return nil, err
		}
		s.base = opts.APIURL
	}
	s.base = strings.TrimRight(s.base, "/")
	if len(opts.Tags) > maxTags {
		return nil, fmt.Errorf("tags: %d given, Opsgenie takes at most %d", len(opts.Tags), maxTags)
	}
	for i, tag := range opts.Tags {
		if tag == "" || len(tag) > maxTag {
			return nil, fmt.Errorf("tags[%d]: must be 1 to %d characters", i, maxTag)
		}
	}
	for i, r := range opts.Responders {
		switch r.Type {
		case "team", "user", "escalation", "schedule":
		default:
			return nil, fmt.Errorf("responders[%d].type %q: must be team, user, escalation or schedule", i, r.Type)
		}
		if r.ID == "" && r.Name == "" && r.Username == "" {
			return nil, fmt.Errorf("responders[%d]: needs id, name or username", i)
		}
	}
	if s.source == "" {
		s.source = "vigil"
	}
	if len(s.source) > maxSource {
		return nil, fmt.Errorf("source: at most %d characters", maxSource)
	}
	if s.env.Now == nil {
		s.env.Now = time.Now
	}
	return s, nil
}

// CreateAlert is the create alert request body.
type CreateAlert struct {
	Message     string            `json:"message"`
	Alias       string            `json:"alias"`
	Description string            `json:"description,omitempty"`
	Responders  []Responder       `json:"responders,omitempty"`
	Tags        []string          `json:"tags,omitempty"`
	Details     map[string]string `json:"details,omitempty"`
	Entity      string            `json:"entity,omitempty"`
	Source      string            `json:"source,omitempty"`
	Priority    string            `json:"priority,omitempty"`
	Note        string            `json:"note,omitempty"`
}

// ActionBody is the acknowledge / close request body.
type ActionBody struct {
	Source string `json:"source,omitempty"`
	User   string `json:"user,omitempty"`
	Note   string `json:"note,omitempty"`
}

// Priority maps a SPEC severity to Opsgenie's P1..P5.
func Priority(sev string) string {
	switch sev {
	case "critical":
		return "P1"
	case "high":
		return "P2"
	case "medium":
		return "P3"
	case "low":
		return "P4"
	default:
		return "P5"
	}
}

func (s *sender) Send(ctx context.Context, msgs []outputs.Message) error {
	for _, m := range msgs {
		alias := outhttp.Truncate(outhttp.Key(m), maxAlias)
		for _, a := range outhttp.PageActions(m) {
			var err error
			switch a {
			case outhttp.PageTrigger:
				err = s.create(ctx, m, alias)
			case outhttp.PageAcknowledge:
				err = s.action(ctx, m, alias, "acknowledge")
			case outhttp.PageResolve:
				err = s.action(ctx, m, alias, "close")
			}
			if err != nil {
				return err
			}
		}
		s.env.Logger.Debug("opsgenie: delivered", "event_id", outhttp.EventID(m), "alias", alias)
	}
	return nil
}

// Create builds the create alert request for m.
func (s *sender) Create(m outputs.Message, alias string) CreateAlert {
	msg := outhttp.Title(m)
	if strings.TrimSpace(msg) == "" {
		msg = "Vigil alert"
	}
	c := CreateAlert{
		Message:     outhttp.Truncate(msg, maxMessage),
		Alias:       alias,
		Description: outhttp.Truncate(m.Text, maxDescription),
		Responders:  s.opts.Responders,
		Tags:        append([]string{}, s.opts.Tags...),
		Source:      s.source,
		Priority:    Priority(outhttp.Severity(m)),
	}
	details := [][2]string{{"event_id", outhttp.EventID(m)}}
	if link := outhttp.ConsoleLink(s.env.PublicURL, m); link != "" {
		details = append(details, [2]string{"vigil_url", link})
	}
	if m.Test {
		details = append(details, [2]string{"test", "true"})
	}
	if ev := m.Event; ev != nil {
		c.Entity = outhttp.Truncate(ev.Tenant, 512)
		details = append(details, [2]string{"event_type", ev.Type}, [2]string{"tenant", ev.Tenant},
			[2]string{"user", ev.User}, [2]string{"src_ip", ev.SrcIP})
	}
	if d := m.Detection; d != nil {
		details = append(details, [2]string{"detection_id", d.ID}, [2]string{"rule_id", d.RuleID},
			[2]string{"status", d.Status}, [2]string{"count", strconv.Itoa(d.Count)}, [2]string{"group_key", d.GroupKey},
			[2]string{"mitre", strings.Join(append(append([]string{}, d.MitreTactics...), d.MitreTechniques...), ",")})
		for _, t := range d.MitreTechniques {
			if len(c.Tags) < maxTags && len(t) <= maxTag {
				c.Tags = append(c.Tags, t)
			}
		}
	}
	// details: at most 8000 characters in all (keys and values), the
	// first ones (ids) kept first.
	c.Details = map[string]string{}
	total := 0
	for _, kv := range details {
		if kv[1] == "" {
			continue
		}
		v := outhttp.Truncate(kv[1], max(0, min(1000, maxDetailsLen-total-len(kv[0]))))
		if v == "" {
			break
		}
		c.Details[kv[0]] = v
		total += len(kv[0]) + len(v)
	}
	return c
}

func (s *sender) create(ctx context.Context, m outputs.Message, alias string) error {
	body, err := json.Marshal(s.Create(m, alias))
	if err != nil {
		return outputs.Permanent(fmt.Errorf("opsgenie: encoding the alert: %w", err))
	}
	return s.post(ctx, s.base+"/v2/alerts", body, "opsgenie create alert")
}

func (s *sender) action(ctx context.Context, m outputs.Message, alias, what string) error {
	ab := ActionBody{Source: s.source, Note: "Vigil: " + outhttp.Label(m, "")}
	if d := m.Detection; d != nil {
		ab.Note += "detection " + d.Status
		if d.Assignee != "" {
			ab.User = outhttp.Truncate(d.Assignee, 100)
		}
	} else {
		ab.Note += "test message"
	}
	body, err := json.Marshal(ab)
	if err != nil {
		return outputs.Permanent(fmt.Errorf("opsgenie: encoding the %s: %w", what, err))
	}
	u := s.base + "/v2/alerts/" + url.PathEscape(alias) + "/" + what + "?identifierType=alias"
	return s.post(ctx, u, body, "opsgenie "+what)
}

func (s *sender) post(ctx context.Context, u string, body []byte, what string) error {
	resp, err := outhttp.Do(ctx, s.env.HTTP, s.env.Now, outhttp.Request{
		Method: "POST", URL: u, Body: body, What: what,
		Header: map[string][]string{
			"Content-Type":  {"application/json"},
			"Authorization": {"GenieKey " + s.key.Reveal()},
		},
		Secrets: []outputs.Secret{s.key},
	})
	if err != nil {
		return err
	}
	if _, err := ParseResponse(resp); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// Response is the Alert API's answer to an asynchronous request:
// 202 {"result": "Request will be processed", "took": 0.302, "requestId": "..."}.
type Response struct {
	Result    string  `json:"result"`
	Took      float64 `json:"took"`
	RequestID string  `json:"requestId"`
}

// ParseResponse reads a 2xx answer. An empty body is accepted (a proxy
// may strip it); a body that is not the documented JSON is an error to
// retry.
func ParseResponse(b []byte) (Response, error) {
	var r Response
	if len(strings.TrimSpace(string(b))) == 0 {
		return r, nil
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("unreadable response: %s", outhttp.Excerpt(b))
	}
	return r, nil
}

func (s *sender) Close() error { return nil }
