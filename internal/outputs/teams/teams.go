// Package teams is the teams output: a Microsoft Teams Workflows webhook
// ("Post to a channel when a webhook request is received") posting an
// Adaptive Card, the format Microsoft documents for it:
// https://learn.microsoft.com/en-us/microsoftteams/platform/webhooks-and-connectors/how-to/add-incoming-webhook
// (section "Send Adaptive Cards using an Incoming Webhook") and the card
// schema at https://adaptivecards.io/explorer/.
//
// Like Slack's, a Teams webhook cannot edit a posted card: the detection
// lifecycle shows as one card per step (new, updated with its count,
// investigating, resolved). Detections grouped by the core become one
// card. The Workflow URL carries its signature (sig=...) and is the
// credential: it is given as ${ENV} or a file and scrubbed from errors.
package teams

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/vigil-sec/vigil/internal/outputs"
	"github.com/vigil-sec/vigil/internal/outputs/outhttp"
)

// Teams refuses a message larger than 28 KB
// (https://learn.microsoft.com/en-us/microsoftteams/platform/webhooks-and-connectors/how-to/connectors-using#rate-limiting-for-connectors):
// a grouped card shows as many detections as fit under maxBytes.
const (
	maxBytes     = 24 << 10
	maxCards     = 20
	maxTextBlock = 2000
	maxFact      = 300
)

// Options are the teams output's own keys: webhook_url, the Workflow's
// HTTP trigger URL (as ${ENV}), or webhook_url_file.
type Options = outhttp.WebhookOptions

// Type is the teams output type.
func Type() outputs.Type {
	return outhttp.WebhookType("teams", "teams workflow", Build, nil)
}

// Message is the webhook body: a message with one Adaptive Card
// attachment.
type Message struct {
	Type        string       `json:"type"` // "message"
	Attachments []Attachment `json:"attachments"`
}

// Attachment carries the card.
type Attachment struct {
	ContentType string  `json:"contentType"` // application/vnd.microsoft.card.adaptive
	ContentURL  *string `json:"contentUrl"`  // null, as in Microsoft's example
	Content     Card    `json:"content"`
}

// Card is an Adaptive Card.
type Card struct {
	Schema  string    `json:"$schema"`
	Type    string    `json:"type"` // AdaptiveCard
	Version string    `json:"version"`
	Body    []Element `json:"body"`
	Actions []Action  `json:"actions,omitempty"`
	MSTeams *MSTeams  `json:"msteams,omitempty"`
}

// MSTeams holds Teams' card extensions: full width for readable facts.
type MSTeams struct {
	Width string `json:"width"`
}

// Element is a card element: TextBlock, FactSet or Container.
type Element struct {
	Type      string    `json:"type"`
	Text      string    `json:"text,omitempty"`
	Size      string    `json:"size,omitempty"`
	Weight    string    `json:"weight,omitempty"`
	Color     string    `json:"color,omitempty"`
	Wrap      bool      `json:"wrap,omitempty"`
	IsSubtle  bool      `json:"isSubtle,omitempty"`
	Separator bool      `json:"separator,omitempty"`
	Facts     []Fact    `json:"facts,omitempty"`
	Items     []Element `json:"items,omitempty"`
	Style     string    `json:"style,omitempty"`
}

// Fact is one title/value line of a FactSet.
type Fact struct {
	Title string `json:"title"`
	Value string `json:"value"`
}

// Action is an Action.OpenUrl button.
type Action struct {
	Type  string `json:"type"`
	Title string `json:"title"`
	URL   string `json:"url"`
}

// state is the lifecycle step m shows, and the card colour for it.
func state(m outputs.Message) (word, color string) {
	st := outhttp.StepOf(m)
	switch st {
	case outhttp.StepTest:
		return st.String(), "accent"
	case outhttp.StepInvestigating:
		return st.String(), "warning"
	case outhttp.StepResolved, outhttp.StepFalsePositive:
		return st.String(), "good"
	case outhttp.StepNew, outhttp.StepUpdated:
		return st.String(), "attention"
	}
	return st.String(), "default"
}

// Build lays out msgs as one Teams message holding one card of at most
// maxBytes (the first detections, then "and N more").
func Build(msgs []outputs.Message, publicURL string) Message {
	n := min(len(msgs), maxCards)
	for {
		out := build(msgs, publicURL, n)
		if n <= 1 {
			return out
		}
		if b, err := json.Marshal(out); err == nil && len(b) <= maxBytes {
			return out
		}
		n--
	}
}

func build(msgs []outputs.Message, publicURL string, shown int) Message {
	card := Card{
		Schema:  "http://adaptivecards.io/schemas/adaptive-card.json",
		Type:    "AdaptiveCard",
		Version: "1.4",
		MSTeams: &MSTeams{Width: "Full"},
	}
	if len(msgs) > 1 {
		card.Body = append(card.Body, Element{Type: "TextBlock", Text: outhttp.GroupTitle(msgs), Size: "Large", Weight: "Bolder", Wrap: true})
	}
	for i, m := range msgs {
		if i == shown {
			card.Body = append(card.Body, Element{Type: "TextBlock", Text: fmt.Sprintf("… and %d more", len(msgs)-shown), IsSubtle: true, Wrap: true})
			break
		}
		c := container(m, i > 0)
		card.Body = append(card.Body, c)
		if link := outhttp.ConsoleLink(publicURL, m); link != "" && len(card.Actions) < 5 {
			title := "Open in Vigil"
			if len(msgs) > 1 {
				title = outhttp.Truncate("Open: "+outhttp.Title(m), 60)
			}
			card.Actions = append(card.Actions, Action{Type: "Action.OpenUrl", Title: title, URL: link})
		}
	}
	return Message{Type: "message", Attachments: []Attachment{{
		ContentType: "application/vnd.microsoft.card.adaptive", Content: card,
	}}}
}

func container(m outputs.Message, separator bool) Element {
	word, color := state(m)
	title := outhttp.Title(m)
	if strings.TrimSpace(title) == "" {
		title = "Vigil alert"
	}
	items := []Element{
		{Type: "TextBlock", Text: outhttp.Truncate(word+": "+title, maxTextBlock), Size: "Medium", Weight: "Bolder", Color: color, Wrap: true},
	}
	if m.Text != "" && m.Text != title {
		items = append(items, Element{Type: "TextBlock", Text: outhttp.Truncate(m.Text, maxTextBlock), Wrap: true})
	}
	var facts []Fact
	fact := func(t, v string) {
		if v != "" {
			facts = append(facts, Fact{Title: t, Value: outhttp.Truncate(v, maxFact)})
		}
	}
	for _, f := range outhttp.Fields(m) {
		fact(f.Name, f.Value)
	}
	if ev := m.Event; ev != nil {
		fact("Tenant", ev.Tenant)
		fact("Event", ev.ID)
		fact("Time", ev.Time.UTC().Format(time.RFC3339))
	}
	items = append(items, Element{Type: "FactSet", Facts: facts})
	return Element{Type: "Container", Items: items, Separator: separator}
}
