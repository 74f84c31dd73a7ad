package event

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Normalize fills what Vigil sets (id, receive time, tenant, default
// severity, derived category) and validates the result against limits.
// It also drops secret-looking keys from data and returns how many it
// dropped, so that passwords and MFA codes are never stored (SPEC 9).
func Normalize(e *Event, tenant string, now time.Time, lim Limits) (dropped int, err error) {
	e.Seq = 0
	e.Hash, e.PrevHash, e.Chain = "", "", ""
	e.Tenant = tenant
	e.ReceivedAt = now.UTC()
	if e.Time.IsZero() {
		e.Time = e.ReceivedAt
	}
	e.Time = e.Time.UTC() // one canonical form, so the integrity hash is stable
	e.idAssigned = false
	if e.ID == "" {
		id, err := uuid.NewV7()
		if err != nil {
			return 0, fmt.Errorf("event: new id: %w", err)
		}
		e.ID = id.String()
		e.idAssigned = true
	}
	if err := validateID("id", e.ID); err != nil {
		return 0, err
	}
	if err := validateType(e.Type); err != nil {
		return 0, err
	}
	if e.Category == "" {
		c, ok := DeriveCategory(e.Type)
		if !ok {
			return 0, &fieldError{"category", fmt.Sprintf("cannot be derived from type %q; set it to one of: %s", e.Type, categoryList())}
		}
		e.Category = c
	}
	for _, f := range [...]struct{ name, v string }{
		{"source", e.Source}, {"message", e.Message}, {"user", e.User}, {"user_id", e.UserID},
		{"resource", e.Resource}, {"action", e.Action},
	} {
		if len(f.v) > lim.MaxStringLen {
			return 0, &fieldError{f.name, fmt.Sprintf("longer than %d bytes", lim.MaxStringLen)}
		}
	}
	if e.SrcIP != "" {
		if _, err := netip.ParseAddr(e.SrcIP); err != nil {
			return 0, &fieldError{"src_ip", fmt.Sprintf("%q is not an IPv4 or IPv6 address", e.SrcIP)}
		}
	}
	switch e.Outcome {
	case "", "success", "failure", "unknown":
	default:
		return 0, &fieldError{"outcome", fmt.Sprintf("unknown value %q (valid: success, failure, unknown)", e.Outcome)}
	}
	if e.Confidence != nil && (*e.Confidence < 0 || *e.Confidence > 1) {
		return 0, &fieldError{"confidence", "must be between 0 and 1"}
	}
	if e.RiskScore != nil && (*e.RiskScore < 0 || *e.RiskScore > 100) {
		return 0, &fieldError{"risk_score", "must be between 0 and 100"}
	}
	for _, f := range [...]struct {
		name string
		list []string
	}{{"mitre_tactics", e.MitreTactics}, {"mitre_techniques", e.MitreTechniques}, {"tags", e.Tags}} {
		for _, s := range f.list {
			if s == "" || len(s) > lim.MaxStringLen {
				return 0, &fieldError{f.name, "entries must be non-empty and at most the string limit"}
			}
		}
	}
	if len(e.Data) > 0 {
		dropped, err = normalizeData(e, lim)
		if err != nil {
			return 0, err
		}
	}
	return dropped, nil
}

// validateID keeps ids usable as NATS subject tokens and URL path segments.
func validateID(field, id string) error {
	if len(id) > 128 {
		return &fieldError{field, "longer than 128 characters"}
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == ':') {
			return &fieldError{field, fmt.Sprintf("%q may contain only letters, digits, '-', '_' and ':'", id)}
		}
	}
	return nil
}

// ValidTenant reports whether s can name a tenant.
func ValidTenant(s string) bool {
	return s != "" && validateID("tenant", s) == nil && !strings.Contains(s, ":")
}

func validateType(t string) error {
	if t == "" {
		return &fieldError{"type", "required"}
	}
	if len(t) > 128 {
		return &fieldError{"type", "longer than 128 characters"}
	}
	for rest := t; ; {
		part, tail, more := strings.Cut(rest, ".")
		if part == "" {
			return &fieldError{"type", fmt.Sprintf("%q has an empty segment", t)}
		}
		for _, r := range part {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
				return &fieldError{"type", fmt.Sprintf("%q: segments are lower-case letters, digits, '_' or '-'", t)}
			}
		}
		if !more {
			return nil
		}
		rest = tail
	}
}

// sensitiveSuffixes name secrets: a data key is dropped at ingest when,
// reduced to its ASCII letters and digits, lower-cased and stripped of
// trailing digits, it is or ends with one of these ("password",
// "user_password", "mfaCode", "client-secret", "MFA Code", "password1").
var sensitiveSuffixes = []string{
	"password", "passwd", "pwd", "passphrase", "passcode", "secret", "secretkey", "secretaccesskey", "apikey", "token", "accesstoken",
	"refreshtoken", "idtoken", "sessiontoken", "mfacode", "otp", "otpcode", "totp", "totpcode",
	"privatekey", "pin", "pincode", "cvv", "cvc", "credential", "credentials", "cookie", "authorization",
}

// sensitiveWhole are the entries of sensitiveSuffixes that name a secret
// only as the whole name: "spin", "shotp" and "pinned" are not secrets.
var sensitiveWhole = map[string]bool{"pin": true, "pincode": true, "otp": true, "pwd": true, "cvv": true, "cvc": true, "authorization": true}

// IsSensitiveKey reports whether a data key names a secret that must be
// dropped. Only ASCII letters and digits count, so separators of any kind
// (spaces in CEF labels such as "MFA Code", ':', zero-width or other
// non-ASCII characters) do not hide a name.
func IsSensitiveKey(k string) bool {
	var stack [128]byte
	buf := stack[:0]
	if len(k) > len(stack) {
		buf = make([]byte, 0, len(k))
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		switch {
		case c >= 'A' && c <= 'Z':
			buf = append(buf, c+'a'-'A')
		case c >= 'a' && c <= 'z' || c >= '0' && c <= '9':
			buf = append(buf, c)
		}
	}
	for len(buf) > 0 && buf[len(buf)-1] >= '0' && buf[len(buf)-1] <= '9' {
		buf = buf[:len(buf)-1]
	}
	norm := string(buf)
	if norm == "" {
		return false
	}
	for _, s := range sensitiveSuffixes {
		if strings.HasSuffix(norm, s) && (norm == s || !sensitiveWhole[s]) {
			return true
		}
	}
	return false
}

func normalizeData(e *Event, lim Limits) (int, error) {
	// Fast path: one pass over the bytes checks depth, string lengths and
	// key names without building a map. Only data that holds a secret-
	// looking key (or is not an object) takes the decoding path below.
	if !json.Valid(e.Data) {
		var v any
		err := json.Unmarshal(e.Data, &v)
		return 0, &fieldError{"data", "not valid JSON: " + err.Error()}
	}
	trimmed := bytes.TrimSpace(e.Data)
	if string(trimmed) == "null" {
		e.Data = nil
		return 0, nil
	}
	if trimmed[0] != '{' {
		return 0, &fieldError{"data", "must be a JSON object"}
	}
	sensitive, err := scanData(trimmed, lim)
	if err != nil {
		return 0, err
	}
	if !sensitive {
		e.Data = trimmed
		return 0, nil
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return 0, &fieldError{"data", "not valid JSON: " + err.Error()}
	}
	dropped, err := walkData(m, 1, "data", lim)
	if err != nil {
		return 0, err
	}
	b, err := json.Marshal(m)
	if err != nil {
		return 0, &fieldError{"data", err.Error()}
	}
	e.Data = b
	return dropped, nil
}

// scanData walks valid JSON bytes, enforcing the depth and string limits
// and reporting whether any object key names a secret.
func scanData(b []byte, lim Limits) (sensitive bool, err error) {
	depth := 0
	for i := 0; i < len(b); i++ {
		switch c := b[i]; c {
		case '{', '[':
			depth++
			if depth > lim.MaxDataDepth {
				return false, &fieldError{"data", fmt.Sprintf("nested deeper than %d levels", lim.MaxDataDepth)}
			}
		case '}', ']':
			depth--
		case '"':
			start := i + 1
			escaped := false
			for i++; i < len(b) && b[i] != '"'; i++ {
				if b[i] == '\\' {
					escaped = true
					i++
				}
			}
			str := b[start:i]
			if len(str) > lim.MaxStringLen {
				return false, &fieldError{"data", fmt.Sprintf("string longer than %d bytes", lim.MaxStringLen)}
			}
			j := i + 1
			for j < len(b) && (b[j] == ' ' || b[j] == '\t' || b[j] == '\n' || b[j] == '\r') {
				j++
			}
			if j < len(b) && b[j] == ':' && (escaped || IsSensitiveKey(string(str))) {
				sensitive = true // escaped keys are checked on the decoding path
			}
		}
	}
	return sensitive, nil
}

func walkData(v any, depth int, path string, lim Limits) (int, error) {
	if depth > lim.MaxDataDepth {
		return 0, &fieldError{path, fmt.Sprintf("nested deeper than %d levels", lim.MaxDataDepth)}
	}
	dropped := 0
	switch x := v.(type) {
	case string:
		if len(x) > lim.MaxStringLen {
			return 0, &fieldError{path, fmt.Sprintf("string longer than %d bytes", lim.MaxStringLen)}
		}
	case map[string]any:
		for k, child := range x {
			if IsSensitiveKey(k) {
				delete(x, k)
				dropped++
				continue
			}
			n, err := walkData(child, depth+1, path+"."+k, lim)
			if err != nil {
				return 0, err
			}
			dropped += n
		}
	case []any:
		for i, child := range x {
			n, err := walkData(child, depth+1, fmt.Sprintf("%s[%d]", path, i), lim)
			if err != nil {
				return 0, err
			}
			dropped += n
		}
	}
	return dropped, nil
}
