package sigma

import (
	"sort"
	"strings"
)

// tacticIDs maps every ATT&CK tactic name (Enterprise, plus the ICS tactics
// whose names Enterprise does not have) to its id. Sigma writes tactic tags
// as attack.credential_access (v1) or attack.credential-access (v2); both
// are normalised to the hyphenated key before lookup.
var tacticIDs = map[string]string{
	"reconnaissance":       "TA0043",
	"resource-development": "TA0042",
	"initial-access":       "TA0001",
	"execution":            "TA0002",
	"persistence":          "TA0003",
	"privilege-escalation": "TA0004",
	"defense-evasion":      "TA0005",
	"credential-access":    "TA0006",
	"discovery":            "TA0007",
	"lateral-movement":     "TA0008",
	"collection":           "TA0009",
	"exfiltration":         "TA0010",
	"command-and-control":  "TA0011",
	"impact":               "TA0040",
	// ICS-only tactic names.
	"evasion":                   "TA0103",
	"impair-process-control":    "TA0106",
	"inhibit-response-function": "TA0107",
}

// TacticID returns the ATT&CK id of a tactic name in either Sigma spelling.
func TacticID(name string) (string, bool) {
	id, ok := tacticIDs[strings.ReplaceAll(strings.ToLower(name), "_", "-")]
	return id, ok
}

// Mitre extracts ATT&CK tactic and technique ids from Sigma tags:
// attack.t1110.001 → T1110.001, attack.credential-access → TA0006,
// attack.ta0006 → TA0006. Group (gNNNN) and software (sNNNN) tags are not
// tactics or techniques and are ignored. Results are sorted and unique.
func Mitre(tags []string) (tactics, techniques []string) {
	seenTa, seenT := map[string]bool{}, map[string]bool{}
	for _, tag := range tags {
		rest, ok := cutPrefixFold(tag, "attack.")
		if !ok || rest == "" {
			continue
		}
		lower := strings.ToLower(rest)
		switch {
		case isTechnique(lower):
			id := strings.ToUpper(lower)
			if !seenT[id] {
				seenT[id] = true
				techniques = append(techniques, id)
			}
		case strings.HasPrefix(lower, "ta") && allDigits(lower[2:]) && len(lower) == 6:
			id := strings.ToUpper(lower)
			if !seenTa[id] {
				seenTa[id] = true
				tactics = append(tactics, id)
			}
		default:
			if id, ok := TacticID(lower); ok && !seenTa[id] {
				seenTa[id] = true
				tactics = append(tactics, id)
			}
		}
	}
	sort.Strings(tactics)
	sort.Strings(techniques)
	return tactics, techniques
}

// OWASP extracts an OWASP category from a tag such as owasp.a07-2021 or
// owasp.A07:2021 (a Vigil convention; Sigma has no OWASP namespace).
func OWASP(tags []string) string {
	for _, tag := range tags {
		rest, ok := cutPrefixFold(tag, "owasp.")
		if !ok || len(rest) < 3 {
			continue
		}
		rest = strings.ToUpper(rest)
		if i := strings.IndexAny(rest, "-_"); i > 0 {
			rest = rest[:i] + ":" + rest[i+1:]
		}
		return rest
	}
	return ""
}

func isTechnique(s string) bool {
	if len(s) < 5 || s[0] != 't' || !allDigits(s[1:5]) {
		return false
	}
	if len(s) == 5 {
		return true
	}
	return len(s) == 9 && s[5] == '.' && allDigits(s[6:])
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix) {
		return s[len(prefix):], true
	}
	return s, false
}
