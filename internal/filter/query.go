package filter

import (
	"net/url"
	"strconv"
	"strings"
)

// FromQuery builds a Filter from URL query parameters, the form SSE and the
// history endpoint use. List fields accept repeated parameters and commas
// (?categories=authentication,audit). Parameters in skip belong to the
// caller (cursor, limit, token) and are left alone; any other unknown
// parameter is an error naming it.
func FromQuery(q url.Values, skip ...string) (Filter, error) {
	var f Filter
	lists := map[string]*[]string{
		"categories": &f.Categories, "types": &f.Types, "severities": &f.Severities,
		"users": &f.Users, "user_ids": &f.UserIDs, "src_ips": &f.SrcIPs,
		"resources": &f.Resources, "actions": &f.Actions, "outcomes": &f.Outcomes,
		"sources": &f.Sources, "mitre_tactics": &f.MitreTactics,
		"mitre_techniques": &f.MitreTechniques, "statuses": &f.Statuses,
	}
	skipSet := map[string]bool{"token": true}
	for _, s := range skip {
		skipSet[s] = true
	}
	for key, vals := range q {
		if skipSet[key] {
			continue
		}
		if dst, ok := lists[key]; ok {
			for _, v := range vals {
				for _, part := range strings.Split(v, ",") {
					if part = strings.TrimSpace(part); part != "" {
						*dst = append(*dst, part)
					}
				}
			}
			continue
		}
		switch key {
		case "min_severity":
			f.MinSeverity = q.Get(key)
		case "expr":
			f.Expr = q.Get(key)
		case "min_confidence":
			v, err := strconv.ParseFloat(q.Get(key), 64)
			if err != nil {
				return f, &Error{"min_confidence", "not a number"}
			}
			f.MinConfidence = &v
		default:
			return f, &Error{key, "unknown query parameter"}
		}
	}
	return f, nil
}
