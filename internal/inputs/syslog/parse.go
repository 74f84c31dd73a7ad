package syslog

import (
	"strings"
	"time"
	"unicode/utf8"

	gosyslog "github.com/leodido/go-syslog/v4"
	"github.com/leodido/go-syslog/v4/rfc3164"
	"github.com/leodido/go-syslog/v4/rfc5424"

	"github.com/vigil-sec/vigil/internal/inputs"
)

// Input is the input's name: the metric label and the fallback event type
// (system.syslog.unparsed).
const Input = "syslog"

// Parser decodes one syslog message (RFC 5424 or RFC 3164) into an
// inputs.Message. It is not safe for concurrent use: each connection and
// the UDP reader have their own.
type Parser struct {
	p5424 gosyslog.Machine
	p3164 gosyslog.Machine
}

// NewParser returns a parser. RFC 3164 timestamps carry no year nor zone:
// the current year and UTC are assumed.
func NewParser() *Parser {
	return &Parser{
		p5424: rfc5424.NewParser(rfc5424.WithBestEffort()),
		p3164: rfc3164.NewParser(rfc3164.WithBestEffort(), rfc3164.WithYear(rfc3164.CurrentYear{}), rfc3164.WithTimezone(time.UTC)),
	}
}

// Parse decodes b. ok is false when b is not syslog at all (no valid
// <PRI>): m then carries the raw line as its text, so it is still stored
// (as system.syslog.unparsed) and counted as an error by the caller.
func (p *Parser) Parse(b []byte, remote string) (m inputs.Message, ok bool) {
	m = inputs.Message{Input: Input, Remote: remote, Facility: -1, Severity: -1}
	var msg gosyslog.Message
	if is5424(b) {
		msg, _ = p.p5424.Parse(b)
	}
	if msg == nil || !msg.Valid() {
		msg, _ = p.p3164.Parse(b)
	}
	if msg == nil || !msg.Valid() {
		m.Text = clean(string(b))
		return m, false
	}
	var base *gosyslog.Base
	switch v := msg.(type) {
	case *rfc5424.SyslogMessage:
		base = &v.Base
		if v.StructuredData != nil {
			m.Fields = map[string]string{}
			for id, params := range *v.StructuredData {
				for k, val := range params {
					m.Fields[clean(id+"."+k)] = clean(val)
				}
			}
		}
	case *rfc3164.SyslogMessage:
		base = &v.Base
	default:
		m.Text = clean(string(b))
		return m, false
	}
	if base.Facility != nil {
		m.Facility = int(*base.Facility)
	}
	if base.Severity != nil {
		m.Severity = int(*base.Severity)
	}
	if base.Timestamp != nil {
		m.Time = *base.Timestamp
	}
	m.Hostname = clean(deref(base.Hostname))
	m.AppName = clean(deref(base.Appname))
	m.ProcID = clean(deref(base.ProcID))
	m.MsgID = clean(deref(base.MsgID))
	m.Text = clean(strings.TrimPrefix(deref(base.Message), "\ufeff")) // RFC 5424 6.4: a BOM may start the MSG
	return m, true
}

// is5424 reports whether b starts "<PRI>1 " (RFC 5424's VERSION 1).
func is5424(b []byte) bool {
	if len(b) < 4 || b[0] != '<' {
		return false
	}
	for i := 1; i < len(b) && i <= 4; i++ {
		if b[i] == '>' {
			return i > 1 && i+2 < len(b) && b[i+1] == '1' && b[i+2] == ' '
		}
		if b[i] < '0' || b[i] > '9' {
			return false
		}
	}
	return false
}

func deref(s *string) string {
	if s == nil || *s == "-" {
		return ""
	}
	return *s
}

// clean makes s valid UTF-8 (events are JSON strings).
func clean(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}
