package syslog

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/inputs/cef"
	"github.com/vigil-sec/vigil/internal/outputs"
	"github.com/vigil-sec/vigil/internal/outputs/outputtest"
	"github.com/vigil-sec/vigil/internal/tlsconfig/tlstest"
)

// msg5424 is an RFC 5424 message (https://www.rfc-editor.org/rfc/rfc5424#section-6):
//
//	SYSLOG-MSG = HEADER SP STRUCTURED-DATA [SP MSG]
//	HEADER     = "<" PRIVAL ">" VERSION SP TIMESTAMP SP HOSTNAME SP APP-NAME SP PROCID SP MSGID
//	PRIVAL     = 1*3DIGIT (0..191), VERSION = "1"
//	TIMESTAMP  = FULL-DATE "T" FULL-TIME with at most 6 TIME-SECFRAC digits, or "-"
//	HOSTNAME 1*255, APP-NAME 1*48, PROCID 1*128, MSGID 1*32 PRINTUSASCII (33..126), or "-"
//	SD-ELEMENT = "[" SD-ID *(SP PARAM-NAME "=" %d34 PARAM-VALUE %d34) "]",
//	             PARAM-VALUE escapes '"', '\' and ']' with '\'
type msg5424 struct {
	pri                                  int
	ts                                   time.Time
	host, app, procid, msgid, sdid, body string
	params                               map[string]string
}

var header5424 = regexp.MustCompile(`^<([0-9]{1,3})>1 ([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?(?:Z|[+-][0-9]{2}:[0-9]{2})) ([!-~]{1,255}) ([!-~]{1,48}) ([!-~]{1,128}) ([!-~]{1,32}) `)

func parse5424(t *testing.T, s string) msg5424 {
	t.Helper()
	h := header5424.FindStringSubmatch(s)
	if h == nil {
		t.Fatalf("not an RFC 5424 header: %.200q", s)
	}
	var m msg5424
	m.pri, _ = strconv.Atoi(h[1])
	if m.pri > 191 {
		t.Fatalf("PRI %d", m.pri)
	}
	var err error
	if m.ts, err = time.Parse(time.RFC3339Nano, h[2]); err != nil {
		t.Fatal(err)
	}
	m.host, m.app, m.procid, m.msgid = h[3], h[4], h[5], h[6]
	rest := s[len(h[0]):]
	if !strings.HasPrefix(rest, "[") {
		t.Fatalf("no structured data: %.100q", rest)
	}
	// one SD-ELEMENT, values unescaped
	i := 1
	for i < len(rest) && rest[i] != ' ' && rest[i] != ']' {
		i++
	}
	m.sdid = rest[1:i]
	m.params = map[string]string{}
	for rest[i] == ' ' {
		i++
		eq := strings.IndexByte(rest[i:], '=')
		name := rest[i : i+eq]
		i += eq + 1
		if rest[i] != '"' {
			t.Fatalf("param %s not quoted", name)
		}
		i++
		var v strings.Builder
		for rest[i] != '"' {
			if rest[i] == '\\' && (rest[i+1] == '"' || rest[i+1] == '\\' || rest[i+1] == ']') {
				i++
			} else if rest[i] == ']' || rest[i] == '"' {
				t.Fatalf("unescaped %q in %s", rest[i], name)
			}
			v.WriteByte(rest[i])
			i++
		}
		i++
		m.params[name] = v.String()
	}
	if rest[i] != ']' || rest[i+1] != ' ' {
		t.Fatalf("SD-ELEMENT not closed: %.100q", rest[i:])
	}
	m.body = rest[i+2:]
	return m
}

// readFrames reads octet-counted frames (RFC 6587 3.4.1: MSG-LEN SP SYSLOG-MSG,
// MSG-LEN without leading zeros) from a stream.
func readFrames(r *bufio.Reader, out chan<- string) {
	for {
		n, err := r.ReadString(' ')
		if err != nil {
			close(out)
			return
		}
		l, err := strconv.Atoi(strings.TrimSuffix(n, " "))
		if err != nil || l <= 0 || n[0] == '0' {
			out <- "BAD FRAME " + n
			close(out)
			return
		}
		b := make([]byte, l)
		if _, err := io.ReadFull(r, b); err != nil {
			close(out)
			return
		}
		out <- string(b)
	}
}

// streamServer accepts connections (plain or TLS) and hands out their
// frames; conns gives each accepted connection's frames.
type streamServer struct {
	addr  string
	conns chan chan string
	raw   chan net.Conn
}

func startStream(t *testing.T, tlsCfg *tls.Config) *streamServer {
	t.Helper()
	var l net.Listener
	var err error
	if tlsCfg != nil {
		l, err = tls.Listen("tcp", "127.0.0.1:0", tlsCfg)
	} else {
		l, err = net.Listen("tcp", "127.0.0.1:0")
	}
	if err != nil {
		t.Fatal(err)
	}
	s := &streamServer{addr: l.Addr().String(), conns: make(chan chan string, 10), raw: make(chan net.Conn, 10)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			ch := make(chan string, 100)
			s.raw <- c
			s.conns <- ch
			go readFrames(bufio.NewReader(c), ch)
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
		close(s.raw)
		for c := range s.raw {
			c.Close()
		}
	})
	return s
}

func recv(t *testing.T, ch <-chan string) string {
	t.Helper()
	select {
	case s, ok := <-ch:
		if !ok {
			t.Fatal("connection closed")
		}
		return s
	case <-time.After(10 * time.Second):
		t.Fatal("no message")
	}
	return ""
}

func newSyslog(t *testing.T, o Options) (outputs.Sender, *outputtest.LogBuffer) {
	t.Helper()
	env, logs := outputtest.Env(t, nil)
	s, err := Type().New(&o, env)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, logs
}

func TestSyslogTCPJSON(t *testing.T) {
	srv := startStream(t, nil)
	s, _ := newSyslog(t, Options{Address: srv.addr, Hostname: "vigil-1", Facility: "authpriv"})
	ctx := context.Background()
	det := outputtest.Detection("ev1", "det-1", "active", 2)
	det.Detection.Title = `quote " backslash \ bracket ]`
	det.Event.Tenant = `ten"]ant`
	if err := s.Send(ctx, []outputs.Message{det, outputtest.Event("ev2")}); err != nil {
		t.Fatal(err)
	}
	ch := <-srv.conns
	m := parse5424(t, recv(t, ch))
	if m.pri != 10*8+3 || !m.ts.Equal(outputtest.Now.Truncate(time.Microsecond)) || m.host != "vigil-1" || m.app != "vigil" ||
		m.procid != "-" || m.msgid != "detection.updated" || m.sdid != "vigil@32473" {
		t.Errorf("header %+v", m)
	}
	if m.params["event_id"] != "ev1" || m.params["detection_id"] != "det-1" || m.params["tenant"] != `ten"]ant` ||
		m.params["status"] != "active" || m.params["severity"] != "high" {
		t.Errorf("structured data %v", m.params)
	}
	if m.body != string(det.Body) || !json.Valid([]byte(m.body)) {
		t.Errorf("body %q", m.body)
	}
	m2 := parse5424(t, recv(t, ch))
	if m2.pri != 10*8+4 || m2.msgid != "auth.login_failed" || m2.params["event_id"] != "ev2" {
		t.Errorf("second message %+v", m2)
	}
}

func TestSyslogTLSCEF(t *testing.T) {
	files := tlstest.New(t, t.TempDir())
	srv := startStream(t, &tls.Config{Certificates: []tls.Certificate{files.Server.TLS}, MinVersion: tls.VersionTLS12})
	s, _ := newSyslog(t, Options{Address: srv.addr, Transport: "tls", Format: "cef", CAFile: files.CAFile})
	det := outputtest.Detection("ev1", "det-1", "resolved", 7)
	det.Detection.Title = "pipe | back\\slash\nnewline"
	det.Text = "eq=sign back\\slash\nline two"
	if err := s.Send(context.Background(), []outputs.Message{det}); err != nil {
		t.Fatal(err)
	}
	m := parse5424(t, recv(t, <-srv.conns))
	// Round trip through Vigil's own CEF parser (internal/inputs/cef).
	r, err := cef.Parse(m.body)
	if err != nil {
		t.Fatalf("%v: %q", err, m.body)
	}
	if r.Version != "0" || r.Vendor != "Vigil" || r.Product != "Vigil" || r.SignatureID != "brute-force" ||
		r.Name != "pipe | back\\slash newline" || r.Severity != "8" || cef.Severity(r.Severity).String() != "high" {
		t.Errorf("header %+v", r)
	}
	want := map[string]string{"externalId": "ev1", "msg": det.Text, "suser": "alice", "src": "203.0.113.7", "cat": "detection",
		"cs1Label": "tenant", "cs1": "acme", "cs2": "det-1", "cs3": "T1110", "cs4": "user=alice", "cs6": "resolved", "cn1": "7",
		"rt": strconv.FormatInt(outputtest.Now.UnixMilli(), 10)}
	for k, v := range want {
		if r.Ext[k] != v {
			t.Errorf("%s = %q, want %q", k, r.Ext[k], v)
		}
	}
	ev := cef.ToEvent(r, m.body)
	if ev.User != "alice" || ev.SrcIP != "203.0.113.7" || !ev.Time.Equal(outputtest.Now.Truncate(time.Millisecond)) {
		t.Errorf("mapped back: %+v", ev)
	}

	// An untrusted server is refused.
	s2, _ := newSyslog(t, Options{Address: srv.addr, Transport: "tls"})
	if err := s2.Send(context.Background(), []outputs.Message{det}); err == nil || outputs.IsPermanent(err) {
		t.Errorf("untrusted certificate: %v", err)
	}
}

func TestSyslogUDP(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	s, _ := newSyslog(t, Options{Address: pc.LocalAddr().String(), Transport: "udp", UDPMaxSize: 600})
	big := outputtest.Event("ev-big")
	big.Body = []byte(`{"x":"` + strings.Repeat("a", 5000) + `"}`)
	if err := s.Send(context.Background(), []outputs.Message{outputtest.Event("ev1"), big}); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 65536)
	pc.SetReadDeadline(time.Now().Add(10 * time.Second))
	for i, want := range []string{"ev1", "ev-big"} {
		n, _, err := pc.ReadFrom(buf)
		if err != nil {
			t.Fatal(err)
		}
		m := parse5424(t, string(buf[:n]))
		if m.params["event_id"] != want {
			t.Errorf("datagram %d: %v", i, m.params)
		}
		if n > 600 {
			t.Errorf("datagram of %d bytes over udp_max_size", n)
		}
	}
}

// TestSyslogReconnects: the receiver drops an idle connection; the next
// message goes out on a new connection instead of into the dead one.
func TestSyslogReconnects(t *testing.T) {
	srv := startStream(t, nil)
	s, _ := newSyslog(t, Options{Address: srv.addr})
	ctx := context.Background()
	if err := s.Send(ctx, []outputs.Message{outputtest.Event("ev1")}); err != nil {
		t.Fatal(err)
	}
	ch := <-srv.conns
	recv(t, ch)
	(<-srv.raw).Close() // the receiver drops the connection
	if _, ok := <-ch; ok {
		t.Fatal("expected the connection to be closed")
	}
	if err := s.Send(ctx, []outputs.Message{outputtest.Event("ev2")}); err != nil {
		t.Fatal(err)
	}
	var ch2 chan string
	select {
	case ch2 = <-srv.conns:
	case <-time.After(10 * time.Second):
		t.Fatal("the sender wrote into the dropped connection instead of reconnecting")
	}
	if m := parse5424(t, recv(t, ch2)); m.params["event_id"] != "ev2" {
		t.Errorf("after reconnect: %v", m.params)
	}
}

func TestSyslogErrors(t *testing.T) {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	s, _ := newSyslog(t, Options{Address: addr})
	if err := s.Send(context.Background(), []outputs.Message{outputtest.Event("ev1")}); err == nil || outputs.IsPermanent(err) {
		t.Errorf("receiver down: %v", err)
	}
	env, _ := outputtest.Env(t, nil)
	for _, c := range []struct {
		o    Options
		want string
	}{
		{Options{}, "must be host:port"},
		{Options{Address: "h:514", Transport: "relp"}, `transport "relp"`},
		{Options{Address: "h:514", Format: "leef"}, `format "leef"`},
		{Options{Address: "h:514", Facility: "local9"}, `facility "local9"`},
		{Options{Address: "h:514", Transport: "tls", CAFile: "/nonexistent"}, "ca_file"},
		{Options{Address: "h:514", UDPMaxSize: 10}, "udp_max_size"},
	} {
		o := c.o
		outputtest.ConfigError(t, Type(), &o, env, c.want)
	}
}

// FuzzSyslogCEF: whatever the detection says, the record parses back
// with Vigil's CEF parser to the same name and message.
func FuzzSyslogCEF(f *testing.F) {
	f.Add("title | x", "msg = y \\ z\nw", "alice")
	f.Add("\\|\\", "a=b c=d", "x=y")
	f.Fuzz(func(t *testing.T, title, text, user string) {
		m := outputtest.Detection("ev1", "det-1", "active", 1)
		m.Detection.Title, m.Text, m.Event.User = title, text, user
		rec := CEF(m)
		r, err := cef.Parse(rec)
		if err != nil {
			t.Fatalf("%v: %q", err, rec)
		}
		wantName := strings.NewReplacer("\r", " ", "\n", " ").Replace(title)
		if r.Name != wantName {
			t.Fatalf("name %q, want %q (record %q)", r.Name, wantName, rec)
		}
		// CEF cannot carry trailing spaces of a value (the parser trims them).
		if text != "" && strings.TrimRight(text, " ") != "" && r.Ext["msg"] != strings.TrimRight(text, " ") {
			t.Fatalf("msg %q, want %q (record %q)", r.Ext["msg"], text, rec)
		}
		if r.Ext["externalId"] != "ev1" || r.Ext["cs2"] != "det-1" {
			t.Fatalf("ext %v (record %q)", r.Ext, rec)
		}
	})
}
