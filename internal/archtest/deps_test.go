package archtest

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"testing"
)

type pkg struct {
	ImportPath string
	Imports    []string // non-test imports
	Deps       []string // transitive, non-test
}

// listPackages runs `go list -deps=false -json ./...` over the whole module.
func listPackages(t *testing.T) []pkg {
	t.Helper()
	root, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		t.Fatalf("go list -m: %v", err)
	}
	cmd := exec.Command("go", "list", "-json=ImportPath,Imports,Deps", "./...")
	cmd.Dir = strings.TrimSpace(string(root))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list ./...: %v\n%s", err, stderr.String())
	}
	var pkgs []pkg
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p pkg
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("decode go list output: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) < 10 {
		t.Fatalf("go list found only %d packages", len(pkgs))
	}
	return pkgs
}

// classify returns the layer of path: an exact row, else the longest
// prefix row.
func classify(table map[string]string, path string) (string, bool) {
	if l, ok := table[path]; ok {
		return l, true
	}
	best, layer := "", ""
	for prefix, l := range table {
		if strings.HasSuffix(prefix, "/") && strings.HasPrefix(path, prefix) && len(prefix) > len(best) {
			best, layer = prefix, l
		}
	}
	return layer, best != ""
}

// tree is the adapter tree a transport-like package belongs to: the
// package itself or the nearest ancestor classified in the same layer
// (graphql/generated belongs to graphql).
func tree(table map[string]string, path string) string {
	l, _ := classify(table, path)
	t := path
	for p := path; strings.Contains(p, "/"); {
		p = p[:strings.LastIndex(p, "/")]
		if pl, ok := table[p]; ok && pl == l {
			t = p
		}
	}
	return t
}

// violations checks every module-internal import edge against the table.
func violations(pkgs []pkg, table map[string]string) []string {
	var bad []string
	for _, p := range pkgs {
		from, ok := classify(table, p.ImportPath)
		if !ok {
			bad = append(bad, p.ImportPath+": no layer: add a row to layerOf in internal/archtest/layers_test.go")
			continue
		}
		for _, imp := range p.Imports {
			if !strings.HasPrefix(imp, m) {
				continue
			}
			to, ok := classify(table, imp)
			if !ok {
				continue // reported as its own package
			}
			if !slices.Contains(mayImport[from], to) {
				bad = append(bad, p.ImportPath+" ("+from+") imports "+imp+" ("+to+"): a "+from+" package may import only "+strings.Join(mayImport[from], ", "))
				continue
			}
			if from == to && transportLike[from] && tree(table, p.ImportPath) != tree(table, imp) {
				bad = append(bad, p.ImportPath+" imports "+imp+": one "+from+" must not import another; move what they share inward")
			}
		}
	}
	sort.Strings(bad)
	return bad
}

// TestDependenciesPointInward is the dependency rule of
// docs/architecture.md: no package imports a layer outside its own and the
// inner ones, no transport (or output) imports another.
func TestDependenciesPointInward(t *testing.T) {
	pkgs := listPackages(t)
	for _, v := range violations(pkgs, layerOf) {
		t.Error(v)
	}
	t.Logf("%d packages checked", len(pkgs))
}

// TestCoreLinksNoNATS: the core and ingest speak of events and acks
// without linking the NATS server and client (they did, through store.Ack).
func TestCoreLinksNoNATS(t *testing.T) {
	byPath := map[string]pkg{}
	for _, p := range listPackages(t) {
		byPath[p.ImportPath] = p
	}
	for _, path := range noNATS {
		p, ok := byPath[path]
		if !ok {
			t.Errorf("%s: not in go list ./... (update noNATS)", path)
			continue
		}
		for _, d := range p.Deps {
			if strings.HasPrefix(d, "github.com/nats-io/") {
				t.Errorf("%s links %s", path, d)
				break
			}
		}
	}
}

// TestRuleCatchesViolations feeds the checker a graph with each kind of
// violation, so the rule cannot pass by checking nothing.
func TestRuleCatchesViolations(t *testing.T) {
	pkgs := []pkg{
		{ImportPath: m + "internal/event", Imports: []string{m + "internal/hub"}},                                     // core → fanout
		{ImportPath: m + "internal/auth/tokens", Imports: []string{m + "internal/hub"}},                               // identity → fanout
		{ImportPath: m + "internal/transport/graphql", Imports: []string{m + "internal/transport/compat/dbsec"}},      // transport → transport
		{ImportPath: m + "internal/transport/graphql", Imports: []string{m + "internal/transport/graphql/generated"}}, // same tree: fine
		{ImportPath: m + "internal/inputs/otlp", Imports: []string{m + "internal/transport/rest"}},                    // input → transport
		{ImportPath: m + "internal/config", Imports: []string{m + "internal/auth/access"}},                            // settings → assembly
		{ImportPath: m + "internal/brandnew"},                                                                         // unclassified
	}
	got := violations(pkgs, layerOf)
	for _, want := range []string{
		"internal/event (core) imports",
		"internal/auth/tokens (identity) imports",
		"internal/transport/graphql imports " + m + "internal/transport/compat/dbsec",
		"internal/inputs/otlp (input) imports",
		"internal/config (settings) imports",
		"internal/brandnew: no layer",
	} {
		if !slices.ContainsFunc(got, func(v string) bool { return strings.Contains(v, want) }) {
			t.Errorf("no violation reported for %q; got:\n%s", want, strings.Join(got, "\n"))
		}
	}
	if len(got) != 6 {
		t.Errorf("%d violations, want 6:\n%s", len(got), strings.Join(got, "\n"))
	}
}

// TestEveryLayerIsDeclared: the table names only declared layers.
func TestEveryLayerIsDeclared(t *testing.T) {
	for path, l := range layerOf {
		if _, ok := mayImport[l]; !ok {
			t.Errorf("%s: layer %q has no mayImport row", path, l)
		}
	}
	for l, to := range mayImport {
		for _, x := range to {
			if _, ok := mayImport[x]; !ok {
				t.Errorf("layer %s may import undeclared layer %q", l, x)
			}
		}
	}
}
