package mapping

import (
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
