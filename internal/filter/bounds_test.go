package filter

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/vigil-sec/vigil/internal/event"
)

// TestCompileBoundsLists: a filter's lists and expr are bounded before
// anything is compiled or indexed (an audit's 40,000 types in one SSE
// query string froze the hub's router for ~3 s), each refusal naming its
// field; a long list of exact types is matched through a set.
func TestCompileBoundsLists(t *testing.T) {
	many := func(n int, f func(i int) string) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = f(i)
		}
		return out
	}
	types := many(MaxListValues, func(i int) string { return fmt.Sprintf("t.x%d", i) })
	m, err := Compile(Filter{Types: types})
	if err != nil {
		t.Fatalf("%d types: %v", MaxListValues, err)
	}
	if !m.Match(&event.Event{Type: "t.x999"}) || m.Match(&event.Event{Type: "t.y"}) {
		t.Fatal("a long type list matches wrongly")
	}
	for _, c := range []struct {
		field string
		f     Filter
	}{
		{"types", Filter{Types: append(types, "t.one_more")}},
		{"users", Filter{Users: many(MaxListValues+1, func(i int) string { return fmt.Sprintf("u%d", i) })}},
		{"src_ips", Filter{SrcIPs: many(MaxListValues+1, func(i int) string { return "203.0.113.1" })}},
		{"expr", Filter{Expr: "user == \"" + strings.Repeat("a", MaxExprBytes) + "\""}},
	} {
		_, err := Compile(c.f)
		var fe *Error
		if !errors.As(err, &fe) || fe.Field != c.field {
			t.Errorf("%s over its bound: %v", c.field, err)
		}
	}
}
