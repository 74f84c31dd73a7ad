package main

import (
	"github.com/vigil-sec/vigil/client"
	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/filter"
)

// The public client has its own types (issue 14): events the CLI makes
// in-process (the demo generator) and filters it validates with the
// server's filter package are converted field by field here
// (TestClientConversionsKeepTheWire checks every field).

// toClientEvent converts an event made in-process for publishing.
func toClientEvent(e *event.Event) *client.Event {
	return &client.Event{
		ID: e.ID, Seq: e.Seq, Time: e.Time, ReceivedAt: e.ReceivedAt,
		Type: e.Type, Category: client.Category(e.Category), Severity: client.Severity(e.Severity),
		Source: e.Source, Tenant: e.Tenant, Message: e.Message,
		User: e.User, UserID: e.UserID, SrcIP: e.SrcIP, Resource: e.Resource, Action: e.Action, Outcome: e.Outcome,
		Confidence: e.Confidence, RiskScore: e.RiskScore,
		MitreTactics: e.MitreTactics, MitreTechniques: e.MitreTechniques, Tags: e.Tags, Data: e.Data,
		Chain: e.Chain, PrevHash: e.PrevHash, Hash: e.Hash,
	}
}

// toClientFilter converts a filter checked with internal/filter.
func toClientFilter(f filter.Filter) client.Filter {
	return client.Filter{
		Categories: f.Categories, Types: f.Types, MinSeverity: f.MinSeverity, Severities: f.Severities,
		Users: f.Users, UserIDs: f.UserIDs, SrcIPs: f.SrcIPs, Resources: f.Resources, Actions: f.Actions,
		Outcomes: f.Outcomes, Sources: f.Sources, MitreTactics: f.MitreTactics, MitreTechniques: f.MitreTechniques,
		Statuses: f.Statuses, MinConfidence: f.MinConfidence, Expr: f.Expr,
	}
}
