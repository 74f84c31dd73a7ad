package wsnative_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/store"
	"github.com/vigil-sec/vigil/internal/testenv"
	"github.com/vigil-sec/vigil/internal/transport/wsconn"
	"github.com/vigil-sec/vigil/internal/transport/wsnative"
)

// BenchmarkReplaySocket is a replay from a cursor as a client sees it
// (issue 12 item 5): one native WebSocket client over loopback subscribes
// with from.seq 20,000 events back and reads them all; the node's parts
// (store with embedded JetStream, hub, WebSocket writer) and the client
// run in this process, so the CPU time per event includes the client's
// reading. ring=on is the default recent-event ring (the range is inside
// it), ring=off the store without it; batch=true asks for batched frames.
// Run:
//
//	go test ./internal/transport/wsnative -run x -bench ReplaySocket -benchtime 10x
func BenchmarkReplaySocket(b *testing.B) {
	for _, ring := range []struct {
		name  string
		bytes int64
	}{{"on", 0}, {"off", -1}} {
		b.Run("ring="+ring.name, func(b *testing.B) {
			e := testenv.NewWithStore(b, store.Config{ReplayCacheBytes: ring.bytes})
			lg, h := e.Log, e.Hub
			ctx, cancel := context.WithCancel(e.Ctx)
			defer cancel()
			poller, err := wsconn.NewPoller()
			if err != nil {
				b.Fatal(err)
			}
			pollerDone := make(chan error, 1)
			go func() { pollerDone <- poller.Run(ctx) }() // stopped by cancel
			defer func() { cancel(); <-pollerDone }()
			admin := auth.Principal{ID: "admin", Role: auth.RoleAdmin, Tenant: auth.AllTenants}
			srv := httptest.NewServer(wsnative.Handler(wsconn.Deps{Hub: h, Auth: auth.NewStaticToken("bench", admin), Poller: poller}, 10))
			defer srv.Close()

			const total, want = 30_000, 20_000 // the newest 20,000 fit the default ring
			e.AppendDemo(total)
			from := uint64(total - want + 1)
			if rs := lg.ReplayCacheStats(); ring.bytes == 0 && (rs.First > from || rs.Last != total) {
				b.Fatalf("ring %+v does not hold %d..%d", rs, from, total)
			}
			for _, batched := range []bool{false, true} {
				name := "batch=false"
				if batched {
					name = "batch=true"
				}
				b.Run(name, func(b *testing.B) {
					var cpu0 syscall.Rusage
					_ = syscall.Getrusage(syscall.RUSAGE_SELF, &cpu0)
					start := time.Now()
					for i := 0; i < b.N; i++ {
						replaySocketOnce(b, "ws"+strings.TrimPrefix(srv.URL, "http")+"/?token=bench", from, want, batched)
					}
					var cpu1 syscall.Rusage
					_ = syscall.Getrusage(syscall.RUSAGE_SELF, &cpu1)
					events := float64(b.N * want)
					b.ReportMetric(events/time.Since(start).Seconds(), "events/s")
					b.ReportMetric(float64(rusageCPU(cpu1)-rusageCPU(cpu0))/float64(time.Microsecond)/events, "cpu-µs/event")
				})
			}
		})
	}
}

// replaySocketOnce dials, subscribes from seq and reads want events.
func replaySocketOnce(b *testing.B, url string, from uint64, want int, batched bool) {
	conn, br, _, err := ws.Dial(context.Background(), url)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	sub, _ := json.Marshal(map[string]any{"op": "subscribe", "id": "r", "filter": map[string]any{}, "from": map[string]any{"seq": from}, "batch": batched})
	if err := wsutil.WriteClientText(conn, sub); err != nil {
		b.Fatal(err)
	}
	var r *bufio.Reader
	if br != nil {
		r = br
	} else {
		r = bufio.NewReaderSize(conn, 64<<10)
	}
	// A lean reader (no UTF-8 check, one reused buffer), so that the
	// client, which shares this process, costs little of the CPU time.
	mark := []byte(`{"seq":`)
	var buf []byte
	for n := 0; n < want; {
		h, err := ws.ReadHeader(r)
		if err != nil {
			b.Fatalf("after %d of %d events: %v", n, want, err)
		}
		if int64(cap(buf)) < h.Length {
			buf = make([]byte, h.Length)
		}
		buf = buf[:h.Length]
		if _, err := io.ReadFull(r, buf); err != nil {
			b.Fatalf("after %d of %d events: %v", n, want, err)
		}
		if h.OpCode == ws.OpClose {
			b.Fatalf("closed after %d of %d events: %s", n, want, buf)
		}
		n += bytes.Count(buf, mark)
	}
}
