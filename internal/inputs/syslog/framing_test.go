package syslog

import (
	"bytes"
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"
)

func frames(t *testing.T, in string, max int) ([]string, error) {
	t.Helper()
	fr := NewFrameReader(strings.NewReader(in), max)
	var out []string
	for {
		b, err := fr.Next()
		if err != nil {
			if err == io.EOF {
				return out, nil
			}
			return out, err
		}
		out = append(out, string(b))
	}
}

func TestFrameReader(t *testing.T) {
	cases := []struct {
		name, in string
		want     []string
		err      error
	}{
		{"newline", "<13>a\n<13>b\r\n\n<13>c", []string{"<13>a", "<13>b", "<13>c"}, nil},
		{"octet counting", "5 <13>a6 <13>bc\n7 <13>d e", []string{"<13>a", "<13>bc", "<13>d e"}, nil},
		{"octet counted message holding newlines", "9 <13>a\nb\nc", []string{"<13>a\nb\nc"}, nil},
		{"too long line", "<13>" + strings.Repeat("x", 20) + "\n", nil, ErrTooLarge},
		{"too long count", "999 <13>", nil, ErrTooLarge},
		{"bad count", "5x <13>a", nil, errors.New("octet counting")},
		{"truncated frame", "10 <13>a", nil, io.ErrUnexpectedEOF},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := frames(t, tc.in, 16)
			switch {
			case tc.err == nil && err != nil:
				t.Fatalf("error %v", err)
			case tc.err != nil && err == nil:
				t.Fatalf("no error, frames %q", got)
			case tc.err != nil && !errors.Is(err, tc.err) && !strings.Contains(err.Error(), tc.err.Error()):
				t.Fatalf("error %v, want %v", err, tc.err)
			}
			if tc.err == nil && strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Fatalf("frames %q, want %q", got, tc.want)
			}
		})
	}
}

// FuzzSyslogFraming: the reader never panics, never returns a frame
// longer than the limit, and an octet-counted stream it produced
// round-trips.
func FuzzSyslogFraming(f *testing.F) {
	for _, s := range []string{"<13>a\n<13>b\r\n", "5 <13>a6 <13>bc", "0 ", "99999999999999999999 x", "\n\n\x00", "12 <13>abc"} {
		f.Add([]byte(s))
	}
	const max = 64
	f.Fuzz(func(t *testing.T, in []byte) {
		fr := NewFrameReader(bytes.NewReader(in), max)
		var got [][]byte
		for range len(in) + 1 {
			b, err := fr.Next()
			if err != nil {
				break
			}
			if len(b) > max {
				t.Fatalf("frame of %d bytes over the %d limit", len(b), max)
			}
			got = append(got, bytes.Clone(b))
		}
		// Re-frame what was read with octet counting: the same frames.
		var enc bytes.Buffer
		for _, b := range got {
			if len(b) == 0 {
				continue
			}
			enc.WriteString(strconv.Itoa(len(b)) + " ")
			enc.Write(b)
		}
		fr2 := NewFrameReader(&enc, max)
		for _, want := range got {
			if len(want) == 0 {
				continue
			}
			b, err := fr2.Next()
			if err != nil {
				t.Fatalf("re-read: %v", err)
			}
			if !bytes.Equal(bytes.TrimRight(want, "\r\n\x00"), b) {
				t.Fatalf("re-read %q, want %q", b, want)
			}
		}
	})
}
