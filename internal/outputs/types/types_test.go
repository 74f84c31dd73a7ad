package types

import (
	"log/slog"
	"reflect"
	"testing"

	"github.com/vigil-sec/vigil/internal/outputs"
)

// TestTypes: every type has a distinct name, options with yaml tags for
// the core's strict decoder, and a constructor.
func TestTypes(t *testing.T) {
	seen := map[string]bool{}
	want := []string{"pagerduty", "slack", "teams", "opsgenie", "email", "syslog", "kafka", "elasticsearch", "loki"}
	for i, ty := range Types() {
		if ty.Name != want[i] || seen[ty.Name] {
			t.Errorf("type %d is %q, want %q", i, ty.Name, want[i])
		}
		seen[ty.Name] = true
		if ty.New == nil || ty.NewOptions == nil {
			t.Fatalf("%s: no constructor", ty.Name)
		}
		o := reflect.TypeOf(ty.NewOptions())
		if o.Kind() != reflect.Pointer || o.Elem().Kind() != reflect.Struct {
			t.Fatalf("%s: options %v is not a pointer to a struct", ty.Name, o)
		}
		for j := range o.Elem().NumField() {
			f := o.Elem().Field(j)
			if f.Tag.Get("yaml") == "" {
				t.Errorf("%s: option %s has no yaml tag", ty.Name, f.Name)
			}
		}
		if _, err := ty.New(ty.NewOptions(), envZero()); err == nil {
			t.Errorf("%s: empty options accepted", ty.Name)
		}
	}
	if len(seen) != len(want) {
		t.Errorf("%d types, want %d", len(seen), len(want))
	}
	for _, name := range []string{"slack", "teams", "email"} {
		for _, ty := range Types() {
			if ty.Name == name && !ty.Groups {
				t.Errorf("%s should group", name)
			}
		}
	}
}

func envZero() outputs.Env { return outputs.Env{Logger: slog.New(slog.DiscardHandler)} }
