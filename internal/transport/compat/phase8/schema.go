package phase8

// Schemas returns a JSON Schema (draft 2020-12) per event type describing
// the data object of its security_event messages: the common fields every
// flattened event has, plus the payload object the source system put under
// a type-specific key. Producers (and `vigil demo`) put that object under
// the event's data with the same key; docs/protocol-dialects.md shows them.
func Schemas() map[string]any {
	out := map[string]any{}
	for _, t := range EventTypes() {
		key, payload := payloadSchema(t)
		props := commonProperties()
		props[key] = payload
		out[t] = map[string]any{
			"$schema":              "https://json-schema.org/draft/2020-12/schema",
			"$id":                  "https://vigil.dev/schemas/phase8/" + t + ".json",
			"title":                t,
			"type":                 "object",
			"required":             []string{"event_type", "event_id", "timestamp", "severity"},
			"properties":           props,
			"additionalProperties": true,
		}
	}
	return out
}

func str(desc string) map[string]any { return map[string]any{"type": "string", "description": desc} }
func num(desc string) map[string]any { return map[string]any{"type": "number", "description": desc} }
func integer(desc string) map[string]any {
	return map[string]any{"type": "integer", "description": desc}
}
func boolean(desc string) map[string]any {
	return map[string]any{"type": "boolean", "description": desc}
}
func strList(desc string) map[string]any {
	return map[string]any{"type": "array", "items": map[string]any{"type": "string"}, "description": desc}
}
func object(props map[string]any, required ...string) map[string]any {
	o := map[string]any{"type": "object", "properties": props, "additionalProperties": true}
	if len(required) > 0 {
		o["required"] = required
	}
	return o
}

func commonProperties() map[string]any {
	return map[string]any{
		"event_type":       map[string]any{"type": "string", "enum": EventTypes()},
		"event_id":         str("unique event id (Vigil's id)"),
		"id":               str("same as event_id"),
		"seq":              integer("position in Vigil's log; the resume cursor"),
		"timestamp":        map[string]any{"type": "string", "format": "date-time", "description": "when it happened"},
		"severity":         map[string]any{"type": "string", "enum": []string{"info", "low", "medium", "high", "critical"}},
		"category":         str("Vigil category (analysis, threat_intel, fraud, response, orchestration)"),
		"tenant":           str("tenant the event belongs to"),
		"source":           str("emitting service"),
		"message":          str("one human-readable line"),
		"user":             str("user the event is about"),
		"user_id":          str("user id"),
		"src_ip":           str("source IP address"),
		"resource":         str("object acted on"),
		"action":           str("verb"),
		"outcome":          map[string]any{"type": "string", "enum": []string{"success", "failure", "unknown"}},
		"confidence":       map[string]any{"type": "number", "minimum": 0, "maximum": 1},
		"risk_score":       map[string]any{"type": "number", "minimum": 0, "maximum": 100},
		"mitre_tactics":    strList("ATT&CK tactic ids"),
		"mitre_techniques": strList("ATT&CK technique ids"),
		"tags":             strList("free tags"),
	}
}

// payloadSchema returns the type-specific payload key and its schema.
func payloadSchema(t string) (string, map[string]any) {
	switch t {
	case TypeAnalysisComplete:
		return "analysis_results", object(map[string]any{
			"analysis_id":     str("id of the analysis run"),
			"analyzer":        str("engine that ran it"),
			"threats_found":   integer("number of threats found"),
			"risk_score":      num("0..100"),
			"findings":        strList("finding summaries"),
			"duration_ms":     integer("how long the analysis took"),
			"recommendation":  str("suggested next step"),
			"anomalies_found": integer("anomalies found"),
			"model":           str("model that scored the entities"),
			"entities_scored": integer("entities scored"),
		})
	case TypeThreatDetected:
		return "threat_intelligence", object(map[string]any{
			"indicator":      str("IOC value (IP, domain, hash)"),
			"indicator_type": map[string]any{"type": "string", "enum": []string{"ip", "ipv4", "ipv6", "domain", "url", "hash", "email"}},
			"threat_type":    str("malware, phishing, botnet, c2, ..."),
			"threat_actor":   str("attributed actor, if any"),
			"campaign":       str("campaign name, if any"),
			"feed":           str("intelligence feed"),
			"first_seen":     map[string]any{"type": "string", "format": "date-time"},
		}, "indicator", "indicator_type")
	case TypeFraudAlert:
		return "fraud_details", object(map[string]any{
			"transaction_id": str("transaction under suspicion"),
			"amount":         num("transaction amount"),
			"currency":       str("ISO 4217 code"),
			"fraud_score":    num("0..1"),
			"fraud_type":     str("card_not_present, account_takeover, ..."),
			"indicators":     strList("signals that raised the alert"),
			"merchant":       str("merchant or counterparty"),
		}, "transaction_id")
	case TypeResponseExecuted:
		return "response_details", object(map[string]any{
			"response_id":   str("id of the automated response"),
			"playbook":      str("playbook that ran"),
			"response_type": str("block_ip, disable_account, isolate_host, ..."),
			"action":        str("what was done: block_ip, disable_account, revoke_sessions, ..."),
			"target":        str("what the response acted on"),
			"status":        map[string]any{"type": "string", "enum": []string{"success", "failed", "partial", "pending"}},
			"automated":     boolean("whether no analyst was involved"),
			"duration_ms":   integer("execution time"),
		}, "status")
	default: // TypeOrchestrationUpdate
		return "orchestration_details", object(map[string]any{
			"workflow_id": str("incident workflow id"),
			"workflow":    str("workflow name"),
			"assignee":    str("analyst the incident is assigned to"),
			"incident_id": str("incident the workflow handles"),
			"status":      str("open, in_progress, escalated, closed, ..."),
			"step":        str("current step"),
			"assigned_to": str("analyst or team"),
			"steps_total": integer("number of steps"),
			"steps_done":  integer("steps completed"),
			"escalated":   boolean("whether it was escalated"),
		}, "incident_id", "status")
	}
}
