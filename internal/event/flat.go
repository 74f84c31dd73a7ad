package event

// FlatNames are the keys a flattened message uses for an event's optional
// fields; "" leaves a field out (the dialect sets it itself, or not at all).
type FlatNames struct {
	Source, Message, User, UserID, SrcIP, Resource, Action, Outcome string
	Tags                                                            string
}

// FlattenInto is the flattening the compatibility dialects share (SPEC 7):
// it writes e's non-empty optional fields into m under the names n gives,
// then confidence, risk_score, mitre_tactics and mitre_techniques, then the
// data payload's keys. A data key in reserved is never merged; with
// keepTaken a data key already in m is not merged either (else it
// replaces the field of the same name). Each dialect keeps its own
// vocabulary (event_type, severity, timestamps) in the map it passes.
func (e *Event) FlattenInto(m map[string]any, n FlatNames, reserved map[string]bool, keepTaken bool) {
	put := func(k, v string) {
		if k != "" && v != "" {
			m[k] = v
		}
	}
	put(n.Source, e.Source)
	put(n.Message, e.Message)
	put(n.User, e.User)
	put(n.UserID, e.UserID)
	put(n.SrcIP, e.SrcIP)
	put(n.Resource, e.Resource)
	put(n.Action, e.Action)
	put(n.Outcome, e.Outcome)
	if e.Confidence != nil {
		m["confidence"] = *e.Confidence
	}
	if e.RiskScore != nil {
		m["risk_score"] = *e.RiskScore
	}
	if len(e.MitreTactics) > 0 {
		m["mitre_tactics"] = e.MitreTactics
	}
	if len(e.MitreTechniques) > 0 {
		m["mitre_techniques"] = e.MitreTechniques
	}
	if n.Tags != "" && len(e.Tags) > 0 {
		m[n.Tags] = e.Tags
	}
	for k, v := range e.DataMap() {
		if reserved[k] {
			continue
		}
		if _, taken := m[k]; taken && keepTaken {
			continue
		}
		m[k] = v
	}
}
