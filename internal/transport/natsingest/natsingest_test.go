package natsingest_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/ingest"
	"github.com/vigil-sec/vigil/internal/store"
	"github.com/vigil-sec/vigil/internal/transport/natsingest"
)

// externalNATS starts a real NATS server with JetStream and a TCP listener
// on loopback: the "external cluster" code path of the store, in one test.
func externalNATS(t *testing.T) string {
	t.Helper()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats not ready")
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	return ns.ClientURL()
}

func request(t *testing.T, nc *nats.Conn, subject string, body string) natsingest.Reply {
	t.Helper()
	msg, err := nc.Request(subject, []byte(body), 5*time.Second)
	if err != nil {
		t.Fatalf("request %s: %v", subject, err)
	}
	var r natsingest.Reply
	if err := json.Unmarshal(msg.Data, &r); err != nil {
		t.Fatalf("reply %q: %v", msg.Data, err)
	}
	return r
}

func TestBridgeOverExternalNATS(t *testing.T) {
	ctx := context.Background()
	url := externalNATS(t)
	log, err := store.Open(ctx, store.Config{NATSURL: url, NodeID: "node-a"})
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	svc := ingest.New(log, event.DefaultLimits(), nil)
	bridge, err := natsingest.Start(log.Conn(), svc, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer bridge.Stop()

	producer, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()

	r := request(t, producer, "vigil.ingest.acme", `[{"id":"n-1","type":"authentication.login","user":"alice"},{"id":"n-2","type":"audit.query","data":{"password":"hunter2","rows":3}}]`)
	if r.Error != "" || r.Accepted != 2 {
		t.Fatalf("reply = %+v, want 2 accepted", r)
	}
	e, err := log.Get(ctx, "n-2")
	if err != nil {
		t.Fatal(err)
	}
	if e.Tenant != "acme" || e.Chain != "node-a" {
		t.Errorf("tenant %q chain %q, want acme and node-a", e.Tenant, e.Chain)
	}
	if _, ok := e.Field("data.password"); ok {
		t.Error("password stored; it must be dropped at ingest")
	}

	bad := request(t, producer, "vigil.ingest.acme", `{"type":"x.y","category":"nope"}`)
	if bad.Error == "" || len(bad.Details) != 1 || bad.Details[0].Field != "category" {
		t.Fatalf("bad request reply = %+v, want a category problem", bad)
	}
	if r := request(t, producer, "vigil.ingest.bad:tenant", `{"type":"audit.query"}`); r.Error == "" {
		t.Fatalf("a tenant with ':' was accepted: %+v", r)
	}
	// Retrying the same id is acknowledged, not stored twice.
	again := request(t, producer, "vigil.ingest.acme", `{"id":"n-1","type":"authentication.login","user":"alice"}`)
	head, _ := log.Head(ctx)
	if again.Accepted != 1 || head != 2 {
		t.Fatalf("retry: reply %+v head %d, want accepted 1 and head 2", again, head)
	}
}

func TestEmbeddedListenerNeedsToken(t *testing.T) {
	ctx := context.Background()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	log, err := store.Open(ctx, store.Config{DataDir: t.TempDir(), Listen: "127.0.0.1:" + strconv.Itoa(port), ListenToken: "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	svc := ingest.New(log, event.DefaultLimits(), nil)
	bridge, err := natsingest.Start(log.Conn(), svc, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer bridge.Stop()

	if nc, err := nats.Connect(log.ClientURL()); err == nil {
		nc.Close()
		t.Fatal("connected to the embedded listener without its token")
	}
	nc, err := nats.Connect(log.ClientURL(), nats.Token("s3cret"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if r := request(t, nc, "vigil.ingest.default", `{"type":"system.heartbeat"}`); r.Accepted != 1 {
		t.Fatalf("reply = %+v", r)
	}
}
