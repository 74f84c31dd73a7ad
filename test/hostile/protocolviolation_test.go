package hostile

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/vigil-sec/vigil/internal/testnode"
)

// Issue 8 item 10: a client frame that breaks RFC 6455 (unmasked, RSV bits
// without an extension, a reserved opcode) used to end the connection with
// a TCP reset. The server must _Fail the WebSocket Connection_ with close
// 1002 (protocol error), received before the TCP close.

// protocolviolationFrames are raw client frames, each one violation, with
// the close code it must get.
func protocolviolationFrames() map[string]struct {
	frame []byte
	code  ws.StatusCode
} {
	masked := func(first byte, payload string) []byte {
		key := [4]byte{1, 2, 3, 4}
		b := []byte{first, 0x80 | byte(len(payload)), key[0], key[1], key[2], key[3]}
		for i := 0; i < len(payload); i++ {
			b = append(b, payload[i]^key[i%4])
		}
		return b
	}
	type violation = struct {
		frame []byte
		code  ws.StatusCode
	}
	return map[string]violation{
		"unmasked":        {append([]byte{0x81, 5}, "hello"...), ws.StatusProtocolError},
		"rsv1":            {masked(0x80|0x40|byte(ws.OpText), "hello"), ws.StatusProtocolError},
		"reserved opcode": {masked(0x80|0x3, "hello"), ws.StatusProtocolError},
		"continuation":    {masked(0x80|byte(ws.OpContinuation), "hello"), ws.StatusProtocolError},
		// Not a protocol error but invalid data: 1007 (RFC 6455 8.1).
		"invalid utf-8": {masked(0x80|byte(ws.OpText), "\xff\xfe"), ws.StatusInvalidFramePayloadData},
	}
}

// protocolviolationHandshake is a WebSocket upgrade request for the node's
// native stream.
func protocolviolationHandshake(t *testing.T, n *testnode.Node) []byte {
	t.Helper()
	u := url.URL{Path: "/api/v1/stream", RawQuery: url.Values{"token": {n.AdminToken()}}.Encode()}
	return []byte("GET " + u.RequestURI() + " HTTP/1.1\r\nHost: " + n.Addr() +
		"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
}

func TestProtocolViolationGetsClose1002(t *testing.T) {
	n := testnode.Start(t)
	for name, v := range protocolviolationFrames() {
		frame := v.frame
		// After the handshake the idle connection waits in the poller; a
		// frame sent with the handshake is already buffered, and the
		// connection is read by a reader goroutine instead: both paths.
		for _, withHandshake := range []bool{false, true} {
			path := "poller"
			if withHandshake {
				path = "reader goroutine"
			}
			t.Run(name+"/"+path, func(t *testing.T) {
				conn, err := net.DialTimeout("tcp", n.Addr(), 5*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close()
				_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
				hs := protocolviolationHandshake(t, n)
				if withHandshake {
					hs = append(hs, frame...)
				}
				if _, err := conn.Write(hs); err != nil {
					t.Fatal(err)
				}
				br := bufio.NewReader(conn)
				resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodGet})
				if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
					t.Fatalf("handshake: %v %v", resp, err)
				}
				if !withHandshake {
					if _, err := conn.Write(frame); err != nil {
						t.Fatal(err)
					}
				}
				//lint:ignore SA1019 the peer is the server under test and its frames are small; the test reads raw frames for their opcode and close code
				f, err := ws.ReadFrame(br)
				if err != nil {
					t.Fatalf("no close frame before the connection ended: %v", err)
				}
				if f.Header.OpCode != ws.OpClose {
					t.Fatalf("got opcode %v, want a close frame", f.Header.OpCode)
				}
				code, reason := ws.ParseCloseFrameData(f.Payload)
				if code != v.code {
					t.Fatalf("close %d %q, want %d", code, reason, v.code)
				}
				// Then an orderly TCP close, not a reset.
				_, err = io.Copy(io.Discard, br)
				if errors.Is(err, syscall.ECONNRESET) {
					t.Fatalf("connection reset after the close frame: %v", err)
				}
				if err != nil {
					t.Fatalf("after the close frame: %v", err)
				}
				t.Logf("close %d %q", code, reason)
			})
		}
	}
}
