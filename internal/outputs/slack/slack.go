// Package slack is the slack output: a Slack incoming webhook
// (https://api.slack.com/messaging/webhooks) posting Block Kit messages
// (https://api.slack.com/reference/block-kit/blocks).
//
// An incoming webhook cannot edit a message it posted, so the detection
// lifecycle shows as one message per step, each saying the state (new,
// updated with its count, investigating, resolved); repeat_interval keeps
// count updates from flooding the channel. Detections the core groups
// (group_wait) arrive in one Send and become one message. Slack has no
// idempotency key for webhooks: the event id is printed in each message
// so that a repeat after a retry is recognisable.
package slack

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/vigil-sec/vigil/internal/outputs"
	"github.com/vigil-sec/vigil/internal/outputs/outhttp"
)

// Block Kit limits (https://api.slack.com/reference/block-kit/blocks).
const (
	maxBlocks        = 50
	maxHeaderText    = 150
	maxSectionText   = 3000
	maxFieldText     = 2000
	maxFields        = 10
	maxContextElems  = 10
	maxFallbackText  = 3000
	blocksPerMessage = 4 // section, fields, context, divider
)

// Options are the slack output's own keys: webhook_url, the incoming
// webhook's URL, which is its credential (as ${ENV}), or webhook_url_file.
type Options = outhttp.WebhookOptions

// Type is the slack output type.
func Type() outputs.Type {
	return outhttp.WebhookType("slack", "slack webhook", Build, CheckResponse)
}

// Message is the webhook body: text is the notification fallback, blocks
// the layout.
type Message struct {
	Text   string  `json:"text"`
	Blocks []Block `json:"blocks"`
}

// Block is one layout block (header, section, context, actions, divider).
type Block struct {
	Type      string    `json:"type"`
	Text      *Text     `json:"text,omitempty"`
	Fields    []Text    `json:"fields,omitempty"`
	Elements  []Element `json:"elements,omitempty"`
	Accessory *Element  `json:"accessory,omitempty"`
}

// Text is a composition text object.
type Text struct {
	Type string `json:"type"` // plain_text or mrkdwn
	Text string `json:"text"`
}

// Element is a context element (a text object) or a button.
type Element struct {
	Type string `json:"type"`
	Text any    `json:"text,omitempty"` // string for mrkdwn/plain_text, *Text for a button
	URL  string `json:"url,omitempty"`
}

// Escape escapes the three characters Slack's mrkdwn gives meaning to
// (https://api.slack.com/reference/surfaces/formatting#escaping): a
// detection title must not become a link or a mention.
func Escape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

// state is the lifecycle step m shows, and its emoji.
func state(m outputs.Message) (emoji, word string) {
	st := outhttp.StepOf(m)
	switch st {
	case outhttp.StepTest:
		return ":test_tube:", st.String()
	case outhttp.StepInvestigating:
		return ":eyes:", st.String()
	case outhttp.StepResolved, outhttp.StepFalsePositive:
		return ":white_check_mark:", st.String()
	case outhttp.StepNew, outhttp.StepUpdated:
		return ":red_circle:", st.String()
	}
	return ":large_blue_circle:", st.String()
}

// Build lays out msgs as one Slack message.
func Build(msgs []outputs.Message, publicURL string) Message {
	var out Message
	titles := make([]string, 0, len(msgs))
	for _, m := range msgs {
		_, word := state(m)
		titles = append(titles, word+": "+outhttp.Title(m))
	}
	// The top-level text is mrkdwn too (it is what notifications show).
	out.Text = outhttp.Truncate(Escape(strings.Join(titles, "; ")), maxFallbackText)
	header := titles[0]
	if strings.TrimSpace(header) == "" {
		header = "Vigil alert"
	}
	if len(msgs) > 1 {
		header = outhttp.GroupTitle(msgs)
	}
	out.Blocks = append(out.Blocks, Block{Type: "header", Text: &Text{Type: "plain_text", Text: outhttp.Truncate(header, maxHeaderText)}})
	room := (maxBlocks - 2) / blocksPerMessage // keep one block for "and N more"
	for i, m := range msgs {
		if i == room && len(msgs) > room {
			out.Blocks = append(out.Blocks, Block{Type: "context", Elements: []Element{{Type: "mrkdwn",
				Text: fmt.Sprintf("… and %d more", len(msgs)-room)}}})
			break
		}
		if i > 0 {
			out.Blocks = append(out.Blocks, Block{Type: "divider"})
		}
		out.Blocks = append(out.Blocks, blocks(m, publicURL)...)
	}
	return out
}

func blocks(m outputs.Message, publicURL string) []Block {
	emoji, word := state(m)
	text := m.Text
	if text == "" {
		text = outhttp.Title(m)
	}
	sec := Block{Type: "section", Text: &Text{Type: "mrkdwn",
		Text: outhttp.Truncate(emoji+" *"+word+"* "+Escape(outhttp.Label(m, ""))+Escape(text), maxSectionText)}}
	if link := outhttp.ConsoleLink(publicURL, m); link != "" {
		sec.Accessory = &Element{Type: "button", Text: &Text{Type: "plain_text", Text: "Open in Vigil"}, URL: link}
	}
	var fields []Text
	for _, f := range outhttp.Fields(m) {
		if len(fields) == maxFields {
			break
		}
		fields = append(fields, Text{Type: "mrkdwn", Text: outhttp.Truncate("*"+f.Name+"*\n"+Escape(f.Value), maxFieldText)})
	}
	out := []Block{sec}
	if len(fields) > 0 {
		out = append(out, Block{Type: "section", Fields: fields})
	}
	var ctx []Element
	if ev := m.Event; ev != nil {
		ctx = append(ctx, Element{Type: "mrkdwn", Text: "event `" + Escape(ev.ID) + "`"})
		if ev.Tenant != "" {
			ctx = append(ctx, Element{Type: "mrkdwn", Text: "tenant " + Escape(ev.Tenant)})
		}
		ctx = append(ctx, Element{Type: "mrkdwn", Text: ev.Time.UTC().Format(time.RFC3339)})
	}
	if len(ctx) > 0 {
		out = append(out, Block{Type: "context", Elements: ctx})
	}
	return out
}

// CheckResponse reads a 2xx answer: incoming webhooks answer "ok";
// webhooks of Slack's workflow builder answer {"ok":true}. A JSON
// {"ok":false,"error":...} is a refusal that retrying cannot fix; any
// other 2xx body is taken as accepted.
func CheckResponse(b []byte) error {
	t := strings.TrimSpace(string(b))
	if t == "" || t == "ok" || !strings.HasPrefix(t, "{") {
		return nil
	}
	var r struct {
		OK    *bool  `json:"ok"`
		Error string `json:"error"`
	}
	if json.Unmarshal(b, &r) != nil || r.OK == nil || *r.OK {
		return nil
	}
	return outputs.Permanent(fmt.Errorf("slack webhook refused the message: %s", outhttp.Excerpt([]byte(r.Error))))
}
