package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/google/uuid"
)

func runPublish(ctx context.Context, e env, args []string) error {
	fs := flag.NewFlagSet("vigil publish", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	var rf remoteFlags
	rf.register(fs)
	batch := fs.Int("batch", 5000, "events per request")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: vigil publish [flags] [FILE...]   (JSON object, JSON array or NDJSON; '-' or none reads stdin)")
		fs.PrintDefaults()
	}
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
		var r io.Reader = e.stdin
		if name != "-" {
			f, err := os.Open(name)
			if err != nil {
				return err
			}
			defer f.Close()
			r = f
		}
		events, err := readEvents(r)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		for start := 0; start < len(events); start += *batch {
			chunk := events[start:min(start+*batch, len(events))]
			body := append([]byte("["), bytes.Join(chunk, []byte(","))...)
			body = append(body, ']')
			acks, err := c.PublishRaw(ctx, body, "application/json")
			if err != nil {
				return fmt.Errorf("%s: events %d..%d: %w", name, start, start+len(chunk)-1, err)
			}
			total += len(acks)
			if len(acks) > 0 {
				fmt.Fprintf(e.stdout, "published %d events (seq %d..%d)\n", len(acks), acks[0].Seq, acks[len(acks)-1].Seq)
			}
		}
	}
	fmt.Fprintf(e.stdout, "total: %d events\n", total)
	return nil
}

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
