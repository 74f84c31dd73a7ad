package main

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/vigil-sec/vigil/client"
)

// TestReadEventsLines: each event keeps the line it starts on (blank lines,
// leading whitespace, a pretty-printed object, an array), and a broken
// event is named by its index (0-based) and line.
func TestReadEventsLines(t *testing.T) {
	for _, c := range []struct {
		name, in string
		lines    []int
	}{
		{"ndjson", "{\"type\":\"a.b\"}\n{\"type\":\"a.b\"}\n", []int{1, 2}},
		{"blank lines", "\n\n{\"type\":\"a.b\"}\r\n\r\n  {\"type\":\"a.b\"}\n", []int{3, 5}},
		{"pretty", "{\n  \"type\": \"a.b\"\n}\n{\"type\":\"a.b\"}", []int{1, 4}},
		{"array", "\n[{\"type\":\"a.b\"},\n {\"type\":\"a.b\"}, {\"type\":\"a.b\"}]", []int{2, 3, 3}},
	} {
		evs, err := readEvents(strings.NewReader(c.in))
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		got := make([]int, len(evs))
		for i, ev := range evs {
			got[i] = ev.line
			if !strings.HasPrefix(string(ev.raw), `{"id":"`) {
				t.Errorf("%s: event %d was given no id: %s", c.name, i, ev.raw)
			}
		}
		if !slices.Equal(got, c.lines) {
			t.Errorf("%s: lines %v, want %v", c.name, got, c.lines)
		}
	}
	for in, want := range map[string]string{
		"{\"type\":\"a.b\"}\n\n{\"type\": nope}\n": "event 1 (line 3): malformed JSON",
		"{\"type\":\"a.b\"}\n42\n":                 "event 1 (line 2): each event must be a JSON object",
	} {
		if _, err := readEvents(strings.NewReader(in)); err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("%q: error %v, want %q", in, err, want)
		}
	}
}

// TestRenumber: a rejection names each event once, by its index in the
// file (the batch's start added) and its line; the server's summary, which
// counts within the request, is not repeated.
func TestRenumber(t *testing.T) {
	chunk := []rawEvent{{line: 7}, {line: 9}}
	one := &client.Error{Status: 400, Message: `event 1 severity: unknown value "huge"`,
		Details: []client.Problem{{Index: 1, Field: "severity", Reason: `unknown value "huge"`}}}
	if got, want := renumber(one, 10, chunk, true).Error(), `HTTP 400: event 11 (line 9) severity: unknown value "huge"`; got != want {
		t.Errorf("one problem: %q, want %q", got, want)
	}
	two := &client.Error{Status: 400, Message: "event 0 category: x (and 1 more)", Details: []client.Problem{
		{Index: 0, Field: "category", Reason: "x"}, {Index: 1, Field: "severity", Reason: "y"}}}
	want := "HTTP 400: 2 events refused:\n  event 0 (line 7) category: x\n  event 1 (line 9) severity: y"
	if got := renumber(two, 0, chunk, false).Error(); got != want {
		t.Errorf("two problems: %q, want %q", got, want)
	}
	if err := renumber(two, 0, chunk, false); !errors.Is(err, two) {
		t.Error("the renumbered error does not wrap the client's")
	}
	none := &client.Error{Status: 413, Message: "request body over 16 MiB"}
	if got, want := renumber(none, 5000, chunk, true).Error(), "events 5000..5001 (lines 7..9): HTTP 413: request body over 16 MiB"; got != want {
		t.Errorf("no details: %q, want %q", got, want)
	}
}
