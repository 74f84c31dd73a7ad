package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/vigil-sec/vigil/client"
)

// benchIdle opens n idle native-stream connections, each with one
// subscription, and reports the server's memory per connection from its
// own /metrics (Go heap in use + goroutine stacks), so client-side memory
// does not count.
//
// Before each reading the server collects its garbage (the admin-only
// /debug/pprof/heap?gc=1 runs a GC): otherwise what an earlier run left
// behind counts in "before" and the figure comes out too low, or garbage
// made while connecting counts in "after". With a non-admin token the
// readings are taken without it (run the server with GOGC=10 then). With
// VIGIL_BENCH_HEAP_PROFILE=FILE the heap profile taken with the
// connections open is written to FILE (go tool pprof FILE).
func benchIdle(ctx context.Context, e env, c *client.Client, server, token string, n int) error {
	gc := collectGarbage(ctx, c.HTTPClient(), server, token, "", e.warnf)
	if !gc {
		e.println("  (no forced GC: /debug/pprof needs the admin token; run the server with GOGC=10)")
	}
	before, err := serverMemory(ctx, c.HTTPClient(), server)
	if err != nil {
		return err
	}
	dialer := ws.Dialer{Header: ws.HandshakeHeaderHTTP(http.Header{"Authorization": []string{"Bearer " + token}}), Timeout: 10 * time.Second,
		TLSConfig: c.TLSConfig()}
	url := strings.Replace(strings.Replace(server, "https://", "wss://", 1), "http://", "ws://", 1) + "/api/v1/stream"
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, conn := range conns {
			_ = conn.Close() // tearing down idle test connections: nothing to do about a failure
		}
	}()
	start := time.Now()
	for i := 0; i < n; i++ {
		conn, _, _, err := dialer.Dial(ctx, url)
		if err != nil {
			return fmt.Errorf("bench: connection %d: %w", i, err)
		}
		conns = append(conns, conn)
		sub := `{"op":"subscribe","id":"idle","filter":{"categories":["system"]},"from":"latest"}`
		if err := wsutil.WriteClientText(conn, []byte(sub)); err != nil {
			return err
		}
		if _, err := wsutil.ReadServerText(conn); err != nil { // "subscribed"
			return err
		}
		if (i+1)%1000 == 0 {
			e.printf("  %d connections open (%.1fs)\n", i+1, time.Since(start).Seconds())
		}
	}
	time.Sleep(2 * time.Second) // let the server settle (sessions finish their first message)
	after, err := serverMemory(ctx, c.HTTPClient(), server)
	if err != nil {
		return err
	}
	if gc {
		// The first reading includes the garbage the server's GOGC lets
		// live; this one only what the connections hold.
		collectGarbage(ctx, c.HTTPClient(), server, token, e.getenv("VIGIL_BENCH_HEAP_PROFILE"), e.warnf)
		live, err := serverMemory(ctx, c.HTTPClient(), server)
		if err != nil {
			return err
		}
		e.printf("idle connections: %d open; server memory (heap in use + stacks) grew %.1f MiB = %.0f bytes per connection; %.0f before the forced GC\n",
			n, float64(live-before)/(1<<20), float64(live-before)/float64(n), float64(after-before)/float64(n))
		return nil
	}
	e.printf("idle connections: %d open; server memory (heap in use + stacks) grew %.1f MiB = %.0f bytes per connection\n",
		n, float64(after-before)/(1<<20), float64(after-before)/float64(n))
	return nil
}

// collectGarbage asks the server for a heap profile with gc=1, which runs
// a GC first; the profile is saved to file unless file is empty. False if
// the server refused (not an admin token).
func collectGarbage(ctx context.Context, hc *http.Client, server, token, file string, warnf func(string, ...any)) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(server, "/")+"/debug/pprof/heap?gc=1", nil)
	if err != nil {
		return false
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := hc.Do(req)
	if err != nil {
		return false
	}
	defer func() { _ = resp.Body.Close() }() // read to the end or discarded; a close error changes nothing
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, resp.Body)
		return false
	}
	if file == "" {
		_, err = io.Copy(io.Discard, resp.Body)
		return err == nil
	}
	// The GC ran; the profile is optional, but a failure to save it is
	// said, not swallowed.
	f, err := os.Create(file)
	if err != nil {
		warnf("vigil bench: heap profile: %v\n", err)
		return true
	}
	_, err = io.Copy(f, resp.Body)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		warnf("vigil bench: heap profile %s: %v\n", file, err)
	}
	return true
}

// serverMemory reads go_memstats_heap_inuse_bytes + go_memstats_stack_inuse_bytes.
func serverMemory(ctx context.Context, hc *http.Client, server string) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(server, "/")+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, fmt.Errorf("bench: metrics: %w", err)
	}
	defer func() { _ = resp.Body.Close() }() // read-only answer: a close error changes nothing
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("bench: metrics: HTTP %d", resp.StatusCode)
	}
	var total int64
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		for _, name := range []string{"go_memstats_heap_inuse_bytes ", "go_memstats_stack_inuse_bytes "} {
			if v, ok := strings.CutPrefix(line, name); ok {
				f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
				if err != nil {
					return 0, err
				}
				total += int64(f)
			}
		}
	}
	return total, sc.Err()
}
