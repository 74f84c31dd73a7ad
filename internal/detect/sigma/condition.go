package sigma

import (
	"fmt"
	"path"
	"strconv"
	"strings"
)

// cond is a compiled condition expression over search identifiers.
type cond interface {
	eval(s []search, ev *EvalCtx) bool
}

type condSel int
type condNot struct{ x cond }
type condAnd []cond
type condOr []cond
type condOf struct {
	sel []int
	n   int // at least n must hold; -1: all
}

func (c condSel) eval(s []search, ev *EvalCtx) bool { return s[c].match(ev) }
func (c condNot) eval(s []search, ev *EvalCtx) bool { return !c.x.eval(s, ev) }
func (c condAnd) eval(s []search, ev *EvalCtx) bool {
	for _, x := range c {
		if !x.eval(s, ev) {
			return false
		}
	}
	return true
}
func (c condOr) eval(s []search, ev *EvalCtx) bool {
	for _, x := range c {
		if x.eval(s, ev) {
			return true
		}
	}
	return false
}
func (c condOf) eval(s []search, ev *EvalCtx) bool {
	hits := 0
	for i, idx := range c.sel {
		if s[idx].match(ev) {
			hits++
			if c.n > 0 && hits >= c.n {
				return true
			}
		} else if c.n < 0 {
			return false
		}
		if c.n > 0 && hits+len(c.sel)-i-1 < c.n {
			return false
		}
	}
	return c.n < 0
}

type token struct {
	text string
	pos  int
}

func tokenize(s string) ([]token, error) {
	var out []token
	i := 0
	for i < len(s) {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '(' || c == ')':
			out = append(out, token{string(c), i})
			i++
		case c == '|':
			return nil, fmt.Errorf("condition: '|' aggregations are Sigma v1; write a correlation rule (column %d)", i+1)
		default:
			j := i
			for j < len(s) && !strings.ContainsRune(" \t\r\n()|", rune(s[j])) {
				j++
			}
			out = append(out, token{s[i:j], i})
			i = j
		}
	}
	return out, nil
}

// condParser parses: or := and {"or" and}; and := not {"and" not};
// not := "not" not | primary; primary := "(" or ")" | N "of" pattern | ident.
type condParser struct {
	toks  []token
	i     int
	names []string // search identifiers in file order
	index map[string]int
}

func parseCondition(expr string, names []string) (cond, error) {
	toks, err := tokenize(expr)
	if err != nil {
		return nil, err
	}
	if len(toks) == 0 {
		return nil, fmt.Errorf("condition is empty")
	}
	p := &condParser{toks: toks, names: names, index: map[string]int{}}
	for i, n := range names {
		p.index[n] = i
	}
	c, err := p.or()
	if err != nil {
		return nil, err
	}
	if p.i < len(p.toks) {
		t := p.toks[p.i]
		return nil, fmt.Errorf("condition: unexpected %q at column %d", t.text, t.pos+1)
	}
	return c, nil
}

func (p *condParser) peek() string {
	if p.i < len(p.toks) {
		return strings.ToLower(p.toks[p.i].text)
	}
	return ""
}

func (p *condParser) or() (cond, error) {
	first, err := p.and()
	if err != nil {
		return nil, err
	}
	out := condOr{first}
	for p.peek() == "or" {
		p.i++
		next, err := p.and()
		if err != nil {
			return nil, err
		}
		out = append(out, next)
	}
	if len(out) == 1 {
		return first, nil
	}
	return out, nil
}

func (p *condParser) and() (cond, error) {
	first, err := p.not()
	if err != nil {
		return nil, err
	}
	out := condAnd{first}
	for p.peek() == "and" {
		p.i++
		next, err := p.not()
		if err != nil {
			return nil, err
		}
		out = append(out, next)
	}
	if len(out) == 1 {
		return first, nil
	}
	return out, nil
}

func (p *condParser) not() (cond, error) {
	if p.peek() == "not" {
		p.i++
		x, err := p.not()
		if err != nil {
			return nil, err
		}
		return condNot{x}, nil
	}
	return p.primary()
}

func (p *condParser) primary() (cond, error) {
	if p.i >= len(p.toks) {
		return nil, fmt.Errorf("condition ends unexpectedly")
	}
	t := p.toks[p.i]
	low := strings.ToLower(t.text)
	switch {
	case low == "(":
		p.i++
		c, err := p.or()
		if err != nil {
			return nil, err
		}
		if p.peek() != ")" {
			return nil, fmt.Errorf("condition: missing ')' for '(' at column %d", t.pos+1)
		}
		p.i++
		return c, nil
	case low == ")":
		return nil, fmt.Errorf("condition: unexpected ')' at column %d", t.pos+1)
	case low == "and" || low == "or":
		return nil, fmt.Errorf("condition: %q at column %d needs an operand before it", t.text, t.pos+1)
	case low == "all" || low == "any" || allDigits(low):
		if p.i+1 < len(p.toks) && strings.ToLower(p.toks[p.i+1].text) == "of" {
			return p.of()
		}
	}
	idx, ok := p.index[t.text]
	if !ok {
		return nil, fmt.Errorf("condition: unknown search identifier %q at column %d", t.text, t.pos+1)
	}
	p.i++
	return condSel(idx), nil
}

func (p *condParser) of() (cond, error) {
	q := p.toks[p.i]
	p.i += 2 // quantifier, "of"
	if p.i >= len(p.toks) {
		return nil, fmt.Errorf("condition: %q of what? (column %d)", q.text, q.pos+1)
	}
	target := p.toks[p.i]
	p.i++
	var sel []int
	if strings.ToLower(target.text) == "them" {
		for i, n := range p.names {
			if !strings.HasPrefix(n, "_") {
				sel = append(sel, i)
			}
		}
	} else {
		if _, err := path.Match(target.text, ""); err != nil {
			return nil, fmt.Errorf("condition: bad pattern %q at column %d", target.text, target.pos+1)
		}
		for i, n := range p.names {
			if ok, _ := path.Match(target.text, n); ok {
				sel = append(sel, i)
			}
		}
	}
	if len(sel) == 0 {
		return nil, fmt.Errorf("condition: %q at column %d matches no search identifier", target.text, target.pos+1)
	}
	n := 1
	switch strings.ToLower(q.text) {
	case "all":
		n = -1
	case "any":
		n = 1
	default:
		v, err := strconv.Atoi(q.text)
		if err != nil || v < 1 {
			return nil, fmt.Errorf("condition: quantifier %q at column %d must be a positive number, any or all", q.text, q.pos+1)
		}
		n = v
	}
	if n > len(sel) {
		return nil, fmt.Errorf("condition: %d of %q can never hold: only %d identifiers match", n, target.text, len(sel))
	}
	return condOf{sel: sel, n: n}, nil
}
