package event

import (
	"fmt"
	"strings"
)

// Problem names one thing wrong with one event of a request.
type Problem struct {
	Index  int    `json:"index"`
	Field  string `json:"field,omitempty"`
	Reason string `json:"reason"`
}

// BatchError reports every rejected event of a request. TooLarge marks
// requests refused for size (HTTP 413) and Unsupported those refused for
// their Content-Type (HTTP 415) rather than content (HTTP 400).
type BatchError struct {
	Problems    []Problem
	TooLarge    bool
	Unsupported bool
}

func (e *BatchError) Error() string {
	if len(e.Problems) == 0 {
		return "invalid events"
	}
	p := e.Problems[0]
	msg := fmt.Sprintf("event %d", p.Index)
	if p.Field != "" {
		msg += " " + p.Field
	}
	msg += ": " + p.Reason
	if n := len(e.Problems) - 1; n > 0 {
		msg += fmt.Sprintf(" (and %d more)", n)
	}
	return msg
}

// fieldError is returned by validation of one event.
type fieldError struct {
	field, reason string
}

func (e *fieldError) Error() string {
	if e.field == "" {
		return e.reason
	}
	return e.field + ": " + e.reason
}

// ProblemFrom turns a validation error of event index into a Problem.
func ProblemFrom(index int, err error) Problem {
	if fe, ok := err.(*fieldError); ok {
		return Problem{Index: index, Field: fe.field, Reason: fe.reason}
	}
	msg := err.Error()
	// encoding/json names unknown fields as `json: unknown field "x"`.
	if rest, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
		name := strings.Trim(rest, `"`)
		return Problem{Index: index, Field: name, Reason: "unknown field (put producer-specific details under data)"}
	}
	return Problem{Index: index, Reason: strings.TrimPrefix(msg, "json: ")}
}
