package hostile

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// TestGraphQLWSClientNoReconnectStorm runs the reference graphql-ws client
// (npm graphql-ws, used by Apollo) with a wrong token for 3 s. It retries a
// 1000 Normal Closure at once, without counting or backing off — the issue
// saw 1,237 connections in 3 s — but backs off on 4403 Forbidden. It needs
// node and the client installed next to the script:
//
//	npm install --prefix test/hostile/testdata/graphqlws
//
// and is skipped otherwise.
func TestGraphQLWSClientNoReconnectStorm(t *testing.T) {
	dir, node := graphqlWSClient(t)
	g := gqlStart(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, filepath.Join(dir, "client.js"), "ws://"+g.n.Addr()+"/graphql", "vgt_0000000000000000_wrong", "3000")
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node client: %v\n%s", err, out)
	}
	var res struct {
		Opened int   `json:"opened"`
		Codes  []int `json:"codes"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("node client printed %q: %v", out, err)
	}
	counts := map[int]int{}
	for _, c := range res.Codes {
		counts[c]++
	}
	t.Logf("graphql-ws client with a wrong token: %d connections in 3 s, close codes (code: times) %v", res.Opened, counts)
	if len(res.Codes) == 0 || res.Codes[0] != 4403 {
		t.Errorf("close codes (code: times) %v, want 4403 first", counts)
	}
	if slices.Contains(res.Codes, 1000) {
		t.Errorf("closed with 1000 %d times: 1000 makes the client reconnect at once", counts[1000])
	}
	if res.Opened > 4 {
		t.Errorf("the client opened %d connections in 3 s: a reconnect storm", res.Opened)
	}
}

// graphqlWSClient returns the directory of the graphql-ws client scripts
// and node's path, skipping the test when node or the npm client is not
// installed (.ci/run installs both).
func graphqlWSClient(t *testing.T) (dir, node string) {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("testdata", "graphqlws"))
	if err != nil {
		t.Fatal(err)
	}
	node, err = exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed: skipping the graphql-ws client test")
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "graphql-ws")); err != nil {
		t.Skipf("the graphql-ws npm client is not installed: run `npm install --prefix %s` to enable this test", dir)
	}
	return dir, node
}
