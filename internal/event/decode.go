package event

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"slices"
	"strings"

	gojson "github.com/goccy/go-json"
)

// Decode parses a producer request body: one JSON object, a JSON array of
// objects, or NDJSON (one object per line; chosen when the content type says
// so or the body holds several top-level values). Every event is checked;
// the error, a *BatchError, lists each bad one by index so a producer can fix
// them all at once.
func Decode(body []byte, contentType string, lim Limits) ([]*Event, error) {
	contentType, err := IngestMediaType(contentType)
	if err != nil {
		return nil, &BatchError{Unsupported: true, Problems: []Problem{{Index: 0, Reason: err.Error()}}}
	}
	if len(body) > lim.MaxBatchBytes {
		return nil, &BatchError{TooLarge: true, Problems: []Problem{{Index: 0, Reason: fmt.Sprintf("request body larger than %d bytes", lim.MaxBatchBytes)}}}
	}
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return nil, &BatchError{Problems: []Problem{{Index: 0, Reason: "empty body: send a JSON object, a JSON array or NDJSON"}}}
	}
	var raws [][]byte
	split := false // raws cut by splitArray
	switch {
	case contentType != "application/json" && contentType != "":
		raws = splitLines(trimmed)
	case trimmed[0] == '[':
		var ok bool
		if raws, ok = splitArray(trimmed); ok {
			split = true
			break
		}
		var arr []json.RawMessage
		if err := json.Unmarshal(trimmed, &arr); err != nil {
			return nil, malformedArray(err)
		}
		raws = make([][]byte, len(arr))
		for i, r := range arr {
			raws[i] = r
		}
	default:
		lines := splitLines(trimmed)
		if len(lines) > 1 && json.Valid(lines[0]) {
			raws = lines // NDJSON sent without its content type
		} else {
			raws = [][]byte{trimmed}
		}
	}
	if len(raws) > lim.MaxBatchCount {
		return nil, &BatchError{TooLarge: true, Problems: []Problem{{Index: lim.MaxBatchCount, Reason: fmt.Sprintf("more than %d events in one request", lim.MaxBatchCount)}}}
	}
	events := make([]*Event, 0, len(raws))
	var problems []Problem
	tooLarge := false
	for i, raw := range raws {
		if len(raw) > lim.MaxEventBytes {
			problems = append(problems, Problem{Index: i, Reason: fmt.Sprintf("event larger than %d bytes", lim.MaxEventBytes)})
			tooLarge = true
			continue
		}
		ev, err := DecodeOne(raw)
		if err != nil {
			problems = append(problems, ProblemFrom(i, err))
			continue
		}
		events = append(events, ev)
	}
	if len(problems) > 0 {
		if split {
			// An element splitArray cut but DecodeOne refused may make
			// the whole body malformed: named as such, as before.
			var arr []json.RawMessage
			if err := json.Unmarshal(trimmed, &arr); err != nil {
				return nil, malformedArray(err)
			}
		}
		return nil, &BatchError{Problems: problems, TooLarge: tooLarge && len(problems) == countTooLarge(problems, lim)}
	}
	return events, nil
}

// malformedArray is the error for a JSON array body encoding/json could
// not read.
func malformedArray(err error) error {
	return &BatchError{Problems: []Problem{{Index: 0, Reason: "malformed JSON array: " + strings.TrimPrefix(err.Error(), "json: ")}}}
}

// IngestMediaTypes are the Content-Types an ingest body may be sent with:
// JSON (an object or an array) and NDJSON / JSON Lines. A request without
// one is accepted too (the body's form decides). Anything else is refused
// rather than guessed at: a body labelled text/plain or form-urlencoded
// may be read differently by whatever else sees it on its way.
func IngestMediaTypes() []string {
	return []string{"application/json", "application/x-ndjson", "application/ndjson", "application/jsonl"}
}

// IngestMediaType validates an ingest request's Content-Type and returns
// its media type, lower-cased without parameters ("" when there is none).
// The only parameter allowed is charset=utf-8: events are UTF-8.
func IngestMediaType(contentType string) (string, error) {
	if strings.TrimSpace(contentType) == "" {
		return "", nil
	}
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		return "", fmt.Errorf("Content-Type %q is not a media type: %w", contentType, err)
	}
	if !slices.Contains(IngestMediaTypes(), mt) {
		hint := ""
		if mt == "application/x-www-form-urlencoded" {
			hint = " (curl -d sends this unless given -H 'Content-Type: application/json')"
		}
		return "", fmt.Errorf("Content-Type %q is not accepted%s: send %s", mt, hint, strings.Join(IngestMediaTypes(), ", "))
	}
	for k, v := range params {
		if k != "charset" || !strings.EqualFold(v, "utf-8") {
			return "", fmt.Errorf("Content-Type parameter %s=%s is not accepted: events are UTF-8 JSON (charset=utf-8 or none)", k, v)
		}
	}
	return mt, nil
}

func countTooLarge(ps []Problem, lim Limits) int {
	n := 0
	want := fmt.Sprintf("event larger than %d bytes", lim.MaxEventBytes)
	for _, p := range ps {
		if p.Reason == want {
			n++
		}
	}
	return n
}

// DecodeOne strictly decodes one event object: unknown fields are errors,
// and so is trailing data after the object; so are duplicate keys at any
// depth, field names in another case, invalid UTF-8 and unpaired surrogate
// escapes (checkStrict: each would make two parsers read the same bytes
// differently). Valid events take a fast decoder; anything it rejects is
// decoded again with encoding/json, whose errors name the field precisely.
func DecodeOne(raw []byte) (*Event, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' {
		return nil, &fieldError{"", "each event must be a JSON object"}
	}
	if err := checkStrict(raw); err != nil {
		if err != errStrictSyntax {
			return nil, err
		}
		// Not JSON: encoding/json names the syntax error. Should it
		// accept what the scanner could not walk, refuse anyway: an
		// event that skipped the strict checks is never stored.
		if _, derr := decodeStrict(raw); derr != nil {
			return nil, derr
		}
		return nil, &fieldError{"", "malformed JSON"}
	}
	fast := gojson.NewDecoder(bytes.NewReader(raw))
	fast.DisallowUnknownFields()
	var ev Event
	if fast.Decode(&ev) == nil && !fast.More() {
		return &ev, nil
	}
	return decodeStrict(raw)
}

func decodeStrict(raw []byte) (*Event, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var ev Event
	if err := dec.Decode(&ev); err != nil {
		var ute *json.UnmarshalTypeError
		if errors.As(err, &ute) && ute.Field != "" {
			return nil, &fieldError{ute.Field, fmt.Sprintf("must be %s, not %s", jsonKind(ute.Type.Kind().String()), ute.Value)}
		}
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return nil, &fieldError{"", fmt.Sprintf("malformed JSON at byte %d: %s", se.Offset, se.Error())}
		}
		if fieldErr := unmarshalerField(err); fieldErr != nil {
			return nil, fieldErr
		}
		return nil, err
	}
	if dec.More() {
		return nil, &fieldError{"", "unexpected data after the event object"}
	}
	return &ev, nil
}

// unmarshalerField recovers the field name for errors raised by the custom
// UnmarshalJSON of Category, Severity and time fields.
func unmarshalerField(err error) error {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "unknown category") || strings.HasPrefix(msg, "category"):
		return &fieldError{"category", strings.TrimPrefix(msg, "category ")}
	case strings.Contains(msg, "(valid: info, low"), strings.HasPrefix(msg, "severity"):
		return &fieldError{"severity", strings.TrimPrefix(msg, "severity ")}
	case strings.Contains(msg, "parsing time"):
		return &fieldError{"time", "must be an RFC 3339 timestamp: " + msg}
	}
	return nil
}

func jsonKind(k string) string {
	switch k {
	case "string":
		return "a string"
	case "slice":
		return "an array"
	case "float64", "int", "uint64":
		return "a number"
	case "struct", "map":
		return "an object"
	}
	return k
}

func splitLines(b []byte) [][]byte {
	var out [][]byte
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64<<10), len(b)+1)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		out = append(out, append([]byte(nil), line...))
	}
	return out
}
