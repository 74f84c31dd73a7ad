package event

import (
	"bytes"
	stdjson "encoding/json"
	"testing"
)

var splitArraySeeds = []string{
	`[]`, `[ ]`, "[\n]", `[{}]`, `[{"type":"audit.query"}]`,
	`[{"type":"audit.query","data":{"a":[1,2,{"b":"]}"}]}},{"type":"x.y"}]`,
	"[ {\"message\":\"a \\\" ] } [ {\"} ,\r\n\t{\"type\":\"b.c\"} ]",
	`[{"m":"\\"},{"m":"\\\""}]`, `[1]`, `[1,"a",null,true,[2],{"x":[]}]`,
	`[{"type":"x.y"} {"type":"x.y"}]`, `[{"type":"x.y"},]`, `[,{"type":"x.y"}]`,
	`[{"type":"x.y"}]]`, `[{"type":"x.y"}] x`, `[{"type":"x.y"}`, `[{"type":"x.y}]`,
	`[{"a":[1}]]`, `[{"a":1]}]`, `[tru]`, `[1 2]`, `[{"a":"\u00e9"}]`, "[{\"a\":\"\xff\"}]",
	`[{"a":1}:]`, `[}`, `[`, `["]`, `[{"a":"b\\`,
}

// FuzzSplitArray: for every body encoding/json reads as an array,
// splitArray finds the same elements, byte for byte (ingest then decodes
// each strictly); for a body it cannot read, splitArray refuses it or cuts
// at least one element that is not valid JSON (which DecodeOne refuses).
func FuzzSplitArray(f *testing.F) {
	for _, s := range splitArraySeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		body = bytes.TrimSpace(body)
		if len(body) == 0 || body[0] != '[' {
			return
		}
		elems, ok := splitArray(body)
		var arr []stdjson.RawMessage
		if err := stdjson.Unmarshal(body, &arr); err == nil {
			if !ok || len(elems) != len(arr) {
				t.Fatalf("%q: split %v into %d elements, encoding/json %d", body, ok, len(elems), len(arr))
			}
			for i := range arr {
				if !bytes.Equal(elems[i], arr[i]) {
					t.Fatalf("%q: element %d split as %q, encoding/json %q", body, i, elems[i], arr[i])
				}
			}
			return
		}
		if !ok {
			return
		}
		for _, e := range elems {
			if !stdjson.Valid(e) {
				return
			}
		}
		t.Fatalf("%q: not JSON, yet every element split is: %q", body, elems)
	})
}

// TestDecodeArrayErrorsAsBefore: a malformed array body is still named
// "malformed JSON array" (index 0), whether splitArray refuses its
// structure or DecodeOne refuses an element it cut.
func TestDecodeArrayErrorsAsBefore(t *testing.T) {
	for _, body := range []string{`[{"type":"x.y"} {"type":"x.y"}]`, `[{"type":"x.y"},]`, `[tru]`, `[{"a":[1}]]`, `[{"type":"x.y"}] x`} {
		_, err := Decode([]byte(body), "application/json", DefaultLimits())
		be, ok := err.(*BatchError)
		if !ok || len(be.Problems) != 1 || be.Problems[0].Index != 0 || !bytes.HasPrefix([]byte(be.Problems[0].Reason), []byte("malformed JSON array: ")) {
			t.Errorf("%s: %v, want one problem at index 0 naming a malformed JSON array", body, err)
		}
	}
	evs, err := Decode([]byte(`[{"type":"audit.query","message":"]}"} , {"type":"x.y"}]`), "application/json", DefaultLimits())
	if err != nil || len(evs) != 2 || evs[0].Message != "]}" || evs[1].Type != "x.y" {
		t.Fatalf("valid array: %+v %v", evs, err)
	}
}

// TestCategorySeverityFastPathAsBefore: the plain-string fast path of
// Category and Severity gives what encoding/json's string decoding gave,
// for plain names, escaped ones, non-strings and odd bytes.
func TestCategorySeverityFastPathAsBefore(t *testing.T) {
	for _, in := range []string{`"authentication"`, `"network"`, `"high"`, `"HIGH"`, `""`, `"info"`,
		`"auth\u0065ntication"`, `"hi\"gh"`, `"nope"`, `1`, `null`, `["high"]`, `"h\u00e9"`, "\"h\xffigh\"", `"`, `"a"b"`} {
		var slow string
		slowErr := stdjson.Unmarshal([]byte(in), &slow)

		var c Category
		err := c.UnmarshalJSON([]byte(in))
		if slowErr != nil {
			if err == nil || err.Error() != "category must be a string" {
				t.Errorf("category %s: %v, want the not-a-string error", in, err)
			}
		} else {
			want, wantErr := ParseCategory(slow)
			if slow == "" {
				want, wantErr = "", nil
			}
			if c != want || (err == nil) != (wantErr == nil) {
				t.Errorf("category %s: %q %v, want %q %v", in, c, err, want, wantErr)
			}
		}

		var s Severity
		err = s.UnmarshalJSON([]byte(in))
		if slowErr != nil {
			if err == nil || err.Error() != "severity must be a string" {
				t.Errorf("severity %s: %v, want the not-a-string error", in, err)
			}
			continue
		}
		want, wantErr := ParseSeverity(slow)
		if slow == "" {
			want, wantErr = SeverityInfo, nil
		}
		if s != want || (err == nil) != (wantErr == nil) {
			t.Errorf("severity %s: %v %v, want %v %v", in, s, err, want, wantErr)
		}
	}
}
