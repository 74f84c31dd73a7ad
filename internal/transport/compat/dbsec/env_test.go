package dbsec_test

import (
	"net/http/httptest"
	"testing"

	"github.com/vigil-sec/vigil/internal/testenv"
)

// The shared bench lives in internal/testenv; these names keep the tests short.
const testToken = testenv.Token

type (
	env      = testenv.Env
	wsClient = testenv.WSClient
)

func newEnv(t testing.TB) *env { return testenv.New(t) }

func dial(t testing.TB, srv *httptest.Server, path string) *wsClient {
	return testenv.Dial(t, srv, path)
}
