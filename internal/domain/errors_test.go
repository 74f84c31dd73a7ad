package domain

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
)

func TestKindMatchesSentinel(t *testing.T) {
	err := fmt.Errorf("get: %w", Errorf(KindNotFound, "event %q not found", "x"))
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("errors.Is(%v, ErrNotFound) = false", err)
	}
	if errors.Is(err, ErrForbidden) {
		t.Fatalf("a not-found error matched ErrForbidden")
	}
	if got := err.Error(); got != `get: event "x" not found` {
		t.Fatalf("message %q", got)
	}
	wrapped := fmt.Errorf("event %q: %w", "y", ErrNotFound)
	if !errors.Is(wrapped, ErrNotFound) || KindOf(wrapped) != KindNotFound {
		t.Fatalf("wrapped sentinel lost its kind: %v", KindOf(wrapped))
	}
	cause := errors.New("disk on fire")
	e := Errorf(KindUnavailable, "log: %w", cause)
	if !errors.Is(e, cause) || !errors.Is(e, ErrUnavailable) {
		t.Fatalf("Errorf lost its cause or kind")
	}
}

// TestMapping pins the one table from kinds to what a client sees.
func TestMapping(t *testing.T) {
	cases := []struct {
		err    error
		status int
		close  uint16
	}{
		{errors.New("boom"), http.StatusInternalServerError, CloseInternal},
		{ErrInvalid, http.StatusBadRequest, ClosePolicy},
		{ErrUnauthenticated, http.StatusUnauthorized, CloseRevoked},
		{ErrForbidden, http.StatusForbidden, ClosePolicy},
		{fmt.Errorf("detection d1: %w", ErrNotFound), http.StatusNotFound, ClosePolicy},
		{ErrConflict, http.StatusConflict, ClosePolicy},
		{ErrTooLarge, http.StatusRequestEntityTooLarge, CloseTooBig},
		{ErrRateLimited, http.StatusTooManyRequests, CloseLimitExceeded},
		{ErrUnavailable, http.StatusServiceUnavailable, CloseGoingAway},
		{context.DeadlineExceeded, http.StatusServiceUnavailable, CloseGoingAway},
	}
	for _, c := range cases {
		if got := HTTPStatus(c.err); got != c.status {
			t.Errorf("HTTPStatus(%v) = %d, want %d", c.err, got, c.status)
		}
		if got := CloseCode(c.err); got != c.close {
			t.Errorf("CloseCode(%v) = %d, want %d", c.err, got, c.close)
		}
	}
	for k := KindInternal; k <= KindUnavailable; k++ {
		if KindForStatus(k.HTTPStatus()) != k {
			t.Errorf("KindForStatus(%d) != %v", k.HTTPStatus(), k)
		}
		if k.String() == "" {
			t.Errorf("kind %d has no name", k)
		}
	}
	if KindForStatus(http.StatusTeapot) != KindInternal {
		t.Errorf("an unknown status is not internal")
	}
}

type tooBig struct{}

func (tooBig) Error() string        { return "body too big" }
func (tooBig) Is(target error) bool { return target == ErrTooLarge }

// TestKindOfForeignType: an error type of another package that declares
// its kind through Is maps like a *Error.
func TestKindOfForeignType(t *testing.T) {
	err := fmt.Errorf("read: %w", tooBig{})
	if KindOf(err) != KindTooLarge || HTTPStatus(err) != http.StatusRequestEntityTooLarge {
		t.Fatalf("KindOf = %v, status %d", KindOf(err), HTTPStatus(err))
	}
}
