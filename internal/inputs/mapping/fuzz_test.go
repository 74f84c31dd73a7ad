package mapping

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/vigil-sec/vigil/internal/inputs"
)

// FuzzMappingLoad: arbitrary YAML never panics; it either loads (and the
// mappings then map a message without panicking) or fails with an error.
func FuzzMappingLoad(f *testing.F) {
	f.Add([]byte(exampleFile))
	f.Add([]byte("- name: a\n  regex: '(?P<u>\\w+)'\n  set: {type: system.x, user: '${u}'}\n"))
	f.Add([]byte("- name: a\n  when: 'facility == 4'\n  set: {type: system.x, tags: ['$$', '${hostname}']}\n"))
	f.Add([]byte("mappings:\n  - &x {name: a}\n  - *x\n"))
	f.Add([]byte("- [a, b]\n- {}\n- name: {x: y}\n"))
	f.Add([]byte("mappings: ~\n"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, data []byte) {
		set, err := Parse("fuzz.yaml", data)
		if err != nil {
			if set != nil {
				t.Fatal("a set and an error")
			}
			var le *Error
			if errors.As(err, &le) && len(le.Problems) == 0 {
				t.Fatal("an *Error with no problem")
			}
			return
		}
		m := &inputs.Message{Input: "syslog", Hostname: "h", AppName: "a", Facility: 4, Severity: 3, Text: "login failed for alice from 203.0.113.7"}
		inputs.Chain(set.Mappers()).Map(m)
	})
}

// FuzzAppendJSONString: the data encoder writes exactly what json.Marshal
// writes for any string, valid UTF-8 or not.
func FuzzAppendJSONString(f *testing.F) {
	for _, s := range []string{"", "plain", "quote\" back\\ nl\n tab\t cr\r", "\x00\x1f<>&", "\xff\xfe bad", "é ü 世界 \u2028\u2029", "\U0001F600"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendJSONString(nil, s); string(got) != string(want) {
			t.Fatalf("%q: got %s, want %s", s, got, want)
		}
	})
}
