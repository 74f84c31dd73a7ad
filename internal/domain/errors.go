package domain

import (
	"context"
	"errors"
	"fmt"
	"net/http"
)

// Kind is what went wrong, as far as a client needs to know: it decides the
// HTTP status and the WebSocket close code (HTTPStatus, CloseCode), nothing
// else does.
type Kind uint8

// The kinds of error. KindInternal is the zero value: an error that carries
// no kind is the server's fault until proven otherwise.
const (
	KindInternal        Kind = iota
	KindInvalid              // the request is malformed or names something impossible
	KindUnauthenticated      // no credential, or one that is not (or no longer) valid
	KindForbidden            // authenticated, but the role or tenant does not allow it
	KindNotFound             // no such event, detection, token, ... (or not visible to the caller)
	KindConflict             // the request contradicts the current state
	KindTooLarge             // a body, frame or batch over its limit
	KindRateLimited          // a connection, subscription or message-rate limit
	KindUnavailable          // the node cannot serve it now (not ready, shutting down, log unreachable)
)

var kindNames = [...]string{
	KindInternal:        "internal error",
	KindInvalid:         "invalid",
	KindUnauthenticated: "unauthenticated",
	KindForbidden:       "forbidden",
	KindNotFound:        "not found",
	KindConflict:        "conflict",
	KindTooLarge:        "too large",
	KindRateLimited:     "rate limited",
	KindUnavailable:     "unavailable",
}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", k)
}

// Error is an error of a known kind. Msg is what the client is told; Err,
// if any, is the cause (kept for errors.Is/As and logs).
type Error struct {
	Kind Kind
	Msg  string
	Err  error
}

// The sentinels: errors.Is(err, ErrNotFound) is true for every error of
// kind KindNotFound, whichever package made it. They are the only
// ErrNotFound, ErrInvalid, ... of Vigil; packages wrap them with context
// (fmt.Errorf("event %q: %w", id, domain.ErrNotFound)) rather than
// declaring their own.
var (
	ErrInvalid         = &Error{Kind: KindInvalid}
	ErrUnauthenticated = &Error{Kind: KindUnauthenticated}
	ErrForbidden       = &Error{Kind: KindForbidden}
	ErrNotFound        = &Error{Kind: KindNotFound}
	ErrConflict        = &Error{Kind: KindConflict}
	ErrTooLarge        = &Error{Kind: KindTooLarge}
	ErrRateLimited     = &Error{Kind: KindRateLimited}
	ErrUnavailable     = &Error{Kind: KindUnavailable}
)

// Errorf returns an error of kind k whose message is the formatted text;
// a %w verb keeps the cause.
func Errorf(k Kind, format string, args ...any) error {
	err := fmt.Errorf(format, args...)
	return &Error{Kind: k, Msg: err.Error(), Err: errors.Unwrap(err)}
}

func (e *Error) Error() string {
	switch {
	case e.Msg != "":
		return e.Msg
	case e.Err != nil:
		return e.Err.Error()
	}
	return e.Kind.String()
}

func (e *Error) Unwrap() error { return e.Err }

// Is makes every error of a kind match that kind's sentinel (a bare Error
// with neither Msg nor Err).
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Msg == "" && t.Err == nil && t.Kind == e.Kind
}

// sentinels are tried, in order, for an error that is no *Error but
// matches one through its own Is method (ingest.ErrBodyTooLarge).
var sentinels = []*Error{ErrInvalid, ErrUnauthenticated, ErrForbidden, ErrNotFound, ErrConflict, ErrTooLarge, ErrRateLimited, ErrUnavailable}

// KindOf is the kind of err: that of the outermost *Error in its chain,
// else of the sentinel it matches (errors.Is); a context deadline or
// cancellation is KindUnavailable; anything else, KindInternal.
func KindOf(err error) Kind {
	var e *Error
	switch {
	case err == nil:
		return KindInternal
	case errors.As(err, &e):
		return e.Kind
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return KindUnavailable
	}
	for _, s := range sentinels {
		if errors.Is(err, s) {
			return s.Kind
		}
	}
	return KindInternal
}

// The WebSocket close codes Vigil sends (docs/protocol.md). wsconn's
// Close* constants are these values (a test in wsconn checks it).
const (
	CloseNormal        uint16 = 1000
	CloseGoingAway     uint16 = 1001 // server shutting down: reconnect and resume
	CloseProtocol      uint16 = 1002 // RFC 6455 violation
	CloseBadPayload    uint16 = 1007 // a text message that is not UTF-8
	ClosePolicy        uint16 = 1008 // not allowed (auth, origin)
	CloseTooBig        uint16 = 1009 // client frame over the limit
	CloseInternal      uint16 = 1011 // the server failed
	CloseLagged        uint16 = 4000 // fell behind: resume from the lagged cursor
	CloseRevoked       uint16 = 4001 // token revoked or expired
	ClosePingTimeout   uint16 = 4002 // previous ping not answered
	CloseLimitExceeded uint16 = 4003 // connection or message-rate limit
	CloseKicked        uint16 = 4004 // closed by an administrator
)

// mapping is the one table from a kind to what a client sees: the HTTP
// status of a refused request and the close code of a connection ended by
// such an error.
var mapping = [...]struct {
	status int
	close  uint16
}{
	KindInternal:        {http.StatusInternalServerError, CloseInternal},
	KindInvalid:         {http.StatusBadRequest, ClosePolicy},
	KindUnauthenticated: {http.StatusUnauthorized, CloseRevoked},
	KindForbidden:       {http.StatusForbidden, ClosePolicy},
	KindNotFound:        {http.StatusNotFound, ClosePolicy},
	KindConflict:        {http.StatusConflict, ClosePolicy},
	KindTooLarge:        {http.StatusRequestEntityTooLarge, CloseTooBig},
	KindRateLimited:     {http.StatusTooManyRequests, CloseLimitExceeded},
	KindUnavailable:     {http.StatusServiceUnavailable, CloseGoingAway},
}

// HTTPStatus is the status of a response refusing a request with err.
func HTTPStatus(err error) int { return KindOf(err).HTTPStatus() }

// CloseCode is the close code of a WebSocket connection ended by err.
func CloseCode(err error) uint16 { return KindOf(err).CloseCode() }

// HTTPStatus is the status for an error of kind k.
func (k Kind) HTTPStatus() int {
	if int(k) < len(mapping) {
		return mapping[k].status
	}
	return http.StatusInternalServerError
}

// CloseCode is the WebSocket close code for an error of kind k.
func (k Kind) CloseCode() uint16 {
	if int(k) < len(mapping) {
		return mapping[k].close
	}
	return CloseInternal
}

// KindForStatus is the inverse of HTTPStatus for the statuses the table
// holds (KindInternal for any other): it lets a handler that still decides
// a status itself go through the one writer.
func KindForStatus(status int) Kind {
	for k, m := range mapping {
		if m.status == status {
			return Kind(k)
		}
	}
	return KindInternal
}
