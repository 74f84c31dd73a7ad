package wsconn

import (
	"net"
	"sync"

	"github.com/gobwas/ws"

	"github.com/vigil-sec/vigil/internal/hub"
)

// VectorDialect is implemented by dialects whose event messages are built
// from bytes shared by every client (the event's JSON, encoded once per
// event, and a per-subscription prefix): the writer sends the shared bytes
// with vectored writes (writev) instead of copying the event body into a
// per-connection buffer. Dialects without it are written through Encode.
type VectorDialect interface {
	// EncodeFrames adds to f the messages for batch[:n] and returns n
	// (at least 1). A delivery it skips (unsubscribed while queued)
	// counts as used. It may put several deliveries in one message.
	EncodeFrames(f *Frames, batch []hub.Delivery) int
}

// Frames assembles a burst of WebSocket text frames for one connection.
// Small bytes (frame headers, prefixes, separators) are copied into a
// fixed-size scratch buffer; shared bytes (Share) are referenced, not
// copied, and go to the kernel as their own iovec. Whenever the scratch
// buffer or the iovec list is full, what is assembled is written out (a
// frame may span two writes: the socket is a byte stream and only this
// writer uses it), so neither ever grows: a burst of any size costs no
// buffer growth and no copy of an event body. The buffers belong to the
// writer only while it runs (see frameBufs).
type Frames struct {
	conn   net.Conn
	vec    bool // conn takes vectored writes (TCP, Unix); otherwise everything is copied
	bufs   frameBufs
	open   bool // the last iovec is the scratch tail, which Copy may extend
	start  int  // where that scratch segment starts
	err    error
	frames int
}

// Bounds of one vectored write: Linux's IOV_MAX is 1024, and 16 KiB of
// small bytes hold the headers and prefixes of about 300 deliveries.
const (
	scratchSize = 16 << 10
	maxIovecs   = 1024
	// shareMin: shared slices shorter than this are copied, an iovec of a
	// few bytes costs the kernel more than the copy.
	shareMin = 64
)

type frameBufs struct {
	scratch []byte
	iov     [][]byte
}

// framePool recycles Frames (and their buffers) between the bursts of all
// connections: an idle connection holds none (SPEC 11 memory per
// connection), and a buffer never grows, so a recycled one serves any
// burst as it is. A sync.Pool is a cache, not state.
var framePool = sync.Pool{New: func() any {
	return &Frames{bufs: frameBufs{scratch: make([]byte, 0, scratchSize), iov: make([][]byte, 0, maxIovecs)}}
}}

// getFrames takes a Frames for one writer's burst on conn.
func getFrames(conn net.Conn) *Frames {
	f := framePool.Get().(*Frames)
	f.conn, f.vec = conn, vectored(conn)
	return f
}

// putFrames returns f to the pool; f's buffers were flushed (emptied).
func putFrames(f *Frames) {
	f.conn, f.err, f.frames, f.open = nil, nil, 0, false
	framePool.Put(f)
}

// Frame starts a text frame whose payload is n bytes; the caller then
// adds exactly n bytes with Copy and Share.
func (f *Frames) Frame(n int) {
	var hdr [ws.MaxHeaderSize]byte
	f.Copy(hdr[:putHeader(hdr[:], n)])
	f.frames++
}

// Copy appends b by copying it (b may be reused after the call).
func (f *Frames) Copy(b []byte) {
	for len(b) > 0 {
		if len(f.bufs.scratch) == cap(f.bufs.scratch) || (!f.open && len(f.bufs.iov) == cap(f.bufs.iov)) {
			f.flush()
		}
		sc := f.bufs.scratch
		n := min(len(b), cap(sc)-len(sc))
		at := len(sc)
		sc = append(sc, b[:n]...)
		f.bufs.scratch = sc
		if f.open {
			f.bufs.iov[len(f.bufs.iov)-1] = sc[f.start : at+n : at+n]
		} else {
			f.bufs.iov = append(f.bufs.iov, sc[at:at+n:at+n])
			f.open, f.start = true, at
		}
		b = b[n:]
	}
}

// Share appends b by reference: b must stay unchanged until the writer
// is done with the batch (event bodies and queued control messages are
// immutable).
func (f *Frames) Share(b []byte) {
	if !f.vec || len(b) < shareMin {
		f.Copy(b)
		return
	}
	if len(f.bufs.iov) == cap(f.bufs.iov) {
		f.flush()
	}
	f.bufs.iov = append(f.bufs.iov, b)
	f.open = false
}

// flush writes what is assembled; after an error it only discards.
func (f *Frames) flush() {
	if len(f.bufs.iov) > 0 && f.err == nil {
		if f.vec {
			bufs := net.Buffers(f.bufs.iov)
			_, f.err = bufs.WriteTo(f.conn)
		} else {
			_, f.err = f.conn.Write(f.bufs.scratch) // without Share, all is in scratch, in order
		}
	}
	clear(f.bufs.iov) // drop the references to event bodies
	f.bufs.iov = f.bufs.iov[:0]
	f.bufs.scratch = f.bufs.scratch[:0]
	f.open = false
}

// vectored reports whether c takes writev: net.Buffers falls back to one
// Write per slice elsewhere (a TLS record per slice).
func vectored(c net.Conn) bool {
	switch c.(type) {
	case *net.TCPConn, *net.UnixConn:
		return true
	}
	return false
}
