package server

// The connections admin API (GET /api/v1/connections, POST
// /api/v1/connections/{id}/messages) lists and messages the hub's clients
// of every transport, so it lives here where every transport registers,
// not in the detections dialect (issue 14). A message that is not already
// a typed JSON object is wrapped in the detections dialect's envelope, as
// before the move.

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"sort"
	"time"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/domain"
	"github.com/vigil-sec/vigil/internal/filter"
	"github.com/vigil-sec/vigil/internal/hub"
	"github.com/vigil-sec/vigil/internal/transport/compat/wsdetections"
)

// Connection is one entry of GET /api/v1/connections.
type Connection struct {
	ID            string                   `json:"id"`
	Dialect       string                   `json:"dialect"`
	RemoteAddress string                   `json:"remote_address"`
	Principal     string                   `json:"principal,omitempty"`
	Role          string                   `json:"role,omitempty"`
	Tenant        string                   `json:"tenant,omitempty"`
	Filters       map[string]filter.Filter `json:"filters"`
	QueueDepth    int                      `json:"queue_depth"`
	ConnectedAt   time.Time                `json:"connected_at"`
}

// requireAdmin returns the calling admin or answers 401/403.
func requireAdmin(w http.ResponseWriter, r *http.Request) (*auth.Principal, bool) {
	p, ok := auth.FromContext(r.Context())
	if !ok {
		auth.WriteErr(w, domain.Errorf(domain.KindUnauthenticated, "missing bearer token"))
		return nil, false
	}
	if !p.IsAdmin() {
		auth.WriteErr(w, domain.Errorf(domain.KindForbidden, "only admin may manage connections"))
		return nil, false
	}
	return p, true
}

// administers reports whether admin p may see and message connection c: a
// tenant-scoped admin reaches only connections whose principal belongs to
// its tenant. A connection of an all-tenant principal (or of none, like
// the internal readers) belongs to the admins of all tenants.
func administers(p *auth.Principal, c *hub.Client) bool {
	tenant := ""
	if cp := c.Info().Principal; cp != nil {
		tenant = cp.Tenant
	}
	return p.Administers(tenant)
}

// ListConnections serves GET /api/v1/connections (admin only): every hub
// client of every transport that the admin administers (a tenant admin:
// only its tenant's), with its filters (one per subscription) and queue
// depth.
func ListConnections(h *hub.Hub) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		admin, ok := requireAdmin(w, r)
		if !ok {
			return
		}
		clients := h.Clients()
		out := make([]Connection, 0, len(clients))
		for _, c := range clients {
			if !administers(admin, c) {
				continue // another tenant's connection: not even its existence
			}
			info := c.Info()
			conn := Connection{ID: c.ID(), Dialect: info.Transport, RemoteAddress: info.Remote,
				Filters: c.Filters(), QueueDepth: c.QueueDepth(), ConnectedAt: c.ConnectedAt().UTC()}
			if p := info.Principal; p != nil {
				conn.Principal, conn.Role, conn.Tenant = p.ID, string(p.Role), p.Tenant
			}
			out = append(out, conn)
		}
		sort.Slice(out, func(i, j int) bool { return out[i].ConnectedAt.Before(out[j].ConnectedAt) })
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"count": len(out), "connections": out})
	})
}

// SendMessage serves POST /api/v1/connections/{id}/messages (admin only;
// a connection the admin does not administer is 404, like an unknown id):
// the JSON body is queued to that one client behind what it already has
// queued. A body that is a JSON object with a "type" is sent as is, so it
// can be in the client's own dialect; anything else is wrapped as
// {"type": "message", "data": <body>, "timestamp": ...}.
func SendMessage(h *hub.Hub) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		admin, ok := requireAdmin(w, r)
		if !ok {
			return
		}
		c, ok := h.Client(r.PathValue("id"))
		if !ok || !administers(admin, c) {
			// The same answer as for an unknown id: a tenant admin must
			// not learn that another tenant's connection exists.
			auth.WriteErr(w, domain.Errorf(domain.KindNotFound, "no connection with id %s", r.PathValue("id")))
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10+1))
		if err != nil || len(body) > 64<<10 {
			auth.WriteErr(w, domain.Errorf(domain.KindTooLarge, "message must be at most 64 KiB"))
			return
		}
		body = bytes.TrimSpace(body)
		if !json.Valid(body) {
			auth.WriteErr(w, domain.Errorf(domain.KindInvalid, "body must be JSON"))
			return
		}
		var probe struct {
			Type *string `json:"type"`
		}
		msg := body
		if body[0] != '{' || json.Unmarshal(body, &probe) != nil || probe.Type == nil {
			msg, err = json.Marshal(wsdetections.Message{Type: "message", Data: json.RawMessage(body), Timestamp: time.Now().UTC().Format(time.RFC3339Nano)})
			if err != nil {
				auth.WriteErr(w, domain.Errorf(domain.KindInternal, "%w", err))
				return
			}
		} else {
			var compact bytes.Buffer
			if json.Compact(&compact, body) == nil {
				msg = compact.Bytes()
			}
		}
		if err := c.SendRaw(msg); err != nil {
			auth.WriteError(w, http.StatusGone, "connection closed")
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusAccepted)
		_ = json.NewEncoder(w).Encode(map[string]any{"sent": true, "id": c.ID()})
	})
}
