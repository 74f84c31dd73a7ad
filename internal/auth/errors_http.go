package auth

import (
	"net/http"

	"github.com/vigil-sec/vigil/internal/domain"
)

// WriteErr writes err as the JSON error body with the status its kind maps
// to (domain.HTTPStatus, the one table): a handler returns a kinded error
// instead of choosing a status itself.
func WriteErr(w http.ResponseWriter, err error) {
	WriteError(w, domain.HTTPStatus(err), err.Error())
}
