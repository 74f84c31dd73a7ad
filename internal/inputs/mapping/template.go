package mapping

import (
	"fmt"
	"strings"
)

// A template is a string with ${name} substitutions and $$ for a literal
// dollar: nothing else, so a mapping file stays readable and a value can
// never execute anything. It is split at load into literal and variable
// parts so that mapping a message only concatenates.
type template struct {
	parts []tplPart
}

type tplPart struct {
	lit  string // used when name is empty
	name string
}

// parseTemplate splits s; names are checked against what the mapping
// defines by the caller (it knows the regex's captures).
func parseTemplate(s string) (template, error) {
	var t template
	var lit strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' {
			lit.WriteByte(s[i])
			continue
		}
		switch {
		case i+1 < len(s) && s[i+1] == '$':
			lit.WriteByte('$')
			i++
		case i+1 < len(s) && s[i+1] == '{':
			end := strings.IndexByte(s[i+2:], '}')
			if end < 0 {
				return t, fmt.Errorf("template %q: unterminated ${", s)
			}
			name := s[i+2 : i+2+end]
			if !validVarName(name) {
				return t, fmt.Errorf("template %q: ${%s} is not a name (letters, digits, '_' and '.', not starting with a digit)", s, name)
			}
			if lit.Len() > 0 {
				t.parts = append(t.parts, tplPart{lit: lit.String()})
				lit.Reset()
			}
			t.parts = append(t.parts, tplPart{name: name})
			i += 2 + end
		default:
			return t, fmt.Errorf("template %q: a lone '$' (write $$ for a literal $, ${name} for a value)", s)
		}
	}
	if lit.Len() > 0 || len(t.parts) == 0 {
		t.parts = append(t.parts, tplPart{lit: lit.String()})
	}
	return t, nil
}

func validVarName(n string) bool {
	if n == "" || n[0] >= '0' && n[0] <= '9' || n[0] == '.' {
		return false
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// names returns the variables the template refers to.
func (t template) names() []string {
	var out []string
	for _, p := range t.parts {
		if p.name != "" {
			out = append(out, p.name)
		}
	}
	return out
}

// literal reports whether the template has no variables, and its text.
func (t template) literal() (string, bool) {
	if len(t.parts) == 1 && t.parts[0].name == "" {
		return t.parts[0].lit, true
	}
	return "", false
}

// expand substitutes each variable with lookup's value ("" when unset).
func (t template) expand(lookup func(string) string) string {
	if s, ok := t.literal(); ok {
		return s
	}
	var b strings.Builder
	for _, p := range t.parts {
		if p.name == "" {
			b.WriteString(p.lit)
		} else {
			b.WriteString(lookup(p.name))
		}
	}
	return b.String()
}
