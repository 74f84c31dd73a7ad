package hub

import (
	"strings"
	"unicode/utf8"

	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/filter"
)

// router indexes subscriptions by one field their filter requires, so an
// event is offered only to the subscriptions that could match it instead of
// to every subscription on the node. With 1,000 subscriptions each asking
// for one user, offering every event to all of them was a fifth of the
// server's CPU at 3,500 events/s; with the index it is the handful that
// name the event's user. Each subscription is still matched in full when
// offered: the index only narrows, it never decides.
//
// A subscription is indexed under the first of these its filter restricts:
// users (case-insensitive, ASCII values only: the folding is then exact),
// sources, types (when none is a `prefix.*` wildcard), categories. One whose filter restricts none of them is offered
// every event. An event is offered to the buckets of its own user, source
// type and category, and to the unindexed subscriptions; a subscription lives in
// buckets of one kind only, so it is never offered an event twice.
type router struct {
	byUser     map[string]*bucket
	bySource   map[string]*bucket
	byType     map[string]*bucket
	byCategory map[string]*bucket
	rest       bucket
	count      int
}

// bucket holds subscriptions in no particular order; removal swaps the last
// one into the hole, and each subscription remembers where it sits.
type bucket struct {
	subs []*subscription
}

type routeKind uint8

const (
	routeRest routeKind = iota
	routeUser
	routeSource
	routeType
	routeCategory
)

// routeSlot is one place a subscription sits in the index.
type routeSlot struct {
	b   *bucket
	key string // map key, to drop the bucket when it empties
	pos int
}

func newRouter() *router {
	return &router{byUser: map[string]*bucket{}, bySource: map[string]*bucket{}, byType: map[string]*bucket{},
		byCategory: map[string]*bucket{}}
}

// routeFor picks the index a subscription goes under and its keys. A
// masked subscription is never indexed by user or source: masking may
// change them, and an event offered by its unmasked user would tell the
// filter what the masked form hides (types and categories are never
// masked).
func routeFor(m *filter.Matcher, masked bool) (routeKind, []string) {
	f := m.Filter()
	if len(f.Users) > 0 && allASCII(f.Users) && !masked {
		return routeUser, unique(f.Users, strings.ToLower)
	}
	if len(f.Sources) > 0 && !masked {
		return routeSource, unique(f.Sources, nil)
	}
	if len(f.Types) > 0 && !hasWildcard(f.Types) {
		return routeType, unique(f.Types, nil)
	}
	if cats := m.Categories(); len(cats) > 0 {
		keys := make([]string, len(cats))
		for i, c := range cats {
			keys[i] = string(c)
		}
		return routeCategory, keys
	}
	return routeRest, nil
}

func (r *router) add(s *subscription) {
	kind, keys := routeFor(s.matcher, s.masked)
	s.kind = kind
	if kind == routeRest {
		s.slots = []routeSlot{r.rest.push(s, "")}
		r.count++
		return
	}
	s.slots = make([]routeSlot, 0, len(keys))
	index := r.index(kind)
	for _, k := range keys {
		b := index[k]
		if b == nil {
			b = &bucket{}
			index[k] = b
		}
		s.slots = append(s.slots, b.push(s, k))
	}
	r.count++
}

// index is the map of buckets for one kind of key.
func (r *router) index(kind routeKind) map[string]*bucket {
	switch kind {
	case routeUser:
		return r.byUser
	case routeSource:
		return r.bySource
	case routeType:
		return r.byType
	}
	return r.byCategory
}

func (r *router) remove(s *subscription) {
	if s.slots == nil {
		return // never added, or already removed
	}
	for _, slot := range s.slots {
		slot.b.remove(slot.pos)
		if len(slot.b.subs) == 0 && s.kind != routeRest {
			delete(r.index(s.kind), slot.key)
		}
	}
	s.slots = nil
	r.count--
}

func (b *bucket) push(s *subscription, key string) routeSlot {
	b.subs = append(b.subs, s)
	return routeSlot{b: b, key: key, pos: len(b.subs) - 1}
}

func (b *bucket) remove(pos int) {
	last := len(b.subs) - 1
	if pos != last {
		moved := b.subs[last]
		b.subs[pos] = moved
		for i := range moved.slots {
			if moved.slots[i].b == b {
				moved.slots[i].pos = pos
				break
			}
		}
	}
	b.subs[last] = nil
	b.subs = b.subs[:last]
}

// each calls fn for every subscription that could match e, once each.
func (r *router) each(e *event.Event, fn func(*subscription, *event.Event)) {
	for _, s := range r.rest.subs {
		fn(s, e)
	}
	if len(r.byUser) > 0 && e.User != "" {
		if b := r.byUser[userKey(e.User)]; b != nil {
			for _, s := range b.subs {
				fn(s, e)
			}
		}
	}
	if b := r.bySource[e.Source]; b != nil {
		for _, s := range b.subs {
			fn(s, e)
		}
	}
	if b := r.byType[e.Type]; b != nil {
		for _, s := range b.subs {
			fn(s, e)
		}
	}
	if b := r.byCategory[string(e.Category)]; b != nil {
		for _, s := range b.subs {
			fn(s, e)
		}
	}
}

// userKey folds an event's user to the key an ASCII filter value would have
// if the two are equal under strings.EqualFold. Only two non-ASCII runes
// fold to ASCII letters in Unicode's simple folding: KELVIN SIGN to k and
// LATIN SMALL LETTER LONG S to s. A user with any other non-ASCII rune can
// equal no ASCII value, and its key matches no bucket.
func userKey(u string) string {
	if isASCII(u) {
		return strings.ToLower(u) // no allocation when already lower case
	}
	var b strings.Builder
	for _, r := range u {
		switch r {
		case '\u212A':
			r = 'k'
		case '\u017F':
			r = 's'
		}
		b.WriteRune(r)
	}
	return strings.ToLower(b.String())
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

func allASCII(list []string) bool {
	for _, s := range list {
		if !isASCII(s) {
			return false
		}
	}
	return true
}

func hasWildcard(types []string) bool {
	for _, t := range types {
		if strings.HasSuffix(t, "*") {
			return true
		}
	}
	return false
}

// unique returns values (mapped through norm, when given) without
// repeats, in their order: in linear time, since it runs while the router
// is locked (a filter may hold filter.MaxListValues values).
func unique(values []string, norm func(string) string) []string {
	seen := make(map[string]struct{}, len(values))
	keys := make([]string, 0, len(values))
	for _, v := range values {
		if norm != nil {
			v = norm(v)
		}
		if _, dup := seen[v]; !dup {
			seen[v] = struct{}{}
			keys = append(keys, v)
		}
	}
	return keys
}
