package detect

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/detect/sigma"
	"github.com/vigil-sec/vigil/internal/domain"
	"github.com/vigil-sec/vigil/internal/event"
)

// The handlers expect auth.Require in front of them: the principal comes
// from the request context.

func principal(w http.ResponseWriter, r *http.Request) (*auth.Principal, bool) {
	p, ok := auth.FromContext(r.Context())
	if !ok {
		auth.WriteErr(w, domain.Errorf(domain.KindUnauthenticated, "missing bearer token"))
		return nil, false
	}
	return p, true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// listValues splits repeated and comma-separated query values.
func listValues(r *http.Request, name string) []string {
	var out []string
	for _, v := range r.URL.Query()[name] {
		for _, part := range strings.Split(v, ",") {
			if part = strings.TrimSpace(part); part != "" {
				out = append(out, part)
			}
		}
	}
	return out
}

// ParseQuery reads the list filters: status, severity, mitre_tactics,
// rule_id (each repeated or comma-separated), since (RFC 3339, on
// updated_at) and limit (default 100, max 1000).
func ParseQuery(r *http.Request) (Query, error) {
	q := Query{Statuses: listValues(r, "status"), Severities: listValues(r, "severity"),
		Tactics: listValues(r, "mitre_tactics"), RuleIDs: listValues(r, "rule_id"), Limit: 100}
	for _, s := range q.Statuses {
		if !Status(s).valid() {
			return q, fmt.Errorf("status: unknown value %q (valid: active, investigating, resolved, false_positive)", s)
		}
	}
	for _, s := range q.Severities {
		if _, err := event.ParseSeverity(s); err != nil {
			return q, fmt.Errorf("severity: %v", err)
		}
	}
	if s := r.URL.Query().Get("since"); s != "" {
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return q, fmt.Errorf("since: %q is not an RFC 3339 time", s)
		}
		q.Since = t
	}
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 1000 {
			return q, fmt.Errorf("limit: must be a number from 1 to 1000")
		}
		q.Limit = n
	}
	return q, nil
}

// HandleList serves GET /api/v1/detections.
func (e *Engine) HandleList(w http.ResponseWriter, r *http.Request) {
	p, ok := principal(w, r)
	if !ok {
		return
	}
	if !p.CanRead() {
		auth.WriteErr(w, domain.Errorf(domain.KindForbidden, "role %s may not read detections", p.Role))
		return
	}
	q, err := ParseQuery(r)
	if err != nil {
		auth.WriteErr(w, domain.Errorf(domain.KindInvalid, "%w", err))
		return
	}
	list := e.List(p, q)
	if list == nil {
		list = []Detection{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"detections": list, "count": len(list)})
}

// HandleGet serves GET /api/v1/detections/{id}.
func (e *Engine) HandleGet(w http.ResponseWriter, r *http.Request) {
	p, ok := principal(w, r)
	if !ok {
		return
	}
	if !p.CanRead() {
		auth.WriteErr(w, domain.Errorf(domain.KindForbidden, "role %s may not read detections", p.Role))
		return
	}
	d, err := e.Get(p, r.PathValue("id"))
	if err != nil {
		auth.WriteErr(w, err) // of kind not found: 404
		return
	}
	writeJSON(w, http.StatusOK, d)
}

// HandlePatch serves PATCH /api/v1/detections/{id}: 400 for a malformed
// body, 403 without CanUpdateDetections, 404 for an unknown or invisible
// id, 409 for a transition the lifecycle forbids.
func (e *Engine) HandlePatch(w http.ResponseWriter, r *http.Request) {
	p, ok := principal(w, r)
	if !ok {
		return
	}
	if !p.CanUpdateDetections() {
		auth.WriteErr(w, domain.Errorf(domain.KindForbidden, "role %s may not update detections", p.Role))
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10+1))
	if err != nil {
		auth.WriteErr(w, domain.Errorf(domain.KindInvalid, "reading body: %w", err))
		return
	}
	if len(body) > 64<<10 {
		auth.WriteErr(w, domain.Errorf(domain.KindTooLarge, "body larger than 64 KiB"))
		return
	}
	patch, err := DecodePatch(body)
	if err != nil {
		auth.WriteErr(w, domain.Errorf(domain.KindInvalid, "%w", err))
		return
	}
	d, err := e.Update(r.Context(), p, r.PathValue("id"), patch)
	var inv *InvalidError
	var conflict *ConflictError
	switch {
	case err == nil:
		writeJSON(w, http.StatusOK, d)
	case errors.Is(err, ErrNotFound):
		auth.WriteErr(w, err)
	case errors.As(err, &inv):
		auth.WriteErr(w, domain.Errorf(domain.KindInvalid, "%s", inv.Reason))
	case errors.As(err, &conflict):
		writeJSON(w, http.StatusConflict, map[string]string{"error": conflict.Reason, "from": string(conflict.From), "to": string(conflict.To)})
	default:
		e.log.Error("update detection", "detection", r.PathValue("id"), "err", err)
		auth.WriteErr(w, domain.Errorf(domain.KindInternal, "could not record the change: %w", err))
	}
}

// HandleRules serves GET /api/v1/rules: every rule with its state, and
// every file or rule that failed to load with path, line and reason.
func (e *Engine) HandleRules(w http.ResponseWriter, r *http.Request) {
	p, ok := principal(w, r)
	if !ok {
		return
	}
	if !p.CanRead() {
		auth.WriteErr(w, domain.Errorf(domain.KindForbidden, "role %s may not read rules", p.Role))
		return
	}
	rs := e.rules.Load()
	infos := rs.Infos()
	failed := 0
	for _, in := range infos {
		if in.State == "error" {
			failed++
		}
	}
	errs := rs.Errors()
	if errs == nil {
		errs = []*sigma.Error{} // [] rather than null for clients
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"rules": infos, "count": len(infos), "loaded": rs.Len(), "failed": failed,
		"stale": rs.Stale(), "errors": errs, "correlation_keys_overflow": e.eval.Load().Overflow(),
	})
}
