package syslog

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/store"
)

func TestRELPFrames(t *testing.T) {
	offers := "relp_version=0\nrelp_software=librelp,1.11.0,http://librelp.adiscon.com\ncommands=syslog"
	good := fmt.Sprintf("1 open %d %s\n", len(offers), offers) + "2 syslog 5 <13>x\n" + "3 close 0\n"
	rr := newRELPReader(strings.NewReader(good), 1024)
	var got []string
	for {
		f, err := rr.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("after %v: %v", got, err)
		}
		got = append(got, fmt.Sprintf("%d %s %q", f.txnr, f.cmd, f.data))
	}
	want := []string{`1 open "relp_version=0\nrelp_software=librelp,1.11.0,http://librelp.adiscon.com\ncommands=syslog"`, `2 syslog "<13>x"`, `3 close ""`}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("frames %q, want %q", got, want)
	}
	for name, bad := range map[string]string{
		"txnr not a number":        "x syslog 1 a\n",
		"txnr of 10 digits":        "1234567890 syslog 1 a\n",
		"command with a digit":     "1 sys1og 1 a\n",
		"command of 33 letters":    "1 " + strings.Repeat("a", 33) + " 0\n",
		"length says more":         "1 syslog 5 abc\n",
		"length says less":         "1 syslog 2 abc\n",
		"data without a length":    "1 syslog 0 abc\n",
		"length without data":      "1 syslog 3\n",
		"truncated":                "1 syslog 10 abc",
		"longer than the limit":    "1 syslog 2000 " + strings.Repeat("a", 2000) + "\n",
		"empty command":            "1  0\n",
		"no space after the txnr":  "1\n",
		"negative length":          "1 syslog -1 a\n",
		"length of 10 digits":      "1 syslog 1234567890 a\n",
		"missing LF after no data": "1 close 0 ",
	} {
		_, err := newRELPReader(strings.NewReader(bad), 1024).next()
		if err == nil || errors.Is(err, io.EOF) {
			t.Errorf("%s: %q accepted (%v)", name, bad, err)
		}
	}
}

// FuzzRELPFrame: the reader never panics nor reads past a frame's data,
// and a frame it accepts encodes back to the bytes it was read from.
func FuzzRELPFrame(f *testing.F) {
	for _, s := range []string{"1 open 14 relp_version=0\n", "2 syslog 5 <13>x\n", "3 close 0\n", "0 serverclose 0\n", "1 syslog 3 a\nb\n", "12 rsp 6 200 OK\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		rr := newRELPReader(bytes.NewReader(b), 256)
		var re []byte
		for {
			fr, err := rr.next()
			if err != nil {
				break
			}
			if len(fr.data) > 256 || fr.txnr > 999_999_999 || len(fr.cmd) == 0 || len(fr.cmd) > 32 {
				t.Fatalf("frame out of bounds: %d %q %d octets", fr.txnr, fr.cmd, len(fr.data))
			}
			re = appendRELP(re, fr.txnr, fr.cmd, string(fr.data))
		}
		// What was read back encodes to a prefix of the input, except
		// for leading zeros in numbers, which the encoder drops.
		if !bytes.HasPrefix(b, re) && !bytes.Contains(b, []byte(" 0")) && !bytes.HasPrefix(b, []byte("0")) {
			t.Fatalf("re-encoded %q is not a prefix of %q", re, b)
		}
	})
}

// gatedLog is an ingest path whose appends wait for the test: it shows
// that an answer is written only after the append returned.
type gatedLog struct {
	mu     sync.Mutex
	gate   chan struct{} // one receive per Publish
	fail   error
	stored []*event.Event
}

func (g *gatedLog) Publish(ctx context.Context, p *auth.Principal, evs []*event.Event) ([]store.Ack, error) {
	select {
	case <-g.gate:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.fail != nil {
		return nil, g.fail
	}
	var be event.BatchError
	for i, ev := range evs {
		if strings.Contains(ev.Message, "refuse me") {
			be.Problems = append(be.Problems, event.Problem{Index: i, Field: "message", Reason: "refused by the test"})
		}
	}
	if len(be.Problems) > 0 {
		return nil, &be
	}
	g.stored = append(g.stored, evs...)
	return make([]store.Ack, len(evs)), nil
}

func (g *gatedLog) Limits() event.Limits { return event.DefaultLimits() }

func relpDial(t *testing.T, s *Server) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", s.RELPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return c, bufio.NewReader(c)
}

func relpRead(t *testing.T, r *bufio.Reader) relpFrame {
	t.Helper()
	f, err := (&relpReader{r: r, max: 1 << 16}).next()
	if err != nil {
		t.Fatalf("reading an answer: %v", err)
	}
	f.data = append([]byte(nil), f.data...)
	return f
}

func TestRELPSessionAnswersAfterAppend(t *testing.T) {
	g := &gatedLog{gate: make(chan struct{})}
	s, err := Start(Options{RELPListen: "127.0.0.1:0", Ingest: g})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	c, r := relpDial(t, s)
	fmt.Fprintf(c, "1 open 14 relp_version=0\n")
	if f := relpRead(t, r); f.txnr != 1 || f.cmd != "rsp" || !strings.HasPrefix(string(f.data), "200 OK\n") || !strings.Contains(string(f.data), "commands=syslog") {
		t.Fatalf("open answered %d %s %q", f.txnr, f.cmd, f.data)
	}
	var frames strings.Builder
	for i, m := range []string{"<13>Nov 30 10:00:00 h app: one", "<13>Nov 30 10:00:00 h app: refuse me", "<13>Nov 30 10:00:00 h app: three"} {
		fmt.Fprintf(&frames, "%d syslog %d %s\n", i+2, len(m), m)
	}
	fmt.Fprint(c, frames.String())
	// Nothing is answered while the append has not returned.
	_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if _, err := r.Peek(1); err == nil {
		t.Fatal("an answer arrived before the log acknowledged the append")
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	g.gate <- struct{}{} // the first append (refused for one event)
	g.gate <- struct{}{} // the append without it
	for i, want := range []string{"200 OK", "500 event refused: message refused by the test", "200 OK"} {
		if f := relpRead(t, r); f.txnr != i+2 || string(f.data) != want {
			t.Fatalf("answer %d: %d %q, want %d %q", i, f.txnr, f.data, i+2, want)
		}
	}
	fmt.Fprintf(c, "5 close 0\n")
	if f := relpRead(t, r); f.txnr != 5 || f.cmd != "rsp" || len(f.data) != 0 {
		t.Fatalf("close answered %d %s %q", f.txnr, f.cmd, f.data)
	}
	if _, err := r.ReadByte(); !errors.Is(err, io.EOF) {
		t.Fatalf("after close: %v, want the connection closed", err)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.stored) != 2 || g.stored[0].Message != "one" || g.stored[1].Message != "three" {
		t.Fatalf("stored %d events", len(g.stored))
	}
}

// TestRELPSessionAppendFails: when the log cannot take the messages, none
// is answered and the connection is closed, so the sender resends them.
func TestRELPSessionAppendFails(t *testing.T) {
	g := &gatedLog{gate: make(chan struct{}, 1), fail: errors.New("log unavailable")}
	s, err := Start(Options{RELPListen: "127.0.0.1:0", Ingest: g})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	c, r := relpDial(t, s)
	fmt.Fprintf(c, "1 open 14 relp_version=0\n")
	relpRead(t, r)
	g.gate <- struct{}{}
	fmt.Fprintf(c, "2 syslog 5 <13>x\n")
	if b, err := io.ReadAll(r); err != nil || len(b) != 0 {
		t.Fatalf("after a failed append: %q %v, want the connection closed unanswered", b, err)
	}
}

// TestRELPSessionProtocolErrors: syslog before open, a second open and bad
// framing close the connection; an unknown command is answered 500.
func TestRELPSessionProtocolErrors(t *testing.T) {
	g := &gatedLog{gate: make(chan struct{})}
	s, err := Start(Options{RELPListen: "127.0.0.1:0", Ingest: g, MaxMessage: 64})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	for name, c := range map[string]struct{ send, answer string }{
		"syslog before open": {"1 syslog 5 <13>x\n", ""},
		"second open":        {"1 open 14 relp_version=0\n2 open 14 relp_version=0\n", "500 protocol error"},
		"bad framing":        {"1 open 14 relp_version=0\n2 sys!og 1 a\n", ""},
		"too large":          {"1 open 14 relp_version=0\n2 syslog 100 " + strings.Repeat("a", 100) + "\n", ""},
		"unknown command":    {"1 open 14 relp_version=0\n2 starttls 0\n3 close 0\n", "500 command not supported"},
	} {
		conn, r := relpDial(t, s)
		fmt.Fprint(conn, c.send)
		b, err := io.ReadAll(r)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if c.answer != "" && !strings.Contains(string(b), c.answer) {
			t.Errorf("%s: answered %q, want %q", name, b, c.answer)
		}
	}
	if len(g.stored) != 0 {
		t.Fatalf("%d events stored", len(g.stored))
	}
}
