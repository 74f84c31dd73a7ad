//go:build !linux

package wsconn

import (
	"context"
	"errors"
)

// Poller is the epoll-driven reader of idle connections; it exists on
// Linux only. Elsewhere NewPoller fails and every connection keeps a
// reader goroutine.
type Poller struct{}

// NewPoller reports that polling is not available here.
func NewPoller() (*Poller, error) { return nil, errors.New("wsconn: the epoll reader needs Linux") }

// Run waits for ctx.
func (p *Poller) Run(ctx context.Context) error { <-ctx.Done(); return nil }

func (p *Poller) add(*Session) bool { return false }
func (p *Poller) rearm(*Session)    {}
func (p *Poller) remove(*Session)   {}

// Registered is always 0.
func (p *Poller) Registered() int { return 0 }
