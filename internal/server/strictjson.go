package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"unicode/utf8"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/event"
)

// strictGraphQL applies ingest's JSON strictness (issue 8, item 11) to
// GraphQL requests over HTTP before gqlgen decodes them with encoding/json,
// which keeps the last of two equal keys and replaces invalid UTF-8: a
// publishEvent whose variables say "type" twice would otherwise be stored
// as the second while anything inspecting the request reads the first.
// It checks a POST's JSON body (read up to maxBody bytes, then handed on)
// and a GET's variables and extensions; the WebSocket upgrade passes
// through untouched.
//
// A POST is authenticated before its body is read (gqlgen would only
// after): an unknown client must not make the node read and hold a body.
func strictGraphQL(next http.Handler, maxBody int64, authn auth.Authenticator) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodPost:
			if authn != nil {
				tok := auth.TokenFromRequest(r)
				if tok == "" {
					graphQLError(w, http.StatusUnauthorized, "missing bearer token (Authorization: Bearer <token> or ?token=)")
					return
				}
				if _, err := authn.Authenticate(r.Context(), tok); err != nil {
					graphQLError(w, http.StatusUnauthorized, err.Error())
					return
				}
			}
			mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
			if mt != "application/json" || r.Body == nil {
				break // gqlgen refuses other bodies itself
			}
			body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
			if err != nil {
				var mbe *http.MaxBytesError
				if errors.As(err, &mbe) {
					graphQLError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body larger than %d bytes (the GraphQL body limit)", maxBody))
					return
				}
				graphQLError(w, http.StatusBadRequest, "reading the request body: "+err.Error())
				return
			}
			if err := event.CheckJSON(body); err != nil {
				graphQLError(w, http.StatusBadRequest, "request body: "+err.Error())
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
		case http.MethodGet:
			q := r.URL.Query()
			if !utf8.ValidString(q.Get("query")) {
				graphQLError(w, http.StatusBadRequest, "query: not valid UTF-8")
				return
			}
			for _, name := range []string{"variables", "extensions"} {
				if v := q.Get(name); v != "" {
					if err := event.CheckJSON([]byte(v)); err != nil {
						graphQLError(w, http.StatusBadRequest, name+": "+err.Error())
						return
					}
				}
			}
		}
		next.ServeHTTP(w, r)
	})
}

// graphQLError answers in GraphQL's error shape.
func graphQLError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"errors": []map[string]string{{"message": msg}}, "data": nil})
}
