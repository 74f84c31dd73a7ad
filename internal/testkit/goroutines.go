package testkit

import (
	"runtime"
	"strings"
)

// OwnGoroutines is the stack of every goroutine in the process that
// neither an embedded NATS server nor Pebble (the id index's store)
// started. Both start and end goroutines of their own on their own
// schedule — timers, flushes, one per file Pebble writes to watch the
// disk's health — so a leak check that counts every goroutine fails when
// one of theirs happens to run (a CI run saw 35 against a baseline of
// 34, a Pebble disk-health ticker). Tests count what the server keeps
// through its own state instead (consumers, connections).
func OwnGoroutines() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var own []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		c := goroutineCreator(g)
		if strings.HasPrefix(c, "created by github.com/nats-io/nats-server/") || strings.HasPrefix(c, "created by github.com/cockroachdb/pebble/") {
			continue
		}
		own = append(own, g)
	}
	return own
}

// NewGoroutines lists the stacks in after whose creator started more
// goroutines than it had in before: what a failed leak check prints.
func NewGoroutines(before, after []string) string {
	count := map[string]int{}
	for _, g := range before {
		count[goroutineCreator(g)]++
	}
	var b strings.Builder
	for _, g := range after {
		if c := goroutineCreator(g); count[c] > 0 {
			count[c]--
		} else {
			b.WriteString(g + "\n\n")
		}
	}
	return b.String()
}

// goroutineCreator is a stack's "created by ..." line ("" for the main
// goroutine).
func goroutineCreator(stack string) string {
	i := strings.Index(stack, "\ncreated by ")
	if i < 0 {
		return ""
	}
	line, _, _ := strings.Cut(stack[i+1:], "\n")
	return line
}
