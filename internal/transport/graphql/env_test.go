package graphql_test

import (
	"testing"

	"github.com/vigil-sec/vigil/internal/testenv"
)

// The shared bench lives in internal/testenv; these names keep the tests short.
const testToken = testenv.Token

type (
	env = testenv.Env
)

func newEnv(t testing.TB) *env { return testenv.New(t) }
