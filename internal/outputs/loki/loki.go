// Package loki is the loki output: events are pushed to Grafana Loki's
// push API (POST /loki/api/v1/push, JSON,
// https://grafana.com/docs/loki/latest/reference/loki-http-api/#ingest-logs)
// as log lines (the event's JSON) in streams labelled job, tenant,
// category and severity (plus the output's static labels), at the event's
// time in nanoseconds.
//
// Loki drops an entry identical to one it has (same stream, timestamp and
// line), so a batch retried after a failure does not duplicate.
package loki

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-sec/vigil/internal/outputs"
	"github.com/vigil-sec/vigil/internal/outputs/outhttp"
)

const maxBatch = 1000

var labelName = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)

// Options are the loki output's own keys.
type Options struct {
	// URL of Loki (http://loki:3100); the push path is appended.
	URL string `yaml:"url"`
	// OrgID, if set, is sent as X-Scope-OrgID (multi-tenant Loki).
	OrgID string `yaml:"org_id"`
	// Labels are static labels added to every stream (job defaults to
	// "vigil").
	Labels map[string]string `yaml:"labels"`
	// Basic authentication (Username and Password as ${ENV} or
	// PasswordFile), or a bearer token (BearerToken / BearerTokenFile).
	Username        string `yaml:"username"`
	Password        string `yaml:"password"`
	PasswordFile    string `yaml:"password_file"`
	BearerToken     string `yaml:"bearer_token"`
	BearerTokenFile string `yaml:"bearer_token_file"`
}

// Type is the loki output type.
func Type() outputs.Type {
	return outputs.Type{
		Name:       "loki",
		NewOptions: func() any { return &Options{} },
		New:        newSender,
	}
}

type sender struct {
	url     string
	orgID   string
	labels  map[string]string
	user    string
	pass    outputs.Secret
	token   outputs.Secret
	secrets []outputs.Secret
	env     outputs.Env
}

func newSender(o any, env outputs.Env) (outputs.Sender, error) {
	opts, ok := o.(*Options)
	if !ok {
		return nil, fmt.Errorf("loki: options are %T, not *loki.Options", o)
	}
	if err := outhttp.CheckURL("url", opts.URL); err != nil {
		return nil, err
	}
	s := &sender{url: strings.TrimRight(opts.URL, "/") + "/loki/api/v1/push", orgID: opts.OrgID, env: env,
		labels: map[string]string{"job": "vigil"}, user: opts.Username}
	if strings.ContainsAny(opts.OrgID, "\r\n|") {
		return nil, errors.New("org_id: one line, without '|'")
	}
	for k, v := range opts.Labels {
		if !labelName.MatchString(k) || strings.HasPrefix(k, "__") {
			return nil, fmt.Errorf("labels: %q is not a Loki label name ([a-zA-Z_][a-zA-Z0-9_]*, not starting with __)", k)
		}
		switch k {
		case "tenant", "category", "severity":
			return nil, fmt.Errorf("labels: %q is set per event", k)
		}
		s.labels[k] = v
	}
	var err error
	if s.pass, err = outputs.ResolveSecret("password", opts.Password, opts.PasswordFile); err != nil {
		return nil, err
	}
	if s.token, err = outputs.ResolveSecret("bearer_token", opts.BearerToken, opts.BearerTokenFile); err != nil {
		return nil, err
	}
	switch {
	case s.token != "" && (s.user != "" || s.pass != ""):
		return nil, errors.New("bearer_token and username/password are both set: use one")
	case (s.user != "") != (s.pass != ""):
		return nil, errors.New("username and password (or password_file) go together")
	}
	s.secrets = []outputs.Secret{s.pass, s.token}
	if s.env.Now == nil {
		s.env.Now = time.Now
	}
	return s, nil
}

// MaxBatch: up to this many events per push.
func (s *sender) MaxBatch() int { return maxBatch }

// Push is the push API's JSON body.
type Push struct {
	Streams []Stream `json:"streams"`
}

// Stream is one set of labels and its entries, [ns timestamp, line].
type Stream struct {
	Stream map[string]string `json:"stream"`
	Values [][2]string       `json:"values"`
}

// Build groups msgs into streams by label set, entries in time order.
func (s *sender) Build(msgs []outputs.Message) Push {
	type entry struct {
		ts   int64
		line string
	}
	streams := map[string]map[string]string{}
	entries := map[string][]entry{}
	var keys []string
	for _, m := range msgs {
		labels := make(map[string]string, len(s.labels)+4)
		for k, v := range s.labels {
			labels[k] = v
		}
		ts := s.env.Now()
		if ev := m.Event; ev != nil {
			ts = ev.Time
			labels["tenant"] = ev.Tenant
			labels["category"] = string(ev.Category)
		}
		if labels["tenant"] == "" {
			labels["tenant"] = "-"
		}
		if labels["category"] == "" {
			labels["category"] = "-"
		}
		labels["severity"] = outhttp.Severity(m)
		if m.Test {
			labels["test"] = "true"
		}
		key := labelKey(labels)
		if _, ok := streams[key]; !ok {
			streams[key] = labels
			keys = append(keys, key)
		}
		entries[key] = append(entries[key], entry{ts.UnixNano(), string(m.Body)})
	}
	var p Push
	for _, k := range keys {
		es := entries[k]
		sort.SliceStable(es, func(i, j int) bool { return es[i].ts < es[j].ts })
		st := Stream{Stream: streams[k], Values: make([][2]string, len(es))}
		for i, e := range es {
			st.Values[i] = [2]string{strconv.FormatInt(e.ts, 10), e.line}
		}
		p.Streams = append(p.Streams, st)
	}
	return p
}

func labelKey(l map[string]string) string {
	ks := make([]string, 0, len(l))
	for k := range l {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	var b strings.Builder
	for _, k := range ks {
		b.WriteString(k)
		b.WriteByte(0)
		b.WriteString(l[k])
		b.WriteByte(0)
	}
	return b.String()
}

func (s *sender) Send(ctx context.Context, msgs []outputs.Message) error {
	body, err := json.Marshal(s.Build(msgs))
	if err != nil {
		return outputs.Permanent(fmt.Errorf("loki: encoding the push: %w", err))
	}
	hdr := http.Header{"Content-Type": {"application/json"}}
	if s.orgID != "" {
		hdr.Set("X-Scope-OrgID", s.orgID)
	}
	// Set the header here rather than with Request.SetBasicAuth: the
	// request is built by outhttp.
	switch {
	case s.token != "":
		hdr.Set("Authorization", "Bearer "+s.token.Reveal())
	case s.user != "":
		r, _ := http.NewRequest("POST", "http://x", nil)
		r.SetBasicAuth(s.user, s.pass.Reveal())
		hdr.Set("Authorization", r.Header.Get("Authorization"))
	}
	if _, err := outhttp.Do(ctx, s.env.HTTP, s.env.Now, outhttp.Request{
		Method: "POST", URL: s.url, Header: hdr, Body: body, What: "loki push", Secrets: s.secrets,
	}); err != nil {
		return err
	}
	s.env.Logger.Debug("loki: delivered", "entries", len(msgs))
	return nil
}

func (s *sender) Close() error { return nil }
