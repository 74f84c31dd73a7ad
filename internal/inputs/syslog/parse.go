package syslog

import (
	"bytes"
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
	now   func() time.Time
}

// NewParser returns a parser. RFC 3164 timestamps carry no year nor zone:
// they are read in loc (nil: UTC), the senders' zone, and in the year that
// puts them nearest to now (see bsdYear).
func NewParser(loc *time.Location) *Parser {
	if loc == nil {
		loc = time.UTC
	}
	return &Parser{
		p5424: rfc5424.NewParser(rfc5424.WithBestEffort()),
		p3164: rfc3164.NewParser(rfc3164.WithBestEffort(), rfc3164.WithRFC3339(), rfc3164.WithLenientDay(), rfc3164.WithYear(rfc3164.CurrentYear{}), rfc3164.WithLocaleTimezone(loc)),
		now:   time.Now,
	}
}

// bsdYear gives an RFC 3164 timestamp ("Mmm dd hh:mm:ss", no year) the
// year that puts it nearest to now: now's year, unless that is more than a
// week ahead — "Dec 31 23:59:58" sent before midnight and received on 1
// January (or held in a sender's queue over new year) is last year's, not
// eleven months ahead. A week leaves room for skewed clocks and zones.
func bsdYear(t, now time.Time) time.Time {
	t = time.Date(now.In(t.Location()).Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), t.Location())
	if t.After(now.Add(7 * 24 * time.Hour)) {
		return t.AddDate(-1, 0, 0)
	}
	return t
}

// bsdStamp reports whether the RFC 3164 message b has the yearless
// "Mmm dd hh:mm:ss" timestamp (a letter after <PRI>), not an RFC 3339 one.
func bsdStamp(b []byte) bool {
	i := bytes.IndexByte(b, '>')
	return i > 0 && i+1 < len(b) && (b[i+1]|0x20) >= 'a' && (b[i+1]|0x20) <= 'z'
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
	bsd := false
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
		bsd = bsdStamp(b)
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
		if bsd {
			m.Time = bsdYear(m.Time, p.now())
		}
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
