package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"unicode"

	"github.com/google/uuid"

	"github.com/vigil-sec/vigil/client"
)

func runPublish(ctx context.Context, e env, args []string) error {
	fs := e.flagSet()
	var rf remoteFlags
	rf.register(fs)
	batch := fs.Int("batch", 5000, "events per request")
	if err := fs.Parse(args); err != nil {
		return err
	}
	c, err := rf.client(e)
	if err != nil {
		return err
	}
	files := fs.Args()
	if len(files) == 0 {
		files = []string{"-"}
	}
	total := 0
	for _, name := range files {
		n, err := publishFile(ctx, e, c, name, *batch)
		total += n
		if err != nil {
			return err
		}
	}
	e.printf("total: %d events\n", total)
	return nil
}

// publishFile publishes one file ("-": stdin) in batches. Errors name the
// file once ("stdin" for "-") and each event by its index in the file
// (0-based, as the server counts: "event 1" is the second event) and the
// line it starts on, not by its index in one request.
func publishFile(ctx context.Context, e env, c *client.Client, name string, batch int) (int, error) {
	label := name
	var r io.Reader = e.stdin
	if name == "-" {
		label = "stdin"
	} else {
		f, err := os.Open(name)
		if err != nil {
			return 0, err // *PathError names the file
		}
		defer func() { _ = f.Close() }() // read-only: closing cannot lose data
		r = f
	}
	events, err := readEvents(r)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", label, err)
	}
	total := 0
	for start := 0; start < len(events); start += batch {
		chunk := events[start:min(start+batch, len(events))]
		body := []byte("[")
		for i, ev := range chunk {
			if i > 0 {
				body = append(body, ',')
			}
			body = append(body, ev.raw...)
		}
		body = append(body, ']')
		acks, err := c.PublishRaw(ctx, body, "application/json")
		if err != nil {
			return total, fmt.Errorf("%s: %w", label, renumber(err, start, chunk, len(events) > batch))
		}
		total += len(acks)
		if len(acks) > 0 {
			e.printf("published %d events (seq %d..%d)\n", len(acks), acks[0].Seq, acks[len(acks)-1].Seq)
		}
	}
	return total, nil
}

// renumber turns a rejection's per-request event indexes (0-based, within
// one batch) into indexes in the file (0-based too, as the server's own
// messages count) with the line each event starts on, and says which
// events of the file the failed batch held when there were several. The
// server's summary line is replaced: it counts within the request.
func renumber(err error, start int, chunk []rawEvent, batched bool) error {
	var he *client.Error
	if !errors.As(err, &he) {
		return err
	}
	if len(he.Details) == 0 {
		if batched && len(chunk) > 0 {
			last := start + len(chunk) - 1
			return fmt.Errorf("events %d..%d (lines %d..%d): %w", start, last, chunk[0].line, chunk[len(chunk)-1].line, err)
		}
		return err
	}
	describe := func(d client.Problem) string {
		s := fmt.Sprintf("event %d", start+d.Index)
		if d.Index >= 0 && d.Index < len(chunk) {
			s += fmt.Sprintf(" (line %d)", chunk[d.Index].line)
		}
		if d.Field != "" {
			s += " " + d.Field
		}
		return s + ": " + d.Reason
	}
	var b strings.Builder
	fmt.Fprintf(&b, "HTTP %d: ", he.Status)
	if len(he.Details) == 1 {
		b.WriteString(describe(he.Details[0]))
	} else {
		fmt.Fprintf(&b, "%d events refused:", len(he.Details))
		for _, d := range he.Details {
			b.WriteString("\n  " + describe(d))
		}
	}
	return &renumbered{msg: b.String(), err: err}
}

type renumbered struct {
	msg string
	err error
}

func (r *renumbered) Error() string { return r.msg }
func (r *renumbered) Unwrap() error { return r.err }

// rawEvent is one event of an input as read (with an id added) and the
// line of the input it starts on (1-based).
type rawEvent struct {
	raw  []byte
	line int
}

// readEvents splits a JSON object, a JSON array or NDJSON into raw event
// objects, giving each an id so that retries are idempotent. Errors name
// the event by its index (0-based) and the line it starts on.
func readEvents(r io.Reader) ([]rawEvent, error) {
	all, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	trimmed := bytes.TrimLeftFunc(all, unicode.IsSpace)
	lines := lineCounter{data: all}
	base := len(all) - len(trimmed) // offsets below are in data, lines in all
	data := bytes.TrimRightFunc(trimmed, unicode.IsSpace)
	var raws []rawEvent
	dec := json.NewDecoder(bytes.NewReader(data))
	if len(data) > 0 && data[0] == '[' {
		var check []json.RawMessage
		if err := json.Unmarshal(data, &check); err != nil {
			return nil, fmt.Errorf("malformed JSON array: %w", err)
		}
		// Valid: walk it again for where each element starts.
		if _, err := dec.Token(); err != nil { // [
			return nil, fmt.Errorf("malformed JSON array: %w", err)
		}
		for dec.More() {
			var raw json.RawMessage
			if err := dec.Decode(&raw); err != nil {
				return nil, fmt.Errorf("event %d: malformed JSON: %w", len(raws), err)
			}
			at := base + int(dec.InputOffset()) - len(raw)
			raws = append(raws, rawEvent{raw: raw, line: lines.at(at)})
		}
	} else {
		for {
			before := int(dec.InputOffset())
			var raw json.RawMessage
			if err := dec.Decode(&raw); err == io.EOF {
				break
			} else if err != nil {
				at := base + before + len(data[before:]) - len(bytes.TrimLeftFunc(data[before:], unicode.IsSpace))
				return nil, fmt.Errorf("event %d (line %d): malformed JSON: %w", len(raws), lines.at(at), err)
			}
			at := base + int(dec.InputOffset()) - len(raw)
			raws = append(raws, rawEvent{raw: raw, line: lines.at(at)})
		}
	}
	for i := range raws {
		withID, err := ensureID(raws[i].raw)
		if err != nil {
			return nil, fmt.Errorf("event %d (line %d): %w", i, raws[i].line, err)
		}
		raws[i].raw = withID
	}
	return raws, nil
}

// lineCounter finds the 1-based line of byte offsets given in increasing
// order, counting each newline once.
type lineCounter struct {
	data []byte
	off  int
	line int
}

func (l *lineCounter) at(off int) int {
	if off < l.off { // not increasing: count from the start again
		l.off, l.line = 0, 0
	}
	l.line += bytes.Count(l.data[l.off:off], []byte{'\n'})
	l.off = off
	return l.line + 1
}

func ensureID(raw json.RawMessage) ([]byte, error) {
	var probe struct {
		ID *string `json:"id"`
	}
	if err := json.Unmarshal(raw, &probe); err != nil {
		return nil, fmt.Errorf("each event must be a JSON object: %w", err)
	}
	if probe.ID != nil && *probe.ID != "" {
		return raw, nil
	}
	id, err := uuid.NewV7()
	if err != nil {
		return nil, err
	}
	trimmed := bytes.TrimSpace(raw)
	rest := bytes.TrimSpace(trimmed[1:])
	out := append([]byte(`{"id":"`+id.String()+`"`), func() []byte {
		if len(rest) > 0 && rest[0] != '}' {
			return []byte(",")
		}
		return nil
	}()...)
	return append(out, rest...), nil
}
