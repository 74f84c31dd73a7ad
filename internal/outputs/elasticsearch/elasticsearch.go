// Package elasticsearch is the elasticsearch output (also OpenSearch):
// events are indexed with the _bulk API
// (https://www.elastic.co/guide/en/elasticsearch/reference/current/docs-bulk.html)
// as ECS-named documents
// (https://www.elastic.co/guide/en/ecs/current/ecs-field-reference.html)
// in one index per day, <index_prefix>-YYYY.MM.DD (the event's UTC date).
//
// The document _id is the event id, so a retried batch overwrites the same
// documents (op_type index) or is refused as a conflict (op_type create,
// for data streams), which counts as done: retries never duplicate.
//
// Per-item errors: the bulk answer says per document whether it was
// taken. Documents refused for a reason that can pass (429, 5xx) make
// Send fail so that the core retries the batch; the sender remembers the
// ids of the batch's documents that were taken and sends only the failed
// ones again on that retry. A document refused for good (a 4xx such as
// mapper_parsing_exception) makes the error permanent, naming the event
// ids and reasons (the core then dead-letters the batch; its other
// documents are indexed).
package elasticsearch

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/outputs"
	"github.com/vigil-sec/vigil/internal/outputs/outhttp"
)

const (
	maxBatch = 500
	// maxDone bounds the ids remembered between a partly failed batch and
	// its retry.
	maxDone = 10 * maxBatch
)

// Options are the elasticsearch output's own keys.
type Options struct {
	// URL of the cluster (https://es.example.com:9200).
	URL string `yaml:"url"`
	// IndexPrefix (default "vigil"): indices are <prefix>-YYYY.MM.DD.
	IndexPrefix string `yaml:"index_prefix"`
	// OpType is index (default) or create (required by data streams).
	OpType string `yaml:"op_type"`
	// Basic authentication: Username and Password (as ${ENV} or
	// PasswordFile); or APIKey (the base64 "id:key" encoding Elasticsearch
	// returns as "encoded"), as ${ENV} or APIKeyFile.
	Username     string `yaml:"username"`
	Password     string `yaml:"password"`
	PasswordFile string `yaml:"password_file"`
	APIKey       string `yaml:"api_key"`
	APIKeyFile   string `yaml:"api_key_file"`
}

// Type is the elasticsearch output type.
func Type() outputs.Type {
	return outputs.Type{
		Name:       "elasticsearch",
		NewOptions: func() any { return &Options{} },
		New:        newSender,
	}
}

type sender struct {
	url      string
	prefix   string
	opType   string
	auth     outputs.Secret // the Authorization header value
	secrets  []outputs.Secret
	env      outputs.Env
	mu       sync.Mutex
	done     map[string]struct{} // ids taken in a batch that failed as a whole
	doneList []string
}

func newSender(o any, env outputs.Env) (outputs.Sender, error) {
	opts, ok := o.(*Options)
	if !ok {
		return nil, fmt.Errorf("elasticsearch: options are %T, not *elasticsearch.Options", o)
	}
	if err := outhttp.CheckURL("url", opts.URL); err != nil {
		return nil, err
	}
	s := &sender{url: strings.TrimRight(opts.URL, "/"), prefix: opts.IndexPrefix, opType: opts.OpType, env: env,
		done: map[string]struct{}{}}
	if s.prefix == "" {
		s.prefix = "vigil"
	}
	// Index names: lower case, no \ / * ? " < > | space , #, not starting
	// with - _ +, at most 255 bytes (with the date suffix).
	if s.prefix != strings.ToLower(s.prefix) || strings.ContainsAny(s.prefix, `\/*?"<>| ,#:`) ||
		strings.ContainsAny(s.prefix[:1], "-_+.") || len(s.prefix) > 200 {
		return nil, fmt.Errorf("index_prefix %q: must be a lower-case index name", opts.IndexPrefix)
	}
	switch s.opType {
	case "":
		s.opType = "index"
	case "index", "create":
	default:
		return nil, fmt.Errorf("op_type %q: must be index or create", opts.OpType)
	}
	pass, err := outputs.ResolveSecret("password", opts.Password, opts.PasswordFile)
	if err != nil {
		return nil, err
	}
	key, err := outputs.ResolveSecret("api_key", opts.APIKey, opts.APIKeyFile)
	if err != nil {
		return nil, err
	}
	switch {
	case key != "" && (opts.Username != "" || pass != ""):
		return nil, errors.New("api_key and username/password are both set: use one")
	case key != "":
		s.auth = "ApiKey " + key
		s.secrets = []outputs.Secret{key}
	case opts.Username != "" && pass != "":
		s.auth = outputs.Secret("Basic " + base64.StdEncoding.EncodeToString([]byte(opts.Username+":"+pass.Reveal())))
		s.secrets = []outputs.Secret{pass, s.auth}
	case opts.Username != "" || pass != "":
		return nil, errors.New("username and password (or password_file) go together")
	}
	if s.env.Now == nil {
		s.env.Now = time.Now
	}
	return s, nil
}

// MaxBatch: up to this many events per _bulk request.
func (s *sender) MaxBatch() int { return maxBatch }

// Index is the daily index of an event time.
func (s *sender) Index(t time.Time) string {
	return s.prefix + "-" + t.UTC().Format("2006.01.02")
}

func (s *sender) Send(ctx context.Context, msgs []outputs.Message) error {
	s.mu.Lock()
	var todo []outputs.Message
	for _, m := range msgs {
		if _, ok := s.done[outhttp.EventID(m)]; !ok {
			todo = append(todo, m)
		}
	}
	s.mu.Unlock()
	if len(todo) == 0 {
		s.forget(msgs)
		return nil
	}
	var body bytes.Buffer
	for _, m := range todo {
		action := map[string]map[string]string{s.opType: {"_index": s.Index(eventTime(m)), "_id": outhttp.EventID(m)}}
		a, _ := json.Marshal(action)
		doc, err := json.Marshal(Document(m))
		if err != nil {
			return outputs.Permanent(fmt.Errorf("elasticsearch: encoding event %s: %w", outhttp.EventID(m), err))
		}
		body.Write(a)
		body.WriteByte('\n')
		body.Write(doc)
		body.WriteByte('\n') // the last line too: the bulk API requires it
	}
	hdr := http.Header{"Content-Type": {"application/x-ndjson"}}
	if s.auth != "" {
		hdr.Set("Authorization", s.auth.Reveal())
	}
	resp, err := outhttp.Do(ctx, s.env.HTTP, s.env.Now, outhttp.Request{
		Method: "POST", URL: s.url + "/_bulk?filter_path=errors,items.*._id,items.*.status,items.*.error.type,items.*.error.reason",
		Header: hdr, Body: body.Bytes(), What: "elasticsearch bulk", Secrets: s.secrets,
	})
	if err != nil {
		return err
	}
	items, err := ParseBulk(resp, len(todo))
	if err != nil {
		return fmt.Errorf("elasticsearch bulk: %w", err)
	}
	var retry, permanent []string
	taken := make([]string, 0, len(todo))
	for i, it := range items {
		id := outhttp.EventID(todo[i])
		switch {
		case it.Status/100 == 2, it.Status == http.StatusConflict && s.opType == "create":
			taken = append(taken, id)
		case it.Status == http.StatusTooManyRequests || it.Status >= 500 || it.Status == 0:
			retry = append(retry, fmt.Sprintf("%s: %d %s", id, it.Status, it.Error))
		default:
			permanent = append(permanent, fmt.Sprintf("%s: %d %s", id, it.Status, it.Error))
		}
	}
	if len(retry) == 0 && len(permanent) == 0 {
		s.forget(msgs)
		s.env.Logger.Debug("elasticsearch: delivered", "documents", len(todo))
		return nil
	}
	s.remember(taken)
	if len(retry) > 0 {
		return &outputs.DeliveryError{Err: fmt.Errorf("elasticsearch bulk: %d of %d documents refused for now (%s)",
			len(retry)+len(permanent), len(todo), outhttp.Truncate(strings.Join(append(retry, permanent...), "; "), 500))}
	}
	return outputs.Permanent(fmt.Errorf("elasticsearch bulk: %d of %d documents refused (%s)",
		len(permanent), len(todo), outhttp.Truncate(strings.Join(permanent, "; "), 500)))
}

// remember records ids taken in a batch that failed, so that its retry
// sends only the others; bounded by maxDone (oldest forgotten first —
// forgetting only costs an idempotent re-send).
func (s *sender) remember(ids []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		if _, ok := s.done[id]; ok {
			continue
		}
		s.done[id] = struct{}{}
		s.doneList = append(s.doneList, id)
	}
	for len(s.doneList) > maxDone {
		delete(s.done, s.doneList[0])
		s.doneList = s.doneList[1:]
	}
}

// forget drops the ids of a batch that is now delivered.
func (s *sender) forget(msgs []outputs.Message) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.done) == 0 {
		return
	}
	for _, m := range msgs {
		delete(s.done, outhttp.EventID(m))
	}
	if len(s.done) == 0 {
		s.doneList = nil
	}
}

func eventTime(m outputs.Message) time.Time {
	if m.Event != nil {
		return m.Event.Time
	}
	return time.Time{}
}

// BulkItem is one item of a bulk answer.
type BulkItem struct {
	ID     string
	Status int
	Error  string // "type: reason"
}

// ParseBulk reads a bulk answer ({"errors": bool, "items": [{"<op>":
// {"_id", "status", "error": {"type", "reason"}}}]}) and checks it has one
// item per document sent.
func ParseBulk(b []byte, n int) ([]BulkItem, error) {
	var r struct {
		Errors *bool `json:"errors"`
		Items  []map[string]struct {
			ID     string `json:"_id"`
			Status int    `json:"status"`
			Error  *struct {
				Type   string `json:"type"`
				Reason string `json:"reason"`
			} `json:"error"`
		} `json:"items"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("unreadable answer: %s", outhttp.Excerpt(b))
	}
	if r.Errors != nil && !*r.Errors && len(r.Items) == 0 {
		// filter_path may drop items when there is nothing to report.
		items := make([]BulkItem, n)
		for i := range items {
			items[i].Status = 200
		}
		return items, nil
	}
	if len(r.Items) != n {
		return nil, fmt.Errorf("answer has %d items for %d documents", len(r.Items), n)
	}
	items := make([]BulkItem, n)
	for i, it := range r.Items {
		if len(it) != 1 {
			return nil, fmt.Errorf("item %d has %d actions", i, len(it))
		}
		for _, v := range it {
			items[i] = BulkItem{ID: v.ID, Status: v.Status}
			if v.Error != nil {
				items[i].Error = outhttp.Truncate(outhttp.Excerpt([]byte(v.Error.Type+": "+v.Error.Reason)), 200)
			}
		}
	}
	return items, nil
}

// severityNumber is event.severity: Elastic's detection rules use 21, 47,
// 73 and 99 for low, medium, high and critical.
func severityNumber(s string) int {
	switch s {
	case "critical":
		return 99
	case "high":
		return 73
	case "medium":
		return 47
	case "low":
		return 21
	default:
		return 0
	}
}

// ecsCategory maps a Vigil category to ECS's allowed event.category
// values ("" when none fits; the Vigil one is in vigil.category).
func ecsCategory(c event.Category) string {
	switch c {
	case event.CategoryAuthentication:
		return "authentication"
	case event.CategoryAuthorization:
		return "iam"
	case event.CategoryDetection:
		return "intrusion_detection"
	case event.CategoryThreatIntel:
		return "threat"
	case event.CategoryEncryption:
		return "network"
	}
	return ""
}

// Document is the ECS document for m.
func Document(m outputs.Message) map[string]any {
	doc := map[string]any{}
	ev := m.Event
	if ev == nil {
		return doc
	}
	sev := outhttp.Severity(m)
	e := map[string]any{
		"id": ev.ID, "kind": "event", "severity": severityNumber(sev), "created": ev.ReceivedAt.UTC().Format(time.RFC3339Nano),
		"module": "vigil", "dataset": "vigil." + string(ev.Category),
	}
	if c := ecsCategory(ev.Category); c != "" {
		e["category"] = []string{c}
	}
	if ev.Action != "" {
		e["action"] = ev.Action
	}
	switch ev.Outcome {
	case "success", "failure", "unknown":
		e["outcome"] = ev.Outcome
	}
	if ev.Source != "" {
		e["provider"] = ev.Source
	}
	if ev.RiskScore != nil {
		e["risk_score"] = *ev.RiskScore
	}
	if m.Detection != nil {
		e["kind"] = "alert"
	}
	doc["@timestamp"] = ev.Time.UTC().Format(time.RFC3339Nano)
	doc["event"] = e
	doc["log"] = map[string]any{"level": sev}
	if ev.Message != "" {
		doc["message"] = ev.Message
	}
	if ev.User != "" || ev.UserID != "" {
		u := map[string]any{}
		if ev.User != "" {
			u["name"] = ev.User
		}
		if ev.UserID != "" {
			u["id"] = ev.UserID
		}
		doc["user"] = u
	}
	// source.ip is mapped as ip: an unparsable value would make the
	// document refused, so only a valid one goes there.
	if net.ParseIP(ev.SrcIP) != nil {
		doc["source"] = map[string]any{"ip": ev.SrcIP}
	}
	if ev.Resource != "" {
		doc["url"] = map[string]any{"original": ev.Resource}
	}
	if ev.Tenant != "" {
		doc["organization"] = map[string]any{"id": ev.Tenant}
	}
	if len(ev.Tags) > 0 {
		doc["tags"] = ev.Tags
	}
	tactics, techniques := ev.MitreTactics, ev.MitreTechniques
	if d := m.Detection; d != nil {
		tactics, techniques = d.MitreTactics, d.MitreTechniques
		doc["rule"] = map[string]any{"id": d.RuleID, "name": d.Title}
	}
	if len(tactics)+len(techniques) > 0 {
		th := map[string]any{"framework": "MITRE ATT&CK"}
		if len(tactics) > 0 {
			th["tactic"] = map[string]any{"id": tactics}
		}
		if len(techniques) > 0 {
			th["technique"] = map[string]any{"id": techniques}
		}
		doc["threat"] = th
	}
	v := map[string]any{"type": ev.Type, "category": string(ev.Category), "severity": sev, "seq": ev.Seq}
	if ev.SrcIP != "" {
		v["src_ip"] = ev.SrcIP
	}
	if ev.Confidence != nil {
		v["confidence"] = *ev.Confidence
	}
	// data is free-form: kept as its JSON text so that two sources using
	// one key with different types never make documents refused for a
	// mapping conflict.
	if len(ev.Data) > 0 {
		v["data"] = string(ev.Data)
	}
	if d := m.Detection; d != nil {
		v["detection"] = map[string]any{"id": d.ID, "status": d.Status, "count": d.Count, "group_key": d.GroupKey,
			"confidence": d.Confidence, "assignee": d.Assignee}
	}
	if m.Test {
		v["test"] = true
		doc["tags"] = append(append([]string{}, ev.Tags...), "vigil-test")
	}
	doc["vigil"] = v
	return doc
}

func (s *sender) Close() error { return nil }
