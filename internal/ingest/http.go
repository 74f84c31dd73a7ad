package ingest

import (
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
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
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
