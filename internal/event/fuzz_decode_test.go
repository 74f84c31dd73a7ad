package event_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/vigil-sec/vigil/internal/event"
)

// FuzzEventDecode feeds arbitrary request bodies to the ingest decoder and
// validator. It must never panic; a body it accepts is valid UTF-8, has no
// object with a key twice (at any depth, after unescaping) and no string
// that decodes to U+FFFD unless the body wrote one; an accepted event must
// normalize, and survive an encode/decode round trip unchanged.
// Seeds: testdata/fuzz/FuzzEventDecode.
func FuzzEventDecode(f *testing.F) {
	for _, seed := range []string{
		`{"type":"authentication.login","user":"alice","src_ip":"203.0.113.7","severity":"high"}`,
		`[{"type":"audit.query","data":{"query":"SELECT 1","password":"x"}},{"type":"security.fraud.alert"}]`,
		"{\"type\":\"audit.query\"}\n{\"type\":\"rate_limit.blocked\",\"data\":{\"blocked\":true}}",
		`{"type":"x.y","category":"nope"}`,
		`{"type":"audit.query","data":{"a":{"b":{"c":[1,2,{"d":"e"}]}}}}`,
		`{"type":`, `[]`, `null`, `{"type":"audit.query","confidence":2}`,
		`{"type":"audit.x","type":"authentication.login"}`,
		`{"type":"audit.x","data":{"a":{"b":1,"\u0062":2}}}`,
		"{\"type\":\"audit.x\",\"user\":\"\xff\"}",
		`{"type":"audit.x","message":"\ud83d\ude00 \ud800"}`,
	} {
		f.Add([]byte(seed), "application/json")
	}
	lim := event.DefaultLimits()
	lim.MaxBatchBytes = 1 << 20
	f.Fuzz(func(t *testing.T, body []byte, contentType string) {
		evs, err := event.Decode(body, contentType, lim)
		if err != nil {
			var be *event.BatchError
			if !errors.As(err, &be) || len(be.Problems) == 0 {
				t.Fatalf("error without problems: %v", err)
			}
			return
		}
		checkStrictInvariants(t, body)
		for _, e := range evs {
			if _, err := event.Normalize(e, "default", time.Unix(1700000000, 0), lim); err != nil {
				continue // rejected by validation: fine
			}
			b, err := json.Marshal(e)
			if err != nil {
				t.Fatalf("accepted event does not encode: %v", err)
			}
			back, err := event.DecodeOne(b)
			if err != nil {
				t.Fatalf("accepted event does not decode again: %v\n%s", err, b)
			}
			b2, _ := json.Marshal(back)
			if string(b) != string(b2) {
				t.Fatalf("round trip changed the event:\n%s\n%s", b, b2)
			}
		}
	})
}

// checkStrictInvariants checks an accepted body with encoding/json's token
// reader as an independent oracle.
func checkStrictInvariants(t *testing.T, body []byte) {
	t.Helper()
	if !utf8.Valid(body) {
		t.Fatalf("accepted a body that is not valid UTF-8: %q", body)
	}
	wroteFFFD := bytes.Contains(body, []byte("\uFFFD")) || bytes.Contains(bytes.ToLower(body), []byte(`\ufffd`))
	dec := json.NewDecoder(bytes.NewReader(body))
	type frame struct {
		keys      map[string]bool
		expectKey bool
	}
	var stack []*frame
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return
		}
		if err != nil {
			return // NDJSON with a blank line or similar: not the oracle's business
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		switch v := tok.(type) {
		case json.Delim:
			switch v {
			case '{':
				if top != nil && top.keys != nil {
					top.expectKey = true
				}
				stack = append(stack, &frame{keys: map[string]bool{}, expectKey: true})
			case '[':
				if top != nil && top.keys != nil {
					top.expectKey = true
				}
				stack = append(stack, &frame{})
			default:
				stack = stack[:len(stack)-1]
			}
			continue
		case string:
			if strings.ContainsRune(v, utf8.RuneError) && !wroteFFFD {
				t.Fatalf("accepted a string that decodes to U+FFFD (a lone surrogate?): %q in %q", v, body)
			}
			if top != nil && top.keys != nil && top.expectKey {
				if top.keys[v] {
					t.Fatalf("accepted a duplicate key %q: %q", v, body)
				}
				top.keys[v] = true
				top.expectKey = false
				continue
			}
		}
		if top != nil && top.keys != nil {
			top.expectKey = true
		}
	}
}

// FuzzCheckJSON: any JSON value that event.CheckJSON passes (the check in
// front of GraphQL requests) holds the same invariants as accepted ingest
// bodies; it never panics on anything.
func FuzzCheckJSON(f *testing.F) {
	for _, seed := range []string{
		`{"query":"mutation{x}","variables":{"e":{"type":"a","type":"b"}}}`,
		`[{"a":1},{"a":1,"b":{"a":[1,{"a":2}]}}]`,
		"{\"a\":\"\xff\"}", `{"a":"\ud800"}`, `"x"`, `1`, `{"\u0061":1,"a":2}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if event.CheckJSON(body) != nil || !json.Valid(body) {
			return
		}
		checkStrictInvariants(t, body)
	})
}
