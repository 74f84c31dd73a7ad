package server

import (
	"context"
	"io"
	"net/http"
	"sync"
	"time"

	"golang.org/x/sync/semaphore"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/domain"
)

// BodyGuard bounds what reading request bodies may cost the node. Without
// it a client (no token needed for GraphQL's POST, which is read before
// gqlgen authenticates) could send all but the last byte of a large body
// and stop: the server held the bytes, the connection and its goroutine
// for ever (found by an audit: 2,000 such requests held 2.4 GB).
//
//   - Each body must arrive within Timeout (a read deadline, lifted once
//     the body is read, so a long request such as a backtest is not cut).
//   - The bodies being read at once may add up to Budget bytes, counted by
//     Content-Length (a body without one counts as MaxBody); a request over
//     the budget waits up to budgetWait, then gets 503 with Retry-After.
//
// The budget is held until the handler returns: the body is in memory
// until then.
type BodyGuard struct {
	Timeout time.Duration
	Budget  int64
	MaxBody int64 // weight of a body without Content-Length, and the most one body counts
}

// budgetWait is how long a request waits for room in the body budget.
const budgetWait = 5 * time.Second

// Wrap returns next behind the guard.
func (g BodyGuard) Wrap(next http.Handler) http.Handler {
	sem := semaphore.NewWeighted(g.Budget)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
			next.ServeHTTP(w, r)
			return
		}
		weight := g.MaxBody
		if r.ContentLength > 0 && r.ContentLength < weight {
			weight = r.ContentLength
		}
		ctx, cancel := context.WithTimeout(r.Context(), budgetWait)
		err := sem.Acquire(ctx, weight)
		cancel()
		if err != nil {
			w.Header().Set("Retry-After", "1")
			auth.WriteErr(w, domain.Errorf(domain.KindUnavailable, "the node is reading as many request bodies as it may at once; retry"))
			return
		}
		defer sem.Release(weight)
		rc := http.NewResponseController(w)
		if err := rc.SetReadDeadline(time.Now().Add(g.Timeout)); err == nil {
			// On a copy of the request: net/http decides from the
			// original's body whether an unread body is small enough to
			// discard before answering (it would wait for a stalled one)
			// or large enough to close the connection after the answer.
			r2 := *r
			r2.Body = &deadlineBody{ReadCloser: r.Body, lift: func() { _ = rc.SetReadDeadline(time.Time{}) }}
			r = &r2
		}
		next.ServeHTTP(w, r)
	})
}

// deadlineBody lifts the body's read deadline once the body has been read
// to its end: net/http then reads the connection in the background to
// notice a client going away, and a deadline passing there would cancel
// the request's context.
type deadlineBody struct {
	io.ReadCloser
	once sync.Once
	lift func()
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.once.Do(b.lift)
	}
	return n, err
}
