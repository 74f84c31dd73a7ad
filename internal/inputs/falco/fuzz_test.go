package falco

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/event"
)

// FuzzFalcoDecode feeds arbitrary bodies to Decode and Map: they must not
// panic, and an alert that maps gives an event whose type and category
// ingest accepts (the type is built from any rule name).
func FuzzFalcoDecode(f *testing.F) {
	doc, err := os.ReadFile("testdata/alert.json")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(doc)
	f.Add([]byte(`{"rule":"Terminal shell in container","priority":"Notice","output_fields":{"fd.rip":"::1"},"tags":["T1059","mitre_execution"]}`))
	f.Add([]byte(`{"rule":"ÄÖ\u0000","priority":"alert","time":"2026-01-01T00:00:00Z","tags":null}`))
	f.Add([]byte(`{"rule":"a","priority":"Debug","rule":"b"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		a, err := Decode(body)
		if err != nil {
			return
		}
		ev, err := Map(a)
		if err != nil {
			return
		}
		if !strings.HasPrefix(ev.Type, TypePrefix) || len(ev.Type) > 128 {
			t.Fatalf("type %q", ev.Type)
		}
		_, err = event.Normalize(ev, "t", time.Now(), event.DefaultLimits())
		if err != nil {
			if p := event.ProblemFrom(0, err); p.Field == "type" || p.Field == "category" {
				t.Fatalf("mapped event refused for its %s: %v", p.Field, err)
			}
		}
	})
}
