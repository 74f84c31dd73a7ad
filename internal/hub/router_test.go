package hub

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/filter"
)

// TestUserKeyMatchesEqualFold proves the router's user index never hides a
// subscription from an event its filter matches: for every rune that
// strings.EqualFold takes for an ASCII letter, userKey gives that letter.
func TestUserKeyMatchesEqualFold(t *testing.T) {
	for r := rune(0); r <= utf8.MaxRune; r++ {
		if !utf8.ValidRune(r) {
			continue
		}
		// strings.EqualFold equates runes of one simple-folding orbit.
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			if f >= utf8.RuneSelf {
				continue
			}
			s, a := string(r), string(f)
			if !strings.EqualFold(s, a) {
				t.Fatalf("%U and %q share an orbit but EqualFold says no", r, a)
			}
			if userKey(s) != strings.ToLower(a) {
				t.Fatalf("userKey(%U) = %q, but EqualFold matches %q", r, userKey(s), a)
			}
		}
	}
	if got := userKey("\u212Aate") + userKey("Ro\u017Fa"); got != "katerosa" {
		t.Fatalf("folded keys = %q", got)
	}
}

// TestRouterOffersEveryMatchingSubscriptionOnce compares the index with
// the plain scan it replaces over random filters, events and removals.
func TestRouterOffersEveryMatchingSubscriptionOnce(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	users := []string{"alice", "Alice", "BOB", "carol", "\u212Aim", "kim", "zoë"}
	sources := []string{"idp", "gateway", "db"}
	cats := []string{"authentication", "audit", "fraud"}
	types := []string{"auth.login.failure", "auth.login.success", "audit.read"}
	typeFilters := append([]string{"auth.*", "*"}, types...)
	pick := func(list []string) []string {
		n := rng.IntN(3)
		out := make([]string, 0, n)
		for i := 0; i < n; i++ {
			out = append(out, list[rng.IntN(len(list))])
		}
		return out
	}
	r := newRouter()
	var live []*subscription
	for i := 0; i < 400; i++ {
		f := filter.Filter{Users: pick(users), Sources: pick(sources), Types: pick(typeFilters), Categories: pick(cats)}
		m, err := filter.Compile(f)
		if err != nil {
			t.Fatal(err)
		}
		s := &subscription{id: fmt.Sprint(i), matcher: m}
		r.add(s)
		live = append(live, s)
		if rng.IntN(4) == 0 { // remove a random one, to exercise swap-removal
			j := rng.IntN(len(live))
			r.remove(live[j])
			live = append(live[:j], live[j+1:]...)
		}
	}
	if r.count != len(live) {
		t.Fatalf("count %d, want %d", r.count, len(live))
	}
	for i := 0; i < 2000; i++ {
		e := &event.Event{User: users[rng.IntN(len(users))], Source: sources[rng.IntN(len(sources))],
			Category: event.Category(cats[rng.IntN(len(cats))]), Type: types[rng.IntN(len(types))], Severity: event.SeverityLow}
		offered := map[*subscription]int{}
		r.each(e, func(s *subscription, _ *event.Event) { offered[s]++ })
		for s, n := range offered {
			if n > 1 {
				t.Fatalf("subscription %s offered event %+v %d times", s.id, e, n)
			}
		}
		for _, s := range live {
			if s.matcher.Match(e) && offered[s] == 0 {
				t.Fatalf("subscription %s (%+v) matches %+v but was not offered it", s.id, s.matcher.Filter(), e)
			}
		}
	}
	for _, s := range live {
		r.remove(s)
	}
	if r.count != 0 || len(r.byUser)+len(r.bySource)+len(r.byType)+len(r.byCategory)+len(r.rest.subs) != 0 {
		t.Fatalf("router not empty after removing everything: %+v", r)
	}
}
