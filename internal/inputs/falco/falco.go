// Package falco accepts Falco's alerts at POST /api/v1/inputs/falco (issue
// 9, item 6), so Falco's http_output (or Falcosidekick's webhook output)
// can point straight at Vigil. An alert is mapped into one event and
// published through ingest.Service like a REST event; the answer comes
// after the log acknowledged it, and the alert's uuid is the event's id, so
// a retry by Falco is deduplicated.
//
// The alert format is Falco's JSON output (json_output: true, which
// http_output posts): https://falco.org/docs/concepts/outputs/channels/
// (http_output) and https://falco.org/docs/concepts/outputs/formatting/;
// the same fields as Falcosidekick's FalcoPayload
// (github.com/falcosecurity/falcosidekick, types/types.go): uuid, output,
// priority, rule, time, output_fields, source, tags, hostname. Example:
//
//	{"uuid":"2f5d...","output":"10:20:05.408091526: Warning Sensitive file opened for reading by non-trusted program (user=root command=cat /etc/shadow file=/etc/shadow)",
//	 "priority":"Warning","rule":"Read sensitive file untrusted","time":"2026-11-30T10:20:05.408091526Z",
//	 "output_fields":{"evt.time":1764498005408091526,"fd.name":"/etc/shadow","proc.cmdline":"cat /etc/shadow","user.name":"root"},
//	 "source":"syscall","tags":["filesystem","mitre_credential_access","T1555"],"hostname":"node-1"}
package falco

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"net/netip"
	"regexp"
	"strings"
	"time"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/domain"
	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/ingest"
	"github.com/vigil-sec/vigil/internal/inputs"
)

// Input is the metric label and source suffix of this input.
const Input = "falco"

// Alert is one Falco alert as Falco's JSON output carries it.
type Alert struct {
	UUID         string
	Rule         string
	Priority     string
	Output       string
	OutputFields map[string]any // values as Falco sent them (numbers as json.Number)
	Tags         []string
	Hostname     string
	Time         time.Time
	Source       string
}

// Decode parses one alert. The JSON is checked as strictly as REST ingest
// (event.CheckJSON: no duplicate key, valid UTF-8), field names must match
// exactly (encoding/json would fill "rule" from "Rule"), and unknown
// fields are ignored: Falco adds fields over releases (uuid, hostname and
// tags came later), and refusing them would drop alerts after an upgrade.
func Decode(body []byte) (*Alert, error) {
	if err := event.CheckJSON(body); err != nil {
		return nil, fmt.Errorf("falco alert: %w", err)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, fmt.Errorf("falco alert: not a JSON object: %w", err)
	}
	if raw == nil {
		return nil, errors.New("falco alert: not a JSON object")
	}
	a := &Alert{}
	str := func(name string, dst *string) error {
		v, ok := raw[name]
		if !ok || string(v) == "null" {
			return nil
		}
		if err := json.Unmarshal(v, dst); err != nil {
			return fmt.Errorf("falco alert: %s: must be a string", name)
		}
		return nil
	}
	for _, f := range []struct {
		name string
		dst  *string
	}{{"uuid", &a.UUID}, {"rule", &a.Rule}, {"priority", &a.Priority}, {"output", &a.Output}, {"hostname", &a.Hostname}, {"source", &a.Source}} {
		if err := str(f.name, f.dst); err != nil {
			return nil, err
		}
	}
	if a.Rule == "" {
		return nil, errors.New("falco alert: rule: required")
	}
	if a.Priority == "" {
		return nil, errors.New("falco alert: priority: required")
	}
	if v, ok := raw["time"]; ok && string(v) != "null" {
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return nil, errors.New("falco alert: time: must be an RFC 3339 string")
		}
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return nil, fmt.Errorf("falco alert: time: %q is not an RFC 3339 time", s)
		}
		a.Time = t
	}
	if v, ok := raw["tags"]; ok && string(v) != "null" {
		if err := json.Unmarshal(v, &a.Tags); err != nil {
			return nil, errors.New("falco alert: tags: must be an array of strings")
		}
	}
	if v, ok := raw["output_fields"]; ok && string(v) != "null" {
		dec := json.NewDecoder(bytes.NewReader(v))
		dec.UseNumber() // evt.time is nanoseconds: a float64 would round it
		if err := dec.Decode(&a.OutputFields); err != nil {
			return nil, errors.New("falco alert: output_fields: must be a JSON object")
		}
	}
	return a, nil
}

// Severity maps a Falco priority (case-insensitive; Falco's eight syslog-
// like levels, https://falco.org/docs/concepts/rules/basic-elements/) to a
// Vigil severity.
func Severity(priority string) (event.Severity, error) {
	switch strings.ToLower(priority) {
	case "emergency", "alert", "critical":
		return event.SeverityCritical, nil
	case "error":
		return event.SeverityHigh, nil
	case "warning":
		return event.SeverityMedium, nil
	case "notice":
		return event.SeverityLow, nil
	case "informational", "info", "debug":
		return event.SeverityInfo, nil
	}
	return 0, fmt.Errorf("falco alert: priority: unknown value %q (valid: Emergency, Alert, Critical, Error, Warning, Notice, Informational, Debug)", priority)
}

// tactics maps Falco's mitre_* tags to the MITRE ATT&CK enterprise tactic
// ids (the 14 tactics of https://attack.mitre.org/tactics/enterprise/).
var tactics = map[string]string{
	"reconnaissance":       "TA0043",
	"resource_development": "TA0042",
	"initial_access":       "TA0001",
	"execution":            "TA0002",
	"persistence":          "TA0003",
	"privilege_escalation": "TA0004",
	"defense_evasion":      "TA0005",
	"credential_access":    "TA0006",
	"discovery":            "TA0007",
	"lateral_movement":     "TA0008",
	"collection":           "TA0009",
	"command_and_control":  "TA0011",
	"exfiltration":         "TA0010",
	"impact":               "TA0040",
}

// technique matches an ATT&CK technique or sub-technique id (T1059,
// T1059.004), the form Falco's rules tag them with.
var technique = regexp.MustCompile(`^[Tt][0-9]{4}(\.[0-9]{3})?$`)

// TypePrefix starts the type of every Falco event: threat.falco.<rule>.
const TypePrefix = "threat.falco."

// Map turns an alert into an event:
//   - type threat.falco.<rule as a slug>, category threat_intel: a Falco
//     alert is a runtime threat detection by an outside sensor. Not the
//     detection category, which is reserved for Vigil's own rule engine
//     (and needs an explicit grant to publish): rules can match
//     type "threat.falco.*" or data.rule;
//   - priority → severity (Severity), output → message, hostname →
//     source "<hostname>/falco", uuid → id, time → time;
//   - output_fields → data, each name with '.' turned into '_'
//     (proc.name → data.proc_name) so filters and rules can address them
//     as data.proc_name; user.name → user, user.uid → user_id, fd.rip /
//     fd.cip / fd.sip (the first that is an IP) → src_ip, fd.name →
//     resource, all also kept in data;
//   - tags → tags; T#### tags → mitre_techniques; mitre_<tactic> tags →
//     mitre_tactics as TA ids.
//
// data also holds rule, priority and source, Falco's own names.
func Map(a *Alert) (*event.Event, error) {
	sev, err := Severity(a.Priority)
	if err != nil {
		return nil, err
	}
	ev := &event.Event{
		ID: a.UUID, Time: a.Time, Type: TypePrefix + slug(a.Rule, 128-len(TypePrefix)),
		Category: event.CategoryThreatIntel, Severity: sev, Message: a.Output,
		Source: Input,
	}
	if a.Hostname != "" {
		ev.Source = a.Hostname + "/" + Input
	}
	data := make(map[string]any, len(a.OutputFields)+3)
	for k, v := range a.OutputFields {
		data[strings.ReplaceAll(k, ".", "_")] = v
	}
	data["rule"], data["priority"] = a.Rule, a.Priority
	if a.Source != "" {
		data["source"] = a.Source
	}
	ev.User = fieldString(a.OutputFields, "user.name")
	ev.UserID = fieldString(a.OutputFields, "user.uid")
	ev.Resource = fieldString(a.OutputFields, "fd.name")
	for _, k := range []string{"fd.rip", "fd.cip", "fd.sip"} {
		if s := fieldString(a.OutputFields, k); s != "" {
			if ip, err := netip.ParseAddr(s); err == nil {
				ev.SrcIP = ip.String()
				break
			}
		}
	}
	for _, tag := range a.Tags {
		if tag == "" {
			continue // an empty tag is invalid in an event; it says nothing
		}
		ev.Tags = append(ev.Tags, tag)
		switch {
		case technique.MatchString(tag):
			ev.MitreTechniques = appendNew(ev.MitreTechniques, strings.ToUpper(tag))
		case strings.HasPrefix(strings.ToLower(tag), "mitre_"):
			if id, ok := tactics[strings.ToLower(tag)[len("mitre_"):]]; ok {
				ev.MitreTactics = appendNew(ev.MitreTactics, id)
			}
		}
	}
	raw, err := json.Marshal(data)
	if err != nil {
		return nil, fmt.Errorf("falco alert: output_fields: %w", err)
	}
	ev.Data = raw
	return ev, nil
}

func appendNew(list []string, s string) []string {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}

// fieldString returns output field k as text ("" when absent or null;
// Falco prints "<NA>" for a field it could not resolve, which is no value).
func fieldString(f map[string]any, k string) string {
	switch v := f[k].(type) {
	case string:
		if v == "<NA>" {
			return ""
		}
		return v
	case json.Number:
		return v.String()
	}
	return ""
}

// slug turns a rule name into one type segment: lower-case letters and
// digits, every other run of characters one '_', at most max bytes.
// "Read sensitive file untrusted" → "read_sensitive_file_untrusted".
func slug(rule string, max int) string {
	var b strings.Builder
	pendingSep := false
	for _, r := range strings.ToLower(rule) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			if pendingSep && b.Len() > 0 {
				b.WriteByte('_')
			}
			pendingSep = false
			b.WriteRune(r)
			continue
		}
		pendingSep = true
	}
	s := strings.TrimRight(b.String()[:min(b.Len(), max)], "_")
	if s == "" {
		return "unnamed"
	}
	return s
}

// Handler serves POST /api/v1/inputs/falco behind auth.Require: a
// publisher (or admin) token, one alert per request (Falco posts each
// alert on its own), the body bounded by the ingest event limit.
// Build it with NewHandler.
type Handler struct {
	Ingest   *ingest.Service
	Metrics  *inputs.Metrics  // nil: not counted
	Logger   *slog.Logger     // nil: refusals are not logged
	refusals *inputs.Refusals // counted always, logged at a bounded rate
}

// NewHandler returns the handler; m and log may be nil.
func NewHandler(ing *ingest.Service, m *inputs.Metrics, log *slog.Logger) *Handler {
	return &Handler{Ingest: ing, Metrics: m, Logger: log, refusals: inputs.NewRefusals(Input, "falco input: alert refused", m, log)}
}

// refused counts a refusal and logs it at a bounded rate.
func (h *Handler) refused(r *http.Request, reason string, err error) {
	h.refusals.Refuse(r.RemoteAddr, reason, 1, 0, err)
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p, _ := auth.FromContext(r.Context())
	if !p.CanPublish() {
		auth.WriteErr(w, domain.Errorf(domain.KindForbidden, "role %s may not publish events", p.Role))
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
			w.Header().Set("Accept-Post", "application/json")
			auth.WriteError(w, http.StatusUnsupportedMediaType, fmt.Sprintf("Content-Type %q: Falco alerts are application/json", ct))
			return
		}
	}
	body, err := ingest.ReadBody(w, r, int64(h.Ingest.Limits().MaxEventBytes))
	if err != nil {
		h.refused(r, bodyReason(err), err)
		ingest.WriteBodyError(w, err)
		return
	}
	h.Metrics.Receive(Input, 1)
	alert, err := Decode(body)
	var ev *event.Event
	if err == nil {
		ev, err = Map(alert)
	}
	if err != nil {
		h.refused(r, "decode", err)
		auth.WriteErr(w, domain.Errorf(domain.KindInvalid, "%w", err))
		return
	}
	acks, err := h.Ingest.Publish(r.Context(), p, []*event.Event{ev})
	if err != nil {
		h.refused(r, reason(err), err)
		ingest.WritePublishError(w, err)
		return
	}
	h.Metrics.Store(Input, len(acks))
	ingest.WriteAcks(w, acks)
}

// bodyReason is the errors{reason} label of a body that could not be read.
func bodyReason(err error) string {
	var tl *ingest.ErrBodyTooLarge
	if errors.As(err, &tl) {
		return "too_large"
	}
	return "read"
}

// reason is the errors{reason} label of a refused publish.
func reason(err error) string {
	var tl *ingest.ErrBodyTooLarge
	var be *event.BatchError
	switch {
	case errors.As(err, &tl):
		return "too_large"
	case errors.As(err, &be):
		return "invalid"
	case errors.Is(err, ingest.ErrForbidden):
		return "forbidden"
	}
	return "store"
}
