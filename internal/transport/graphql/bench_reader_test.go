package graphql_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"time"

	"github.com/gobwas/ws"
)

// readServerFrames is the latency benchmarks' client reader: it reads the
// server's frames from conn until the connection ends, calling onText with
// each text message (the server sends every message as one frame) and the
// time its bytes were read. It reads the socket through its
// syscall.RawConn: one read per burst, and after a read that emptied the
// socket it waits for readiness instead of reading again. A net.Conn read
// loop asks once more and gets EAGAIN before it waits — a second read
// system call per delivery, which with 1,000 in-process clients on the
// server's two cores was a fifth of the benchmark's CPU and so showed up
// as server latency. onText must not keep the message; it returns false
// to stop reading (then readServerFrames returns nil).
func readServerFrames(conn net.Conn, onText func(msg []byte, at time.Time) bool) error {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return fmt.Errorf("readServerFrames: %T has no raw connection", conn)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	buf := make([]byte, 4<<10) // as the bufio.Reader it replaces: the frames are small
	n := 0                     // bytes of buf not yet parsed
	var stop error
	err = rc.Read(func(fd uintptr) bool {
		for {
			m, err := syscall.Read(int(fd), buf[n:])
			switch {
			case errors.Is(err, syscall.EINTR):
				continue
			case errors.Is(err, syscall.EAGAIN):
				return false // wait for readiness
			case err != nil:
				stop = err
				return true
			case m == 0:
				stop = io.EOF
				return true
			}
			at := time.Now()
			drained := n+m < len(buf) // a short read: the socket is empty now
			n += m
			off := 0
			for {
				payload, op, size, complete, err := parseServerFrame(buf[off:n])
				if err != nil {
					stop = err
					return true
				}
				if !complete {
					break
				}
				switch op {
				case ws.OpText:
					if !onText(payload, at) {
						return true
					}
				case ws.OpClose:
					stop = io.EOF
					return true
				case ws.OpPing:
					if err := ws.WriteFrame(conn, ws.MaskFrame(ws.NewPongFrame(payload))); err != nil {
						stop = err
						return true
					}
				}
				off += size
			}
			n = copy(buf, buf[off:n])
			if n == len(buf) {
				stop = fmt.Errorf("readServerFrames: a frame above %d bytes", len(buf))
				return true
			}
			if drained {
				return false // no EAGAIN read: the next data wakes us
			}
		}
	})
	if stop != nil {
		return stop
	}
	return err
}

// parseServerFrame parses the unmasked, unfragmented frame at the start
// of b: its payload and opcode, its whole size, and whether b holds all
// of it.
func parseServerFrame(b []byte) (payload []byte, op ws.OpCode, size int, complete bool, err error) {
	if len(b) < 2 {
		return nil, 0, 0, false, nil
	}
	if b[0]&0x80 == 0 || b[1]&0x80 != 0 {
		return nil, 0, 0, false, fmt.Errorf("readServerFrames: fragmented or masked server frame % x", b[:2])
	}
	op = ws.OpCode(b[0] & 0x0f)
	hl, l := 2, int(b[1]&0x7f)
	switch l {
	case 126:
		if len(b) < 4 {
			return nil, 0, 0, false, nil
		}
		hl, l = 4, int(binary.BigEndian.Uint16(b[2:]))
	case 127:
		if len(b) < 10 {
			return nil, 0, 0, false, nil
		}
		hl, l = 10, int(binary.BigEndian.Uint64(b[2:]))
	}
	if len(b) < hl+l {
		return nil, 0, 0, false, nil
	}
	return b[hl : hl+l], op, hl + l, true, nil
}
