package archtest

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigil-sec/vigil/internal/domain"
)

// tableStatuses are the net/http names of the statuses the domain table
// (domain.HTTPStatus) holds; TestWriteErrorOnlyOutsideTable checks the list
// against the table itself.
var tableStatuses = map[string]int{
	"StatusInternalServerError":   http.StatusInternalServerError,
	"StatusBadRequest":            http.StatusBadRequest,
	"StatusUnauthorized":          http.StatusUnauthorized,
	"StatusForbidden":             http.StatusForbidden,
	"StatusNotFound":              http.StatusNotFound,
	"StatusConflict":              http.StatusConflict,
	"StatusRequestEntityTooLarge": http.StatusRequestEntityTooLarge,
	"StatusTooManyRequests":       http.StatusTooManyRequests,
	"StatusServiceUnavailable":    http.StatusServiceUnavailable,
}

// TestWriteErrorOnlyOutsideTable keeps the error table the one place a
// kind becomes a status: outside tests, auth.WriteError (a status chosen by
// the caller) is called only with a literal status the table does not hold
// (415, 410, 501, ...); every refusal of a kind the table holds goes through
// auth.WriteErr with a kinded error.
func TestWriteErrorOnlyOutsideTable(t *testing.T) {
	for k := domain.KindInternal; k <= domain.KindUnavailable; k++ {
		found := false
		for _, st := range tableStatuses {
			found = found || st == k.HTTPStatus()
		}
		if !found {
			t.Fatalf("tableStatuses lacks %d (kind %v): add it", k.HTTPStatus(), k)
		}
	}
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		t.Fatalf("go list -m: %v", err)
	}
	root := strings.TrimSpace(string(out))
	fset := token.NewFileSet()
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "node_modules") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) != 3 {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok || sel.Sel.Name != "WriteError" {
				return true
			}
			if pkg, ok := sel.X.(*ast.Ident); !ok || pkg.Name != "auth" {
				return true
			}
			pos := fset.Position(call.Pos())
			rel, _ := filepath.Rel(root, pos.Filename)
			st, ok := call.Args[1].(*ast.SelectorExpr)
			if ok {
				x, isIdent := st.X.(*ast.Ident)
				ok = isIdent && x.Name == "http"
			}
			if !ok {
				t.Errorf("%s:%d: auth.WriteError with a computed status: return a kinded error and call auth.WriteErr", rel, pos.Line)
				return true
			}
			if code, inTable := tableStatuses[st.Sel.Name]; inTable {
				t.Errorf("%s:%d: auth.WriteError(w, http.%s, ...): %d is kind %v in the domain table; call auth.WriteErr(w, domain.Errorf(domain.%s, ...))",
					rel, pos.Line, st.Sel.Name, code, domain.KindForStatus(code), kindConst(domain.KindForStatus(code)))
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func kindConst(k domain.Kind) string {
	return map[domain.Kind]string{
		domain.KindInternal: "KindInternal", domain.KindInvalid: "KindInvalid",
		domain.KindUnauthenticated: "KindUnauthenticated", domain.KindForbidden: "KindForbidden",
		domain.KindNotFound: "KindNotFound", domain.KindConflict: "KindConflict",
		domain.KindTooLarge: "KindTooLarge", domain.KindRateLimited: "KindRateLimited",
		domain.KindUnavailable: "KindUnavailable",
	}[k]
}
