package auth

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/vigil-sec/vigil/internal/domain"
)

func TestWriteErrUsesTheKindMapping(t *testing.T) {
	rec := httptest.NewRecorder()
	WriteErr(rec, fmt.Errorf("event %q: %w", "e1", domain.ErrNotFound))
	if rec.Code != http.StatusNotFound {
		t.Fatalf("status %d, want 404", rec.Code)
	}
	var body map[string]string
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatal(err)
	}
	if body["error"] != `event "e1": not found` {
		t.Fatalf("body %q", body["error"])
	}
}
