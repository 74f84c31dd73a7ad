package event

import (
	"encoding/json"
	"fmt"
)

// Severity orders events from info to critical. The zero value is info, so
// an event that names none gets the SPEC default.
type Severity uint8

const (
	SeverityInfo Severity = iota
	SeverityLow
	SeverityMedium
	SeverityHigh
	SeverityCritical
)

var severityNames = [...]string{"info", "low", "medium", "high", "critical"}

// Severities lists every severity from lowest to highest.
func Severities() []Severity {
	return []Severity{SeverityInfo, SeverityLow, SeverityMedium, SeverityHigh, SeverityCritical}
}

func (s Severity) String() string {
	if int(s) < len(severityNames) {
		return severityNames[s]
	}
	return fmt.Sprintf("severity(%d)", s)
}

// ParseSeverity accepts the five SPEC names.
func ParseSeverity(s string) (Severity, error) {
	for i, n := range severityNames {
		if n == s {
			return Severity(i), nil
		}
	}
	return 0, fmt.Errorf("unknown value %q (valid: info, low, medium, high, critical)", s)
}

// severityJSON holds the encoded names: encoding a severity allocates
// nothing on the append path.
var severityJSON = [...][]byte{[]byte(`"info"`), []byte(`"low"`), []byte(`"medium"`), []byte(`"high"`), []byte(`"critical"`)}

func (s Severity) MarshalJSON() ([]byte, error) {
	if int(s) < len(severityJSON) {
		return severityJSON[s], nil
	}
	return json.Marshal(s.String())
}

func (s *Severity) UnmarshalJSON(b []byte) error {
	str, ok := plainString(b)
	if !ok {
		if err := json.Unmarshal(b, &str); err != nil {
			return fmt.Errorf("severity must be a string")
		}
	}
	if str == "" {
		*s = SeverityInfo
		return nil
	}
	v, err := ParseSeverity(str)
	if err != nil {
		return err
	}
	*s = v
	return nil
}
