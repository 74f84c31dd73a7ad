// Command versus is one load client for Vigil and Centrifugo (issue 12,
// "Against other servers"): the same WebSocket library (gobwas/ws), the same
// events, the same pacing and the same measurements against either server,
// so that their figures can be put side by side.
//
// It is a measuring tool, not part of Vigil: scripts/versus-centrifugo.sh
// builds it, starts both servers and runs the matrix. Run it by hand as
//
//	versus -server vigil -url http://127.0.0.1:18080 -token "$(cat vd/admin.token)" -pid PID -mode fanout -rate 2000
//	versus -server centrifugo -url http://127.0.0.1:18000 -api-key K -hmac S -pid PID -mode fanout -rate 2000 -namespace hist
//
// Workloads (-mode):
//   - fanout: -clients WebSocket clients on one filter (Vigil) or one
//     channel (Centrifugo); every event is for every client.
//   - selective: client i has its own user filter / its own channel; the
//     events are spread over the clients, each event for exactly one.
//   - idle: -clients connections with one subscription each, then the
//     server's heap in use + goroutine stacks per connection (its own
//     /metrics, after a forced GC through /debug/pprof/heap?gc=1).
//
// Events (~300 bytes of JSON, the same object for both servers) are
// published in batches of -batch through each server's HTTP API (Vigil:
// POST /api/v1/events; Centrifugo: POST /api/batch) by -publishers
// goroutines paced to -rate events/s for -duration. Latency is measured
// from the publisher's acknowledgement (the HTTP answer) to the client's
// read; a delivery read before its acknowledgement counts as 0 (as in
// `vigil bench`). The server's CPU is read from /proc/<pid>/stat before the
// first publish and after the last delivery; the client's own from
// getrusage.
//
// It prints one Markdown table row (-header prints the header row first).
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/bits"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/golang-jwt/jwt/v5"
)

type config struct {
	server     string // vigil or centrifugo
	url        string // http://host:port
	token      string // Vigil bearer token (admin: the forced GC needs it)
	apiKey     string // Centrifugo HTTP API key
	hmac       string // Centrifugo HMAC secret for connection JWTs
	namespace  string // Centrifugo channel namespace (bench: no history, hist: history)
	pid        int    // server process, for its CPU time
	mode       string
	clients    int
	rate       float64
	duration   time.Duration
	batch      int
	publishers int
	arrivals   string // burst or even
	drain      time.Duration
	header     bool
	label      string
	slow       int           // clients that read slowly (graceful overload)
	slowDelay  time.Duration // their pause per delivery read
}

func main() {
	var c config
	flag.StringVar(&c.server, "server", "vigil", "vigil or centrifugo")
	flag.StringVar(&c.url, "url", "http://127.0.0.1:8080", "server base URL")
	flag.StringVar(&c.token, "token", "", "Vigil token (admin, for the forced GC of -mode idle)")
	flag.StringVar(&c.apiKey, "api-key", "", "Centrifugo HTTP API key")
	flag.StringVar(&c.hmac, "hmac", "", "Centrifugo token HMAC secret (connection JWTs)")
	flag.StringVar(&c.namespace, "namespace", "bench", "Centrifugo channel namespace")
	flag.IntVar(&c.pid, "pid", 0, "server process id (CPU time from /proc/<pid>/stat)")
	flag.StringVar(&c.mode, "mode", "fanout", "fanout, selective or idle")
	flag.IntVar(&c.clients, "clients", 1000, "WebSocket clients")
	flag.Float64Var(&c.rate, "rate", 1000, "offered events/s")
	flag.DurationVar(&c.duration, "duration", 8*time.Second, "publishing time")
	flag.IntVar(&c.batch, "batch", 10, "events per HTTP request")
	flag.IntVar(&c.publishers, "publishers", 4, "concurrent publishers")
	flag.StringVar(&c.arrivals, "arrivals", "burst", `"burst": every publisher starts at once on the same schedule; "even": their starts are spread over one interval`)
	flag.DurationVar(&c.drain, "drain", 20*time.Second, "longest wait for deliveries after the last publish")
	flag.BoolVar(&c.header, "header", false, "print the table header first")
	flag.IntVar(&c.slow, "slow", 0, "this many of the clients read slowly (a pause per delivery): are they cut before the others suffer?")
	flag.DurationVar(&c.slowDelay, "slow-delay", 5*time.Millisecond, "pause of a slow client per delivery read")
	flag.StringVar(&c.label, "label", "", "label for the server column (default: -server, plus the namespace for Centrifugo)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, c); err != nil {
		fmt.Fprintln(os.Stderr, "versus:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, c config) error {
	switch {
	case c.server != "vigil" && c.server != "centrifugo":
		return fmt.Errorf("-server %q: want vigil or centrifugo", c.server)
	case c.mode != "fanout" && c.mode != "selective" && c.mode != "idle":
		return fmt.Errorf("-mode %q: want fanout, selective or idle", c.mode)
	case c.clients <= 0 || c.batch <= 0 || c.publishers <= 0 || c.rate <= 0:
		return errors.New("-clients, -batch, -publishers and -rate must be positive")
	case c.arrivals != "burst" && c.arrivals != "even":
		return fmt.Errorf("-arrivals %q: want burst or even", c.arrivals)
	case c.slow < 0 || c.slow > c.clients:
		return errors.New("-slow must be between 0 and -clients")
	case c.server == "vigil" && c.token == "":
		return errors.New("-token is required for vigil")
	case c.server == "centrifugo" && (c.apiKey == "" || c.hmac == ""):
		return errors.New("-api-key and -hmac are required for centrifugo")
	}
	if c.label == "" {
		c.label = c.server
		if c.server == "centrifugo" {
			c.label += " (" + c.namespace + ")"
		}
	}
	if c.mode == "idle" {
		return runIdle(ctx, c)
	}
	return runLoad(ctx, c)
}

// ---- the load run ----

type loadRun struct {
	c        config
	runID    string
	ackNano  []atomic.Int64 // event number -> when its publisher got the answer
	sendNano []atomic.Int64 // event number -> when its publisher sent the request
	hc       *http.Client
}

func runLoad(ctx context.Context, c config) error {
	maxEvents := int(c.rate*c.duration.Seconds()) + c.batch*c.publishers + 16
	r := &loadRun{c: c, runID: fmt.Sprintf("v%d", time.Now().UnixNano()), ackNano: make([]atomic.Int64, maxEvents), sendNano: make([]atomic.Int64, maxEvents),
		hc: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: c.publishers * 2}}}
	connCtx, closeConns := context.WithCancel(ctx)
	defer closeConns()
	conns := make([]*subscriber, c.clients)
	for i := range conns {
		s, err := r.dial(connCtx, i)
		if err != nil {
			for _, s := range conns[:i] {
				s.close()
			}
			return fmt.Errorf("client %d: %w", i, err)
		}
		s.slow = i < c.slow
		conns[i] = s
	}
	var readers sync.WaitGroup
	var delivered atomic.Int64
	var lastNano atomic.Int64
	for _, s := range conns {
		readers.Add(1)
		go func() { // owned by runLoad: ends when its connection is closed
			defer readers.Done()
			s.read(r, &delivered, &lastNano)
		}()
	}
	defer func() {
		closeConns()
		for _, s := range conns {
			s.close()
		}
		readers.Wait()
	}()
	time.Sleep(300 * time.Millisecond) // let every subscription settle before the first event

	cpu0, err := procCPU(c.pid)
	if err != nil {
		return err
	}
	self0 := selfCPU()
	start := time.Now()
	var next atomic.Int64 // event numbers
	var published, failed atomic.Int64
	var pubs sync.WaitGroup
	pubErr := make(chan error, c.publishers)
	for p := 0; p < c.publishers; p++ {
		pubs.Add(1)
		go func() { // owned by runLoad: ends after -duration
			defer pubs.Done()
			interval := time.Duration(float64(time.Second) * float64(c.batch) * float64(c.publishers) / c.rate)
			due := time.Now()
			if c.arrivals == "even" {
				due = due.Add(interval * time.Duration(p) / time.Duration(c.publishers))
				time.Sleep(time.Until(due))
			}
			for time.Since(start) < c.duration && ctx.Err() == nil {
				first := next.Add(int64(c.batch)) - int64(c.batch)
				if int(first)+c.batch > len(r.ackNano) {
					return
				}
				sent := time.Now().UnixNano()
				for n := first; n < first+int64(c.batch); n++ {
					r.sendNano[n].Store(sent)
				}
				if err := r.publish(ctx, int(first)); err != nil {
					failed.Add(int64(c.batch))
					select {
					case pubErr <- err:
					default:
					}
				} else {
					now := time.Now().UnixNano()
					for n := first; n < first+int64(c.batch); n++ {
						r.ackNano[n].Store(now)
					}
					published.Add(int64(c.batch))
				}
				due = due.Add(interval)
				if d := time.Until(due); d > 0 {
					time.Sleep(d)
				}
			}
		}()
	}
	pubs.Wait()
	pubEnd := time.Now()
	// Wait for the deliveries: all expected, or no progress for 2 s.
	expected := published.Load()
	if c.mode == "fanout" {
		expected *= int64(c.clients)
	}
	last, lastChange := delivered.Load(), time.Now()
	for time.Since(pubEnd) < c.drain && delivered.Load() < expected {
		time.Sleep(50 * time.Millisecond)
		if d := delivered.Load(); d != last {
			last, lastChange = d, time.Now()
		} else if time.Since(lastChange) > 2*time.Second {
			break
		}
	}
	cpu1, err := procCPU(c.pid)
	if err != nil {
		return err
	}
	self1 := selfCPU()
	load := loadAvg()
	closeConns()
	for _, s := range conns {
		s.close()
	}
	readers.Wait()

	var h, hs hist
	var lagged, closedBy = 0, map[int]int{}
	slowCut := 0
	for _, s := range conns {
		if s.slow { // the others' latency is the question
			if s.closeCode != 0 {
				slowCut++
			}
		} else {
			h.merge(&s.h)
			hs.merge(&s.hs)
		}
		if s.lagged {
			lagged++
		}
		if s.closeCode != 0 {
			closedBy[s.closeCode]++
		}
	}
	got := delivered.Load()
	end := time.Unix(0, lastNano.Load())
	if end.Before(pubEnd) {
		end = pubEnd
	}
	wall := end.Sub(start).Seconds()
	serverCPU := cpu1 - cpu0
	if c.header {
		fmt.Println("| server | workload | offered ev/s | accepted ev/s | delivered msg/s | delivered / expected | ack→client p50 | p99 | send→client p50 | p99 | disconnected (close codes) | server CPU s | server CPU µs/delivery | client CPU s | load 1m |")
		fmt.Println("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
	}
	if f := failed.Load(); f > 0 {
		fmt.Fprintf(os.Stderr, "versus: %d events refused or failed: %v\n", f, <-pubErr)
	}
	perDelivery := "—"
	if got > 0 {
		perDelivery = fmt.Sprintf("%.2f", serverCPU.Seconds()*1e6/float64(got))
	}
	closes := fmtCloses(lagged, closedBy)
	workload := fmt.Sprintf("%s %d clients", c.mode, c.clients)
	if c.slow > 0 {
		workload += fmt.Sprintf(", %d slow (%v per delivery; latency of the others)", c.slow, c.slowDelay)
		closes += fmt.Sprintf("; slow ones cut: %d of %d", slowCut, c.slow)
	}
	fmt.Printf("| %s | %s | %.0f | %.0f | %.0f | %.1f %% | %s | %s | %s | %s | %s | %.2f | %s | %.2f | %s |\n",
		c.label, workload, c.rate, float64(published.Load())/pubEnd.Sub(start).Seconds(),
		float64(got)/wall, 100*float64(got)/float64(max(expected, 1)),
		fmtDur(h.quantile(0.5)), fmtDur(h.quantile(0.99)), fmtDur(hs.quantile(0.5)), fmtDur(hs.quantile(0.99)), closes,
		serverCPU.Seconds(), perDelivery, (self1 - self0).Seconds(), load)
	return nil
}

// event is the one payload both servers carry: ~300 bytes of JSON. "vn" is
// the event's number, which the clients find in whatever each server wraps
// around it.
func (r *loadRun) event(b *bytes.Buffer, n int) {
	user := 0
	if r.c.mode == "selective" {
		user = n % r.c.clients
	}
	fmt.Fprintf(b, `{"type":"system.bench","category":"system","severity":"info","source":"versus","resource":%q,"user":"vu-%d",`+
		`"message":"side-by-side load event, padded to about three hundred bytes of JSON so both servers carry the same body xxxxxxxx","data":{"vn":%d}}`,
		r.runID, user, n)
}

func (r *loadRun) channel(user int) string {
	if r.c.mode == "selective" {
		return fmt.Sprintf("%s:%s-u%d", r.c.namespace, r.runID, user)
	}
	return fmt.Sprintf("%s:%s", r.c.namespace, r.runID)
}

func (r *loadRun) publish(ctx context.Context, first int) error {
	var body bytes.Buffer
	var req *http.Request
	var err error
	if r.c.server == "vigil" {
		body.WriteByte('[')
		for n := first; n < first+r.c.batch; n++ {
			if n > first {
				body.WriteByte(',')
			}
			r.event(&body, n)
		}
		body.WriteByte(']')
		req, err = http.NewRequestWithContext(ctx, http.MethodPost, r.c.url+"/api/v1/events", &body)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+r.c.token)
	} else {
		body.WriteString(`{"commands":[`)
		for n := first; n < first+r.c.batch; n++ {
			if n > first {
				body.WriteByte(',')
			}
			user := 0
			if r.c.mode == "selective" {
				user = n % r.c.clients
			}
			fmt.Fprintf(&body, `{"publish":{"channel":%q,"data":`, r.channel(user))
			r.event(&body, n)
			body.WriteString(`}}`)
		}
		body.WriteString(`]}`)
		req, err = http.NewRequestWithContext(ctx, http.MethodPost, r.c.url+"/api/batch", &body)
		if err != nil {
			return err
		}
		req.Header.Set("X-API-Key", r.c.apiKey)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := r.hc.Do(req)
	if err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	defer func() { _ = resp.Body.Close() }() // read to the end below; a close error changes nothing
	answer, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("publish: reading the answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK || bytes.Contains(answer, []byte(`"error"`)) {
		return fmt.Errorf("publish: HTTP %d: %.200s", resp.StatusCode, answer)
	}
	return nil
}

// ---- WebSocket clients ----

type subscriber struct {
	conn      net.Conn
	br        *bufio.Reader
	server    string
	h         hist // ack -> read
	hs        hist // request sent -> read
	lagged    bool
	slow      bool // pauses per delivery read (-slow)
	closeCode int
	closeOnce sync.Once
}

func (s *subscriber) close() {
	s.closeOnce.Do(func() { _ = s.conn.Close() }) // teardown: nothing to do about a failure
}

func wsURL(base, path string) string {
	return strings.Replace(strings.Replace(base, "https://", "wss://", 1), "http://", "ws://", 1) + path
}

// dial connects client i and subscribes it, waiting for the server's
// confirmation, so that no event published afterwards can be missed.
func (r *loadRun) dial(ctx context.Context, i int) (*subscriber, error) {
	return dialSub(ctx, r.c, i, r.filterOrChannel(i))
}

func (r *loadRun) filterOrChannel(i int) string {
	if r.c.server == "centrifugo" {
		if r.c.mode == "selective" {
			return r.channel(i)
		}
		return r.channel(0)
	}
	if r.c.mode == "selective" {
		return fmt.Sprintf(`{"users":["vu-%d"],"resources":[%q]}`, i, r.runID)
	}
	return fmt.Sprintf(`{"sources":["versus"],"resources":[%q]}`, r.runID)
}

func dialSub(ctx context.Context, c config, i int, target string) (*subscriber, error) {
	d := ws.Dialer{Timeout: 10 * time.Second}
	path := "/connection/websocket"
	if c.server == "vigil" {
		d.Header = ws.HandshakeHeaderHTTP(http.Header{"Authorization": []string{"Bearer " + c.token}})
		path = "/api/v1/stream"
	}
	conn, br, _, err := d.Dial(ctx, wsURL(c.url, path))
	if err != nil {
		return nil, err
	}
	if br == nil {
		br = bufio.NewReaderSize(conn, 64<<10)
	}
	s := &subscriber{conn: conn, br: br, server: c.server}
	var msgs []string
	if c.server == "vigil" {
		msgs = []string{fmt.Sprintf(`{"op":"subscribe","id":"s","filter":%s,"from":"latest"}`, target)}
	} else {
		tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
			"sub": fmt.Sprintf("u%d", i), "exp": time.Now().Add(2 * time.Hour).Unix(),
		}).SignedString([]byte(c.hmac))
		if err != nil {
			s.close()
			return nil, err
		}
		msgs = []string{fmt.Sprintf(`{"id":1,"connect":{"token":%q}}`, tok), fmt.Sprintf(`{"id":2,"subscribe":{"channel":%q}}`, target)}
	}
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second)) // the handshake must not hang the run
	for _, m := range msgs {
		if err := wsutil.WriteClientText(conn, []byte(m)); err != nil {
			s.close()
			return nil, err
		}
		reply, err := wsutil.ReadServerText(struct {
			io.Reader
			io.Writer
		}{s.br, conn})
		if err != nil {
			s.close()
			return nil, err
		}
		if bytes.Contains(reply, []byte(`"error"`)) {
			s.close()
			return nil, fmt.Errorf("server refused %s: %s", m, reply)
		}
	}
	_ = conn.SetDeadline(time.Time{}) // from here on the run decides
	return s, nil
}

var (
	marker     = []byte(`"vn":`)
	laggedMark = []byte(`"type":"lagged"`)
	pingLine   = []byte(`{}`)
)

// read counts the deliveries of every frame until the connection closes:
// each occurrence of "vn": is one event (Centrifugo may put several
// replies in one frame, one per line; Vigil's batched frames several
// events).
func (s *subscriber) read(r *loadRun, delivered, lastNano *atomic.Int64) {
	rd := wsutil.Reader{Source: s.br, State: ws.StateClientSide, CheckUTF8: false,
		OnIntermediate: wsutil.ControlFrameHandler(s.conn, ws.StateClientSide)}
	buf := make([]byte, 0, 4096)
	for {
		hdr, err := rd.NextFrame()
		if err != nil {
			var ce wsutil.ClosedError
			if errors.As(err, &ce) {
				s.closeCode = int(ce.Code)
			}
			return
		}
		if hdr.OpCode.IsControl() { // answered by OnIntermediate
			if err := rd.OnIntermediate(hdr, &rd); err != nil {
				var ce wsutil.ClosedError
				if errors.As(err, &ce) {
					s.closeCode = int(ce.Code)
				}
				return
			}
			continue
		}
		buf = buf[:0]
		for {
			if len(buf) == cap(buf) {
				buf = append(buf, 0)[:len(buf)]
			}
			n, err := rd.Read(buf[len(buf):cap(buf)])
			buf = buf[:len(buf)+n]
			if err == io.EOF {
				break
			}
			if err != nil {
				return
			}
		}
		now := time.Now().UnixNano()
		count := 0
		for b := buf; ; {
			k := bytes.Index(b, marker)
			if k < 0 {
				break
			}
			b = b[k+len(marker):]
			n := 0
			for len(b) > 0 && b[0] >= '0' && b[0] <= '9' {
				n = n*10 + int(b[0]-'0')
				b = b[1:]
			}
			var lat, fromSend time.Duration
			if n < len(r.ackNano) {
				if a := r.ackNano[n].Load(); a != 0 && now > a {
					lat = time.Duration(now - a)
				}
				if a := r.sendNano[n].Load(); a != 0 && now > a {
					fromSend = time.Duration(now - a)
				}
			}
			s.h.add(lat)
			s.hs.add(fromSend)
			count++
		}
		// Centrifugo's ping ({}) may share a frame with publications.
		if s.server == "centrifugo" && isCentrifugoPing(buf) {
			if err := wsutil.WriteClientText(s.conn, pingLine); err != nil {
				return
			}
		}
		if count > 0 {
			delivered.Add(int64(count))
			lastNano.Store(now)
			if s.slow {
				time.Sleep(time.Duration(count) * r.c.slowDelay) // per delivery, however the server frames them
			}
			continue
		}
		if s.server == "vigil" && bytes.Contains(buf, laggedMark) {
			s.lagged = true
		}
	}
}

func isCentrifugoPing(frame []byte) bool {
	if !bytes.Contains(frame, pingLine) {
		return false
	}
	for _, line := range bytes.Split(frame, []byte("\n")) {
		if bytes.Equal(bytes.TrimSpace(line), pingLine) {
			return true
		}
	}
	return false
}

// ---- idle connections ----

func runIdle(ctx context.Context, c config) error {
	gc := forceGC(ctx, c)
	before, err := serverMemory(ctx, c)
	if err != nil {
		return err
	}
	conns := make([]*subscriber, 0, c.clients)
	var readers sync.WaitGroup
	defer func() {
		for _, s := range conns {
			s.close()
		}
		readers.Wait()
	}()
	r := &loadRun{c: c, runID: fmt.Sprintf("idle%d", time.Now().UnixNano())}
	r.c.mode = "fanout" // one filter / one channel for all
	for i := 0; i < c.clients; i++ {
		s, err := r.dial(ctx, i)
		if err != nil {
			return fmt.Errorf("idle connection %d: %w", i, err)
		}
		conns = append(conns, s)
		readers.Add(1)
		go func() { // owned by runIdle: ends when its connection is closed (answers pings meanwhile)
			defer readers.Done()
			var d, l atomic.Int64
			s.read(r, &d, &l)
		}()
	}
	time.Sleep(2 * time.Second) // let the server settle after the last subscription
	forceGC(ctx, c)
	after, err := serverMemory(ctx, c)
	if err != nil {
		return err
	}
	if c.header {
		fmt.Println("| server | idle connections | server heap in use + stacks, per connection | forced GC | load 1m |")
		fmt.Println("| --- | --- | --- | --- | --- |")
	}
	fmt.Printf("| %s | %d | %.0f bytes | %v | %s |\n", c.label, c.clients, float64(after-before)/float64(c.clients), gc, loadAvg())
	return nil
}

func (c config) authed(req *http.Request) {
	if c.server == "vigil" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
}

// forceGC asks the server to collect its garbage (net/http/pprof's
// heap?gc=1; Vigil needs the admin token, Centrifugo its debug endpoints).
func forceGC(ctx context.Context, c config) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url+"/debug/pprof/heap?gc=1", nil)
	if err != nil {
		return false
	}
	c.authed(req)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	defer func() { _ = resp.Body.Close() }() // read-only answer
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode == http.StatusOK
}

// serverMemory is the Go heap in use plus goroutine stacks, from the
// server's Prometheus metrics (both servers export the Go collector).
func serverMemory(ctx context.Context, c config) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("metrics: %w", err)
	}
	defer func() { _ = resp.Body.Close() }() // read-only answer
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("metrics: HTTP %d", resp.StatusCode)
	}
	var total int64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	found := 0
	for sc.Scan() {
		for _, name := range []string{"go_memstats_heap_inuse_bytes ", "go_memstats_stack_inuse_bytes "} {
			if v, ok := strings.CutPrefix(sc.Text(), name); ok {
				f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
				if err != nil {
					return 0, fmt.Errorf("metrics: %s: %w", name, err)
				}
				total += int64(f)
				found++
			}
		}
	}
	if found != 2 {
		return 0, errors.New("metrics: go_memstats_heap_inuse_bytes or go_memstats_stack_inuse_bytes missing")
	}
	return total, sc.Err()
}

// ---- measurements ----

// procCPU is the user+system CPU time of a process, from /proc/<pid>/stat.
func procCPU(pid int) (time.Duration, error) {
	if pid == 0 {
		return 0, nil
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("server CPU: %w", err)
	}
	// The command name (field 2) may hold spaces: count from its ')'.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("server CPU: short /proc/%d/stat", pid)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("server CPU: %w", err)
	}
	return time.Duration(ut+st) * time.Second / 100, nil // USER_HZ is 100 on Linux
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru) // cannot fail for RUSAGE_SELF
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Fields(string(b))[0]
}

// hist is a log-linear latency histogram: 16 buckets per power of two of
// microseconds (~6 % resolution), no allocation per sample.
type hist struct {
	n       int64
	buckets [64 * 16]int64
}

func bucketOf(d time.Duration) int {
	us := uint64(d / time.Microsecond)
	if us < 16 {
		return int(us)
	}
	e := bits.Len64(us) - 5 // us >> e is in [16, 32)
	return (e+1)*16 + int(us>>e) - 16
}

func bucketValue(i int) time.Duration {
	if i < 16 {
		return time.Duration(i) * time.Microsecond
	}
	e := i/16 - 1
	return time.Duration(uint64(i%16+16)<<e) * time.Microsecond
}

func (h *hist) add(d time.Duration) {
	h.buckets[bucketOf(d)]++
	h.n++
}

func (h *hist) merge(o *hist) {
	h.n += o.n
	for i, v := range o.buckets {
		h.buckets[i] += v
	}
}

func (h *hist) quantile(q float64) time.Duration {
	if h.n == 0 {
		return -1
	}
	want := int64(q * float64(h.n))
	var seen int64
	for i, v := range h.buckets {
		seen += v
		if seen > want {
			return bucketValue(i)
		}
	}
	return bucketValue(len(h.buckets) - 1)
}

func fmtDur(d time.Duration) string {
	switch {
	case d < 0:
		return "—"
	case d < time.Millisecond:
		return fmt.Sprintf("%.2f ms", float64(d)/1e6)
	case d < time.Second:
		return fmt.Sprintf("%.0f ms", float64(d)/1e6)
	default:
		return fmt.Sprintf("%.1f s", d.Seconds())
	}
}

func fmtCloses(lagged int, byCode map[int]int) string {
	total := 0
	var parts []string
	for code, n := range byCode {
		total += n
		parts = append(parts, fmt.Sprintf("%d×%d", n, code))
	}
	s := strconv.Itoa(total)
	if len(parts) > 0 {
		s += " (" + strings.Join(parts, ", ") + ")"
	}
	if lagged > 0 {
		s += fmt.Sprintf(", %d told lagged", lagged)
	}
	return s
}
