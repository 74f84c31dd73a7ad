package sigma

import (
	"strings"
	"testing"
)

// specCase is a case written by hand from the text of the Sigma
// specification v2.1 (SigmaHQ/sigma-specification: sigma-rules-
// specification.md, sigma-appendix-modifiers.md, sigma-filters-
// specification.md). ref names the section and quotes the sentence the
// case checks; no rule text was copied from the SigmaHQ corpus.
type specCase struct {
	ref       string
	detection string // the detection block, indented by two spaces
	event     string
	want      bool
}

const win = `"type":"audit.process"`

// specCases covers every modifier of the appendix and every condition form.
var specCases = []specCase{
	// General
	{"General: All values are treated as case-insensitive strings", "  sel:\n    data.Image: 'C:\\Windows\\CMD.EXE'\n  condition: sel",
		`{` + win + `,"data":{"Image":"c:\\windows\\cmd.exe"}}`, true},
	{"General: All values are treated as ... strings (a number value)", "  sel:\n    data.EventID: 4688\n  condition: sel",
		`{` + win + `,"data":{"EventID":"4688"}}`, true},
	{"General: Regular expressions are case-sensitive by default", "  sel:\n    data.Image|re: 'CMD\\.exe$'\n  condition: sel",
		`{` + win + `,"data":{"Image":"c:\\cmd.exe"}}`, false},
	// String wildcards
	{"String Wildcard: ? to replace a single mandatory character", "  sel:\n    data.Image: 'prog?.exe'\n  condition: sel",
		`{` + win + `,"data":{"Image":"progA.exe"}}`, true},
	{"String Wildcard: ? is mandatory (no character)", "  sel:\n    data.Image: 'prog?.exe'\n  condition: sel",
		`{` + win + `,"data":{"Image":"prog.exe"}}`, false},
	{"String Wildcard: * to replace an unbounded length wildcard", "  sel:\n    data.Image: 'antivirus_V*.exe'\n  condition: sel",
		`{` + win + `,"data":{"Image":"antivirus_V21.2.1.exe"}}`, true},
	{"String Wildcard: * matches the empty string", "  sel:\n    data.Image: 'antivirus_V*.exe'\n  condition: sel",
		`{` + win + `,"data":{"Image":"antivirus_V.exe"}}`, true},
	{"String Wildcard: a value without wildcards is an exact match", "  sel:\n    data.Image: 'cmd.exe'\n  condition: sel",
		`{` + win + `,"data":{"Image":"c:\\cmd.exe"}}`, false},
	// Escape character
	{"Escape: A wildcard has to be escaped to be handled as a plain character (\\*)", "  sel:\n    data.CommandLine: 'a\\*b'\n  condition: sel",
		`{` + win + `,"data":{"CommandLine":"a*b"}}`, true},
	{"Escape: \\* does not match other characters", "  sel:\n    data.CommandLine: 'a\\*b'\n  condition: sel",
		`{` + win + `,"data":{"CommandLine":"axyb"}}`, false},
	{"Escape: \\? is a plain question mark", "  sel:\n    data.CommandLine: 'a\\?b'\n  condition: sel",
		`{` + win + `,"data":{"CommandLine":"axb"}}`, false},
	{"Escape: Plain backslash not followed by a wildcard can be expressed as single \\", "  sel:\n    data.Image: 'C:\\Windows\\x.exe'\n  condition: sel",
		`{` + win + `,"data":{"Image":"C:\\Windows\\x.exe"}}`, true},
	{"Escape: \\\\* is a backslash followed by a wildcard", "  sel:\n    data.Image: 'C:\\Windows\\\\*'\n  condition: sel",
		`{` + win + `,"data":{"Image":"C:\\Windows\\system32\\x.exe"}}`, true},
	{"Escape: \\\\\\* is a plain backslash and a plain star", "  sel:\n    data.Image: 'C:\\\\\\*'\n  condition: sel",
		`{` + win + `,"data":{"Image":"C:\\*"}}`, true},
	{"Escape: \\\\\\* does not match other text after the backslash", "  sel:\n    data.Image: 'C:\\\\\\*'\n  condition: sel",
		`{` + win + `,"data":{"Image":"C:\\x"}}`, false},
	{"Escape: \\\\\\\\ results in the plain value \\\\", "  sel:\n    data.Path: 'a\\\\\\\\b'\n  condition: sel",
		`{` + win + `,"data":{"Path":"a\\\\b"}}`, true},
	// Lists and maps
	{"Lists: strings ... linked with a logical OR (keywords)", "  keywords:\n    - 'EVILSERVICE'\n    - 'svchost.exe -n evil'\n  condition: keywords",
		`{` + win + `,"message":"started svchost.exe -n evil now"}`, true},
	{"Lists: keywords are case-insensitive", "  keywords:\n    - 'EVILSERVICE'\n  condition: keywords",
		`{` + win + `,"data":{"Service":"the evilservice"}}`, true},
	{"Lists: keywords miss", "  keywords:\n    - 'EVILSERVICE'\n  condition: keywords",
		`{` + win + `,"message":"benign"}`, false},
	{"Lists: All map items of a list are logically linked with OR", "  sel:\n    - data.Image|endswith: '\\example.exe'\n    - data.Description|contains: 'Test executable'\n  condition: sel",
		`{` + win + `,"data":{"Image":"c:\\other.exe","Description":"a Test executable here"}}`, true},
	{"Maps: All elements of a map are joined with a logical AND", "  sel:\n    data.EventLog: Security\n    data.EventID: [517, 1102]\n  condition: sel",
		`{` + win + `,"data":{"EventLog":"Security","EventID":1102}}`, true},
	{"Maps: AND fails when one element fails", "  sel:\n    data.EventLog: Security\n    data.EventID: [517, 1102]\n  condition: sel",
		`{` + win + `,"data":{"EventLog":"System","EventID":1102}}`, false},
	{"Maps: value list is OR (Event ID 517 or Event ID 1102)", "  sel:\n    data.EventID: [517, 1102]\n  condition: sel",
		`{` + win + `,"data":{"EventID":4688}}`, false},
	// Special values
	{"Special Field Values: An empty value is defined with ''", "  sel:\n    data.FieldB: ''\n  condition: sel",
		`{` + win + `,"data":{"FieldB":""}}`, true},
	{"Special Field Values: '' does not match a non-empty value", "  sel:\n    data.FieldB: ''\n  condition: sel",
		`{` + win + `,"data":{"FieldB":"x"}}`, false},
	{"Special Field Values: A null value is defined with null (absent)", "  selection:\n    data.EventID: 4738\n  filter:\n    data.PasswordLastSet: null\n  condition: selection and not filter",
		`{` + win + `,"data":{"EventID":4738}}`, false},
	{"Special Field Values: not null via a negated selection", "  selection:\n    data.EventID: 4738\n  filter:\n    data.PasswordLastSet: null\n  condition: selection and not filter",
		`{` + win + `,"data":{"EventID":4738,"PasswordLastSet":"2024-01-01"}}`, true},
	{"Special Field Values: selection_main and 1 of selection_empty*", "  selection_main:\n    data.FieldA: something\n  selection_empty1:\n    data.FieldB: ''\n  selection_empty2:\n    data.FieldB: null\n  condition: selection_main and 1 of selection_empty*",
		`{` + win + `,"data":{"FieldA":"something","FieldB":null}}`, true},
	// Field existence (exists)
	{"Field Existence: PasswordLastSet|exists: true", "  selection:\n    data.EventID: 4738\n    data.PasswordLastSet|exists: true\n  condition: selection",
		`{` + win + `,"data":{"EventID":4738,"PasswordLastSet":"x"}}`, true},
	{"exists: only verifies the presence of a field, not its value, be it empty or null (null)", "  sel:\n    data.PasswordLastSet|exists: true\n  condition: sel",
		`{` + win + `,"data":{"PasswordLastSet":null}}`, true},
	{"exists: ... be it empty (empty string)", "  sel:\n    data.PasswordLastSet|exists: true\n  condition: sel",
		`{` + win + `,"data":{"PasswordLastSet":""}}`, true},
	{"exists: must not exist (false) on an absent field", "  sel:\n    data.PasswordLastSet|exists: false\n  condition: sel",
		`{` + win + `,"data":{"Other":1}}`, true},
	{"exists: false on a present null field", "  sel:\n    data.PasswordLastSet|exists: false\n  condition: sel",
		`{` + win + `,"data":{"PasswordLastSet":null}}`, false},
	// Generic modifiers
	{"all: changes this to AND", "  sel:\n    data.CommandLine|contains|all: [' -enc ', 'hidden']\n  condition: sel",
		`{` + win + `,"data":{"CommandLine":"powershell -w hidden -enc AAA"}}`, true},
	{"all: AND fails on one missing value", "  sel:\n    data.CommandLine|contains|all: [' -enc ', 'bypass']\n  condition: sel",
		`{` + win + `,"data":{"CommandLine":"powershell -w hidden -enc AAA"}}`, false},
	{"Keywords: To have a and operator, we use the '|all': modifier", "  keywords_cmdlet:\n    '|all':\n      - 'OabVirtualDirectory'\n      - ' -ExternalUrl '\n  condition: keywords_cmdlet",
		`{` + win + `,"message":"Set-OabVirtualDirectory -ExternalUrl http://x"}`, true},
	{"Keywords: |all fails when one keyword is missing", "  keywords_cmdlet:\n    '|all':\n      - 'OabVirtualDirectory'\n      - ' -ExternalUrl '\n  condition: keywords_cmdlet",
		`{` + win + `,"message":"Set-OabVirtualDirectory -InternalUrl http://x"}`, false},
	{"startswith: The value is expected at the beginning", "  sel:\n    data.User|startswith: 'adm'\n  condition: sel",
		`{` + win + `,"data":{"User":"ADM_bob"}}`, true},
	{"startswith: not elsewhere", "  sel:\n    data.User|startswith: 'adm'\n  condition: sel",
		`{` + win + `,"data":{"User":"bob_adm"}}`, false},
	{"endswith: The value is expected at the end", "  sel:\n    data.Image|endswith: '\\cmd.exe'\n  condition: sel",
		`{` + win + `,"data":{"Image":"C:\\Windows\\System32\\cmd.exe"}}`, true},
	{"contains: Puts * wildcards around the values", "  sel:\n    data.CommandLine|contains: 'mimikatz'\n  condition: sel",
		`{` + win + `,"data":{"CommandLine":"run MimiKatz.exe now"}}`, true},
	{"cased: Values are applied case sensitively", "  sel:\n    data.CommandLine|contains|cased: 'MimiKatz'\n  condition: sel",
		`{` + win + `,"data":{"CommandLine":"run mimikatz.exe"}}`, false},
	{"cased: exact case matches", "  sel:\n    data.CommandLine|contains|cased: 'MimiKatz'\n  condition: sel",
		`{` + win + `,"data":{"CommandLine":"run MimiKatz.exe"}}`, true},
	{"neq: The field is different from the specified values", "  sel:\n    data.LogonType|neq: 3\n  condition: sel",
		`{` + win + `,"data":{"LogonType":10}}`, true},
	{"neq: equal value does not match", "  sel:\n    data.LogonType|neq: 3\n  condition: sel",
		`{` + win + `,"data":{"LogonType":3}}`, false},
	{"neq: different from the specified values (all of the list)", "  sel:\n    data.User|neq: [alice, bob]\n  condition: sel",
		`{` + win + `,"data":{"User":"BOB"}}`, false},
	{"neq: different from every value of the list", "  sel:\n    data.User|neq: [alice, bob]\n  condition: sel",
		`{` + win + `,"data":{"User":"carol"}}`, true},
	{"fieldref: Can be conbine with the neq modifier", "  sel:\n    data.SubjectUserName|fieldref|neq: data.TargetUserName\n  condition: sel",
		`{` + win + `,"data":{"SubjectUserName":"alice","TargetUserName":"Alice"}}`, false},
	{"fieldref|neq: different fields match", "  sel:\n    data.SubjectUserName|fieldref|neq: data.TargetUserName\n  condition: sel",
		`{` + win + `,"data":{"SubjectUserName":"alice","TargetUserName":"bob"}}`, true},
	{"fieldref: compare fields of matched events directly", "  sel:\n    data.ParentUser|fieldref: data.User\n  condition: sel",
		`{` + win + `,"data":{"ParentUser":"svc","User":"svc"}}`, true},
	// String modifiers
	{"windash: -, /, en dash, em dash, horizontal bar are interchangeable", "  sel:\n    data.CommandLine|windash|contains: ' -exec bypass'\n  condition: sel",
		`{` + win + `,"data":{"CommandLine":"powershell /exec bypass"}}`, true},
	{"windash: en dash", "  sel:\n    data.CommandLine|windash|contains: ' -exec'\n  condition: sel",
		`{` + win + `,"data":{"CommandLine":"powershell \u2013exec"}}`, true},
	{"windash: horizontal bar", "  sel:\n    data.CommandLine|windash|contains: ' -exec'\n  condition: sel",
		`{` + win + `,"data":{"CommandLine":"powershell \u2015exec"}}`, true},
	{"re: regex with anchors and classes", "  sel:\n    data.Image|re: '^[a-z]:\\\\temp\\\\.+\\.exe$'\n  condition: sel",
		`{` + win + `,"data":{"Image":"c:\\temp\\x.exe"}}`, true},
	{"re|i: case-insensitive matching", "  sel:\n    data.Image|re|i: 'CMD\\.EXE$'\n  condition: sel",
		`{` + win + `,"data":{"Image":"c:\\cmd.exe"}}`, true},
	{"re|m: ^/$ match the start/end of line", "  sel:\n    data.Script|re|m: '^Invoke-Evil$'\n  condition: sel",
		`{` + win + `,"data":{"Script":"line one\nInvoke-Evil\nline three"}}`, true},
	{"re without m: ^ is the start of the text", "  sel:\n    data.Script|re: '^Invoke-Evil$'\n  condition: sel",
		`{` + win + `,"data":{"Script":"line one\nInvoke-Evil\nline three"}}`, false},
	{"re|s: dot matches the newline character", "  sel:\n    data.Script|re|s: 'one.Invoke'\n  condition: sel",
		`{` + win + `,"data":{"Script":"line one\nInvoke-Evil"}}`, true},
	{"re without s: dot does not match newline", "  sel:\n    data.Script|re: 'one.Invoke'\n  condition: sel",
		`{` + win + `,"data":{"Script":"line one\nInvoke-Evil"}}`, false},
	// Encoding
	{"base64: The value is encoded with Base64", "  sel:\n    data.Payload|base64: 'cmd'\n  condition: sel",
		`{` + win + `,"data":{"Payload":"Y21k"}}`, true},
	{"base64offset: ... recognized at any of three shifts (offset 1)", "  sel:\n    data.CommandLine|base64offset|contains: 'http'\n  condition: sel",
		`{` + win + `,"data":{"CommandLine":"-enc eGh0dHA6Ly8="}}`, true},
	{"base64offset: offset 2", "  sel:\n    data.CommandLine|base64offset|contains: 'http'\n  condition: sel",
		`{` + win + `,"data":{"CommandLine":"-enc eHhodHRwOi8v"}}`, true},
	{"utf16le: cmd > 63 00 6d 00 64 00", "  sel:\n    data.Raw|utf16le|contains: 'cmd'\n  condition: sel",
		`{` + win + `,"data":{"Raw":"xx c\u0000m\u0000d\u0000 yy"}}`, true},
	{"utf16be: cmd > 00 63 00 6d 00 64", "  sel:\n    data.Raw|utf16be|contains: 'cmd'\n  condition: sel",
		`{` + win + `,"data":{"Raw":"\u0000c\u0000m\u0000d"}}`, true},
	{"utf16: Prepends a byte order mark (FF FE)", "  sel:\n    data.Raw|utf16|base64: 'cmd'\n  condition: sel",
		`{` + win + `,"data":{"Raw":"//5jAG0AZAA="}}`, true},
	{"wide: an alias for the utf16le modifier", "  sel:\n    data.Raw|wide|base64offset|contains: 'cmd'\n  condition: sel",
		`{` + win + `,"data":{"Raw":"AAAAYwBtAGQA"}}`, true},
	// Numeric modifiers
	{"lt: Field is less than the value", "  sel:\n    data.Size|lt: 10\n  condition: sel", `{` + win + `,"data":{"Size":9}}`, true},
	{"lt: equal is not less", "  sel:\n    data.Size|lt: 10\n  condition: sel", `{` + win + `,"data":{"Size":10}}`, false},
	{"lte: Field is less or equal than the value", "  sel:\n    data.Size|lte: 10\n  condition: sel", `{` + win + `,"data":{"Size":10}}`, true},
	{"gt: Field is greater than the value", "  sel:\n    data.Size|gt: 10\n  condition: sel", `{` + win + `,"data":{"Size":10.5}}`, true},
	{"gte: Field is greater or equal than the value", "  sel:\n    data.Size|gte: 10\n  condition: sel", `{` + win + `,"data":{"Size":9}}`, false},
	{"neq (numeric): Field is not equal than the value", "  sel:\n    data.Size|neq: 10\n  condition: sel", `{` + win + `,"data":{"Size":11}}`, true},
	// Time modifiers (the event's own timestamp field and a Windows-style date)
	{"hour: number between 0 and 23 (event time)", "  sel:\n    time|hour: 3\n  condition: sel",
		`{` + win + `,"time":"2025-03-09T03:15:42Z"}`, true},
	{"hour: other hour", "  sel:\n    time|hour: 4\n  condition: sel",
		`{` + win + `,"time":"2025-03-09T03:15:42Z"}`, false},
	{"minute: number between 0 and 59", "  sel:\n    time|minute: 15\n  condition: sel",
		`{` + win + `,"time":"2025-03-09T03:15:42Z"}`, true},
	{"day: number between 1 and 31", "  sel:\n    time|day: 9\n  condition: sel",
		`{` + win + `,"time":"2025-03-09T03:15:42Z"}`, true},
	{"week: number between 1 and 52 (ISO week)", "  sel:\n    time|week: 10\n  condition: sel",
		`{` + win + `,"time":"2025-03-09T03:15:42Z"}`, true},
	{"month: number between 1 and 12", "  sel:\n    time|month: 3\n  condition: sel",
		`{` + win + `,"time":"2025-03-09T03:15:42Z"}`, true},
	{"year: number of the year", "  sel:\n    time|year: 2025\n  condition: sel",
		`{` + win + `,"time":"2025-03-09T03:15:42Z"}`, true},
	{"hour: a list of values is OR (off-hours)", "  sel:\n    data.UtcTime|hour: [0, 1, 2, 22, 23]\n  condition: sel",
		`{` + win + `,"data":{"UtcTime":"2025-03-09 23:01:02.345"}}`, true},
	{"hour|neq: not that hour", "  sel:\n    data.UtcTime|hour|neq: 23\n  condition: sel",
		`{` + win + `,"data":{"UtcTime":"2025-03-09 23:01:02.345"}}`, false},
	{"hour|gte: combined with a numeric modifier", "  sel:\n    data.UtcTime|hour|gte: 22\n  condition: sel",
		`{` + win + `,"data":{"UtcTime":"2025-03-09 23:01:02.345"}}`, true},
	{"time modifier: Vigil's own event time is stored in UTC", "  sel:\n    time|hour: 3\n  condition: sel",
		`{` + win + `,"time":"2025-03-09T05:15:42+02:00"}`, true},
	{"time modifier: It is not designed to handle timezone conversions (offset kept)", "  sel:\n    data.ts|hour: 5\n  condition: sel",
		`{` + win + `,"data":{"ts":"2025-03-09T05:15:42+02:00"}}`, true},
	// IP
	{"cidr: Supports both IPv4 and IPv6 notations (v4)", "  sel:\n    data.DestinationIp|cidr: 10.0.0.0/8\n  condition: sel",
		`{` + win + `,"data":{"DestinationIp":"10.1.2.3"}}`, true},
	{"cidr: IPv6", "  sel:\n    data.DestinationIp|cidr: 'fe80::/10'\n  condition: sel",
		`{` + win + `,"data":{"DestinationIp":"fe80::1"}}`, true},
	{"cidr: outside the range", "  sel:\n    data.DestinationIp|cidr: 10.0.0.0/8\n  condition: sel",
		`{` + win + `,"data":{"DestinationIp":"11.1.2.3"}}`, false},
	// Conditions
	{"Condition: Logical AND/OR (keywords1 or keywords2)", "  keywords1:\n    - alpha\n  keywords2:\n    - beta\n  condition: keywords1 or keywords2",
		`{` + win + `,"message":"beta"}`, true},
	{"Condition: and", "  keywords1:\n    - alpha\n  keywords2:\n    - beta\n  condition: keywords1 and keywords2",
		`{` + win + `,"message":"beta"}`, false},
	{"Condition: 1 of them", "  sel1:\n    data.A: 1\n  sel2:\n    data.B: 2\n  condition: 1 of them",
		`{` + win + `,"data":{"B":2}}`, true},
	{"Condition: all of them", "  sel1:\n    data.A: 1\n  sel2:\n    data.B: 2\n  condition: all of them",
		`{` + win + `,"data":{"B":2}}`, false},
	{"Condition: them excludes identifiers starting with an underscore", "  sel1:\n    data.A: 1\n  _helper:\n    data.B: 2\n  condition: all of them",
		`{` + win + `,"data":{"A":1}}`, true},
	{"Condition: all of selection*", "  selection_a:\n    data.A: 1\n  selection_b:\n    data.B: 2\n  other:\n    data.C: 3\n  condition: all of selection*",
		`{` + win + `,"data":{"A":1,"B":2}}`, true},
	{"Condition: 1 of selection* and keywords", "  selection_a:\n    data.A: 1\n  selection_b:\n    data.B: 2\n  keywords:\n    - evil\n  condition: 1 of selection* and keywords",
		`{` + win + `,"message":"evil","data":{"B":2}}`, true},
	{"Condition: 1 of selection* and not 1 of filter*", "  selection:\n    data.A: 1\n  filter_a:\n    data.U: admin\n  filter_b:\n    data.U: system\n  condition: 1 of selection* and not 1 of filter*",
		`{` + win + `,"data":{"A":1,"U":"system"}}`, false},
	{"Condition: pattern with * at an arbitrary position", "  sel_x_main:\n    data.A: 1\n  condition: 1 of sel*main",
		`{` + win + `,"data":{"A":1}}`, true},
	{"Condition: Negation with not", "  keywords:\n    - evil\n  filters:\n    - test\n  condition: keywords and not filters",
		`{` + win + `,"message":"evil test"}`, false},
	{"Condition: Brackets selection1 and (keywords1 or keywords2)", "  selection1:\n    data.A: 1\n  keywords1:\n    - alpha\n  keywords2:\n    - beta\n  condition: selection1 and (keywords1 or keywords2)",
		`{` + win + `,"message":"beta","data":{"A":1}}`, true},
	{"Precedence: and binds more than or", "  a:\n    data.A: 1\n  b:\n    data.B: 1\n  c:\n    data.C: 1\n  condition: a or b and c",
		`{` + win + `,"data":{"A":1}}`, true},
	{"Precedence: not binds more than and", "  a:\n    data.A: 1\n  b:\n    data.B: 1\n  condition: not a and b",
		`{` + win + `,"data":{"A":1,"B":1}}`, false},
	{"Precedence: x of binds more than not", "  sel_a:\n    data.A: 1\n  sel_b:\n    data.B: 1\n  condition: not 1 of sel_*",
		`{` + win + `,"data":{"C":1}}`, true},
	{"Condition: The condition can be a list ... linked with OR", "  a:\n    data.A: 1\n  b:\n    data.B: 1\n  condition:\n    - a\n    - b",
		`{` + win + `,"data":{"B":1}}`, true},
	// Field names with dots (v2.1 note on nested fields)
	{"Dotted field name matches a nested object", "  sel:\n    process.executable|endswith: '/bash'\n  condition: sel",
		`{` + win + `,"data":{"process":{"executable":"/bin/bash"}}}`, true},
	{"Dotted field name matches a flat key of that name", "  sel:\n    process.executable|endswith: '/bash'\n  condition: sel",
		`{` + win + `,"data":{"process.executable":"/bin/bash"}}`, true},
	{"Dotted field name: partly flat, partly nested", "  sel:\n    process.parent.executable: '/bin/sh'\n  condition: sel",
		`{` + win + `,"data":{"process":{"parent.executable":"/bin/sh"}}}`, true},
}

// TestSpecCases runs every hand-written case and reports how many agree
// with the specification.
func TestSpecCases(t *testing.T) {
	agree := 0
	for _, c := range specCases {
		src := "title: spec\nlogsource:\n  product: windows\ndetection:\n" + c.detection
		rules, errs := ParseFile("spec.yml", []byte(src))
		if len(errs) > 0 {
			t.Errorf("%s: parse: %v", c.ref, errs[0])
			continue
		}
		m, err := Compile(rules[0], nil)
		if err != nil {
			t.Errorf("%s: compile: %v", c.ref, err)
			continue
		}
		if got := m.Match(mustEvent(t, c.event)); got != c.want {
			t.Errorf("%s: match = %v, want %v\nrule:\n%s\nevent: %s", c.ref, got, c.want, c.detection, c.event)
			continue
		}
		agree++
	}
	t.Logf("spec cases (matching): %d written from the specification text, %d agree", len(specCases), agree)
}

// specExpandCases are the Placeholders section's examples, with the values
// a placeholders file would give.
var specExpandCases = []struct {
	ref, detection, event string
	want                  bool
}{
	{"Placeholders: field: %name% handles %name% as literal value", "  sel:\n    data.Host: '%Servers%'\n  condition: sel",
		`{` + win + `,"data":{"Host":"%Servers%"}}`, true},
	{"Placeholders: field|expand: %name% handles %name% as placeholder", "  sel:\n    data.Host|expand: '%Servers%'\n  condition: sel",
		`{` + win + `,"data":{"Host":"srv042"}}`, true},
	{"Placeholders: %Servers% replaced with the pattern srv* (no match)", "  sel:\n    data.Host|expand: '%Servers%'\n  condition: sel",
		`{` + win + `,"data":{"Host":"ws042"}}`, false},
	{"Placeholders: multiple or-linked values", "  sel:\n    data.User|expand: '%Administrators%'\n  condition: sel",
		`{` + win + `,"data":{"User":"root"}}`, true},
	{"Placeholders: \\%plain%name% handles %plain as plain value and %name% as placeholder", "  sel:\n    data.Arg|expand: '\\%plain%Servers%'\n  condition: sel",
		`{` + win + `,"data":{"Arg":"%plainsrv1"}}`, true},
	{"Placeholders: inside a longer value", "  sel:\n    data.Path|expand|startswith: '/home/%Administrators%/'\n  condition: sel",
		`{` + win + `,"data":{"Path":"/home/root/.ssh/authorized_keys"}}`, true},
}

func TestSpecExpand(t *testing.T) {
	ph := map[string][]string{"Servers": {"srv*"}, "Administrators": {"admin", "root"}}
	agree := 0
	defer func() { t.Logf("spec cases (placeholders): %d written, %d agree", len(specExpandCases), agree) }()
	for _, c := range specExpandCases {
		src := "title: spec\nlogsource:\n  product: windows\ndetection:\n" + c.detection
		rules, errs := ParseFile("spec.yml", []byte(src))
		if len(errs) > 0 {
			t.Fatalf("%s: parse: %v", c.ref, errs[0])
		}
		m, err := CompileWith(rules[0], CompileOptions{Placeholders: ph})
		if err != nil {
			t.Errorf("%s: compile: %v", c.ref, err)
			continue
		}
		if got := m.Match(mustEvent(t, c.event)); got != c.want {
			t.Errorf("%s: match = %v, want %v", c.ref, got, c.want)
			continue
		}
		agree++
	}
}

// specRefusals: "If the tool isn't able to handle placeholders, it must
// reject the rule" and the other constructs Vigil does not run; every
// refusal names the file, the line and the construct.
var specRefusals = []struct {
	ref, detection, want string
	line                 int
}{
	{"Placeholders: a tool ... must reject the rule (no value configured)", "  sel:\n    data.Host|expand: '%JumpServers%'\n  condition: sel", "%JumpServers%", 6},
	{"unknown modifier", "  sel:\n    data.Host|sortof: x\n  condition: sel", `"sortof"`, 6},
	{"time modifier needs a number", "  sel:\n    time|hour: noon\n  condition: sel", "hour needs a number", 6},
	{"exists takes a boolean", "  sel:\n    data.X|exists: maybe\n  condition: sel", "exists takes true or false", 6},
	{"re: look-arounds are outside the spec's PCRE subset", "  sel:\n    data.X|re: 'a(?=b)'\n  condition: sel", "bad regular expression", 6},
	{"Sigma v1 aggregation", "  sel:\n    data.X: 1\n  condition: sel | count() > 5", "aggregations are Sigma v1", 7},
}

func TestSpecRefusals(t *testing.T) {
	agree := 0
	defer func() { t.Logf("spec cases (refusals): %d written, %d agree", len(specRefusals), agree) }()
	for _, c := range specRefusals {
		src := "title: spec\nlogsource:\n  product: windows\ndetection:\n" + c.detection
		rules, errs := ParseFile("rules/spec.yml", []byte(src))
		if len(errs) > 0 {
			t.Fatalf("%s: parse: %v", c.ref, errs[0])
		}
		_, err := Compile(rules[0], nil)
		if err == nil {
			t.Errorf("%s: compiled, want a refusal", c.ref)
			continue
		}
		se, ok := err.(*Error)
		if !ok || se.Path != "rules/spec.yml" || se.Line != c.line || !strings.Contains(se.Reason, c.want) {
			t.Errorf("%s: error %v, want rules/spec.yml:%d naming %q", c.ref, err, c.line, c.want)
			continue
		}
		agree++
	}
}
