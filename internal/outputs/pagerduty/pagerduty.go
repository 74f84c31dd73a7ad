// Package pagerduty is the pagerduty output: PagerDuty Events API v2
// (https://developer.pagerduty.com/api-reference/368ae3d938c9e-send-an-event-to-pager-duty),
// following the detection lifecycle (SPEC 13).
//
// A detection triggers an alert whose dedup_key is the detection id, so a
// count update re-triggers the same alert (PagerDuty merges it: no new
// page), investigating acknowledges it and resolved/false_positive
// resolves it. Any other event triggers with its event id as dedup_key,
// which also makes a retried request a repeat PagerDuty drops. A test
// message is triggered labelled [TEST] and resolved right away.
package pagerduty

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/vigil-sec/vigil/internal/outputs"
	"github.com/vigil-sec/vigil/internal/outputs/outhttp"
)

// DefaultURL is the Events API v2 endpoint.
const DefaultURL = "https://events.pagerduty.com/v2/enqueue"

// Limits of the Events API v2 (see the reference above).
const (
	maxSummary  = 1024
	maxDedupKey = 255
)

// Options are the pagerduty output's own keys.
type Options struct {
	// RoutingKey is the integration key of the service's Events API v2
	// integration, as ${ENV}; or RoutingKeyFile, a file holding it.
	RoutingKey     string `yaml:"routing_key"`
	RoutingKeyFile string `yaml:"routing_key_file"`
	// APIURL overrides the endpoint (a proxy, or the EU service region's
	// https://events.eu.pagerduty.com/v2/enqueue).
	APIURL string `yaml:"api_url"`
	// Source is payload.source (default "vigil").
	Source string `yaml:"source"`
}

// Type is the pagerduty output type.
func Type() outputs.Type {
	return outputs.Type{
		Name:       "pagerduty",
		NewOptions: func() any { return &Options{} },
		New:        newSender,
	}
}

type sender struct {
	key    outputs.Secret
	url    string
	source string
	env    outputs.Env
}

func newSender(o any, env outputs.Env) (outputs.Sender, error) {
	opts, ok := o.(*Options)
	if !ok {
		return nil, fmt.Errorf("pagerduty: options are %T, not *pagerduty.Options", o)
	}
	key, err := outhttp.RequiredSecret("routing_key", opts.RoutingKey, opts.RoutingKeyFile)
	if err != nil {
		return nil, err
	}
	s := &sender{key: key, url: opts.APIURL, source: opts.Source, env: env}
	if s.url == "" {
		s.url = DefaultURL
	}
	if err := outhttp.CheckURL("api_url", s.url); err != nil {
		return nil, err
	}
	if s.source == "" {
		s.source = "vigil"
	}
	if s.env.Now == nil {
		s.env.Now = time.Now
	}
	return s, nil
}

// Event is the Events API v2 request body.
type Event struct {
	RoutingKey  string   `json:"routing_key"`
	EventAction string   `json:"event_action"`
	DedupKey    string   `json:"dedup_key"`
	Payload     *Payload `json:"payload,omitempty"`
	Client      string   `json:"client,omitempty"`
	ClientURL   string   `json:"client_url,omitempty"`
	Links       []Link   `json:"links,omitempty"`
}

// Payload is the alert's content (trigger only).
type Payload struct {
	Summary       string         `json:"summary"`
	Source        string         `json:"source"`
	Severity      string         `json:"severity"`
	Timestamp     string         `json:"timestamp,omitempty"`
	Component     string         `json:"component,omitempty"`
	Group         string         `json:"group,omitempty"`
	Class         string         `json:"class,omitempty"`
	CustomDetails map[string]any `json:"custom_details,omitempty"`
}

// Link is a link shown on the alert.
type Link struct {
	Href string `json:"href"`
	Text string `json:"text,omitempty"`
}

// Severity maps a SPEC severity to PagerDuty's four.
func Severity(s string) string {
	switch s {
	case "critical":
		return "critical"
	case "high":
		return "error"
	case "medium":
		return "warning"
	default:
		return "info"
	}
}

func (s *sender) Send(ctx context.Context, msgs []outputs.Message) error {
	for _, m := range msgs {
		for _, ev := range s.events(m) {
			if err := s.post(ctx, ev); err != nil {
				return err
			}
		}
		s.env.Logger.Debug("pagerduty: delivered", "event_id", outhttp.EventID(m), "dedup_key", outhttp.Key(m))
	}
	return nil
}

// events is what m becomes: one event, or a trigger and its resolve for
// a test message.
func (s *sender) events(m outputs.Message) []Event {
	key := outhttp.Truncate(outhttp.Key(m), maxDedupKey)
	var out []Event
	for _, a := range outhttp.PageActions(m) {
		switch a {
		case outhttp.PageTrigger:
			out = append(out, s.trigger(m, key))
		case outhttp.PageAcknowledge:
			out = append(out, Event{RoutingKey: s.key.Reveal(), EventAction: "acknowledge", DedupKey: key})
		case outhttp.PageResolve:
			out = append(out, Event{RoutingKey: s.key.Reveal(), EventAction: "resolve", DedupKey: key})
		}
	}
	return out
}

func (s *sender) trigger(m outputs.Message, key string) Event {
	summary := outhttp.Title(m)
	if summary == "" {
		summary = "Vigil event"
	}
	p := &Payload{
		Summary:  outhttp.Truncate(summary, maxSummary),
		Source:   s.source,
		Severity: Severity(outhttp.Severity(m)),
	}
	details := map[string]any{"event_id": outhttp.EventID(m)}
	if m.Text != "" {
		details["text"] = m.Text
	}
	if m.Test {
		details["test"] = true
	}
	if ev := m.Event; ev != nil {
		p.Timestamp = ev.Time.UTC().Format(time.RFC3339Nano)
		p.Class = ev.Type
		p.Group = ev.Tenant
		if ev.Source != "" {
			p.Component = ev.Source
		}
		details["event_type"] = ev.Type
		details["category"] = string(ev.Category)
		if ev.User != "" {
			details["user"] = ev.User
		}
		if ev.SrcIP != "" {
			details["src_ip"] = ev.SrcIP
		}
	}
	if d := m.Detection; d != nil {
		p.Class = d.RuleID
		p.Group = d.Tenant
		p.Component = d.Category
		if !d.UpdatedAt.IsZero() {
			p.Timestamp = d.UpdatedAt.UTC().Format(time.RFC3339Nano)
		}
		details["detection_id"] = d.ID
		details["rule_id"] = d.RuleID
		details["status"] = d.Status
		details["count"] = d.Count
		details["group_key"] = d.GroupKey
		details["confidence"] = d.Confidence
		if len(d.MitreTactics) > 0 {
			details["mitre_tactics"] = d.MitreTactics
		}
		if len(d.MitreTechniques) > 0 {
			details["mitre_techniques"] = d.MitreTechniques
		}
	}
	p.CustomDetails = details
	ev := Event{RoutingKey: s.key.Reveal(), EventAction: "trigger", DedupKey: key, Payload: p, Client: "Vigil"}
	if link := outhttp.ConsoleLink(s.env.PublicURL, m); link != "" {
		ev.ClientURL = link
		ev.Links = []Link{{Href: link, Text: "Open in Vigil"}}
	}
	return ev
}

func (s *sender) post(ctx context.Context, ev Event) error {
	body, err := json.Marshal(ev)
	if err != nil {
		return outputs.Permanent(fmt.Errorf("pagerduty: encoding the event: %w", err))
	}
	resp, err := outhttp.Do(ctx, s.env.HTTP, s.env.Now, outhttp.Request{
		Method: "POST", URL: s.url, Body: body, What: "pagerduty " + ev.EventAction,
		Header:  map[string][]string{"Content-Type": {"application/json"}},
		Secrets: []outputs.Secret{s.key},
	})
	if err != nil {
		return err
	}
	if _, err := ParseResponse(resp); err != nil {
		return fmt.Errorf("pagerduty %s: %w", ev.EventAction, err)
	}
	return nil
}

// Response is the Events API v2 answer.
type Response struct {
	Status   string   `json:"status"`
	Message  string   `json:"message"`
	DedupKey string   `json:"dedup_key"`
	Errors   []string `json:"errors"`
}

// ParseResponse reads a 2xx answer: {"status":"success", ...}. An empty
// body is accepted (a proxy may strip it); any other status is an error
// (retryable: PagerDuty answers 400 for an invalid event, not 2xx).
func ParseResponse(b []byte) (Response, error) {
	var r Response
	if len(b) == 0 {
		return r, nil
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("unreadable response: %s", outhttp.Excerpt(b))
	}
	if r.Status != "" && r.Status != "success" {
		return r, fmt.Errorf("status %s: %s", strconv.Quote(outhttp.Excerpt([]byte(r.Status))), outhttp.Excerpt([]byte(r.Message)))
	}
	return r, nil
}

func (s *sender) Close() error { return nil }
