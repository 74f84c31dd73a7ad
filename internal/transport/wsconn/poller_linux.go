//go:build linux

package wsconn

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"syscall"
)

// Poller waits on every idle connection's socket with one epoll instance,
// so an idle connection holds no goroutine (and no goroutine stack: the
// larger half of its memory). When a socket becomes readable the poller
// starts a short-lived goroutine that reads one client message and hands
// the socket back. Registrations are one-shot: a socket is never read by
// two goroutines at once.
//
// The poller goroutine is owned by whoever calls Run; it stops when Run's
// context ends. Sessions remove themselves before closing their socket, so
// a file descriptor reused by a new connection never reaches an old
// session.
type Poller struct {
	epfd int

	mu       sync.Mutex
	sessions map[int32]*Session
	closed   bool
}

// NewPoller creates the epoll instance. Call Run, then Close.
func NewPoller() (*Poller, error) {
	fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("wsconn: epoll: %w", err)
	}
	return &Poller{epfd: fd, sessions: map[int32]*Session{}}, nil
}

const pollEvents = syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT

// Run dispatches readable sockets until ctx ends, then closes the epoll
// instance. Connections still registered are closed by their owners (the
// hub's shutdown); their sessions end then.
func (p *Poller) Run(ctx context.Context) error {
	defer p.close()
	events := make([]syscall.EpollEvent, 128)
	for ctx.Err() == nil {
		// A timeout lets Run notice ctx without a wake-up descriptor.
		n, err := syscall.EpollWait(p.epfd, events, 200)
		if err != nil {
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			return fmt.Errorf("wsconn: epoll wait: %w", err)
		}
		for i := 0; i < n; i++ {
			p.mu.Lock()
			s := p.sessions[events[i].Fd]
			if s != nil {
				s.rstate.Or(readActive) // while registered: see Session.rstate
			}
			p.mu.Unlock()
			if s != nil {
				go s.readReady() // owned by the session: one message, then back to the poller
			}
		}
	}
	return nil
}

func (p *Poller) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.closed {
		p.closed = true
		_ = syscall.Close(p.epfd)
	}
}

// add registers s's socket; false if the connection cannot be polled (the
// caller then reads it with a goroutine).
func (p *Poller) add(s *Session) bool {
	// A *tls.Conn has no SyscallConn, and must not be unwrapped to its
	// socket: bytes it has already decrypted (the second of two messages
	// in one TLS record) are invisible to epoll. TLS connections keep a
	// reader goroutine (test/hostile TestTLSServesIngestStreamsAndGraphQL).
	sc, ok := s.conn.(interface {
		SyscallConn() (syscall.RawConn, error)
	})
	if !ok {
		return false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	// Registered inside Control: the descriptor cannot be closed (and
	// reused by another connection) while the callback runs.
	added := false
	err = raw.Control(func(f uintptr) {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.closed {
			return
		}
		s.fd = int32(f)
		ev := syscall.EpollEvent{Events: pollEvents, Fd: s.fd}
		if syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_ADD, int(f), &ev) == nil {
			p.sessions[s.fd] = s
			added = true
		}
	})
	return err == nil && added
}

// rearm hands s's socket back to the poller after a message was read; it
// does nothing once s was removed.
func (p *Poller) rearm(s *Session) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.sessions[s.fd] != s {
		return
	}
	ev := syscall.EpollEvent{Events: pollEvents, Fd: s.fd}
	_ = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_MOD, int(s.fd), &ev)
}

// remove forgets s; it must be called before s's socket is closed.
func (p *Poller) remove(s *Session) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.sessions[s.fd] != s {
		return
	}
	delete(p.sessions, s.fd)
	if !p.closed {
		_ = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_DEL, int(s.fd), nil)
	}
}

// Registered is the number of connections waiting in the poller.
func (p *Poller) Registered() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.sessions)
}
