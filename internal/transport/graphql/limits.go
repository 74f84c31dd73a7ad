package graphql

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	gql "github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/errcode"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"
	"github.com/vektah/gqlparser/v2/parser"

	"github.com/vigil-sec/vigil/internal/config"
	"github.com/vigil-sec/vigil/internal/transport/graphql/generated"
)

// Limits bound what one GraphQL operation may make the server spend (issue
// 8). The type is the configuration's (config.GraphQLLimits), so that
// internal/config does not import this transport.
type Limits = config.GraphQLLimits

// DefaultLimits are the defaults of Limits.
func DefaultLimits() Limits { return config.DefaultGraphQLLimits() }

// Error codes of the limits (extensions.code of the GraphQL error).
const (
	codeFieldLimit      = "FIELD_LIMIT_EXCEEDED"
	codeDepthLimit      = "DEPTH_LIMIT_EXCEEDED"
	codeTimeLimit       = "TIME_LIMIT_EXCEEDED"
	codeComplexityLimit = "COMPLEXITY_LIMIT_EXCEEDED" // gqlgen's extension.ComplexityLimit
)

func init() {
	// A refused operation is a request error (HTTP 422, a graphql-ws
	// "error" message), not a partial result. Registered once at start-up:
	// errcode's table is a plain map.
	for _, c := range []string{codeFieldLimit, codeDepthLimit, codeComplexityLimit} {
		errcode.RegisterErrorType(c, errcode.KindProtocol)
	}
}

// maxListLimit is the largest limit argument the list resolvers accept.
const maxListLimit = 10_000

// complexityRoot charges list queries by their limit argument, so a query
// costs about as much as the events it makes the server read and encode.
func complexityRoot() generated.ComplexityRoot {
	var c generated.ComplexityRoot
	c.Query.Events = func(child int, _ *generated.EventFilter, limit *int, _ *int) int {
		return listCost(child, limit)
	}
	c.Query.Detections = func(child int, _ *generated.DetectionFilter, limit *int) int {
		return listCost(child, limit)
	}
	return c
}

// listCost is limit × the cost of one item. An out-of-range limit is
// refused by the resolver; it is clamped here so that a huge limit cannot
// overflow the product into a small number.
func listCost(child int, limit *int) int {
	n := 100 // the resolvers' default
	if limit != nil {
		n = min(max(*limit, 1), maxListLimit)
	}
	return 1 + n*max(child, 1)
}

// shapeLimit is a gqlgen handler extension refusing queries with too many
// fields or too deep a nesting. It runs on the raw parameters, before
// gqlgen parses, validates and walks the query for complexity: those steps
// expand fragments, and a fragment bomb (each fragment spreading the next
// twice) grows exponentially with the query's size.
type shapeLimit struct {
	maxFields, maxDepth int
}

var _ interface {
	gql.HandlerExtension
	gql.OperationParameterMutator
} = shapeLimit{}

func (shapeLimit) ExtensionName() string               { return "VigilShapeLimit" }
func (shapeLimit) Validate(gql.ExecutableSchema) error { return nil }
func (l shapeLimit) MutateOperationParameters(_ context.Context, p *gql.RawParams) *gqlerror.Error {
	doc, err := parser.ParseQuery(&ast.Source{Input: p.Query})
	if err != nil {
		return nil // gqlgen reports the syntax error itself
	}
	w := shapeWalker{frags: map[string]*ast.FragmentDefinition{}, active: map[string]bool{}, maxFields: l.maxFields, maxDepth: l.maxDepth}
	if w.maxFields <= 0 {
		// Disabled: still bound the walk itself.
		w.maxFields = 1_000_000
	}
	for _, f := range doc.Fragments {
		w.frags[f.Name] = f
	}
	for _, op := range doc.Operations {
		if e := w.selectionSet(op.SelectionSet, 1); e != nil {
			return e
		}
	}
	return nil
}

// shapeWalker counts fields with fragments expanded, and stops at the
// first limit exceeded.
type shapeWalker struct {
	frags               map[string]*ast.FragmentDefinition
	active              map[string]bool // fragments being expanded (cycles are validation errors)
	fields              int
	maxFields, maxDepth int
}

func (w *shapeWalker) selectionSet(ss ast.SelectionSet, depth int) *gqlerror.Error {
	for _, sel := range ss {
		switch s := sel.(type) {
		case *ast.Field:
			w.fields++
			if w.fields > w.maxFields {
				err := gqlerror.Errorf("query selects more than %d fields (aliases and fragment expansions count): the limit is %d", w.maxFields, w.maxFields)
				errcode.Set(err, codeFieldLimit)
				return err
			}
			if w.maxDepth > 0 && depth > w.maxDepth {
				err := gqlerror.Errorf("query depth %d exceeds the limit of %d", depth, w.maxDepth)
				errcode.Set(err, codeDepthLimit)
				return err
			}
			if err := w.selectionSet(s.SelectionSet, depth+1); err != nil {
				return err
			}
		case *ast.InlineFragment:
			if err := w.selectionSet(s.SelectionSet, depth); err != nil {
				return err
			}
		case *ast.FragmentSpread:
			f := w.frags[s.Name]
			if f == nil || w.active[s.Name] {
				continue // unknown or cyclic: validation refuses it
			}
			w.active[s.Name] = true
			err := w.selectionSet(f.SelectionSet, depth)
			w.active[s.Name] = false
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// timeLimit gives every query and mutation a deadline. The resolvers pass
// the context to the store, whose scans stop when it ends; the response
// then carries an error naming the limit in place of "context deadline
// exceeded".
type timeLimit struct{ d time.Duration }

var _ interface {
	gql.HandlerExtension
	gql.OperationInterceptor
} = timeLimit{}

func (timeLimit) ExtensionName() string               { return "VigilTimeLimit" }
func (timeLimit) Validate(gql.ExecutableSchema) error { return nil }

// errTimeLimit is the cause of a deadline set by timeLimit.
type errTimeLimit struct{ d time.Duration }

func (e errTimeLimit) Error() string {
	return fmt.Sprintf("query exceeded the time limit of %s", e.d)
}

func (l timeLimit) InterceptOperation(ctx context.Context, next gql.OperationHandler) gql.ResponseHandler {
	op := gql.GetOperationContext(ctx)
	if op == nil || op.Operation == nil || op.Operation.Operation == ast.Subscription {
		return next(ctx)
	}
	cause := errTimeLimit(l)
	tctx, cancel := context.WithTimeoutCause(ctx, l.d, cause)
	h := next(tctx)
	first := true
	return func(ctx context.Context) *gql.Response {
		resp := h(ctx)
		expired := errors.Is(context.Cause(tctx), cause)
		if resp == nil && first && expired {
			resp = &gql.Response{}
		}
		first = false
		if resp == nil || resp.HasNext == nil || !*resp.HasNext {
			cancel() // the last response: release the timer now
		}
		if resp != nil && expired {
			resp.Errors = timeLimitErrors(resp.Errors, cause)
		}
		return resp
	}
}

// timeLimitErrors replaces the resolvers' "context deadline exceeded"
// errors by the limit's, or adds it when no resolver reported one.
func timeLimitErrors(errs gqlerror.List, cause errTimeLimit) gqlerror.List {
	found := false
	for _, e := range errs {
		// Resolvers wrap the context's error (errors.Is) or format it
		// into their message ("history: store: scan: context deadline
		// exceeded").
		if errors.Is(e, context.DeadlineExceeded) || strings.Contains(e.Message, context.DeadlineExceeded.Error()) {
			e.Message = cause.Error()
			e.Err = cause
			errcode.Set(e, codeTimeLimit)
			found = true
		}
	}
	if !found {
		e := gqlerror.Errorf("%s", cause.Error())
		errcode.Set(e, codeTimeLimit)
		errs = append(gqlerror.List{e}, errs...)
	}
	return errs
}

// limitBody reads a POST body up to limit bytes. A larger body is refused
// with 413 as soon as the limit is passed (a declared Content-Length
// before reading anything), like the REST API's; the connection is then
// closed rather than drained. It reports whether the request may go on.
func limitBody(w http.ResponseWriter, r *http.Request, limit int64) bool {
	if limit <= 0 || r.Body == nil || r.Body == http.NoBody {
		return true
	}
	refuse := func() bool {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Connection", "close")
		w.WriteHeader(http.StatusRequestEntityTooLarge)
		msg := fmt.Sprintf("request body larger than %d bytes (the GraphQL body limit)", limit)
		_, _ = fmt.Fprintf(w, `{"errors":[{"message":%q,"extensions":{"code":"BODY_LIMIT_EXCEEDED"}}],"data":null}`+"\n", msg)
		return false
	}
	if r.ContentLength > limit {
		return refuse()
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return refuse()
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = fmt.Fprintf(w, `{"errors":[{"message":%q}],"data":null}`+"\n", "reading body: "+err.Error())
		return false
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	return true
}
