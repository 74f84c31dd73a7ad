package outputs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/filter"
)

// Defaults of the common keys.
const (
	DefaultMaxAge  = 24 * time.Hour
	DefaultTimeout = 10 * time.Second
	// MaxTimeout bounds one request: the core keeps the consumer's
	// messages in progress while a Send runs, and a Send that never
	// returns would hold the output forever.
	MaxTimeout = 5 * time.Minute
	// MaxGroupWait bounds group_wait: messages wait that long before
	// their first attempt.
	MaxGroupWait = 10 * time.Minute
	// MaxDigestInterval bounds digest_interval: the core holds a digest's
	// messages unacknowledged (kept in progress) until it is sent, and a
	// day is the longest summary period anyone pages on.
	MaxDigestInterval = 24 * time.Hour
	// MinDigestInterval: below it a digest is just grouping.
	MinDigestInterval = 100 * time.Millisecond
	// MaxConcurrency bounds concurrency: requests one output has in
	// flight (each a goroutine and, for HTTP, a connection).
	MaxConcurrency = 64
)

// Definition is one parsed outputs: entry.
type Definition struct {
	// Index is the entry's position in the outputs: list (for errors).
	Index int
	Name  string
	Type  Type
	// Options is the type's own keys, decoded into Type.NewOptions().
	Options any
	Filter  filter.Filter
	Matcher *filter.Matcher
	// Tenants limits the output to these tenants' events (empty: all).
	Tenants []string
	// MaxAge: a message still failing this long after it was received is
	// dead-lettered.
	MaxAge time.Duration
	// RepeatInterval: a detection update that changes nothing but its
	// count is sent at most once per interval (0: every update).
	RepeatInterval time.Duration
	// RateLimit paces deliveries (zero: unpaced).
	RateLimit Rate
	// GroupWait: for Type.Groups outputs, detections created within this
	// window after a first one go out together (0: one at a time).
	GroupWait time.Duration
	// DigestInterval: for Type.Groups outputs, at most one Send per
	// interval, listing every message taken meanwhile (0: off). The core
	// holds the messages unacknowledged until that Send returned nil.
	DigestInterval time.Duration
	// Template renders Message.Text (the default template when unset).
	Template    *template.Template
	TemplateSrc string
	Timeout     time.Duration
	// Concurrency is how many Sends the output has in flight (1: one at
	// a time, in log order; more only for Type.Concurrent types, and
	// then not in order).
	Concurrency int
}

// Rate is rate_limit: at most N deliveries per Per ("30/1m").
type Rate struct {
	N   int
	Per time.Duration
}

// IsZero reports an unset rate limit.
func (r Rate) IsZero() bool { return r.N == 0 }

func (r Rate) String() string {
	if r.IsZero() {
		return ""
	}
	return strconv.Itoa(r.N) + "/" + r.Per.String()
}

// ParseRate reads "N/duration" (e.g. "30/1m"; "10/s" means 10/1s).
func ParseRate(s string) (Rate, error) {
	n, per, ok := strings.Cut(strings.TrimSpace(s), "/")
	if !ok {
		return Rate{}, fmt.Errorf("rate_limit %q: want N/duration, e.g. 30/1m", s)
	}
	count, err := strconv.Atoi(strings.TrimSpace(n))
	if err != nil || count <= 0 {
		return Rate{}, fmt.Errorf("rate_limit %q: %q is not a positive count", s, n)
	}
	per = strings.TrimSpace(per)
	if per != "" && (per[0] < '0' || per[0] > '9') {
		per = "1" + per // "10/s" reads as 10 per 1s
	}
	d, err := time.ParseDuration(per)
	if err != nil || d <= 0 {
		return Rate{}, fmt.Errorf("rate_limit %q: %q is not a positive duration", s, per)
	}
	return Rate{N: count, Per: d}, nil
}

// common holds the keys every output has; the rest go to the type.
type common struct {
	Name           string   `yaml:"name"`
	Type           string   `yaml:"type"`
	Filter         any      `yaml:"filter"`
	Tenants        []string `yaml:"tenants"`
	MaxAge         string   `yaml:"max_age"`
	RepeatInterval string   `yaml:"repeat_interval"`
	RateLimit      string   `yaml:"rate_limit"`
	GroupWait      string   `yaml:"group_wait"`
	DigestInterval string   `yaml:"digest_interval"`
	Template       string   `yaml:"template"`
	Timeout        string   `yaml:"timeout"`
	Concurrency    string   `yaml:"concurrency"` // a number; read as text so a wrong value gets a clear error
}

var commonKeys = []string{"name", "type", "filter", "tenants", "max_age", "repeat_interval", "rate_limit", "group_wait", "digest_interval", "template", "timeout", "concurrency"}

// nameRE: an output's name is part of its durable consumer's name and of
// URLs, so it is kept to a safe alphabet.
var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)

// DefinitionError names the broken outputs: entry.
type DefinitionError struct {
	Index int
	Name  string
	Err   error
}

func (e *DefinitionError) Error() string {
	if e.Name != "" {
		return fmt.Sprintf("outputs[%d] (%s): %v", e.Index, e.Name, e.Err)
	}
	return fmt.Sprintf("outputs[%d]: %v", e.Index, e.Err)
}

func (e *DefinitionError) Unwrap() error { return e.Err }

// ParseDefinitions decodes the config's outputs: entries with the known
// types. The first broken entry is refused with its index, name and
// reason; names must be unique.
func ParseDefinitions(nodes []yaml.Node, types []Type) ([]Definition, error) {
	byName := map[string]Type{}
	for _, t := range types {
		byName[t.Name] = t
	}
	seen := map[string]int{}
	defs := make([]Definition, 0, len(nodes))
	for i := range nodes {
		d, err := parseOne(&nodes[i], byName)
		if err != nil {
			return nil, &DefinitionError{Index: i, Name: d.Name, Err: err}
		}
		if j, dup := seen[d.Name]; dup {
			return nil, &DefinitionError{Index: i, Name: d.Name, Err: fmt.Errorf("name already used by outputs[%d]", j)}
		}
		seen[d.Name] = i
		d.Index = i
		defs = append(defs, d)
	}
	return defs, nil
}

func parseOne(n *yaml.Node, types map[string]Type) (Definition, error) {
	var d Definition
	if n.Kind != yaml.MappingNode {
		return d, errors.New("not a mapping of keys")
	}
	own := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	com := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if slices.Contains(commonKeys, k.Value) {
			com.Content = append(com.Content, k, v)
		} else {
			own.Content = append(own.Content, k, v)
		}
	}
	var c common
	if err := strictDecode(com, &c); err != nil {
		return d, err
	}
	d.Name = c.Name
	if c.Name == "" {
		return d, errors.New("name is missing")
	}
	if !nameRE.MatchString(c.Name) {
		return d, fmt.Errorf("name %q: letters, digits, '-' or '_', at most 64, starting with a letter or digit", c.Name)
	}
	if c.Type == "" {
		return d, errors.New("type is missing")
	}
	t, ok := types[c.Type]
	if !ok {
		known := make([]string, 0, len(types))
		for k := range types {
			known = append(known, k)
		}
		slices.Sort(known)
		return d, fmt.Errorf("type %q is unknown (known: %s)", c.Type, strings.Join(known, ", "))
	}
	d.Type = t
	if c.Filter != nil {
		raw, err := json.Marshal(c.Filter)
		if err != nil {
			return d, fmt.Errorf("filter: %w", err)
		}
		if d.Filter, err = filter.Decode(raw); err != nil {
			return d, fmt.Errorf("filter: %w", err)
		}
	}
	m, err := filter.Compile(d.Filter)
	if err != nil {
		return d, fmt.Errorf("filter: %w", err)
	}
	d.Matcher = m
	for _, tn := range c.Tenants {
		if !event.ValidTenant(tn) {
			return d, fmt.Errorf("tenants: %q is not a tenant name (letters, digits, '-' or '_')", tn)
		}
	}
	d.Tenants = c.Tenants
	durs := []struct {
		key string
		src string
		dst *time.Duration
		def time.Duration
		max time.Duration
	}{
		{"max_age", c.MaxAge, &d.MaxAge, DefaultMaxAge, 0},
		{"repeat_interval", c.RepeatInterval, &d.RepeatInterval, 0, 0},
		{"group_wait", c.GroupWait, &d.GroupWait, 0, MaxGroupWait},
		{"digest_interval", c.DigestInterval, &d.DigestInterval, 0, MaxDigestInterval},
		{"timeout", c.Timeout, &d.Timeout, DefaultTimeout, MaxTimeout},
	}
	for _, x := range durs {
		*x.dst = x.def
		if x.src == "" {
			continue
		}
		v, err := time.ParseDuration(x.src)
		if err != nil {
			return d, fmt.Errorf("%s: %w", x.key, err)
		}
		if v < 0 || (v == 0 && (x.key == "max_age" || x.key == "timeout")) {
			return d, fmt.Errorf("%s: %s must be positive", x.key, x.src)
		}
		if x.max > 0 && v > x.max {
			return d, fmt.Errorf("%s: %s is above the limit of %s", x.key, x.src, x.max)
		}
		*x.dst = v
	}
	if c.RateLimit != "" {
		if d.RateLimit, err = ParseRate(c.RateLimit); err != nil {
			return d, err
		}
	}
	if d.GroupWait > 0 && !t.Groups {
		return d, fmt.Errorf("group_wait: type %s does not group messages", t.Name)
	}
	if d.DigestInterval > 0 && !t.Groups {
		return d, fmt.Errorf("digest_interval: type %s does not group messages", t.Name)
	}
	if d.DigestInterval > 0 && d.DigestInterval < MinDigestInterval {
		return d, fmt.Errorf("digest_interval: %s is below the minimum of %s (0 turns digests off)", d.DigestInterval, MinDigestInterval)
	}
	if d.DigestInterval > 0 && d.DigestInterval >= d.MaxAge {
		// A held message is first sent when its window ends: it must
		// have time left for retries before max_age dead-letters it.
		return d, fmt.Errorf("digest_interval: %s must be below max_age (%s)", d.DigestInterval, d.MaxAge)
	}
	d.Concurrency = 1
	if c.Concurrency != "" {
		n, err := strconv.Atoi(c.Concurrency)
		switch {
		case err != nil:
			return d, fmt.Errorf("concurrency: %q is not a whole number", c.Concurrency)
		case n < 1:
			return d, fmt.Errorf("concurrency: %d must be at least 1", n)
		case n > MaxConcurrency:
			return d, fmt.Errorf("concurrency: %d is above the limit of %d", n, MaxConcurrency)
		case n > 1 && !t.Concurrent:
			return d, fmt.Errorf("concurrency: type %s sends one request at a time", t.Name)
		}
		d.Concurrency = n
	}
	d.TemplateSrc = c.Template
	if d.Template, err = parseTemplate(c.Name, c.Template); err != nil {
		return d, err
	}
	if t.NewOptions != nil {
		d.Options = t.NewOptions()
		if err := strictDecode(own, d.Options); err != nil {
			return d, err
		}
	} else if len(own.Content) > 0 {
		return d, fmt.Errorf("unknown key %q", own.Content[0].Value)
	}
	return d, nil
}

// strictDecode decodes a mapping node refusing unknown keys (yaml.Node's
// own Decode cannot): it goes through the encoded form once.
func strictDecode(n *yaml.Node, v any) error {
	b, err := yaml.Marshal(n)
	if err != nil {
		return err
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		// yaml's "line N: field x not found in type T" counts lines of
		// the re-encoded node; say which key instead.
		msg := err.Error()
		if i := strings.Index(msg, "field "); i >= 0 && strings.Contains(msg, " not found in type ") {
			key := msg[i+len("field "):]
			key = key[:strings.Index(key, " not found")]
			return fmt.Errorf("unknown key %q", key)
		}
		return errors.New(strings.TrimPrefix(msg, "yaml: "))
	}
	return nil
}
