package outputs

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"text/template"
	"time"

	"github.com/vigil-sec/vigil/internal/event"
)

// DefaultTemplate is the message text of an output without a template:
// what fired, how bad, which rule and ATT&CK ids, the group, the count and
// a link to the console's detection view when --public-url is set.
const DefaultTemplate = `{{if .Test}}[TEST] {{end}}[{{upper .Severity}}] {{.Title}}
{{- if .Detection}}
Rule: {{.Detection.RuleID}} · Status: {{.Detection.Status}}{{if gt .Detection.Count 1}} · Count: {{.Detection.Count}}{{end}}
{{- if .Detection.GroupKey}}
Group: {{.Detection.GroupKey}}{{end}}
{{- if or .Detection.MitreTactics .Detection.MitreTechniques}}
MITRE ATT&CK: {{join (concat .Detection.MitreTactics .Detection.MitreTechniques) ", "}}{{end}}
{{- else}}
Event: {{.Event.Type}} ({{.Event.Category}}){{if .Event.User}} · user {{.Event.User}}{{end}}{{if .Event.SrcIP}} · from {{.Event.SrcIP}}{{end}}
{{- end}}
{{- if .Link}}
{{.Link}}{{end}}`

// maxText bounds a rendered text: a template looping over a large event
// must not make a message the receiver refuses (or hold the memory).
const maxText = 16 << 10

// TemplateData is what an output's template sees.
type TemplateData struct {
	Event     *event.Event
	Detection *Detection
	// Severity and Title: the detection's, else the event's severity and
	// message (or type).
	Severity string
	Title    string
	// Link is <public-url>/#/detections/<id> for a detection, else
	// <public-url>/#/events/<id>; "" without --public-url.
	Link   string
	Output string
	Test   bool
}

var templateFuncs = template.FuncMap{
	"upper": strings.ToUpper,
	"lower": strings.ToLower,
	"join":  strings.Join,
	"concat": func(a, b []string) []string {
		return append(append([]string(nil), a...), b...)
	},
	"json": func(v any) (string, error) {
		b, err := json.Marshal(v)
		return string(b), err
	},
	"rfc3339": func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
}

// parseTemplate compiles src (the default when empty) and runs it once on
// a sample message, so that a template naming a field that does not
// exist is refused at start, not at the first detection.
func parseTemplate(name, src string) (*template.Template, error) {
	if src == "" {
		src = DefaultTemplate
	}
	t, err := template.New(name).Option("missingkey=error").Funcs(templateFuncs).Parse(src)
	if err != nil {
		return nil, fmt.Errorf("template: %w", err)
	}
	sample := TestMessage(name, "", time.Unix(0, 0))
	if _, err := render(t, name, "https://vigil.example", sample); err != nil {
		return nil, err
	}
	return t, nil
}

// render executes t for m; the text is cut at maxText.
func render(t *template.Template, output, publicURL string, m Message) (string, error) {
	d := TemplateData{Event: m.Event, Detection: m.Detection, Output: output, Test: m.Test}
	if m.Event != nil {
		d.Severity, d.Title = m.Event.Severity.String(), m.Event.Message
		if d.Title == "" {
			d.Title = m.Event.Type
		}
	}
	if m.Detection != nil {
		if m.Detection.Severity != "" {
			d.Severity = m.Detection.Severity
		}
		if m.Detection.Title != "" {
			d.Title = m.Detection.Title
		}
	}
	if publicURL != "" {
		base := strings.TrimRight(publicURL, "/")
		switch {
		case m.Detection != nil && m.Detection.ID != "":
			d.Link = base + "/#/detections/" + url.PathEscape(m.Detection.ID)
		case m.Event != nil:
			d.Link = base + "/#/events/" + url.PathEscape(m.Event.ID)
		}
	}
	var buf bytes.Buffer
	if err := t.Execute(&limitWriter{w: &buf, n: maxText}, d); err != nil && err != errTextLimit {
		return "", fmt.Errorf("template: %w", err)
	}
	return buf.String(), nil
}

var errTextLimit = fmt.Errorf("text longer than %d bytes", maxText)

type limitWriter struct {
	w *bytes.Buffer
	n int
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if len(p) > l.n {
		l.w.Write(p[:l.n])
		l.n = 0
		return 0, errTextLimit
	}
	l.n -= len(p)
	return l.w.Write(p)
}

// TestMessage is the clearly labelled message POST
// /api/v1/outputs/{name}/test sends: a detection of severity info that
// says it is a test, not stored in the log.
func TestMessage(output, tenant string, now time.Time) Message {
	if tenant == "" {
		tenant = "default"
	}
	id := fmt.Sprintf("test-%s-%d", output, now.UnixNano())
	det := &Detection{
		ID: id, RuleID: "vigil-output-test", Title: "Vigil output test: " + output + " (not a real detection)",
		Category: string(event.CategorySystem), Severity: "info", Status: "active", Confidence: 1,
		CreatedAt: now, UpdatedAt: now, GroupKey: "output=" + output, Count: 1, Tenant: tenant,
		MitreTactics: []string{}, MitreTechniques: []string{}, EventIDs: []string{},
	}
	data, _ := json.Marshal(det)
	e := &event.Event{
		ID: id, Time: now, ReceivedAt: now, Type: "detection.created", Category: event.CategoryDetection,
		Severity: event.SeverityInfo, Source: "vigil-outputs", Tenant: tenant,
		Message: det.Title, Action: "active", Tags: []string{"test"}, Data: data,
	}
	return Message{Event: e, Body: e.JSON(), Detection: det, Test: true}
}
