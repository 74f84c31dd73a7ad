package otlp

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// The record count of a request is checked before it is decoded: an
// empty LogRecord is 2 bytes of protobuf (3 of JSON) but a few hundred
// bytes once decoded, so a 16 MiB body of empty records would make the
// decoder allocate gigabytes before Count could refuse it. These scans
// allocate nothing per record.

// errTooManyRecords stops a scan past the limit.
var errTooManyRecords = errors.New("otlp: too many log records")

// maxMessages bounds the protobuf messages (JSON objects) of one request:
// records are not the only small thing that decodes large (an empty
// attribute is 2 bytes on the wire, ~150 bytes decoded). A million is
// twice what 10,000 records of 20 attributes each hold, and decodes in
// about 150 MB at most.
const maxMessages = 1_000_000

// maxNesting bounds how deep the message scan follows nested values
// (kvlists in arrays in kvlists...); protobuf-go's decoder stops at 10,000.
const maxNesting = 100

// errTooManyMessages and errTooDeep stop a scan.
var (
	errTooManyMessages = fmt.Errorf("otlp: more than %d messages (records, attributes, values) in one request", maxMessages)
	errTooDeep         = fmt.Errorf("otlp: values nested deeper than %d levels", maxNesting)
)

// countMessages walks a protobuf message of type md on the wire and
// subtracts every embedded message from budget, failing when it runs out
// or the nesting passes maxNesting. Fields the descriptor does not know
// are skipped (the decoder keeps them as unknown bytes, not messages).
func countMessages(b []byte, md protoreflect.MessageDescriptor, budget *int, depth int) error {
	if depth > maxNesting {
		return errTooDeep
	}
	fields := md.Fields()
	for len(b) > 0 {
		num, typ, l := protowire.ConsumeTag(b)
		if l < 0 {
			return protowire.ParseError(l)
		}
		b = b[l:]
		if typ == protowire.BytesType {
			v, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return protowire.ParseError(m)
			}
			if fd := fields.ByNumber(num); fd != nil && fd.Kind() == protoreflect.MessageKind {
				if *budget--; *budget < 0 {
					return errTooManyMessages
				}
				if err := countMessages(v, fd.Message(), budget, depth+1); err != nil {
					return err
				}
			}
			b = b[m:]
			continue
		}
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			return protowire.ParseError(m)
		}
		b = b[m:]
	}
	return nil
}

// Field numbers of opentelemetry/proto/collector/logs/v1 and logs/v1:
// ExportLogsServiceRequest.resource_logs = 1, ResourceLogs.scope_logs = 2,
// ScopeLogs.log_records = 2.
const (
	fieldResourceLogs protowire.Number = 1
	fieldScopeLogs    protowire.Number = 2
	fieldLogRecords   protowire.Number = 2
)

// countProto counts the log records of a protobuf ExportLogsServiceRequest
// from its wire form, stopping with errTooManyRecords above limit. A
// malformed body is an error (the decoder would refuse it too).
func countProto(b []byte, limit int) (int, error) {
	n := 0
	err := eachField(b, fieldResourceLogs, func(rl []byte) error {
		return eachField(rl, fieldScopeLogs, func(sl []byte) error {
			return eachField(sl, fieldLogRecords, func([]byte) error {
				if n++; n > limit {
					return errTooManyRecords
				}
				return nil
			})
		})
	})
	return n, err
}

// eachField calls fn with the bytes of every length-delimited field num of
// the message b, skipping the other fields.
func eachField(b []byte, num protowire.Number, fn func([]byte) error) error {
	for len(b) > 0 {
		f, typ, l := protowire.ConsumeTag(b)
		if l < 0 {
			return protowire.ParseError(l)
		}
		b = b[l:]
		if f == num && typ == protowire.BytesType {
			v, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return protowire.ParseError(m)
			}
			if err := fn(v); err != nil {
				return err
			}
			b = b[m:]
			continue
		}
		m := protowire.ConsumeFieldValue(f, typ, b)
		if m < 0 {
			return protowire.ParseError(m)
		}
		b = b[m:]
	}
	return nil
}

// countJSON counts the elements of every array under a "logRecords" or
// "log_records" key (the two names protojson accepts), wherever it is: it
// can count too many for an odd request, never too few. It stops with
// errTooManyRecords above limit, errTooManyMessages past maxMessages
// objects (each object decodes into at most one message) and errTooDeep
// past maxNesting levels.
func countJSON(b []byte, limit int) (int, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber() // numbers stay text: nothing to parse
	type frame struct {
		obj, wantKey, count bool
		key                 string
	}
	var st []frame
	done := func() { // a value ended: an object now expects a key
		if len(st) > 0 && st[len(st)-1].obj {
			st[len(st)-1].wantKey = true
		}
	}
	n, objects := 0, 0
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		d, isDelim := tok.(json.Delim)
		if isDelim && (d == '}' || d == ']') {
			st = st[:len(st)-1]
			done()
			continue
		}
		if len(st) > 0 {
			top := &st[len(st)-1]
			if top.obj && top.wantKey {
				top.key, _ = tok.(string)
				top.wantKey = false
				continue
			}
			if !top.obj && top.count {
				if n++; n > limit {
					return n, errTooManyRecords
				}
			}
		}
		if isDelim {
			if d == '{' {
				if objects++; objects > maxMessages {
					return n, errTooManyMessages
				}
			}
			if len(st) >= 2*maxNesting+10 { // a value level is an object and an array
				return n, errTooDeep
			}
			count := d == '[' && len(st) > 0 && st[len(st)-1].obj &&
				(st[len(st)-1].key == "logRecords" || st[len(st)-1].key == "log_records")
			st = append(st, frame{obj: d == '{', wantKey: d == '{', count: count})
			continue
		}
		done()
	}
}
