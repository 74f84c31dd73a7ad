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
// file once ("stdin" for "-") and the events by their 1-based number in
// it, not by their index in a request.
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
		body := append([]byte("["), bytes.Join(chunk, []byte(","))...)
		body = append(body, ']')
		acks, err := c.PublishRaw(ctx, body, "application/json")
		if err != nil {
			return total, fmt.Errorf("%s: %w", label, renumber(err, start, len(events) > batch))
		}
		total += len(acks)
		if len(acks) > 0 {
			e.printf("published %d events (seq %d..%d)\n", len(acks), acks[0].Seq, acks[len(acks)-1].Seq)
		}
	}
	return total, nil
}

// renumber turns a rejection's per-request event indexes (0-based, within
// one batch) into event numbers in the file (1-based), and says which
// events of the file the failed batch held when there were several.
func renumber(err error, start int, batched bool) error {
	var he *client.Error
	if !errors.As(err, &he) {
		return err
	}
	if len(he.Details) == 0 {
		if batched {
			return fmt.Errorf("events %d..: %w", start+1, err)
		}
		return err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "HTTP %d: %s", he.Status, he.Message)
	for _, d := range he.Details {
		fmt.Fprintf(&b, "\n  event %d", start+d.Index+1)
		if d.Field != "" {
			fmt.Fprintf(&b, " %s", d.Field)
		}
		fmt.Fprintf(&b, ": %s", d.Reason)
	}
	return &renumbered{msg: b.String(), err: err}
}

type renumbered struct {
	msg string
	err error
}

func (r *renumbered) Error() string { return r.msg }
func (r *renumbered) Unwrap() error { return r.err }

// readEvents splits a JSON object, a JSON array or NDJSON into raw event
// objects, giving each an id so that retries are idempotent.
func readEvents(r io.Reader) ([][]byte, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	data = bytes.TrimSpace(data)
	var raws []json.RawMessage
	if len(data) > 0 && data[0] == '[' {
		if err := json.Unmarshal(data, &raws); err != nil {
			return nil, fmt.Errorf("malformed JSON array: %w", err)
		}
	} else {
		dec := json.NewDecoder(bytes.NewReader(data))
		for line := 1; ; line++ {
			var raw json.RawMessage
			if err := dec.Decode(&raw); err == io.EOF {
				break
			} else if err != nil {
				return nil, fmt.Errorf("event %d: malformed JSON: %w", line, err)
			}
			raws = append(raws, raw)
		}
	}
	out := make([][]byte, 0, len(raws))
	for i, raw := range raws {
		withID, err := ensureID(raw)
		if err != nil {
			return nil, fmt.Errorf("event %d: %w", i, err)
		}
		out = append(out, withID)
	}
	return out, nil
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
