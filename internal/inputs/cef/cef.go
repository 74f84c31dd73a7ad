// Package cef parses ArcSight Common Event Format records
// (CEF:Version|Device Vendor|Device Product|Device Version|Signature ID|Name|Severity|Extension)
// with their escaping rules, and maps them to events (docs/inputs.md, "CEF").
package cef

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/inputs"
)

// Record is one parsed CEF record.
type Record struct {
	Version, Vendor, Product, DeviceVersion, SignatureID, Name, Severity string
	// Ext holds the extension's key=value pairs, unescaped; Keys keeps
	// their order.
	Ext  map[string]string
	Keys []string
}

// Parse parses s, which starts with "CEF:". Header fields unescape \| and
// \\; extension values unescape \=, \\, \n and \r. A value may contain
// spaces: a key starts after the last space before "key=".
func Parse(s string) (*Record, error) {
	rest, ok := strings.CutPrefix(s, "CEF:")
	if !ok {
		return nil, errors.New(`cef: does not start with "CEF:"`)
	}
	var hdr [7]string
	for i := range hdr {
		field, tail, ok := cutHeader(rest)
		if !ok {
			return nil, fmt.Errorf("cef: header has %d of its 7 '|'-separated fields", i)
		}
		hdr[i], rest = field, tail
	}
	r := &Record{Version: strings.TrimSpace(hdr[0]), Vendor: hdr[1], Product: hdr[2], DeviceVersion: hdr[3],
		SignatureID: hdr[4], Name: hdr[5], Severity: strings.TrimSpace(hdr[6]), Ext: map[string]string{}}
	if r.Version != "0" && r.Version != "1" {
		return nil, fmt.Errorf("cef: version %q is not 0 or 1", r.Version)
	}
	parseExtension(rest, r)
	return r, nil
}

// cutHeader returns the unescaped field before the first unescaped '|'.
func cutHeader(s string) (field, rest string, ok bool) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '\\' && i+1 < len(s) && (s[i+1] == '|' || s[i+1] == '\\') {
			b.WriteByte(s[i+1])
			i++
			continue
		}
		if c == '|' {
			return b.String(), s[i+1:], true
		}
		b.WriteByte(c)
	}
	return "", "", false
}

func keyByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '[' || c == ']' || c == '-'
}

// keyAt reports whether an unescaped '=' at eq ends a key: the bytes from
// the last space before it are key characters (or eq starts the text).
func keyAt(s string, from, eq int) (start int, ok bool) {
	start = eq
	for start > from && keyByte(s[start-1]) {
		start--
	}
	if start == eq {
		return 0, false
	}
	if start == from || s[start-1] == ' ' {
		return start, true
	}
	return 0, false
}

func parseExtension(s string, r *Record) {
	s = strings.TrimLeft(s, " ")
	// The '=' signs that start a pair, in order.
	type pair struct{ keyStart, eq int }
	var pairs []pair
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++ // an escaped byte never starts a key
		case '=':
			if st, ok := keyAt(s, 0, i); ok {
				pairs = append(pairs, pair{st, i})
			}
		}
	}
	for n, p := range pairs {
		end := len(s)
		if n+1 < len(pairs) {
			end = pairs[n+1].keyStart
		}
		key := s[p.keyStart:p.eq]
		val := strings.TrimRight(s[p.eq+1:end], " ")
		if _, dup := r.Ext[key]; !dup {
			r.Keys = append(r.Keys, key)
		}
		r.Ext[key] = unescapeValue(val)
	}
}

func unescapeValue(v string) string {
	if !strings.Contains(v, `\`) {
		return v
	}
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		if v[i] == '\\' && i+1 < len(v) {
			switch v[i+1] {
			case '=', '\\':
				b.WriteByte(v[i+1])
				i++
				continue
			case 'n':
				b.WriteByte('\n')
				i++
				continue
			case 'r':
				b.WriteByte('\r')
				i++
				continue
			}
		}
		b.WriteByte(v[i])
	}
	return b.String()
}

// Severity maps CEF's severity (0-10, or Unknown/Low/Medium/High/Very-High)
// to a Vigil severity: 0-3 low, 4-6 medium, 7-8 high, 9-10 critical, as
// ArcSight groups them; anything else is info.
func Severity(s string) event.Severity {
	if n, err := strconv.Atoi(s); err == nil {
		switch {
		case n < 0:
			return event.SeverityInfo
		case n <= 3:
			return event.SeverityLow
		case n <= 6:
			return event.SeverityMedium
		case n <= 8:
			return event.SeverityHigh
		default:
			return event.SeverityCritical
		}
	}
	switch strings.ToLower(s) {
	case "low":
		return event.SeverityLow
	case "medium":
		return event.SeverityMedium
	case "high":
		return event.SeverityHigh
	case "very-high", "very high", "veryhigh":
		return event.SeverityCritical
	}
	return event.SeverityInfo
}

// categoryWords derive the category from the record's name and cat key,
// first match wins; a record matching none is audit.
var categoryWords = []struct {
	cat   event.Category
	words []string
}{
	{event.CategoryAuthentication, []string{"login", "logon", "log on", "authentication", "password", "credential", "mfa"}},
	{event.CategoryAuthorization, []string{"privilege", "permission", "access denied", "unauthorized", "sudo", "authorization"}},
	{event.CategoryThreatIntel, []string{"malware", "virus", "trojan", "ransomware", "exploit", "intrusion", "attack", "botnet", "c2", "ioc", "threat"}},
	{event.CategoryRateLimit, []string{"rate limit", "flood", "ddos", "dos "}},
	{event.CategoryEncryption, []string{"certificate", "encrypt", "decrypt", "tls", "ssl"}},
	{event.CategoryFraud, []string{"fraud"}},
}

// Category derives a Vigil category from a record.
func Category(r *Record) event.Category {
	text := strings.ToLower(r.Name + " " + r.Ext["cat"])
	for _, cw := range categoryWords {
		for _, w := range cw.words {
			if strings.Contains(text, w) {
				return cw.cat
			}
		}
	}
	return event.CategoryAudit
}

// slug makes s a type segment: lower-case letters, digits, '_' and '-'.
func slug(s string, max int) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '_', r == '-':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
		if b.Len() >= max {
			break
		}
	}
	out := strings.Trim(b.String(), "_")
	if out == "" {
		return "unknown"
	}
	return out
}

// Mapper is the CEF mapper: it claims messages whose text starts with
// "CEF:" (after optional leading text ending in a space, as some devices
// put their host name first).
type Mapper struct{}

// Map implements inputs.Mapper.
func (Mapper) Map(m *inputs.Message) (*event.Event, bool) {
	i := strings.Index(m.Text, "CEF:")
	if i < 0 || (i > 0 && m.Text[i-1] != ' ') {
		return nil, false
	}
	r, err := Parse(m.Text[i:])
	if err != nil {
		return nil, false // the chain's fallback keeps the raw text
	}
	return ToEvent(r, m.Text[i:]), true
}

// ToEvent maps a record to an event (docs/inputs.md has the table).
func ToEvent(r *Record, raw string) *event.Event {
	cat := Category(r)
	ev := &event.Event{
		Type:     string(cat) + ".cef." + slug(r.Product, 40) + "." + slug(r.SignatureID, 40),
		Category: cat, Severity: Severity(r.Severity), Message: r.Name,
	}
	data := map[string]any{"cef_vendor": r.Vendor, "cef_product": r.Product, "cef_version": r.DeviceVersion,
		"cef_signature_id": r.SignatureID, "cef_name": r.Name, "cef_severity": r.Severity}
	labels := map[string]string{}
	for _, k := range r.Keys {
		if base, ok := strings.CutSuffix(k, "Label"); ok && isCustom(base) {
			labels[base] = r.Ext[k]
		}
	}
	for _, k := range r.Keys {
		v := r.Ext[k]
		switch {
		case k == "suser":
			ev.User = v
		case k == "duser":
			if r.Ext["suser"] == "" {
				ev.User = v
			} else {
				data["duser"] = v
			}
		case k == "src":
			// A device may send a host name or garbage in src; src_ip
			// must be an address (ingest refuses the event otherwise,
			// and a syslog record refused there is lost), so anything
			// else stays in data.
			if a, err := netip.ParseAddr(strings.TrimSpace(v)); err == nil {
				ev.SrcIP = a.String()
			} else {
				data[k] = v
			}
		case k == "act":
			ev.Action = strings.ToLower(v)
		case k == "outcome":
			ev.Outcome = outcome(v)
		case k == "msg":
			if v != "" {
				ev.Message = v
			}
		case k == "request":
			ev.Resource = v
		case k == "rt":
			if t, ok := parseTime(v); ok {
				ev.Time = t
			}
			data[k] = v
		case strings.HasSuffix(k, "Label") && isCustom(strings.TrimSuffix(k, "Label")):
			// consumed with its value
		case isCustom(k) && labels[k] != "":
			data[labels[k]] = v
		default:
			data[k] = v
		}
	}
	if ev.Action == "" && cat == event.CategoryAuthentication {
		ev.Action = "login" // a login record without act: the built-in rules key on login + outcome
	}
	ev.Data, _ = json.Marshal(data) // strings only
	return ev
}

// isCustom reports whether k is one of the custom keys that carry a label
// (cs1..cs6, cn1..cn3, cfp1..cfp4, c6a1..c6a4, flexString1..2, ...).
func isCustom(k string) bool {
	for _, p := range []string{"cs", "cn", "cfp", "c6a", "flexString", "flexNumber", "flexDate", "deviceCustomDate"} {
		if rest, ok := strings.CutPrefix(k, p); ok && len(rest) == 1 && rest[0] >= '1' && rest[0] <= '9' {
			return true
		}
	}
	return false
}

func outcome(v string) string {
	switch l := strings.ToLower(strings.TrimSpace(v)); l {
	case "failure", "failed", "fail", "denied", "deny", "blocked", "block", "rejected", "/failure":
		return "failure"
	case "success", "succeeded", "allowed", "allow", "permitted", "/success":
		return "success"
	default:
		return l
	}
}

// parseTime reads rt: milliseconds since the epoch, or "MMM dd yyyy HH:mm:ss".
func parseTime(v string) (time.Time, bool) {
	if ms, err := strconv.ParseInt(v, 10, 64); err == nil && ms > 0 {
		return time.UnixMilli(ms).UTC(), true
	}
	for _, layout := range []string{"Jan 02 2006 15:04:05", "Jan 02 2006 15:04:05.000", time.RFC3339} {
		if t, err := time.Parse(layout, v); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}
