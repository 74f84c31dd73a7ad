package app

import (
	"context"
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
	want := []string{"syslog", "natsingest", "http", "background", "log", "datadir"}
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
