package auth

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/vigil-sec/vigil/internal/event"
)

// MaskRules say what a role sees masked. The zero value masks nothing.
type MaskRules struct {
	// TruncateIPs replaces every IP address (src_ip, data values, IPs inside
	// free text) by its network: IPv4 /24, IPv6 /48. The result stays a
	// plain address ("203.0.113.0") so CIDR filters keep working.
	TruncateIPs bool `json:"truncate_ips" yaml:"truncate_ips"`
	// HideEmails replaces the local part of e-mail addresses by "***".
	HideEmails bool `json:"hide_emails" yaml:"hide_emails"`
	// SQLLiterals replaces string and number literals by ? in the data
	// fields named by SQLFields.
	SQLLiterals bool `json:"sql_literals" yaml:"sql_literals"`
	// SQLFields are data keys (at any depth) holding SQL; default ["query"].
	SQLFields []string `json:"sql_fields,omitempty" yaml:"sql_fields,omitempty"`
	// DropFields are removed outright: top-level names ("user_id") or data
	// paths ("data.account.iban").
	DropFields []string `json:"drop_fields,omitempty" yaml:"drop_fields,omitempty"`
}

func (r MaskRules) empty() bool {
	return !r.TruncateIPs && !r.HideEmails && !r.SQLLiterals && len(r.DropFields) == 0
}

// MaskConfig holds the rules per role. A role that is absent sees events
// unmasked.
type MaskConfig map[Role]MaskRules

// DefaultMasking is the SPEC 9 default: viewers see IPs truncated, e-mail
// local parts hidden and SQL literals in data.query replaced by ?.
func DefaultMasking() MaskConfig {
	return MaskConfig{RoleViewer: {TruncateIPs: true, HideEmails: true, SQLLiterals: true, SQLFields: []string{"query"}}}
}

// Policy is the one authorization function of Vigil: it decides whether a
// principal may see an event and returns the form it may see. The hub calls
// it for every live and replayed delivery; history and single-event REST
// reads call it too, so no transport has its own rule. Its Visible method
// has the signature of hub.Policy.
type Policy struct {
	masks   MaskConfig
	revoked func(p *Principal) bool
	// last holds, per masked role, the most recent event masked for it.
	// The hub offers one event to every subscription in turn, so all the
	// viewers of an event share one masked copy instead of masking it once
	// per subscription. The map is fixed at construction; entries swap
	// atomically (replay goroutines call Visible concurrently).
	last map[Role]*atomic.Pointer[maskedEntry]
}

type maskedEntry struct {
	src, masked *event.Event
}

// SetRevocationCheck makes Visible refuse every event to a principal whose
// credential revoked(p) reports as revoked (an opaque token by its id, a
// JWT by its jti or subject), so nothing is delivered in the moment
// between a revocation and the closing of the connection. Call it before
// the policy is in use; revoked must be cheap and lock-free.
func (pol *Policy) SetRevocationCheck(revoked func(p *Principal) bool) {
	pol.revoked = revoked
}

// NewPolicy returns a policy with the given masking laid over
// DefaultMasking: a role named in masks gets exactly those rules (an empty
// entry, viewer: {}, unmasks the viewer); roles not named keep the default.
// So configuring rules for analysts never silently unmasks viewers.
func NewPolicy(masks MaskConfig) *Policy {
	merged := DefaultMasking()
	for role, r := range masks {
		merged[role] = r
	}
	cp := make(MaskConfig, len(merged))
	last := map[Role]*atomic.Pointer[maskedEntry]{}
	for role, r := range merged {
		if r.SQLLiterals && len(r.SQLFields) == 0 {
			r.SQLFields = []string{"query"}
		}
		cp[role] = r
		if !r.empty() {
			last[role] = &atomic.Pointer[maskedEntry]{}
		}
	}
	return &Policy{masks: cp, last: last}
}

// Visible reports whether p may see e and returns the form it may see: e
// itself when no masking applies, otherwise a masked copy (e is never
// modified, since other clients share it).
func (pol *Policy) Visible(p *Principal, e *event.Event) (*event.Event, bool) {
	if p == nil || !p.MayRead(e) || (pol.revoked != nil && pol.revoked(p)) {
		return nil, false
	}
	return pol.Mask(p.Role, e), true
}

// Masks reports whether events shown to role are masked at all. Transports
// use it to re-check filters against the masked form: a viewer must not be
// able to probe an unmasked value through a filter.
func (pol *Policy) Masks(role Role) bool {
	_, ok := pol.last[role]
	return ok
}

// Mask returns the form of e that role may see.
func (pol *Policy) Mask(role Role, e *event.Event) *event.Event {
	slot, ok := pol.last[role]
	if !ok {
		return e
	}
	if ent := slot.Load(); ent != nil && ent.src == e {
		return ent.masked
	}
	m := MaskEvent(pol.masks[role], e)
	slot.Store(&maskedEntry{src: e, masked: m})
	return m
}

// MaskEvent applies r to a copy of e.
func MaskEvent(r MaskRules, e *event.Event) *event.Event {
	m := e.Clone()
	// The integrity hash is computed over the unmasked event. Handing it out
	// with a truncated IP would let the reader brute-force the 256 possible
	// last octets (or the local part of an address) offline, so masked
	// events carry no chain fields.
	m.Hash, m.PrevHash, m.Chain = "", "", ""
	text := func(s string) string { return r.maskText(s) }
	m.Source = text(m.Source)
	m.Message = text(m.Message)
	m.User = text(m.User)
	m.UserID = text(m.UserID)
	m.Resource = text(m.Resource)
	if m.SrcIP != "" && r.TruncateIPs {
		m.SrcIP = TruncateIP(m.SrcIP)
	}
	var dataDrops []string
	for _, f := range r.DropFields {
		if path, ok := strings.CutPrefix(f, "data."); ok {
			dataDrops = append(dataDrops, path)
			continue
		}
		dropTop(m, f)
	}
	if len(m.Data) > 0 {
		// Decode afresh with UseNumber (rather than the shared DataMap) so
		// that large integers survive masking unchanged.
		dec := json.NewDecoder(bytes.NewReader(e.Data))
		dec.UseNumber()
		var d any
		m.Data = nil // fail closed: never fall back to the unmasked data
		if dec.Decode(&d) == nil {
			if b, err := marshalNoEscape(r.maskValue(d, "", dataDrops)); err == nil {
				m.Data = b
			}
		}
	}
	return m
}

func dropTop(m *event.Event, name string) {
	switch name {
	case "source":
		m.Source = ""
	case "message":
		m.Message = ""
	case "user":
		m.User = ""
	case "user_id":
		m.UserID = ""
	case "src_ip":
		m.SrcIP = ""
	case "resource":
		m.Resource = ""
	case "action":
		m.Action = ""
	case "tags":
		m.Tags = nil
	case "data":
		m.Data = nil
	}
}

// maskValue returns a masked deep copy of v (the event's shared data map is
// read-only).
func (r MaskRules) maskValue(v any, path string, drops []string) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, child := range x {
			p := k
			if path != "" {
				p = path + "." + k
			}
			if slices.Contains(drops, p) {
				continue
			}
			if s, ok := child.(string); ok && r.SQLLiterals && slices.Contains(r.SQLFields, k) {
				out[k] = r.maskText(MaskSQL(s))
				continue
			}
			out[k] = r.maskValue(child, p, drops)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, child := range x {
			out[i] = r.maskValue(child, path, drops)
		}
		return out
	case string:
		return r.maskText(x)
	default:
		return v
	}
}

var (
	emailRe = regexp.MustCompile(`[A-Za-z0-9._%+\-]+@([A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*)`)
	ipv4Re  = regexp.MustCompile(`\b\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\b`)
	// Candidate IPv6 addresses: hex groups with at least two colons;
	// netip.ParseAddr decides.
	ipv6Re = regexp.MustCompile(`[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?:%[0-9A-Za-z]+)?`)
)

// maskText masks addresses and e-mails inside a free-text string.
func (r MaskRules) maskText(s string) string {
	if s == "" {
		return s
	}
	if r.TruncateIPs {
		if _, err := netip.ParseAddr(s); err == nil {
			return TruncateIP(s)
		}
		if strings.Contains(s, ".") {
			s = ipv4Re.ReplaceAllStringFunc(s, TruncateIP)
		}
		if strings.Count(s, ":") >= 2 {
			s = ipv6Re.ReplaceAllStringFunc(s, TruncateIP)
		}
	}
	if r.HideEmails && strings.Contains(s, "@") {
		s = HideEmail(s)
	}
	return s
}

// TruncateIP returns the network address of ip: /24 for IPv4 (and IPv4
// mapped into IPv6), /48 for IPv6. A string that is not an address is
// returned unchanged.
func TruncateIP(s string) string {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return s
	}
	a = a.WithZone("").Unmap()
	bits := 48
	if a.Is4() {
		bits = 24
	}
	p, err := a.Prefix(bits)
	if err != nil {
		return s
	}
	return p.Addr().String()
}

// HideEmail replaces the local part of every e-mail address in s by "***".
func HideEmail(s string) string {
	return emailRe.ReplaceAllString(s, "***@$1")
}

// MaskSQL replaces the literals of a SQL statement by ?: single- and
// double-quoted strings (double quotes too, because MySQL uses them for
// strings and a leaked identifier costs less than a leaked value), numbers
// and hex/binary literals. Comments are dropped, since they can carry
// values as well.
func MaskSQL(q string) string {
	var b strings.Builder
	b.Grow(len(q))
	isIdent := func(c byte) bool {
		return c == '_' || c == '$' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c >= 0x80
	}
	for i := 0; i < len(q); {
		c := q[i]
		switch {
		case c == '\'' || c == '"':
			// A prefix such as E'..', N'..', X'..', B'..' belongs to the literal.
			if n := b.Len(); n > 0 {
				s := b.String()
				last := s[n-1]
				if (last == 'E' || last == 'e' || last == 'N' || last == 'n' || last == 'X' || last == 'x' || last == 'B' || last == 'b') && (n == 1 || !isIdent(s[n-2])) {
					b.Reset()
					b.WriteString(s[:n-1])
				}
			}
			i = skipQuoted(q, i, c)
			b.WriteByte('?')
		case c == '-' && i+1 < len(q) && q[i+1] == '-':
			for i < len(q) && q[i] != '\n' {
				i++
			}
		case c == '/' && i+1 < len(q) && q[i+1] == '*':
			end := strings.Index(q[i+2:], "*/")
			if end < 0 {
				i = len(q)
			} else {
				i += 2 + end + 2
			}
			b.WriteByte(' ')
		case c >= '0' && c <= '9' && (i == 0 || !isIdent(q[i-1])):
			for i < len(q) && (isIdent(q[i]) || q[i] == '.') {
				i++
			}
			b.WriteByte('?')
		case isIdent(c):
			for i < len(q) && isIdent(q[i]) {
				b.WriteByte(q[i])
				i++
			}
		default:
			b.WriteByte(c)
			i++
		}
	}
	return b.String()
}

// skipQuoted returns the index after the literal starting at q[i] (quote
// character qc); doubled quotes and backslash escapes stay inside it, and an
// unterminated literal runs to the end.
func skipQuoted(q string, i int, qc byte) int {
	i++
	for i < len(q) {
		switch q[i] {
		case '\\':
			i += 2
			continue
		case qc:
			if i+1 < len(q) && q[i+1] == qc {
				i += 2
				continue
			}
			return i + 1
		}
		i++
	}
	return len(q)
}

// marshalNoEscape encodes v like json.Marshal but keeps <, > and & as they
// are (data is shown as sent, not HTML-escaped).
func marshalNoEscape(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}
