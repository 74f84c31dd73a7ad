package detect

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/vigil-sec/vigil/internal/domain"
)

// Status is a detection's lifecycle state (SPEC 6).
type Status string

const (
	StatusActive        Status = "active"
	StatusInvestigating Status = "investigating"
	StatusResolved      Status = "resolved"
	StatusFalsePositive Status = "false_positive"
	// StatusReopen is not a state: PATCH {"status": "reopen"} is the one
	// explicit way out of a final state, and leads back to active.
	StatusReopen Status = "reopen"
)

// Final reports whether s is resolved or false_positive.
func (s Status) Final() bool { return s == StatusResolved || s == StatusFalsePositive }

func (s Status) valid() bool {
	switch s {
	case StatusActive, StatusInvestigating, StatusResolved, StatusFalsePositive:
		return true
	}
	return false
}

// Change records one change of a detection: who, when, which field, from
// what, to what.
type Change struct {
	At    time.Time `json:"at"`
	By    string    `json:"by"`
	Field string    `json:"field"`
	From  string    `json:"from"`
	To    string    `json:"to"`
}

// Detection is a finding with a lifecycle, in the SPEC 6 JSON shape plus
// tenant, group values, first/last seen and history.
type Detection struct {
	ID              string            `json:"id"`
	RuleID          string            `json:"rule_id"`
	Title           string            `json:"title"`
	Category        string            `json:"category"`
	Severity        string            `json:"severity"`
	Confidence      float64           `json:"confidence"`
	Status          Status            `json:"status"`
	MitreTactics    []string          `json:"mitre_tactics"`
	MitreTechniques []string          `json:"mitre_techniques"`
	OWASPCategory   string            `json:"owasp_category,omitempty"`
	CreatedAt       time.Time         `json:"created_at"`
	UpdatedAt       time.Time         `json:"updated_at"`
	Notes           string            `json:"notes"`
	Assignee        string            `json:"assignee"`
	EventIDs        []string          `json:"event_ids"`
	GroupKey        string            `json:"group_key"`
	Count           int               `json:"count"`
	Tenant          string            `json:"tenant"`
	Group           map[string]string `json:"group,omitempty"`
	FirstSeen       time.Time         `json:"first_seen"`
	LastSeen        time.Time         `json:"last_seen"`
	History         []Change          `json:"history"`
	// LastSeq is the log seq of the newest event counted into this
	// detection: an engine that evaluates events again after a fail-over
	// (at-least-once from the shared cursor) skips firings on events it
	// already counted, so count and event_ids stay exact.
	LastSeq uint64 `json:"last_seq,omitempty"`

	// rev is the KV revision this copy was read from or written as (0:
	// never persisted); writes compare-and-swap on it so the leader's
	// rule updates and any node's analyst changes never overwrite each
	// other.
	rev uint64
}

// clone returns a deep copy safe to hand out of the store's lock.
func (d *Detection) clone() Detection {
	c := *d
	c.MitreTactics = slices.Clone(d.MitreTactics)
	c.MitreTechniques = slices.Clone(d.MitreTechniques)
	c.EventIDs = slices.Clone(d.EventIDs)
	c.History = slices.Clone(d.History)
	if d.Group != nil {
		c.Group = make(map[string]string, len(d.Group))
		for k, v := range d.Group {
			c.Group[k] = v
		}
	}
	return c
}

// Patch is the body of PATCH /api/v1/detections/{id}. Absent fields are
// left alone.
type Patch struct {
	Status   *string `json:"status,omitempty"`
	Notes    *string `json:"notes,omitempty"`
	Assignee *string `json:"assignee,omitempty"`
}

// DecodePatch strictly parses a patch body.
func DecodePatch(b []byte) (Patch, error) {
	var p Patch
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return p, &InvalidError{Reason: "body must be a JSON object with status, notes and/or assignee: " + err.Error()}
	}
	if p.Status == nil && p.Notes == nil && p.Assignee == nil {
		return p, &InvalidError{Reason: "nothing to change: send status, notes and/or assignee"}
	}
	return p, nil
}

// InvalidError is a malformed request (HTTP 400).
type InvalidError struct{ Reason string }

func (e *InvalidError) Error() string { return e.Reason }

// ConflictError is a transition the lifecycle forbids (HTTP 409).
type ConflictError struct {
	From, To Status
	Reason   string
}

func (e *ConflictError) Error() string { return e.Reason }

// ErrNotFound is returned for an unknown or invisible detection id. It is
// of kind domain.KindNotFound: errors.Is(err, domain.ErrNotFound) holds.
var ErrNotFound error = &domain.Error{Kind: domain.KindNotFound, Msg: "detection not found"}

// Field limits keep a detection event within the event size limits.
const (
	maxNotes    = 4096
	maxAssignee = 256
	maxHistory  = 100
)

// transition checks a status change. The rules (docs/detections.md):
// any move between active, investigating, resolved and false_positive is
// allowed, except leaving resolved or false_positive, which needs the
// explicit status "reopen" (back to active). "reopen" on a detection that
// is not final is a conflict too, so a stale client notices.
func transition(from Status, to Status) (Status, error) {
	if to == StatusReopen {
		if !from.Final() {
			return from, &ConflictError{From: from, To: to, Reason: fmt.Sprintf("cannot reopen a detection that is %s: only resolved or false_positive detections can be reopened", from)}
		}
		return StatusActive, nil
	}
	if !to.valid() {
		return from, &InvalidError{Reason: fmt.Sprintf("status %q is not one of active, investigating, resolved, false_positive, reopen", to)}
	}
	if from.Final() && to != from {
		return from, &ConflictError{From: from, To: to, Reason: fmt.Sprintf("detection is %s (a final state); send {\"status\": \"reopen\"} first to move it back to active", from)}
	}
	return to, nil
}

// apply validates and applies p; it returns whether anything changed. On
// error nothing is changed.
func (d *Detection) apply(p Patch, by string, now time.Time) (bool, error) {
	next := d.Status
	if p.Status != nil {
		s, err := transition(d.Status, Status(*p.Status))
		if err != nil {
			return false, err
		}
		next = s
	}
	if p.Notes != nil && len(*p.Notes) > maxNotes {
		return false, &InvalidError{Reason: fmt.Sprintf("notes longer than %d bytes", maxNotes)}
	}
	if p.Assignee != nil && len(*p.Assignee) > maxAssignee {
		return false, &InvalidError{Reason: fmt.Sprintf("assignee longer than %d bytes", maxAssignee)}
	}
	changed := false
	record := func(field, from, to string) {
		d.History = append(d.History, Change{At: now, By: by, Field: field, From: from, To: to})
		changed = true
	}
	if next != d.Status {
		record("status", string(d.Status), string(next))
		d.Status = next
	}
	if p.Notes != nil && *p.Notes != d.Notes {
		record("notes", d.Notes, *p.Notes)
		d.Notes = *p.Notes
	}
	if p.Assignee != nil && *p.Assignee != d.Assignee {
		record("assignee", d.Assignee, *p.Assignee)
		d.Assignee = *p.Assignee
	}
	if changed {
		d.UpdatedAt = now
		if n := len(d.History); n > maxHistory {
			// Keep the creation record and the newest changes.
			d.History = append(d.History[:1], d.History[n-maxHistory+1:]...)
		}
	}
	return changed, nil
}
