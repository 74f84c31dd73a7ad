package app

import (
	"context"
	"errors"
	"net"
	"net/http"
	"slices"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/vigil-sec/vigil/internal/config"
)

func freeAddr(t *testing.T, network string) string {
	t.Helper()
	if network == "udp" {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.LocalAddr().String()
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestNodeShutdownOrder starts a whole node (embedded JetStream, HTTP,
// syslog, NATS ingest), checks it serves, shuts it down, and checks the
// order the subsystems stopped in (inputs first, the log last, the data
// directory lock after it) and that no goroutine is left.
func TestNodeShutdownOrder(t *testing.T) {
	defer goleak.VerifyNone(t) // every subsystem's goroutines: none left
	cfg := config.Defaults()
	cfg.Listen, cfg.DataDir = freeAddr(t, "tcp"), t.TempDir()
	cfg.Syslog.Listen = freeAddr(t, "tcp")

	n := New(cfg, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := n.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := n.Start(ctx); err == nil {
		t.Fatal("a second Start succeeded")
	}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get("http://" + n.Addr() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/healthz: %d", resp.StatusCode)
	}
	if err := n.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	select {
	case <-n.Done():
	default:
		t.Fatal("Done not closed after Shutdown")
	}
	// "listen" closes the bound port if "http" never served it (a failed
	// start); after a served run it is already closed.
	want := []string{"syslog", "natsingest", "http", "background", "log", "datadir", "listen"}
	if got := n.Stopped(); !slices.Equal(got, want) {
		t.Fatalf("stopped in order %v, want %v", got, want)
	}
	if _, err := net.DialTimeout("tcp", n.Addr(), time.Second); err == nil {
		t.Fatal("HTTP port still open after Shutdown")
	}
}

// TestNodeStartFailureLeavesNothing: a start that fails (the port is
// taken) returns the error and leaves no goroutine and no stop undone.
func TestNodeStartFailureLeavesNothing(t *testing.T) {
	defer goleak.VerifyNone(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cfg := config.Defaults()
	cfg.Listen, cfg.DataDir = ln.Addr().String(), t.TempDir()
	n := New(cfg, nil)
	if err := n.Start(context.Background()); err == nil {
		t.Fatal("Start on a busy port succeeded")
	}
	if err := n.Shutdown(context.Background()); err == nil {
		t.Fatal("Shutdown after a failed start reported no error")
	}
}

// TestLifecycleOrder: the subsystems start in list order and stop in
// exact reverse; a start that fails stops only the ones started before
// it, in reverse, and neither the failed one nor those after it.
func TestLifecycleOrder(t *testing.T) {
	var events []string
	sub := func(name string, fail bool) subsystem {
		return subsystem{name: name,
			start: func(context.Context) error {
				events = append(events, "start "+name)
				if fail {
					return errors.New(name + " failed")
				}
				return nil
			},
			stop: func() { events = append(events, "stop "+name) }}
	}
	var stopped []string
	record := func(name string) { stopped = append(stopped, name) }

	var lc lifecycle
	subs := []subsystem{sub("a", false), {name: "check"}, sub("b", false), sub("c", false)}
	if err := lc.start(context.Background(), subs); err != nil {
		t.Fatal(err)
	}
	lc.stop(record)
	lc.stop(record) // a second stop does nothing
	want := []string{"start a", "start b", "start c", "stop c", "stop b", "stop a"}
	if !slices.Equal(events, want) {
		t.Fatalf("events %v, want %v", events, want)
	}
	if want := []string{"c", "b", "a"}; !slices.Equal(stopped, want) {
		t.Fatalf("recorded %v, want %v", stopped, want)
	}

	events, stopped, lc = nil, nil, lifecycle{}
	subs = []subsystem{sub("a", false), sub("b", false), sub("c", true), sub("d", false)}
	err := lc.start(context.Background(), subs)
	if err == nil || err.Error() != "c failed" {
		t.Fatalf("start error %v, want c's unwrapped", err)
	}
	lc.stop(record)
	want = []string{"start a", "start b", "start c", "stop b", "stop a"}
	if !slices.Equal(events, want) {
		t.Fatalf("events %v, want %v", events, want)
	}
}

// TestNodeLateStartFailureStopsInReverse: a start that fails late (the
// syslog port is taken, after the log opened and HTTP was built) stops
// what had started, in reverse, and leaves no goroutine.
func TestNodeLateStartFailureStopsInReverse(t *testing.T) {
	defer goleak.VerifyNone(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	cfg := config.Defaults()
	cfg.Listen, cfg.DataDir = freeAddr(t, "tcp"), t.TempDir()
	cfg.Syslog.Listen = busy.Addr().String()
	n := New(cfg, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := n.Start(ctx); err == nil {
		t.Fatal("Start with a busy syslog port succeeded")
	}
	want := []string{"natsingest", "http", "background", "log", "datadir", "listen"}
	if got := n.Stopped(); !slices.Equal(got, want) {
		t.Fatalf("stopped in order %v, want %v", got, want)
	}
	if _, err := net.DialTimeout("tcp", cfg.Listen, time.Second); err == nil {
		t.Fatal("HTTP port still open after a failed start")
	}
}
