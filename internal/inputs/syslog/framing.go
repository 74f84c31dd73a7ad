package syslog

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// ErrTooLarge is returned by FrameReader.Next for a frame longer than the
// limit; the stream cannot be resynchronised after it, so the connection
// is closed.
var ErrTooLarge = errors.New("syslog: message longer than the limit")

// FrameReader splits a syslog TCP stream into messages (RFC 6587). The
// framing is chosen per connection from its first byte, as rsyslog and
// syslog-ng do: a digit starts an octet count ("57 <34>1 ..."), anything
// else (normally '<') means non-transparent framing, one message per
// line (LF; a trailing CR or NUL is removed).
type FrameReader struct {
	r       *bufio.Reader
	max     int
	decided bool
	octets  bool
	pending int // bytes of the last counted frame still in the buffer
}

// NewFrameReader reads frames of at most max bytes from r.
func NewFrameReader(r io.Reader, max int) *FrameReader {
	// The buffer holds a whole line plus its LF, so that ReadSlice finds it.
	return &FrameReader{r: bufio.NewReaderSize(r, max+1), max: max}
}

// OctetCounting reports whether the connection uses octet counting (valid
// after the first Next).
func (f *FrameReader) OctetCounting() bool { return f.octets }

// Next returns the next message. The slice is valid until the next call.
// It returns io.EOF at a clean end of stream, ErrTooLarge for an oversize
// frame, and a descriptive error for a malformed octet count.
func (f *FrameReader) Next() ([]byte, error) {
	if f.pending > 0 {
		_, _ = f.r.Discard(f.pending) // buffered: cannot fail
		f.pending = 0
	}
	if !f.decided {
		b, err := f.r.Peek(1)
		if err != nil {
			return nil, err
		}
		f.decided, f.octets = true, b[0] >= '0' && b[0] <= '9'
	}
	if f.octets {
		return f.nextCounted()
	}
	return f.nextLine()
}

func (f *FrameReader) nextLine() ([]byte, error) {
	for {
		line, err := f.r.ReadSlice('\n')
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			return nil, fmt.Errorf("%w (%d bytes without a newline)", ErrTooLarge, f.max)
		case err == io.EOF && len(line) > 0:
			// A last line without its LF (a client that closes right after
			// writing) is still a message.
		case err != nil:
			return nil, err
		}
		line = bytes.TrimRight(line, "\r\n\x00")
		if len(line) == 0 {
			if err == io.EOF {
				return nil, io.EOF
			}
			continue // blank lines between messages carry nothing
		}
		return line, nil
	}
}

func (f *FrameReader) nextCounted() ([]byte, error) {
	n, digits := 0, 0
	for {
		c, err := f.r.ReadByte()
		if err != nil {
			if err == io.EOF && digits > 0 {
				return nil, fmt.Errorf("syslog: octet count: %w", io.ErrUnexpectedEOF)
			}
			return nil, err
		}
		if c == ' ' && digits > 0 {
			break
		}
		if c == '\n' && digits == 0 {
			continue // some senders end octet-counted frames with LF too
		}
		if c < '0' || c > '9' || (digits == 0 && c == '0') {
			return nil, fmt.Errorf("syslog: octet counting: expected a length, got byte %q", c)
		}
		n = n*10 + int(c-'0')
		digits++
		if n > f.max {
			return nil, fmt.Errorf("%w (frame announces more than %d bytes)", ErrTooLarge, f.max)
		}
	}
	// The frame is read in place in the reader's buffer (n <= max < its
	// size): no second buffer per connection.
	buf, err := f.r.Peek(n)
	if err != nil {
		return nil, fmt.Errorf("syslog: octet-counted frame of %d bytes: %w", n, noEOF(err))
	}
	f.pending = n
	return bytes.TrimRight(buf, "\r\n\x00"), nil
}

func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
