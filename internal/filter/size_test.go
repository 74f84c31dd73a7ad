package filter

import (
	"testing"
	"unsafe"
)

// Every subscription holds one Matcher, so its size is paid once per idle
// connection (SPEC 11: 100,000 connections at <= 4 KiB each). 480 is the
// allocator's size class it fits in today (it was 704 with copies of the
// list fields' slice headers).
func TestMatcherSize(t *testing.T) {
	if n := unsafe.Sizeof(Matcher{}); n > 480 {
		t.Fatalf("Matcher is %d bytes, more than the 480-byte size class", n)
	}
}
