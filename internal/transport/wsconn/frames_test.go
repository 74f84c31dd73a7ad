package wsconn

import (
	"bytes"
	"io"
	"net"
	"strings"
	"testing"
)

// TestFramesMatchContiguousEncoding checks Frames against the plain
// encoding (appendFrame of each whole message) across every boundary it
// has: scratch full in the middle of a copy, the iovec list full, shared
// slices below and above shareMin, a payload larger than scratch, over a
// TCP socket (writev) and over a pipe (copied).
func TestFramesMatchContiguousEncoding(t *testing.T) {
	var msgs [][2][]byte // prefix (copied), body (shared)
	var want []byte
	for i := range 3000 {
		prefix := []byte(strings.Repeat("p", i%50))
		body := []byte(strings.Repeat(string(rune('a'+i%26)), (i*37)%700))
		if i == 1500 {
			body = bytes.Repeat([]byte("L"), 3*scratchSize+17)
		}
		msgs = append(msgs, [2][]byte{prefix, body})
		want = appendFrame(want, append(append([]byte{}, prefix...), body...))
	}
	encode := func(t *testing.T, w net.Conn) {
		f := getFrames(w)
		defer putFrames(f)
		for _, m := range msgs {
			f.Frame(len(m[0]) + len(m[1]))
			f.Copy(m[0])
			f.Share(m[1])
		}
		f.flush()
		if f.err != nil {
			t.Error(f.err)
		}
		if cap(f.bufs.scratch) != scratchSize || cap(f.bufs.iov) != maxIovecs {
			t.Errorf("buffers grew: scratch %d, iovecs %d", cap(f.bufs.scratch), cap(f.bufs.iov))
		}
		if f.frames != len(msgs) {
			t.Errorf("%d frames counted, want %d", f.frames, len(msgs))
		}
		w.Close()
	}
	check := func(t *testing.T, w, r net.Conn) {
		go encode(t, w)
		got, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			i := 0
			for i < min(len(got), len(want)) && got[i] == want[i] {
				i++
			}
			t.Fatalf("%d bytes written, want %d; first difference at %d", len(got), len(want), i)
		}
	}
	t.Run("tcp", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		w, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		r, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		if !vectored(w) {
			t.Fatal("a TCP connection should take vectored writes")
		}
		check(t, w, r)
	})
	t.Run("pipe", func(t *testing.T) {
		w, r := net.Pipe()
		defer r.Close()
		check(t, w, r)
	})
}
