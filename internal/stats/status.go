package stats

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/domain"
	"github.com/vigil-sec/vigil/internal/hub"
)

// Check is one component health probe for the status report.
type Check struct {
	Name  string
	Probe func(ctx context.Context) error
}

// ComponentStatus is one component's health in a status report.
type ComponentStatus struct {
	Status string `json:"status"` // healthy | unhealthy
	Error  string `json:"error,omitempty"`
}

// Status is what phase 8 get_security_status, GET /api/v1/status and the
// GraphQL status query return.
type Status struct {
	Status            string                     `json:"status"` // operational | degraded
	Timestamp         time.Time                  `json:"timestamp"`
	Components        map[string]ComponentStatus `json:"components"`
	ConnectedClients  int                        `json:"connected_clients"`
	LogHead           uint64                     `json:"log_head"`
	EventsLastMinute  int64                      `json:"events_last_minute"`
	EventsLastHour    int64                      `json:"events_last_hour"`
	EventsPerSecond   float64                    `json:"events_per_second"`
	EventsPerType     map[string]Window          `json:"events_per_type"`
	EventsPerCategory map[string]Window          `json:"events_per_category"`
	OpenDetections    map[string]int64           `json:"open_detections"`
	UptimeSeconds     int64                      `json:"uptime_seconds"`
}

// Reporter assembles status reports from the stats, the hub and the
// component probes. It holds no state of its own.
type Reporter struct {
	Stats  *Stats
	Hub    *hub.Hub
	Checks []Check
	// OpenDetections, when set, is the detection engine's authoritative
	// count of open detections by severity for a principal; without it the
	// count is derived from the detection events stats has seen.
	OpenDetections func(ctx context.Context, p *auth.Principal) (map[string]int64, error)
}

// probeTimeout bounds each component probe so a hung dependency makes the
// report say "unhealthy" instead of hanging the caller.
const probeTimeout = 2 * time.Second

// Status reports what p may see (nil: everything).
func (r *Reporter) Status(ctx context.Context, p *auth.Principal) Status {
	snap := r.Stats.Snapshot(p)
	st := Status{
		Status: "operational", Timestamp: snap.Timestamp, Components: map[string]ComponentStatus{},
		EventsLastMinute: snap.Events.LastMinute, EventsLastHour: snap.Events.LastHour,
		EventsPerSecond: snap.EventsPerSecond, EventsPerType: snap.ByType,
		EventsPerCategory: snap.ByCategory, OpenDetections: snap.OpenDetections,
		UptimeSeconds: snap.UptimeSeconds,
	}
	st.Components["stats"] = ComponentStatus{Status: "healthy"}
	if r.Hub != nil {
		for _, c := range r.Hub.Clients() {
			info := c.Info()
			if info.Transport == hub.InternalTransport {
				continue // internal readers (like stats) are not clients
			}
			// A tenant-scoped caller counts its own tenant's connections
			// only: another tenant's activity is not its business.
			if p != nil && (info.Principal == nil || !p.SeesTenant(info.Principal.Tenant)) {
				continue
			}
			st.ConnectedClients++
		}
		st.LogHead = r.Hub.Head()
		st.Components["hub"] = ComponentStatus{Status: "healthy"}
	}
	if r.OpenDetections != nil {
		if open, err := r.OpenDetections(ctx, p); err == nil {
			for sev := range st.OpenDetections {
				st.OpenDetections[sev] = 0
			}
			for sev, n := range open {
				st.OpenDetections[sev] = n
			}
		} else {
			st.Components["detections"] = ComponentStatus{Status: "unhealthy", Error: err.Error()}
			st.Status = "degraded"
		}
	}
	for _, c := range r.Checks {
		pctx, cancel := context.WithTimeout(ctx, probeTimeout)
		err := c.Probe(pctx)
		cancel()
		if err != nil {
			st.Components[c.Name] = ComponentStatus{Status: "unhealthy", Error: err.Error()}
			st.Status = "degraded"
			continue
		}
		st.Components[c.Name] = ComponentStatus{Status: "healthy"}
	}
	return st
}

// ServeHTTP serves GET /api/v1/status for the principal that auth.Require
// put into the request context.
func (r *Reporter) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	p, ok := auth.FromContext(req.Context())
	if !ok {
		auth.WriteErr(w, domain.Errorf(domain.KindUnauthenticated, "missing bearer token"))
		return
	}
	if !p.CanRead() {
		auth.WriteErr(w, domain.Errorf(domain.KindForbidden, "role %s may not read status", p.Role))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(r.Status(req.Context(), p))
}
