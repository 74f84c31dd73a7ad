package syslog

import (
	"net"
	"strconv"
	"strings"

	"github.com/vigil-sec/vigil/internal/outputs"
	"github.com/vigil-sec/vigil/internal/outputs/outhttp"
)

// CEF renders m as an ArcSight Common Event Format record (Micro Focus,
// "Implementing ArcSight CEF", revision 25):
//
//	CEF:0|Vigil|Vigil|1|<signature id>|<name>|<severity>|<extension>
//
// Header fields escape '\' and '|'; extension values escape '\', '=' and
// line breaks (\n, \r). The signature id is the rule id of a detection,
// else the event type; the severity is 10 critical, 8 high, 5 medium,
// 3 low, 0 info.
func CEF(m outputs.Message) string {
	sig, name := "", outhttp.Title(m)
	if m.Event != nil {
		sig = m.Event.Type
	}
	if d := m.Detection; d != nil && d.RuleID != "" {
		sig = d.RuleID
	}
	var b strings.Builder
	b.WriteString("CEF:0|Vigil|Vigil|1|")
	b.WriteString(cefHeader(sig))
	b.WriteByte('|')
	b.WriteString(cefHeader(name))
	b.WriteByte('|')
	b.WriteString(cefSeverity(outhttp.Severity(m)))
	b.WriteByte('|')
	first := true
	ext := func(k, v string) {
		if v == "" {
			return
		}
		if !first {
			b.WriteByte(' ')
		}
		first = false
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(cefValue(v))
	}
	if ev := m.Event; ev != nil {
		ext("rt", strconv.FormatInt(ev.Time.UnixMilli(), 10))
		ext("externalId", ev.ID)
		ext("cat", string(ev.Category))
		ext("suser", ev.User)
		if net.ParseIP(ev.SrcIP) != nil {
			ext("src", ev.SrcIP)
		}
		ext("act", ev.Action)
		ext("outcome", ev.Outcome)
		ext("request", ev.Resource)
		msg := ev.Message
		if m.Text != "" {
			msg = m.Text
		}
		ext("msg", msg)
		if ev.Tenant != "" {
			ext("cs1Label", "tenant")
			ext("cs1", ev.Tenant)
		}
		ext("cs5Label", "eventType")
		ext("cs5", ev.Type)
	}
	if d := m.Detection; d != nil {
		ext("cs2Label", "detectionId")
		ext("cs2", d.ID)
		ext("cs3Label", "mitreTechniques")
		ext("cs3", strings.Join(d.MitreTechniques, ","))
		ext("cs4Label", "groupKey")
		ext("cs4", d.GroupKey)
		ext("cs6Label", "status")
		ext("cs6", d.Status)
		ext("cn1Label", "count")
		ext("cn1", strconv.Itoa(d.Count))
	}
	if m.Test {
		ext("cs6Label", "test")
		ext("cs6", "true")
	}
	return b.String()
}

func cefSeverity(sev string) string {
	switch sev {
	case "critical":
		return "10"
	case "high":
		return "8"
	case "medium":
		return "5"
	case "low":
		return "3"
	default:
		return "0"
	}
}

// cefHeader escapes a header field; a line break has no escape there and
// becomes a space.
func cefHeader(v string) string {
	return strings.NewReplacer(`\`, `\\`, `|`, `\|`, "\r", " ", "\n", " ").Replace(v)
}

// cefValue escapes an extension value.
func cefValue(v string) string {
	return strings.NewReplacer(`\`, `\\`, `=`, `\=`, "\r", `\r`, "\n", `\n`).Replace(v)
}
