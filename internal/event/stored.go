package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"time"
	"unicode/utf8"
	"unsafe"

	gojson "github.com/goccy/go-json"
)

// DecodeStored decodes an event as the log stores it (AppendJSON's form)
// into a new Event, with the same result as goccy/go-json's Unmarshal. A
// hand-written scanner takes the shape Vigil writes: known keys, plain
// strings, UTC times; the strings share one copy of the body and Data
// points into data, which the caller must not modify afterwards. Anything
// else (an unknown key, a null, a key in another case, a malformed value)
// is decoded by goccy instead, so the result never depends on the path.
func DecodeStored(data []byte) (*Event, error) {
	return decodeStored(data, string(data))
}

// DecodeStoredOwned is DecodeStored for a body the caller hands over for
// good, such as a message the NATS client allocated for this delivery: the
// event's strings then point into data itself instead of into a copy of
// it, which saves a body-sized allocation and copy per event on the replay
// path. data must never be modified afterwards (Data and SetStored keep it
// anyway).
func DecodeStoredOwned(data []byte) (*Event, error) {
	return decodeStored(data, unsafe.String(unsafe.SliceData(data), len(data)))
}

// decodeStored decodes data; s holds the same bytes, for the strings.
func decodeStored(data []byte, s string) (*Event, error) {
	e := new(Event)
	if decodeFast(data, s, e) {
		return e, nil
	}
	*e = Event{}
	if err := gojson.Unmarshal(data, e); err != nil {
		return nil, err
	}
	return e, nil
}

var errSlow = errors.New("slow path")

type scanner struct {
	b   []byte
	s   string // the same bytes as b: field strings share it
	pos int
	// arena backs every string list of the event (tags, tactics,
	// techniques): one allocation for all of them.
	arena []string
}

func decodeFast(data []byte, s string, e *Event) bool {
	if !utf8.Valid(data) {
		return false // goccy replaces invalid bytes; let it
	}
	sc := scanner{b: data, s: s}
	sc.ws()
	if !sc.eat('{') {
		return false
	}
	sc.ws()
	if sc.eat('}') {
		return sc.end()
	}
	for {
		sc.ws()
		key, ok := sc.rawString()
		if !ok {
			return false
		}
		sc.ws()
		if !sc.eat(':') {
			return false
		}
		sc.ws()
		if sc.field(key, e) != nil {
			return false
		}
		sc.ws()
		if sc.eat(',') {
			continue
		}
		if sc.eat('}') {
			return sc.end()
		}
		return false
	}
}

func (sc *scanner) end() bool {
	sc.ws()
	return sc.pos == len(sc.b)
}

func (sc *scanner) ws() {
	for sc.pos < len(sc.b) {
		switch sc.b[sc.pos] {
		case ' ', '\t', '\n', '\r':
			sc.pos++
		default:
			return
		}
	}
}

func (sc *scanner) eat(c byte) bool {
	if sc.pos < len(sc.b) && sc.b[sc.pos] == c {
		sc.pos++
		return true
	}
	return false
}

// strByte marks the bytes a string may hold on the fast path: anything
// but '"', '\\' and control characters.
var strByte = func() (t [256]bool) {
	for c := 0x20; c < 256; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// rawString reads a string without escapes and returns it as a slice of
// the shared copy; ok is false for anything else.
func (sc *scanner) rawString() (string, bool) {
	b, i := sc.b, sc.pos
	if i >= len(b) || b[i] != '"' {
		return "", false
	}
	i++
	start := i
	for i < len(b) && strByte[b[i]] {
		i++
	}
	if i >= len(b) || b[i] != '"' {
		return "", false
	}
	sc.pos = i + 1
	return sc.s[start:i], true
}

// str reads a JSON string; one with escapes is unquoted by goccy.
func (sc *scanner) str() (string, error) {
	start := sc.pos
	if s, ok := sc.rawString(); ok {
		return s, nil
	}
	sc.pos = start
	end, ok := sc.skipString()
	if !ok {
		return "", errSlow
	}
	var s string
	if err := gojson.Unmarshal(sc.b[start:end], &s); err != nil {
		return "", errSlow
	}
	return s, nil
}

// skipString moves past a string starting at pos and returns its end.
func (sc *scanner) skipString() (int, bool) {
	if !sc.eat('"') {
		return 0, false
	}
	for {
		n := bytes.IndexByte(sc.b[sc.pos:], '"')
		if n < 0 {
			return 0, false
		}
		q := sc.pos + n
		sc.pos = q + 1
		// A quote after an odd number of backslashes is escaped.
		bs := 0
		for i := q - 1; i >= 0 && sc.b[i] == '\\'; i-- {
			bs++
		}
		if bs%2 == 0 {
			return sc.pos, true
		}
	}
}

// skipComposite moves past an object or array and returns its raw bytes.
func (sc *scanner) skipComposite() ([]byte, bool) {
	start := sc.pos
	if start >= len(sc.b) || (sc.b[start] != '{' && sc.b[start] != '[') {
		return nil, false
	}
	depth := 0
	for sc.pos < len(sc.b) {
		switch sc.b[sc.pos] {
		case '"':
			if _, ok := sc.skipString(); !ok {
				return nil, false
			}
			continue
		case '{', '[':
			depth++
		case '}', ']':
			depth--
			if depth == 0 {
				sc.pos++
				return sc.b[start:sc.pos], true
			}
		}
		sc.pos++
	}
	return nil, false
}

func (sc *scanner) number() (float64, error) {
	start := sc.pos
	for sc.pos < len(sc.b) {
		c := sc.b[sc.pos]
		if !(c >= '0' && c <= '9' || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E') {
			break
		}
		sc.pos++
	}
	lit := sc.s[start:sc.pos]
	if lit == "" || !(lit[0] == '-' || lit[0] >= '0' && lit[0] <= '9') {
		return 0, errSlow
	}
	return strconv.ParseFloat(lit, 64)
}

func (sc *scanner) strings() ([]string, error) {
	if !sc.eat('[') {
		return nil, errSlow
	}
	sc.ws()
	if sc.eat(']') {
		return []string{}, nil
	}
	if sc.arena == nil {
		sc.arena = make([]string, 0, 8)
	}
	start := len(sc.arena)
	for {
		sc.ws()
		s, err := sc.str()
		if err != nil {
			return nil, err
		}
		sc.arena = append(sc.arena, s)
		sc.ws()
		if sc.eat(',') {
			continue
		}
		if sc.eat(']') {
			// Capped: an append to one list never writes into the next.
			return sc.arena[start:len(sc.arena):len(sc.arena)], nil
		}
		return nil, errSlow
	}
}

func (sc *scanner) time() (time.Time, error) {
	start := sc.pos
	s, ok := sc.rawString()
	if ok {
		if t, ok := parseUTC(s); ok {
			return t, nil
		}
	}
	sc.pos = start
	end, ok := sc.skipString()
	if !ok {
		return time.Time{}, errSlow
	}
	var t time.Time
	if err := t.UnmarshalJSON(sc.b[start:end]); err != nil {
		return time.Time{}, errSlow
	}
	return t, nil
}

func (sc *scanner) field(key string, e *Event) (err error) {
	if sc.pos < len(sc.b) && sc.b[sc.pos] == 'n' {
		return errSlow // null: goccy's rules per field type
	}
	switch key {
	case "id":
		e.ID, err = sc.str()
	case "seq":
		start := sc.pos
		for sc.pos < len(sc.b) && sc.b[sc.pos] >= '0' && sc.b[sc.pos] <= '9' {
			sc.pos++
		}
		e.Seq, err = strconv.ParseUint(sc.s[start:sc.pos], 10, 64)
	case "time":
		e.Time, err = sc.time()
	case "received_at":
		e.ReceivedAt, err = sc.time()
	case "type":
		e.Type, err = sc.str()
	case "category":
		var s string
		if s, err = sc.str(); err == nil && s != "" {
			if !Category(s).Valid() {
				return errSlow
			}
		}
		e.Category = Category(s)
	case "severity":
		var s string
		if s, err = sc.str(); err == nil {
			e.Severity, err = ParseSeverity(s)
			if s == "" {
				e.Severity, err = SeverityInfo, nil
			}
		}
	case "source":
		e.Source, err = sc.str()
	case "tenant":
		e.Tenant, err = sc.str()
	case "message":
		e.Message, err = sc.str()
	case "user":
		e.User, err = sc.str()
	case "user_id":
		e.UserID, err = sc.str()
	case "src_ip":
		e.SrcIP, err = sc.str()
	case "resource":
		e.Resource, err = sc.str()
	case "action":
		e.Action, err = sc.str()
	case "outcome":
		e.Outcome, err = sc.str()
	case "confidence":
		var f float64
		f, err = sc.number()
		e.Confidence = &f
	case "risk_score":
		var f float64
		f, err = sc.number()
		e.RiskScore = &f
	case "mitre_tactics":
		e.MitreTactics, err = sc.strings()
	case "mitre_techniques":
		e.MitreTechniques, err = sc.strings()
	case "tags":
		e.Tags, err = sc.strings()
	case "data":
		raw, ok := sc.skipComposite()
		if !ok {
			return errSlow
		}
		e.Data = json.RawMessage(raw)
	case "chain":
		e.Chain, err = sc.str()
	case "prev_hash":
		e.PrevHash, err = sc.str()
	case "hash":
		e.Hash, err = sc.str()
	default:
		return errSlow // unknown, or a known key in another case
	}
	return err
}

// parseUTC parses "YYYY-MM-DDTHH:MM:SS[.fraction]Z", the form AppendJSON
// writes for UTC times; ok is false for anything else.
func parseUTC(s string) (time.Time, bool) {
	if len(s) < 20 || s[len(s)-1] != 'Z' || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' {
		return time.Time{}, false
	}
	num := func(a, b int) (int, bool) {
		n := 0
		for i := a; i < b; i++ {
			c := s[i]
			if c < '0' || c > '9' {
				return 0, false
			}
			n = n*10 + int(c-'0')
		}
		return n, true
	}
	year, ok1 := num(0, 4)
	month, ok2 := num(5, 7)
	day, ok3 := num(8, 10)
	hour, ok4 := num(11, 13)
	minute, ok5 := num(14, 16)
	sec, ok6 := num(17, 19)
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) || month < 1 || month > 12 || day < 1 ||
		day > daysIn(month, year) || hour > 23 || minute > 59 || sec > 59 {
		return time.Time{}, false
	}
	nsec := 0
	if frac := s[19 : len(s)-1]; frac != "" {
		if frac[0] != '.' || len(frac) < 2 || len(frac) > 10 {
			return time.Time{}, false
		}
		n, ok := num(20, len(s)-1)
		if !ok {
			return time.Time{}, false
		}
		for i := len(frac) - 1; i < 9; i++ {
			n *= 10
		}
		nsec = n
	}
	return time.Date(year, time.Month(month), day, hour, minute, sec, nsec, time.UTC), true
}

func daysIn(month, year int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}
