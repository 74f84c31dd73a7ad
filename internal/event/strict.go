package event

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// Strict JSON for a security log (issue 8, item 11). encoding/json and
// goccy/go-json accept inputs that different parsers read differently: a
// duplicate key (the last one wins: `"type":"audit.x","type":"authentication.login"`
// is stored as a login, while a SIEM reading the same bytes may take the
// first), a field name in another case ("Type" fills type), invalid UTF-8
// and lone UTF-16 surrogates (silently replaced by U+FFFD, so two different
// byte strings become one value). checkStrict rejects all of them before
// either decoder runs, in one pass over the bytes without allocating for
// ordinary events.

// maxStrictDepth bounds the scanner's recursion. Far above the data depth
// limit (checked later with the configured limits): only absurd nesting
// stops here.
const maxStrictDepth = 512

// dupMapAbove is the key count of one object above which duplicates are
// found with a map instead of comparing with every earlier key, so an
// object of 10,000 keys costs linear, not quadratic, time.
const dupMapAbove = 16

// plainASCII marks the bytes a string holds as themselves: ASCII but the
// quote, the backslash and control characters. Never modified.
var plainASCII = func() (t [256]bool) {
	for c := 0x20; c < 0x80; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// errStrictSyntax means the bytes are not JSON: the decoder that runs next
// reports the syntax error precisely.
var errStrictSyntax = errors.New("malformed JSON")

// eventFieldBit returns the bit of a uint64 that stands for the top-level
// event field named exactly k, or 0 for a name that is not an event field:
// the event object's duplicates are found with a bit set. A switch, not a
// map: it is asked for every key of every event. TestEventFieldBits keeps
// it in step with Event's json tags.
func eventFieldBit(k []byte) uint64 {
	switch string(k) {
	case "id":
		return 1 << 0
	case "seq":
		return 1 << 1
	case "time":
		return 1 << 2
	case "received_at":
		return 1 << 3
	case "type":
		return 1 << 4
	case "category":
		return 1 << 5
	case "severity":
		return 1 << 6
	case "source":
		return 1 << 7
	case "tenant":
		return 1 << 8
	case "message":
		return 1 << 9
	case "user":
		return 1 << 10
	case "user_id":
		return 1 << 11
	case "src_ip":
		return 1 << 12
	case "resource":
		return 1 << 13
	case "action":
		return 1 << 14
	case "outcome":
		return 1 << 15
	case "confidence":
		return 1 << 16
	case "risk_score":
		return 1 << 17
	case "mitre_tactics":
		return 1 << 18
	case "mitre_techniques":
		return 1 << 19
	case "tags":
		return 1 << 20
	case "data":
		return 1 << 21
	case "chain":
		return 1 << 22
	case "prev_hash":
		return 1 << 23
	case "hash":
		return 1 << 24
	}
	return 0
}

// strictError is a refusal with the path of the offending value, built
// from the innermost segment outwards as the scanner unwinds.
type strictError struct {
	path   []string // innermost first
	reason string
	// topOnly names only the outermost field (for the depth limit, whose
	// full path would be hundreds of segments).
	topOnly bool
}

func (e *strictError) Error() string { return e.fieldError().Error() }

func (e *strictError) fieldError() *fieldError {
	if e.topOnly && len(e.path) > 0 {
		return &fieldError{e.path[len(e.path)-1], e.reason}
	}
	var b strings.Builder
	for i := len(e.path) - 1; i >= 0; i-- {
		seg := e.path[i]
		if b.Len() > 0 && !strings.HasPrefix(seg, "[") {
			b.WriteByte('.')
		}
		b.WriteString(seg)
	}
	return &fieldError{b.String(), e.reason}
}

// within adds the segment seg (a key, or "[i]") to the path of a
// strictError coming up from a nested value.
func within(err error, seg string) error {
	if se, ok := err.(*strictError); ok {
		se.path = append(se.path, seg)
	}
	return err
}

// strictScanner walks one JSON value. Each object keeps its keys in an
// array on its own stack frame (a map above dupMapAbove keys), so an
// ordinary event is checked without allocating.
type strictScanner struct {
	b     []byte
	event bool // the outermost object is an event: its keys are event fields
}

// checkStrict reports a *fieldError for a duplicate key (at any depth), a
// top-level key that is not exactly an event field's name, invalid UTF-8
// or a lone surrogate escape in any string, or errStrictSyntax for bytes
// that are not one JSON object.
func checkStrict(raw []byte) error {
	s := strictScanner{b: raw, event: true}
	i := s.skipSpace(0)
	if i >= len(raw) || raw[i] != '{' {
		return errStrictSyntax
	}
	end, err := s.object(i, 0)
	return s.finish(end, err)
}

// CheckJSON applies the same strictness to any one JSON value (a request
// body that carries events another way, like a GraphQL request): no key
// twice in an object at any depth, valid UTF-8 and no unpaired surrogate
// escape in any string. It answers nil for bytes that are not JSON, which
// the caller's decoder refuses.
func CheckJSON(raw []byte) error {
	s := strictScanner{b: raw}
	i := s.skipSpace(0)
	if i >= len(raw) {
		return nil
	}
	end, err := s.value(i, 0)
	if err = s.finish(end, err); err == errStrictSyntax {
		return nil
	}
	return err
}

// finish turns the outcome of walking the top-level value into the error
// for the caller: a *fieldError naming the path, errStrictSyntax, or nil.
func (s *strictScanner) finish(end int, err error) error {
	if err != nil {
		var se *strictError
		if errors.As(err, &se) {
			return se.fieldError()
		}
		return err
	}
	if s.skipSpace(end) != len(s.b) {
		return errStrictSyntax
	}
	return nil
}

func (s *strictScanner) skipSpace(i int) int {
	for i < len(s.b) {
		switch s.b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// value walks the value starting at b[i] (no leading space) and returns
// the index after it.
func (s *strictScanner) value(i, depth int) (int, error) {
	if i >= len(s.b) {
		return 0, errStrictSyntax
	}
	switch c := s.b[i]; {
	case c == '{':
		return s.object(i, depth+1)
	case c == '[':
		return s.array(i, depth+1)
	case c == '"':
		end, _, err := s.str(i)
		return end, err
	default: // number, true, false, null: the decoder checks their form
		j := i
		for j < len(s.b) {
			c := s.b[j]
			if c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c == '-' || c == '+' || c == '.' || c == 'E' {
				j++
				continue
			}
			break
		}
		if j == i {
			return 0, errStrictSyntax
		}
		return j, nil
	}
}

// object walks the object at b[i] == '{'. depth 0 is the event itself,
// whose keys must be event fields' exact names.
func (s *strictScanner) object(i, depth int) (int, error) {
	if depth > maxStrictDepth {
		return 0, &strictError{reason: fmt.Sprintf("nested deeper than %d levels", maxStrictDepth), topOnly: true}
	}
	var small [dupMapAbove][]byte
	keys := small[:0]            // this object's keys while there are few
	var seen map[string]struct{} // for objects with many keys
	var fields uint64            // the event object's keys, as eventFieldBit bits
	i = s.skipSpace(i + 1)
	if i < len(s.b) && s.b[i] == '}' {
		return i + 1, nil
	}
	for {
		if i >= len(s.b) || s.b[i] != '"' {
			return 0, errStrictSyntax
		}
		end, escaped, err := s.str(i)
		if err != nil {
			// A bad key: the path names the object it is in (the key
			// itself cannot be shown faithfully).
			if se, ok := err.(*strictError); ok {
				se.reason = "object key: " + se.reason
			}
			return 0, err
		}
		key := s.b[i+1 : end-1]
		if escaped {
			key = unescapeKey(key)
		}
		if depth == 0 && s.event {
			bit := eventFieldBit(key)
			if bit == 0 {
				if eventFieldBit(bytes.ToLower(key)) != 0 {
					return 0, &strictError{path: []string{string(key)}, reason: fmt.Sprintf("unknown field (field names are case-sensitive: %q)", strings.ToLower(string(key)))}
				}
				return 0, &strictError{path: []string{string(key)}, reason: "unknown field (put producer-specific details under data)"}
			}
			if fields&bit != 0 {
				return 0, dupKey(key)
			}
			fields |= bit
		} else {
			var dup bool
			if keys, dup = addKey(key, keys, &seen); dup {
				return 0, dupKey(key)
			}
		}
		i = s.skipSpace(end)
		if i >= len(s.b) || s.b[i] != ':' {
			return 0, errStrictSyntax
		}
		i = s.skipSpace(i + 1)
		if i, err = s.value(i, depth); err != nil {
			return 0, within(err, string(key))
		}
		i = s.skipSpace(i)
		if i >= len(s.b) {
			return 0, errStrictSyntax
		}
		switch s.b[i] {
		case ',':
			i = s.skipSpace(i + 1)
		case '}':
			return i + 1, nil
		default:
			return 0, errStrictSyntax
		}
	}
}

func dupKey(key []byte) error {
	return &strictError{path: []string{string(key)}, reason: fmt.Sprintf("duplicate key %q: every key may appear only once in an object", key)}
}

// addKey records key among an object's keys (the slice while it has room,
// then the map) and reports whether it was there already.
func addKey(key []byte, keys [][]byte, seen *map[string]struct{}) ([][]byte, bool) {
	if *seen != nil {
		if _, ok := (*seen)[string(key)]; ok {
			return keys, true
		}
		(*seen)[string(key)] = struct{}{}
		return keys, false
	}
	for _, k := range keys {
		if bytes.Equal(k, key) {
			return keys, true
		}
	}
	if len(keys) < cap(keys) {
		return append(keys, key), false
	}
	m := make(map[string]struct{}, 4*dupMapAbove)
	for _, k := range keys {
		m[string(k)] = struct{}{}
	}
	m[string(key)] = struct{}{}
	*seen = m
	return keys, false
}

func (s *strictScanner) array(i, depth int) (int, error) {
	if depth > maxStrictDepth {
		return 0, &strictError{reason: fmt.Sprintf("nested deeper than %d levels", maxStrictDepth), topOnly: true}
	}
	i = s.skipSpace(i + 1)
	if i < len(s.b) && s.b[i] == ']' {
		return i + 1, nil
	}
	for n := 0; ; n++ {
		var err error
		if i, err = s.value(i, depth); err != nil {
			return 0, within(err, "["+strconv.Itoa(n)+"]")
		}
		i = s.skipSpace(i)
		if i >= len(s.b) {
			return 0, errStrictSyntax
		}
		switch s.b[i] {
		case ',':
			i = s.skipSpace(i + 1)
		case ']':
			return i + 1, nil
		default:
			return 0, errStrictSyntax
		}
	}
}

// str walks the string at b[i] == '"' and returns the index after its
// closing quote and whether it holds escapes. Its bytes must be UTF-8 and
// its \u escapes must not leave a surrogate unpaired: both would be
// replaced by U+FFFD when decoded, silently.
func (s *strictScanner) str(i int) (end int, escaped bool, err error) {
	b := s.b
	start := i
	i++
	for i < len(b) {
		c := b[i]
		switch {
		case c == '"':
			return i + 1, escaped, nil
		case c == '\\':
			escaped = true
			if i+1 >= len(b) {
				return 0, false, errStrictSyntax
			}
			if b[i+1] != 'u' {
				i += 2
				continue
			}
			r, ok := hex4(b, i+2)
			if !ok {
				return 0, false, errStrictSyntax
			}
			i += 6
			switch {
			case r >= 0xD800 && r < 0xDC00: // high surrogate: a low one must follow
				if i+6 <= len(b) && b[i] == '\\' && b[i+1] == 'u' {
					if r2, ok := hex4(b, i+2); ok && r2 >= 0xDC00 && r2 < 0xE000 {
						i += 6
						continue
					}
				}
				return 0, false, &strictError{reason: fmt.Sprintf("\\u%04x at byte %d is an unpaired UTF-16 surrogate (not valid Unicode)", r, i-6)}
			case r >= 0xDC00 && r < 0xE000:
				return 0, false, &strictError{reason: fmt.Sprintf("\\u%04x at byte %d is an unpaired UTF-16 surrogate (not valid Unicode)", r, i-6)}
			}
		case c < utf8.RuneSelf:
			i++
			for i < len(b) && plainASCII[b[i]] { // the common case, in a tight loop
				i++
			}
		default:
			r, size := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && size <= 1 {
				return 0, false, &strictError{reason: fmt.Sprintf("not valid UTF-8 (byte %d of the event, in the string starting at byte %d)", i, start)}
			}
			i += size
		}
	}
	return 0, false, errStrictSyntax
}

func hex4(b []byte, i int) (rune, bool) {
	if i+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, c := range b[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}

// unescapeKey decodes the escapes of a key that str has validated (so every
// \u escape is well formed and surrogates are paired): keys that differ
// only in escaping ("type" and "\u0074ype") are the same key to a decoder.
func unescapeKey(k []byte) []byte {
	out := make([]byte, 0, len(k))
	for i := 0; i < len(k); i++ {
		c := k[i]
		if c != '\\' || i+1 >= len(k) {
			out = append(out, c)
			continue
		}
		i++
		switch k[i] {
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r, _ := hex4(k, i+1)
			i += 4
			if utf16.IsSurrogate(r) && i+7 <= len(k) && k[i+1] == '\\' && k[i+2] == 'u' {
				r2, _ := hex4(k, i+3)
				r = utf16.DecodeRune(r, r2)
				i += 6
			}
			out = utf8.AppendRune(out, r)
		default: // '"', '\\', '/' and anything the decoder will reject
			out = append(out, k[i])
		}
	}
	return out
}
