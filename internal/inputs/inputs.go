// Package inputs turns records from the tools teams already run (syslog
// lines, CEF, OTLP log records, Falco alerts) into Vigil events (issue 9).
// It is the core of the input adapters: a Message is one record as any
// input received it, a Mapper turns a Message into an event, and a Chain
// tries mappers in order and never loses a record: a message no mapper
// claims becomes a system.<input>.unparsed event carrying the raw text.
//
// The inputs themselves (internal/inputs/syslog, .../otlp, .../falco) read
// their protocol, build Messages or events, and publish through the one
// ingest path (ingest.Service), so validation, tenant stamping,
// secret-field dropping and dedup are the same as for REST.
package inputs

import (
	"encoding/json"
	"time"

	"github.com/vigil-sec/vigil/internal/event"
)

// Message is one record as an input received it, before it is an event.
type Message struct {
	Input    string    // "syslog", "otlp", "falco", ...: names the metric label and the fallback type
	Time     time.Time // the record's own time; zero when it carries none
	Remote   string    // the peer's address (host:port)
	Hostname string
	AppName  string // syslog APP-NAME / RFC 3164 TAG, e.g. "sshd"
	ProcID   string
	MsgID    string
	// Facility and Severity are the syslog numbers (RFC 5424 6.2.1), -1
	// when the record carries none.
	Facility int
	Severity int
	Text     string // the message body, e.g. "Failed password for root from 203.0.113.7 port 22 ssh2"
	// Fields holds structured fields the input decoded (RFC 5424
	// structured data as "sd-id.param", OTLP attributes), nil if none.
	Fields map[string]string
}

// Mapper turns a message into an event. ok is false when the mapper does
// not recognise the message (the chain then tries the next one).
type Mapper interface {
	Map(m *Message) (ev *event.Event, ok bool)
}

// MapperFunc adapts a function to Mapper.
type MapperFunc func(m *Message) (*event.Event, bool)

// Map calls f.
func (f MapperFunc) Map(m *Message) (*event.Event, bool) { return f(m) }

// Chain tries its mappers in order; the first that recognises a message
// makes the event.
type Chain []Mapper

// Map returns the event of the first mapper that recognises m, else the
// fallback event (Unparsed): a chain never drops a message.
func (c Chain) Map(m *Message) *event.Event {
	for _, mp := range c {
		if ev, ok := mp.Map(m); ok {
			fill(ev, m)
			return ev
		}
	}
	return Unparsed(m)
}

// Unparsed is the event of a message no mapper recognised: type
// system.<input>.unparsed, the raw text as its message, the syslog
// header fields in data, so it can still be searched and matched.
func Unparsed(m *Message) *event.Event {
	data := map[string]any{"input": m.Input}
	for k, v := range map[string]string{"hostname": m.Hostname, "app_name": m.AppName, "proc_id": m.ProcID, "msg_id": m.MsgID} {
		if v != "" {
			data[k] = v
		}
	}
	if m.Facility >= 0 {
		data["facility"] = m.Facility
	}
	if m.Severity >= 0 {
		data["syslog_severity"] = m.Severity
	}
	for k, v := range m.Fields {
		data[k] = v
	}
	raw, _ := json.Marshal(data) // a map of strings and ints always encodes
	ev := &event.Event{
		Type: "system." + m.Input + ".unparsed", Category: event.CategorySystem,
		Severity: SyslogSeverity(m.Severity), Message: m.Text, Data: raw,
	}
	fill(ev, m)
	return ev
}

// fill sets what every event from an input carries unless its mapper set it.
func fill(ev *event.Event, m *Message) {
	if ev.Time.IsZero() {
		ev.Time = m.Time
	}
	if ev.Source == "" {
		switch {
		case m.Hostname != "" && m.AppName != "":
			ev.Source = m.Hostname + "/" + m.AppName
		case m.Hostname != "":
			ev.Source = m.Hostname
		default:
			ev.Source = m.AppName
		}
	}
}

// SyslogSeverity maps a syslog severity number (RFC 5424 table 2: 0
// emergency .. 7 debug) to a Vigil severity; -1 (none) is info.
func SyslogSeverity(n int) event.Severity {
	switch {
	case n < 0:
		return event.SeverityInfo
	case n <= 2: // emergency, alert, critical
		return event.SeverityCritical
	case n == 3: // error
		return event.SeverityHigh
	case n == 4: // warning
		return event.SeverityMedium
	case n == 5: // notice
		return event.SeverityLow
	default: // informational, debug
		return event.SeverityInfo
	}
}
