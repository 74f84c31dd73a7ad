package event

import (
	"math"
	"strconv"
	"time"
	"unicode/utf8"

	gojson "github.com/goccy/go-json"
)

// AppendJSON appends e's JSON encoding to dst, byte for byte what
// goccy/go-json's Marshal produces for the Event (the log's canonical form:
// its integrity hash is computed over these bytes), without reflection.
// Anything it cannot encode exactly the same way on its fast path (a
// string needing escapes, data that is not already compact, a time outside
// years 0-9999) is delegated to goccy for that value. ok is false only when
// goccy itself fails.
func (e *Event) AppendJSON(dst []byte) (out []byte, err error) {
	b := append(dst, `{"id":`...)
	b = appendString(b, e.ID)
	if e.Seq != 0 {
		b = append(b, `,"seq":`...)
		b = strconv.AppendUint(b, e.Seq, 10)
	}
	if b, err = appendTime(append(b, `,"time":`...), e.Time); err != nil {
		return dst, err
	}
	if b, err = appendTime(append(b, `,"received_at":`...), e.ReceivedAt); err != nil {
		return dst, err
	}
	b = appendString(append(b, `,"type":`...), e.Type)
	b = appendString(append(b, `,"category":`...), string(e.Category))
	b = append(b, `,"severity":`...)
	if int(e.Severity) < len(severityJSON) {
		b = append(b, severityJSON[e.Severity]...)
	} else {
		b = appendString(b, e.Severity.String())
	}
	b = appendOptString(b, `,"source":`, e.Source)
	b = appendString(append(b, `,"tenant":`...), e.Tenant)
	b = appendOptString(b, `,"message":`, e.Message)
	b = appendOptString(b, `,"user":`, e.User)
	b = appendOptString(b, `,"user_id":`, e.UserID)
	b = appendOptString(b, `,"src_ip":`, e.SrcIP)
	b = appendOptString(b, `,"resource":`, e.Resource)
	b = appendOptString(b, `,"action":`, e.Action)
	b = appendOptString(b, `,"outcome":`, e.Outcome)
	if e.Confidence != nil {
		if b, err = appendFloat(append(b, `,"confidence":`...), *e.Confidence); err != nil {
			return dst, err
		}
	}
	if e.RiskScore != nil {
		if b, err = appendFloat(append(b, `,"risk_score":`...), *e.RiskScore); err != nil {
			return dst, err
		}
	}
	b = appendStrings(b, `,"mitre_tactics":`, e.MitreTactics)
	b = appendStrings(b, `,"mitre_techniques":`, e.MitreTechniques)
	b = appendStrings(b, `,"tags":`, e.Tags)
	if len(e.Data) > 0 {
		b = append(b, `,"data":`...)
		if compactSafe(e.Data) {
			b = append(b, e.Data...)
		} else {
			// goccy compacts and HTML-escapes a RawMessage: let it.
			enc, err := gojson.Marshal(e.Data)
			if err != nil {
				return dst, err
			}
			b = append(b, enc...)
		}
	}
	b = appendOptString(b, `,"chain":`, e.Chain)
	b = appendOptString(b, `,"prev_hash":`, e.PrevHash)
	b = appendOptString(b, `,"hash":`, e.Hash)
	return append(b, '}'), nil
}

func appendOptString(b []byte, key, s string) []byte {
	if s == "" {
		return b
	}
	return appendString(append(b, key...), s)
}

func appendStrings(b []byte, key string, list []string) []byte {
	if len(list) == 0 {
		return b
	}
	b = append(append(b, key...), '[')
	for i, s := range list {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, s)
	}
	return append(b, ']')
}

// plainByte marks the bytes a JSON string may hold unescaped in goccy's
// HTML-safe encoding: printable ASCII except '"', '\\', '<', '>' and '&'.
var plainByte = func() (t [256]bool) {
	for c := 0x20; c < 0x7f; c++ {
		t[c] = true
	}
	t['"'], t['\\'], t['<'], t['>'], t['&'] = false, false, false, false, false
	return t
}()

func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if !plainByte[s[i]] {
			enc, err := gojson.Marshal(s) // escapes, non-ASCII, invalid UTF-8: goccy's rules
			if err != nil {
				break
			}
			return append(b, enc...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// appendTime writes what time.Time.MarshalJSON writes (RFC 3339 with
// nanoseconds, trailing zeros trimmed).
func appendTime(b []byte, t time.Time) ([]byte, error) {
	if y := t.Year(); y < 0 || y > 9999 {
		enc, err := gojson.Marshal(t)
		if err != nil {
			return b, err
		}
		return append(b, enc...), nil
	}
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"'), nil
}

// appendFloat mirrors goccy's float64 encoding.
func appendFloat(b []byte, v float64) ([]byte, error) {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		enc, err := gojson.Marshal(v) // goccy's error
		if err != nil {
			return b, err
		}
		return append(b, enc...), nil
	}
	abs := math.Abs(v)
	f := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		f = 'e'
	}
	return strconv.AppendFloat(b, v, f, -1, 64), nil
}

// compactSafe reports whether raw JSON would come out of goccy's compacting,
// HTML-escaping encoder unchanged: ASCII only, no '<', '>' or '&', no
// whitespace outside strings, and a well-formed object or array start.
func compactSafe(raw []byte) bool {
	if len(raw) == 0 || (raw[0] != '{' && raw[0] != '[') {
		return false
	}
	inString := false
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c >= utf8.RuneSelf || c == '<' || c == '>' || c == '&' || c < 0x20 {
			return false
		}
		if inString {
			switch c {
			case '\\':
				i++
			case '"':
				inString = false
			}
			continue
		}
		switch c {
		case '"':
			inString = true
		case ' ':
			return false
		}
	}
	return !inString
}
