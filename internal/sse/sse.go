// Package sse owns the Server-Sent Events transport (SPEC 5): a filter in
// the query string, one hub subscription per request, each event's seq as
// the SSE id, and Last-Event-ID resume.
package sse

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/filter"
	"github.com/vigil-sec/vigil/internal/hub"
)

// Admitter admits a streaming connection (limits); nil admits all.
type Admitter interface {
	Admit(r *http.Request, p *auth.Principal) (release func(), status int, err error)
}

// Handler serves GET /api/v1/stream/sse. The route must be wrapped by
// auth.Require. ?from_seq=N starts at N; Last-Event-ID: N resumes at N+1.
func Handler(h *hub.Hub, guard Admitter, heartbeat time.Duration) http.HandlerFunc {
	if heartbeat <= 0 {
		heartbeat = 15 * time.Second
	}
	return func(w http.ResponseWriter, r *http.Request) {
		p, _ := auth.FromContext(r.Context())
		if !p.CanRead() {
			auth.WriteError(w, http.StatusForbidden, "role "+string(p.Role)+" may not read events")
			return
		}
		f, err := filter.FromQuery(r.URL.Query(), "from_seq")
		if err != nil {
			auth.WriteError(w, http.StatusBadRequest, err.Error())
			return
		}
		m, err := filter.Compile(f)
		if err != nil {
			auth.WriteError(w, http.StatusBadRequest, err.Error())
			return
		}
		cursor := hub.Latest()
		if v := r.URL.Query().Get("from_seq"); v != "" {
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				auth.WriteError(w, http.StatusBadRequest, "from_seq: not a non-negative integer")
				return
			}
			cursor = hub.FromSeq(n)
		}
		if v := r.Header.Get("Last-Event-ID"); v != "" {
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				auth.WriteError(w, http.StatusBadRequest, "Last-Event-ID: not a seq")
				return
			}
			cursor = hub.FromSeq(n + 1)
		}
		flusher, ok := w.(http.Flusher)
		if !ok {
			auth.WriteError(w, http.StatusInternalServerError, "streaming unsupported")
			return
		}
		if guard != nil {
			release, status, err := guard.Admit(r, p)
			if err != nil {
				auth.WriteError(w, status, err.Error())
				return
			}
			defer release()
		}
		client := h.NewClient(hub.ClientInfo{Transport: "sse", Remote: r.RemoteAddr, Principal: p})
		defer client.Close()
		if _, err := client.Subscribe(r.Context(), "sse", m, cursor); err != nil {
			auth.WriteError(w, http.StatusInternalServerError, err.Error())
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("X-Accel-Buffering", "no")
		w.WriteHeader(http.StatusOK)
		_, _ = fmt.Fprintf(w, "retry: 2000\n: head %d\n\n", client.HubHead())
		flusher.Flush()
		stream(r.Context(), w, flusher, client, heartbeat)
	}
}

func stream(ctx context.Context, w http.ResponseWriter, flusher http.Flusher, client *hub.Client, heartbeat time.Duration) {
	var buf []byte
	for {
		wait, cancel := context.WithTimeout(ctx, heartbeat)
		batch, err := client.Next(wait)
		cancel()
		if err != nil {
			if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
				if _, err := w.Write([]byte(": keep-alive\n\n")); err != nil {
					return
				}
				flusher.Flush()
				continue
			}
			var lag *hub.LagError
			if errors.As(err, &lag) {
				_, _ = fmt.Fprintf(w, "event: lagged\ndata: {\"resume_from\":%d}\n\n", lag.Resume["sse"])
				flusher.Flush()
			}
			if errors.Is(err, hub.ErrShutdown) {
				_, _ = w.Write([]byte("event: shutdown\ndata: {\"reason\":\"server shutting down; reconnect\"}\n\n"))
				flusher.Flush()
			}
			return
		}
		buf = buf[:0]
		for _, d := range batch {
			if d.Event == nil {
				continue
			}
			buf = append(buf, "id: "...)
			buf = strconv.AppendUint(buf, d.Event.Seq, 10)
			buf = append(buf, "\ndata: "...)
			buf = append(buf, d.Event.JSON()...)
			buf = append(buf, "\n\n"...)
		}
		if _, err := w.Write(buf); err != nil {
			return
		}
		flusher.Flush()
	}
}
