package ingest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/domain"
	"github.com/vigil-sec/vigil/internal/event"
)

// The helpers below are shared by every HTTP ingest path (REST, and the
// Falco, OTLP and CEF-over-HTTP inputs of issue 9), so each answers a
// too-large body, a refused batch and an unavailable log the same way.
// They live here, beside the one ingest path, so that no input imports
// the REST transport (the dependency rule, internal/archtest).

// maxBodyPrealloc bounds what ReadBody allocates up front from a
// request's Content-Length; a larger body grows as it arrives. 16 KiB
// holds a typical batch (10 events: ~7 KB) and is about what an HTTP
// connection costs anyway (net/http's read and write buffers and the
// goroutine's stack): a client announcing large bodies it never sends
// makes the server hold at most twice what its connections cost.
const maxBodyPrealloc = 16 << 10

// ErrBodyTooLarge is returned by ReadBody for a body over its limit.
type ErrBodyTooLarge struct{ Limit int64 }

func (e *ErrBodyTooLarge) Error() string {
	return fmt.Sprintf("request body larger than %d bytes", e.Limit)
}

// Is makes a too-large body of kind domain.KindTooLarge (413).
func (e *ErrBodyTooLarge) Is(target error) bool { return target == domain.ErrTooLarge }

// ReadBody reads r's body, at most limit bytes: beyond it the answer is a
// *ErrBodyTooLarge and the connection is not read further.
func ReadBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	// Sized from Content-Length when the request gives one, so a typical
	// body is read into one allocation instead of io.ReadAll's doublings
	// from 512 bytes (~6 of them, and their copies, for a batch of 10
	// events). Capped: a client that announces a large body and sends
	// little does not make the server hold the announced size.
	size := int64(bytes.MinRead)
	if n := r.ContentLength; n > 0 {
		// + MinRead: ReadFrom grows the buffer before a read with less
		// room than that, the one that only finds EOF included.
		size = min(n, limit, maxBodyPrealloc) + bytes.MinRead
	}
	buf := bytes.NewBuffer(make([]byte, 0, size))
	lr := http.MaxBytesReader(w, r.Body, limit)
	var err error
	if n := min(r.ContentLength, limit); n > maxBodyPrealloc {
		// A large body: once its first maxBodyPrealloc bytes have come,
		// the rest is sized in one allocation. Grown by doubling, a 16 MiB
		// body could hold 32 MiB, twice what the node's body budget
		// (server.BodyGuard) counts for it.
		if _, err = io.CopyN(buf, lr, maxBodyPrealloc); err == nil {
			buf.Grow(int(n) - buf.Len() + bytes.MinRead)
		} else if err == io.EOF {
			err = nil // shorter than announced: what came is the body
		}
	}
	if err == nil {
		_, err = buf.ReadFrom(lr)
	}
	body := buf.Bytes()
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, &ErrBodyTooLarge{Limit: limit}
		}
		return nil, fmt.Errorf("reading body: %w", err)
	}
	return body, nil
}

// WriteBodyError answers a ReadBody error: 413 for a body over the limit,
// 400 otherwise.
func WriteBodyError(w http.ResponseWriter, err error) {
	if errors.Is(err, domain.ErrTooLarge) {
		auth.WriteErr(w, err)
		return
	}
	auth.WriteErr(w, domain.Errorf(domain.KindInvalid, "%w", err))
}

// WriteAcks answers a stored batch: 200 with the log's acknowledgements.
func WriteAcks(w http.ResponseWriter, acks []domain.Ack) {
	writeJSON(w, http.StatusOK, map[string]any{"accepted": len(acks), "events": acks})
}

// WritePublishError answers an error of decoding or ingest.Service.Publish:
// 400/413/415 for a refused batch (with every problem), 403 for a role or
// category the token may not publish, 503 when the log did not
// acknowledge (a retry with the same ids is safe).
func WritePublishError(w http.ResponseWriter, err error) {
	var be *event.BatchError
	switch {
	case errors.As(err, &be):
		status := http.StatusBadRequest
		switch {
		case be.TooLarge:
			status = http.StatusRequestEntityTooLarge
		case be.Unsupported:
			status = http.StatusUnsupportedMediaType
			w.Header().Set("Accept-Post", strings.Join(event.IngestMediaTypes(), ", "))
		}
		writeJSON(w, status, errorBody{Error: be.Error(), Details: be.Problems})
	case errors.Is(err, ErrForbidden):
		auth.WriteErr(w, err)
	default:
		writeJSON(w, http.StatusServiceUnavailable, errorBody{Error: "the log did not acknowledge every event (some may be stored; retrying with the same ids is safe): " + err.Error()})
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

type errorBody struct {
	Error   string          `json:"error"`
	Details []event.Problem `json:"details,omitempty"`
}
