package tokens

import (
	"errors"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/auth"
)

type fakeConn struct {
	id     string
	p      *auth.Principal
	kicked []error
}

func (c *fakeConn) ID() string                 { return c.id }
func (c *fakeConn) Principal() *auth.Principal { return c.p }
func (c *fakeConn) Kick(reason error)          { c.kicked = append(c.kicked, reason) }

type fakeConns []*fakeConn

func (f fakeConns) Conns() []Conn {
	out := make([]Conn, len(f))
	for i, c := range f {
		out[i] = c
	}
	return out
}

// TestEnforcerSweepsConns: the enforcer closes, once, the connections
// whose credential expired, through the Conns interface (it no longer
// imports the hub).
func TestEnforcerSweepsConns(t *testing.T) {
	now := time.Now()
	expired := &fakeConn{id: "c1", p: &auth.Principal{ID: "t1", Role: auth.RoleViewer, ExpiresAt: now.Add(-time.Second)}}
	valid := &fakeConn{id: "c2", p: &auth.Principal{ID: "t2", Role: auth.RoleViewer, ExpiresAt: now.Add(time.Hour)}}
	anon := &fakeConn{id: "c3"}
	e := NewEnforcer(nil, fakeConns{expired, valid, anon}, auth.NewMetrics(nil), nil)
	if n := e.Sweep(now); n != 1 {
		t.Fatalf("first sweep closed %d, want 1", n)
	}
	if n := e.Sweep(now); n != 0 {
		t.Fatalf("second sweep closed %d again, want 0 (kicked once)", n)
	}
	if len(expired.kicked) != 1 || !errors.Is(expired.kicked[0], auth.ErrTokenExpired) {
		t.Fatalf("expired connection kicked %v", expired.kicked)
	}
	if len(valid.kicked)+len(anon.kicked) != 0 {
		t.Fatalf("valid or anonymous connection kicked")
	}
	if n := NewEnforcer(nil, nil, auth.NewMetrics(nil), nil).Sweep(now); n != 0 {
		t.Fatalf("an enforcer without connections closed %d", n)
	}
}
