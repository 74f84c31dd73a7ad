package syslog_test

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/config"
	"github.com/vigil-sec/vigil/internal/testnode"
)

// BenchmarkSyslogTCP measures syslog lines per second over TCP into the
// durable log: a real node (embedded JetStream on disk), one or more TCP
// connections writing newline-framed RFC 3164 lines as fast as the socket
// takes them, timed until vigil_input_stored_total has counted them all.
//
//	go test -run XXX -bench BenchmarkSyslogTCP -benchtime 200000x ./internal/inputs/syslog/
func BenchmarkSyslogTCP(b *testing.B) {
	for _, bc := range []struct {
		name     string
		conns    int
		line     string
		distinct int // distinct values of the line's number (users for sshd)
	}{
		{"unparsed/1conn", 1, "<14>Nov 30 10:11:12 web1 nginx[311]: 192.0.2.10 - - \"GET /index.html HTTP/1.1\" 200 512 \"-\" \"curl/8.5\" n=%d\n", 1 << 30},
		{"unparsed/4conns", 4, "<14>Nov 30 10:11:12 web1 nginx[311]: 192.0.2.10 - - \"GET /index.html HTTP/1.1\" 200 512 \"-\" \"curl/8.5\" n=%d\n", 1 << 30},
		// 1,000 distinct users: an auth log's users, not one per line.
		{"sshd/4conns", 4, "<38>Nov 30 10:11:12 web1 sshd[311]: Accepted publickey for user%d from 192.0.2.10 port 50000 ssh2\n", 1000},
	} {
		b.Run(bc.name, func(b *testing.B) {
			addr := freeAddr(b)
			n := testnode.Start(b, func(c *config.Config) { c.Syslog.Listen = addr })
			payload := make([][]byte, bc.conns)
			per := b.N / bc.conns
			for c := range bc.conns {
				var sb strings.Builder
				for i := range per {
					fmt.Fprintf(&sb, bc.line, (c*per+i)%bc.distinct)
				}
				payload[c] = []byte(sb.String())
			}
			total := per * bc.conns
			base := stored(b, n)
			b.SetBytes(int64(len(payload[0]) / max(per, 1)))
			b.ResetTimer()
			cpu0 := processCPU(b)
			start := time.Now()
			errs := make(chan error, bc.conns)
			for c := range bc.conns {
				go func() { // ends when its payload is written
					conn, err := net.Dial("tcp", addr)
					if err != nil {
						errs <- err
						return
					}
					defer conn.Close()
					_, err = conn.Write(payload[c])
					errs <- err
				}()
			}
			for range bc.conns {
				if err := <-errs; err != nil {
					b.Fatal(err)
				}
			}
			deadline := time.Now().Add(2 * time.Minute)
			for stored(b, n) < base+float64(total) {
				if time.Now().After(deadline) {
					b.Fatalf("stored %v of %d within 2m", stored(b, n)-base, total)
				}
				time.Sleep(5 * time.Millisecond)
			}
			el := time.Since(start)
			cpu := processCPU(b) - cpu0
			b.StopTimer()
			b.ReportMetric(float64(total)/el.Seconds(), "lines/s")
			// CPU time of the whole process (server, embedded JetStream
			// and the senders) per line: on a shared box wall-clock rates
			// depend on the neighbours, this much less. 2 cores / this
			// figure is the rate the process could reach on an idle
			// 2-core machine if nothing but CPU limited it.
			b.ReportMetric(cpu.Seconds()*1e6/float64(total), "cpu-µs/line")
		})
	}
}

// processCPU is the user+system CPU time this process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func freeAddr(b *testing.B) string {
	for range 20 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		a := ln.Addr().String()
		pc, err := net.ListenPacket("udp", a)
		ln.Close()
		if err == nil {
			pc.Close()
			return a
		}
	}
	b.Fatal("no free port")
	return ""
}

func stored(b *testing.B, n *testnode.Node) float64 {
	resp, err := http.Get(n.URL() + "/metrics")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), `vigil_input_stored_total{input="syslog"} `); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return 0
}
