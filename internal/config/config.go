// Package config owns `vigil serve` configuration: defaults, an optional
// YAML file, VIGIL_* environment variables and flags, in increasing order of
// precedence (SPEC 10). Every option is declared once, in options(), with
// its flag, its variable and its YAML key.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/vigil-sec/vigil/internal/event"
)

// Config is everything `vigil serve` can be told.
type Config struct {
	Listen     string `yaml:"listen"`
	DataDir    string `yaml:"data_dir"`
	NATS       string `yaml:"nats"`
	NATSListen string `yaml:"nats_listen"`
	// OTLPGRPCListen serves OTLP/gRPC logs (LogsService/Export) on its
	// own address; POST /v1/logs (OTLP/HTTP) is always on the listener.
	OTLPGRPCListen string `yaml:"otlp_grpc_listen"`
	// Replicas of the stream and KV buckets on an external NATS cluster;
	// 0 chooses (3 on a cluster of at least 3 JetStream servers, else 1).
	Replicas    int           `yaml:"replicas"`
	Rules       string        `yaml:"rules"`
	NodeID      string        `yaml:"node_id"`
	Sync        string        `yaml:"sync"` // "default" or "always"
	DedupWindow time.Duration `yaml:"dedup_window"`
	MaxAge      time.Duration `yaml:"retention_max_age"`
	MaxBytes    int64         `yaml:"retention_max_bytes"`
	QueueSize   int           `yaml:"queue_size"`
	// QueueKiB bounds each connection's queue in bytes of event JSON as
	// well as in deliveries (issue 12): a client past either is lagged.
	QueueKiB     int           `yaml:"queue_kib"`
	PingInterval time.Duration `yaml:"ping_interval"`
	// HTTPIdleTimeout closes a keep-alive connection idle between
	// requests; HTTPBodyTimeout bounds the reading of one request body;
	// HTTPBodyBudgetMiB bounds the request bodies the node reads at once
	// (by Content-Length, or the largest body for one without): unknown
	// clients cannot hold descriptors or memory without end.
	HTTPIdleTimeout   time.Duration `yaml:"http_idle_timeout"`
	HTTPBodyTimeout   time.Duration `yaml:"http_body_timeout"`
	HTTPBodyBudgetMiB int           `yaml:"http_body_budget_mib"`
	MaxSubs           int           `yaml:"max_subscriptions"`
	LogLevel          string        `yaml:"log_level"`
	Limits            event.Limits  `yaml:"-"`
	MaxEventKiB       int           `yaml:"max_event_kib"`
	MaxBatch          int           `yaml:"max_batch_events"`
	MaxBatchMiB       int           `yaml:"max_batch_mib"`
	ConfigFile        string        `yaml:"-"`

	// ReplayCacheMB and ReplayCacheEvents bound the recent-event ring
	// (issue 12 item 5; internal/store/ring.go): replays of the newest
	// events are served from memory. 0 MB disables it.
	ReplayCacheMB     int `yaml:"replay_cache_mb"`
	ReplayCacheEvents int `yaml:"replay_cache_events"`
	// ReplaySpillMB bounds the replay spill on disk (internal/store/
	// spill.go): the ring continued in <data-dir>/replay-spill for
	// replays older than it; kept across a restart (clean, or a crash up
	// to its last checkpoint) when it still agrees with the log
	// (spill_restart.go), deleted otherwise. 0
	// disables it and deletes what an earlier run left.
	ReplaySpillMB int `yaml:"replay_spill_mb"`

	// IngestMaxDeliveryLag holds publishers while the oldest acknowledged
	// event not yet offered to live subscriptions is older than this
	// (issue 12 item 1; internal/ingest/admission.go); 0 disables it.
	// IngestMaxHold bounds how long one publish is held: after it the
	// events are appended anyway, never refused.
	IngestMaxDeliveryLag time.Duration `yaml:"ingest_max_delivery_lag"`
	IngestMaxHold        time.Duration `yaml:"ingest_max_hold"`

	// DedupSnapshotInterval is how often the embedded log writes its dedup
	// index (0: only at a clean stop); a start after a crash reads the log
	// only after the newest snapshot (docs/operations.md).
	DedupSnapshotInterval time.Duration `yaml:"dedup_snapshot_interval"`
	// Access is identity and access: JWT keys, masking per role, connection
	// limits and the Origin allow-list (issue 5; internal/auth/access).
	Access Access `yaml:"access"`
	// TLS serves HTTPS (SPEC 14; internal/tlsconfig). AllowPlaintext lets
	// plain HTTP (and the embedded NATS listener) listen off loopback.
	TLS            TLS  `yaml:"tls"`
	AllowPlaintext bool `yaml:"allow_plaintext"`
	// RulesPoll is how often --rules is checked for changed files (issue
	// 13, hot reload; 0: detect.DefaultRulesPoll, negative: never).
	RulesPoll time.Duration `yaml:"rules_poll"`
	// GraphQL bounds each GraphQL operation (issue 8): complexity, fields,
	// depth, body size and time (internal/transport/graphql.Limits).
	GraphQL GraphQLLimits `yaml:"graphql"`
	// Inputs configures the log inputs (issue 9).
	Inputs Inputs `yaml:"inputs"`
	// Syslog is the syslog listener (issue 9; internal/inputs/syslog).
	Syslog Syslog `yaml:"syslog"`
	// Outputs are the outputs: entries (issue 10), kept as YAML: the app
	// decodes them with the output types it knows
	// (outputs.ParseDefinitions), refusing a broken one at start.
	Outputs []yaml.Node `yaml:"outputs"`
	// PublicURL is where people reach this node's console (links in
	// output messages); "" when unset.
	PublicURL string `yaml:"public_url"`

	// Pipelines are pySigma processing pipeline files applied to Sigma
	// rules (issue 13; docs/detections.md, "Processing pipelines").
	Pipelines []string `yaml:"pipeline"`
	// SigmaPlaceholders is a YAML file of values for Sigma's expand
	// modifier (issue 13).
	SigmaPlaceholders string `yaml:"sigma_placeholders"`
}

// Inputs configures the log inputs shared by every listener (issue 9).
type Inputs struct {
	// Mappings is a YAML file of user-defined mappings tried before the
	// built-in parsers (internal/inputs/mapping, docs/inputs.md).
	Mappings string `yaml:"mappings"`
}

// Syslog configures the syslog listener (UDP and TCP on one address; TLS
// on TCP only when a certificate is set).
type Syslog struct {
	Listen string `yaml:"listen"`
	Tenant string `yaml:"tenant"`
	// Allow lists the CIDRs that may send (empty: every peer).
	Allow   []string `yaml:"allow"`
	TLSCert string   `yaml:"tls_cert"`
	TLSKey  string   `yaml:"tls_key"`
	// TLSClientCA makes every syslog TLS and RELP-over-TLS client present
	// a certificate signed by one of these CAs.
	TLSClientCA    string        `yaml:"tls_client_ca"`
	MaxMessageKiB  int           `yaml:"max_message_kib"`
	MaxConnections int           `yaml:"max_connections"`
	IdleTimeout    time.Duration `yaml:"idle_timeout"`
	// RELPListen serves RELP (rsyslog's omrelp) on this TCP address;
	// messages are answered after they are in the log.
	RELPListen string `yaml:"relp_listen"`
	// Timezone is the IANA zone RFC 3164 timestamps are read in (they
	// carry none): the senders' zone, "UTC" by default.
	Timezone string `yaml:"timezone"`
}

// Location is the zone of Timezone ("" is UTC).
func (s Syslog) Location() (*time.Location, error) {
	if s.Timezone == "" {
		return time.UTC, nil
	}
	loc, err := time.LoadLocation(s.Timezone)
	if err != nil {
		return nil, fmt.Errorf("config: syslog timezone %q: %w", s.Timezone, err)
	}
	return loc, nil
}

// TLS is the HTTPS listener's certificate, key and optional client CA.
type TLS struct {
	Cert     string `yaml:"cert"`
	Key      string `yaml:"key"`
	ClientCA string `yaml:"client_ca"`
	// ReloadInterval is how often the files are checked for changes (0: only
	// on SIGHUP).
	ReloadInterval time.Duration `yaml:"reload_interval"`
	// Reload asks for a reload in-process, as SIGHUP does; each request is
	// answered with its result. For tests and programs embedding a node.
	Reload <-chan chan error `yaml:"-"`
}

// Enabled reports whether HTTPS is configured.
func (t TLS) Enabled() bool { return t.Cert != "" || t.Key != "" || t.ClientCA != "" }

// Defaults returns the SPEC defaults.
func Defaults() Config {
	lim := event.DefaultLimits()
	return Config{
		Listen: "127.0.0.1:8080", DataDir: "./vigil-data", Sync: "default",
		DedupWindow: 2 * time.Minute, DedupSnapshotInterval: 10 * time.Second, QueueSize: 4096, QueueKiB: 4096, PingInterval: 30 * time.Second,
		HTTPIdleTimeout: 2 * time.Minute, HTTPBodyTimeout: time.Minute, HTTPBodyBudgetMiB: 256,
		MaxSubs: 100, LogLevel: "info", Limits: lim, TLS: TLS{ReloadInterval: 5 * time.Second},
		MaxEventKiB: lim.MaxEventBytes >> 10, MaxBatch: lim.MaxBatchCount, MaxBatchMiB: lim.MaxBatchBytes >> 20,
		ReplayCacheMB: 64, ReplayCacheEvents: 1 << 20, ReplaySpillMB: 1024,
		IngestMaxDeliveryLag: 5 * time.Millisecond, IngestMaxHold: time.Second,
		GraphQL: DefaultGraphQLLimits(),
		Syslog:  Syslog{Tenant: "default", Timezone: "UTC", MaxMessageKiB: 64, MaxConnections: 1000, IdleTimeout: 5 * time.Minute},
	}
}

type option struct {
	flag, env, usage string
	set              func(c *Config, v string) error
}

func str(dst func(*Config) *string) func(*Config, string) error {
	return func(c *Config, v string) error { *dst(c) = v; return nil }
}

func dur(dst func(*Config) *time.Duration) func(*Config, string) error {
	return func(c *Config, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil {
			return err
		}
		*dst(c) = d
		return nil
	}
}

// strList parses a comma-separated list (issue 5 options).
func strList(dst func(*Config) *[]string) func(*Config, string) error {
	return func(c *Config, v string) error {
		var out []string
		for _, part := range strings.Split(v, ",") {
			if part = strings.TrimSpace(part); part != "" {
				out = append(out, part)
			}
		}
		*dst(c) = out
		return nil
	}
}

// boolean options are flags without a value (--allow-plaintext); the
// environment and --flag=false take strconv.ParseBool's words.
func boolean(dst func(*Config) *bool) func(*Config, string) error {
	return func(c *Config, v string) error {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return err
		}
		*dst(c) = b
		return nil
	}
}

func integer(dst func(*Config) *int) func(*Config, string) error {
	return func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil {
			return err
		}
		*dst(c) = n
		return nil
	}
}

func options() []option {
	return []option{
		{"listen", "VIGIL_LISTEN", "address to listen on (host:port; port 0 picks one)", str(func(c *Config) *string { return &c.Listen })},
		{"data-dir", "VIGIL_DATA_DIR", "data directory (embedded JetStream, admin token)", str(func(c *Config) *string { return &c.DataDir })},
		{"nats", "VIGIL_NATS", "external NATS URL (empty: embedded server)", str(func(c *Config) *string { return &c.NATS })},
		{"replicas", "VIGIL_REPLICAS", "copies of the stream and KV buckets on an external NATS cluster, 1-5 (default: 3 on a cluster of 3+ JetStream servers, else 1); never lowered", integer(func(c *Config) *int { return &c.Replicas })},
		{"nats-listen", "VIGIL_NATS_LISTEN", "open the embedded NATS server to producers on host:port (token in <data-dir>/nats.token)", str(func(c *Config) *string { return &c.NATSListen })},
		{"rules", "VIGIL_RULES", "extra detection rule directory", str(func(c *Config) *string { return &c.Rules })},
		{"rules-poll", "VIGIL_RULES_POLL", "how often the rules directory is checked for changed files and reloaded (0: 2s; negative: only on SIGHUP or POST /api/v1/rules/reload)", dur(func(c *Config) *time.Duration { return &c.RulesPoll })},
		{"pipeline", "VIGIL_PIPELINE", "pySigma processing pipeline files applied to Sigma rules (comma-separated; the flag may be repeated)", strList(func(c *Config) *[]string { return &c.Pipelines })},
		{"sigma-placeholders", "VIGIL_SIGMA_PLACEHOLDERS", "YAML file of values for the Sigma expand modifier's %placeholders%", str(func(c *Config) *string { return &c.SigmaPlaceholders })},
		{"node-id", "VIGIL_NODE_ID", "node name (integrity chain id; distinct per node in a cluster)", str(func(c *Config) *string { return &c.NodeID })},
		{"sync", "VIGIL_SYNC", `"always" fsyncs every write (survives power loss); "default" fsyncs every 2m`, str(func(c *Config) *string { return &c.Sync })},
		{"dedup-window", "VIGIL_DEDUP_WINDOW", "how long producer ids are remembered for idempotent retries", dur(func(c *Config) *time.Duration { return &c.DedupWindow })},
		{"dedup-snapshot-interval", "VIGIL_DEDUP_SNAPSHOT_INTERVAL", "how often the embedded log writes its dedup index to <data-dir>/dedup-index.snapshot, so a start after a crash reads only the events after it (0: only at a clean stop)", dur(func(c *Config) *time.Duration { return &c.DedupSnapshotInterval })},
		{"retention-max-age", "VIGIL_RETENTION_MAX_AGE", "drop events older than this (0: keep)", dur(func(c *Config) *time.Duration { return &c.MaxAge })},
		{"retention-max-bytes", "VIGIL_RETENTION_MAX_BYTES", "cap the log size in bytes (0: no cap)", func(c *Config, v string) error {
			n, err := strconv.ParseInt(v, 10, 64)
			c.MaxBytes = n
			return err
		}},
		{"replay-cache-mb", "VIGIL_REPLAY_CACHE_MB", "memory (MiB, estimated) for the newest events kept decoded so replays of them skip JetStream (0: off)", integer(func(c *Config) *int { return &c.ReplayCacheMB })},
		{"replay-cache-events", "VIGIL_REPLAY_CACHE_EVENTS", "most events kept in the replay cache", integer(func(c *Config) *int { return &c.ReplayCacheEvents })},
		{"replay-spill-mb", "VIGIL_REPLAY_SPILL_MB", "disk (MiB) for the events older than the replay cache, kept as stored in <data-dir>/replay-spill so replays of them skip JetStream; kept across a restart (clean, or a crash up to its last 10 s checkpoint) when it still agrees with the log (0: off, and what an earlier run left is deleted)", integer(func(c *Config) *int { return &c.ReplaySpillMB })},
		{"ingest-max-delivery-lag", "VIGIL_INGEST_MAX_DELIVERY_LAG", "hold publishers while live delivery is this far behind the acknowledged events (0: never hold)", dur(func(c *Config) *time.Duration { return &c.IngestMaxDeliveryLag })},
		{"ingest-max-hold", "VIGIL_INGEST_MAX_HOLD", "longest a publish is held for delivery lag; then it is appended anyway", dur(func(c *Config) *time.Duration { return &c.IngestMaxHold })},
		{"queue-size", "VIGIL_QUEUE_SIZE", "per-connection queue (deliveries) before a client is lagged", integer(func(c *Config) *int { return &c.QueueSize })},
		{"queue-kib", "VIGIL_QUEUE_KIB", "per-connection queue (KiB of event JSON) before a client is lagged", integer(func(c *Config) *int { return &c.QueueKiB })},
		{"ping-interval", "VIGIL_PING_INTERVAL", "WebSocket ping interval", dur(func(c *Config) *time.Duration { return &c.PingInterval })},
		{"http-idle-timeout", "VIGIL_HTTP_IDLE_TIMEOUT", "close a keep-alive HTTP connection idle this long between requests", dur(func(c *Config) *time.Duration { return &c.HTTPIdleTimeout })},
		{"http-body-timeout", "VIGIL_HTTP_BODY_TIMEOUT", "longest the reading of one request body may take", dur(func(c *Config) *time.Duration { return &c.HTTPBodyTimeout })},
		{"http-body-budget-mib", "VIGIL_HTTP_BODY_BUDGET_MIB", "request bodies read at once, in MiB (by Content-Length; a body without one counts as the largest allowed); past it a request waits up to 5 s, then 503", integer(func(c *Config) *int { return &c.HTTPBodyBudgetMiB })},
		{"max-subscriptions", "VIGIL_MAX_SUBSCRIPTIONS", "subscriptions per connection", integer(func(c *Config) *int { return &c.MaxSubs })},
		{"max-event-kib", "VIGIL_MAX_EVENT_KIB", "largest event (KiB)", integer(func(c *Config) *int { return &c.MaxEventKiB })},
		{"max-batch-events", "VIGIL_MAX_BATCH_EVENTS", "most events per request", integer(func(c *Config) *int { return &c.MaxBatch })},
		{"max-batch-mib", "VIGIL_MAX_BATCH_MIB", "largest request body (MiB)", integer(func(c *Config) *int { return &c.MaxBatchMiB })},
		{"log-level", "VIGIL_LOG_LEVEL", "debug, info, warn or error", str(func(c *Config) *string { return &c.LogLevel })},
		// Identity and access (issue 5). Secrets are never flags: the HMAC
		// secret comes from a file, the environment or the YAML file.
		{"jwt-hmac-secret-file", "VIGIL_JWT_HMAC_SECRET_FILE", "file holding the HS256 secret for JWTs", str(func(c *Config) *string { return &c.Access.JWT.HMACSecretFile })},
		{"jwt-public-keys", "VIGIL_JWT_PUBLIC_KEYS", "comma-separated PEM files with RS256/ES256 public keys for JWTs", strList(func(c *Config) *[]string { return &c.Access.JWT.PublicKeyFiles })},
		{"jwt-jwks-url", "VIGIL_JWT_JWKS_URL", "JWKS URL for RS256/ES256 JWTs (cached, refreshed)", str(func(c *Config) *string { return &c.Access.JWT.JWKSURL })},
		// TLS (SPEC 14, issue 8).
		{"tls-cert", "VIGIL_TLS_CERT", "serve HTTPS with this PEM certificate (chain); reloaded on SIGHUP and on change", str(func(c *Config) *string { return &c.TLS.Cert })},
		{"tls-key", "VIGIL_TLS_KEY", "PEM private key of --tls-cert", str(func(c *Config) *string { return &c.TLS.Key })},
		{"tls-client-ca", "VIGIL_TLS_CLIENT_CA", "require client certificates signed by these PEM CAs (in addition to tokens)", str(func(c *Config) *string { return &c.TLS.ClientCA })},
		{"tls-reload-interval", "VIGIL_TLS_RELOAD_INTERVAL", "how often the TLS files are checked for changes (0: only on SIGHUP)", dur(func(c *Config) *time.Duration { return &c.TLS.ReloadInterval })},
		{"allow-plaintext", "VIGIL_ALLOW_PLAINTEXT", "allow plain HTTP (and --nats-listen) on a non-loopback address", boolean(func(c *Config) *bool { return &c.AllowPlaintext })},
		{"allowed-origins", "VIGIL_ALLOWED_ORIGINS", "comma-separated browser origins allowed to stream (default: same origin)", strList(func(c *Config) *[]string { return &c.Access.Limits.AllowedOrigins })},
		// GraphQL limits (issue 8); a negative value disables one.
		{"graphql-max-complexity", "VIGIL_GRAPHQL_MAX_COMPLEXITY", "largest GraphQL query complexity (a list field costs its limit argument times its selection)", integer(func(c *Config) *int { return &c.GraphQL.MaxComplexity })},
		{"graphql-max-fields", "VIGIL_GRAPHQL_MAX_FIELDS", "most fields one GraphQL request selects, aliases and fragment expansions included", integer(func(c *Config) *int { return &c.GraphQL.MaxFields })},
		{"graphql-max-depth", "VIGIL_GRAPHQL_MAX_DEPTH", "deepest GraphQL selection nesting", integer(func(c *Config) *int { return &c.GraphQL.MaxDepth })},
		{"graphql-max-body-kib", "VIGIL_GRAPHQL_MAX_BODY_KIB", "largest GraphQL request body or WebSocket message (KiB)", integer(func(c *Config) *int { return &c.GraphQL.MaxBodyKiB })},
		{"graphql-timeout", "VIGIL_GRAPHQL_TIMEOUT", "time limit of a GraphQL query or mutation", dur(func(c *Config) *time.Duration { return &c.GraphQL.Timeout })},
		// Inputs (issue 9).
		{"input-mappings", "VIGIL_INPUT_MAPPINGS", "YAML file of user-defined mappings from log lines to events, tried before the built-in parsers (docs/inputs.md)", str(func(c *Config) *string { return &c.Inputs.Mappings })},
		// Syslog input (issue 9).
		{"otlp-grpc-listen", "VIGIL_OTLP_GRPC_LISTEN", "receive OTLP logs over gRPC at host:port, e.g. 127.0.0.1:4317 (empty: off; OTLP/HTTP is POST /v1/logs)", str(func(c *Config) *string { return &c.OTLPGRPCListen })},
		{"syslog-listen", "VIGIL_SYSLOG_LISTEN", "receive syslog (RFC 5424/3164) on UDP and TCP at host:port (empty: off)", str(func(c *Config) *string { return &c.Syslog.Listen })},
		{"syslog-tenant", "VIGIL_SYSLOG_TENANT", "tenant of the events received by syslog", str(func(c *Config) *string { return &c.Syslog.Tenant })},
		{"syslog-allow", "VIGIL_SYSLOG_ALLOW", "comma-separated CIDRs allowed to send syslog (default: any peer)", strList(func(c *Config) *[]string { return &c.Syslog.Allow })},
		{"syslog-tls-cert", "VIGIL_SYSLOG_TLS_CERT", "serve syslog over TLS (RFC 5425) on TCP, and RELP over TLS, with this PEM certificate; no UDP then", str(func(c *Config) *string { return &c.Syslog.TLSCert })},
		{"syslog-tls-key", "VIGIL_SYSLOG_TLS_KEY", "PEM private key of --syslog-tls-cert", str(func(c *Config) *string { return &c.Syslog.TLSKey })},
		{"syslog-tls-client-ca", "VIGIL_SYSLOG_TLS_CLIENT_CA", "require syslog TLS and RELP-over-TLS clients to present a certificate signed by these PEM CAs", str(func(c *Config) *string { return &c.Syslog.TLSClientCA })},
		{"syslog-max-message-kib", "VIGIL_SYSLOG_MAX_MESSAGE_KIB", "largest syslog message (KiB); a longer one is dropped and its TCP connection closed", integer(func(c *Config) *int { return &c.Syslog.MaxMessageKiB })},
		{"syslog-max-connections", "VIGIL_SYSLOG_MAX_CONNECTIONS", "concurrent syslog TCP connections", integer(func(c *Config) *int { return &c.Syslog.MaxConnections })},
		{"syslog-idle-timeout", "VIGIL_SYSLOG_IDLE_TIMEOUT", "close a syslog TCP connection silent this long", dur(func(c *Config) *time.Duration { return &c.Syslog.IdleTimeout })},
		{"syslog-relp-listen", "VIGIL_SYSLOG_RELP_LISTEN", "receive RELP (rsyslog omrelp) at host:port, each message acknowledged once in the log (empty: off)", str(func(c *Config) *string { return &c.Syslog.RELPListen })},
		{"syslog-timezone", "VIGIL_SYSLOG_TIMEZONE", "IANA time zone of RFC 3164 timestamps, which carry none (e.g. Europe/Berlin)", str(func(c *Config) *string { return &c.Syslog.Timezone })},
		// Outputs (issue 10).
		{"public-url", "VIGIL_PUBLIC_URL", "the console's external URL (https://vigil.example.com), for links in output messages", str(func(c *Config) *string { return &c.PublicURL })},
	}
}

// Load builds the configuration from args (flags after "serve"), getenv
// and the YAML file named by --config or VIGIL_CONFIG.
func Load(args []string, getenv func(string) string, stderr io.Writer) (Config, error) {
	cfg := Defaults()
	fs := flag.NewFlagSet("vigil serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	opts := options()
	given := map[string]string{}
	def := Defaults()
	shown := map[string]string{
		"listen": def.Listen, "data-dir": def.DataDir, "sync": def.Sync, "dedup-window": def.DedupWindow.String(), "dedup-snapshot-interval": def.DedupSnapshotInterval.String(),
		"replay-cache-mb": fmt.Sprint(def.ReplayCacheMB), "replay-cache-events": fmt.Sprint(def.ReplayCacheEvents), "replay-spill-mb": fmt.Sprint(def.ReplaySpillMB),
		"ingest-max-delivery-lag": def.IngestMaxDeliveryLag.String(), "ingest-max-hold": def.IngestMaxHold.String(),
		"queue-size": fmt.Sprint(def.QueueSize), "queue-kib": fmt.Sprint(def.QueueKiB), "ping-interval": def.PingInterval.String(),
		"http-idle-timeout": def.HTTPIdleTimeout.String(), "http-body-timeout": def.HTTPBodyTimeout.String(), "http-body-budget-mib": fmt.Sprint(def.HTTPBodyBudgetMiB),
		"max-subscriptions": fmt.Sprint(def.MaxSubs), "max-event-kib": fmt.Sprint(def.MaxEventKiB),
		"max-batch-events": fmt.Sprint(def.MaxBatch), "max-batch-mib": fmt.Sprint(def.MaxBatchMiB), "log-level": def.LogLevel,
		"tls-reload-interval":    def.TLS.ReloadInterval.String(),
		"graphql-max-complexity": fmt.Sprint(def.GraphQL.MaxComplexity), "graphql-max-fields": fmt.Sprint(def.GraphQL.MaxFields),
		"graphql-max-depth": fmt.Sprint(def.GraphQL.MaxDepth), "graphql-max-body-kib": fmt.Sprint(def.GraphQL.MaxBodyKiB),
		"graphql-timeout": def.GraphQL.Timeout.String(),
		"syslog-tenant":   def.Syslog.Tenant, "syslog-max-message-kib": fmt.Sprint(def.Syslog.MaxMessageKiB),
		"syslog-max-connections": fmt.Sprint(def.Syslog.MaxConnections), "syslog-idle-timeout": def.Syslog.IdleTimeout.String(),
		"syslog-timezone": def.Syslog.Timezone,
	}
	boolFlags := map[string]bool{"allow-plaintext": true}
	repeatable := map[string]bool{"pipeline": true}
	for _, o := range opts {
		usage := o.usage + " (env " + o.env
		if d, ok := shown[o.flag]; ok {
			usage += ", default " + d
		}
		record := func(v string) error { given[o.flag] = v; return nil }
		if repeatable[o.flag] {
			// A repeated list flag adds to the list (--pipeline a --pipeline b).
			record = func(v string) error {
				if prev, ok := given[o.flag]; ok {
					v = prev + "," + v
				}
				given[o.flag] = v
				return nil
			}
		}
		if boolFlags[o.flag] {
			fs.BoolFunc(o.flag, usage+")", record)
			continue
		}
		fs.Func(o.flag, usage+")", record)
	}
	configPath := fs.String("config", "", "YAML config file (env VIGIL_CONFIG)")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("config: unexpected argument %q", fs.Arg(0))
	}
	path := *configPath
	if path == "" {
		path = getenv("VIGIL_CONFIG")
	}
	if path != "" {
		if err := loadFile(path, &cfg); err != nil {
			return cfg, err
		}
		cfg.ConfigFile = path
	}
	for _, o := range opts {
		if v := getenv(o.env); v != "" {
			if err := o.set(&cfg, v); err != nil {
				return cfg, fmt.Errorf("config: %s=%q: %w", o.env, v, err)
			}
		}
	}
	for _, o := range opts {
		if v, ok := given[o.flag]; ok {
			if err := o.set(&cfg, v); err != nil {
				return cfg, fmt.Errorf("config: --%s=%q: %w", o.flag, v, err)
			}
		}
	}
	return cfg, cfg.finish()
}

func loadFile(path string, cfg *Config) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("config: %s: %w", path, err)
	}
	return nil
}

func (c *Config) finish() error {
	switch c.Sync {
	case "default", "always":
	default:
		return fmt.Errorf(`config: sync: %q is not "default" or "always"`, c.Sync)
	}
	if c.QueueKiB <= 0 {
		return errors.New("config: queue-kib must be positive")
	}
	if c.MaxEventKiB <= 0 || c.MaxBatch <= 0 || c.MaxBatchMiB <= 0 {
		return errors.New("config: size limits must be positive")
	}
	c.Limits.MaxEventBytes = c.MaxEventKiB << 10
	c.Limits.MaxBatchCount = c.MaxBatch
	c.Limits.MaxBatchBytes = c.MaxBatchMiB << 20
	if c.Replicas < 0 || c.Replicas > 5 {
		return fmt.Errorf("config: replicas: %d is not between 1 and 5 (0 or unset: automatic)", c.Replicas)
	}
	if c.Replicas > 1 && c.NATS == "" {
		return fmt.Errorf("config: replicas: %d needs an external NATS cluster (--nats); the embedded server keeps one copy", c.Replicas)
	}
	if c.DataDir == "" {
		return errors.New("config: data-dir must not be empty")
	}
	if c.TLS.Enabled() && (c.TLS.Cert == "" || c.TLS.Key == "") {
		return errors.New("config: --tls-cert and --tls-key must be given together (and --tls-client-ca needs both)")
	}
	if c.ReplayCacheMB < 0 || c.ReplayCacheMB > 1<<20 {
		return fmt.Errorf("config: replay-cache-mb: %d is not between 0 (off) and 1048576", c.ReplayCacheMB)
	}
	if c.IngestMaxDeliveryLag < 0 || c.IngestMaxHold < 0 {
		return fmt.Errorf("config: ingest-max-delivery-lag (%s) and ingest-max-hold (%s) must not be negative", c.IngestMaxDeliveryLag, c.IngestMaxHold)
	}
	if c.HTTPIdleTimeout <= 0 || c.HTTPBodyTimeout <= 0 {
		return fmt.Errorf("config: http-idle-timeout (%s) and http-body-timeout (%s) must be positive: without them a client holds a connection for ever", c.HTTPIdleTimeout, c.HTTPBodyTimeout)
	}
	if c.HTTPBodyBudgetMiB < c.MaxBatchMiB {
		return fmt.Errorf("config: http-body-budget-mib (%d) is below max-batch-mib (%d): the largest batch could never be read", c.HTTPBodyBudgetMiB, c.MaxBatchMiB)
	}
	if c.ReplaySpillMB < 0 || c.ReplaySpillMB > 1<<24 {
		return fmt.Errorf("config: replay-spill-mb: %d is not between 0 (off) and 16777216", c.ReplaySpillMB)
	}
	if c.ReplayCacheEvents <= 0 {
		return fmt.Errorf("config: replay-cache-events: %d must be positive", c.ReplayCacheEvents)
	}
	if c.DedupSnapshotInterval < 0 {
		return errors.New("config: dedup-snapshot-interval must not be negative")
	}
	if c.TLS.ReloadInterval < 0 {
		return errors.New("config: tls-reload-interval must not be negative")
	}
	if c.PublicURL != "" {
		u, err := url.Parse(c.PublicURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("config: public-url %q: an absolute http:// or https:// URL", c.PublicURL)
		}
	}
	return c.Syslog.check()
}

// AllowPrefixes parses the syslog allow-list.
func (s Syslog) AllowPrefixes() ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, a := range s.Allow {
		p, err := netip.ParsePrefix(a)
		if err != nil {
			// A bare address is a /32 (/128).
			addr, aerr := netip.ParseAddr(a)
			if aerr != nil {
				return nil, fmt.Errorf("config: syslog allow: %q is not a CIDR (e.g. 10.0.0.0/8) nor an address", a)
			}
			p = netip.PrefixFrom(addr, addr.BitLen())
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

func (s Syslog) check() error {
	if _, err := s.AllowPrefixes(); err != nil {
		return err
	}
	if s.Tenant != "" && !event.ValidTenant(s.Tenant) {
		return fmt.Errorf("config: syslog tenant %q: letters, digits, '-' or '_'", s.Tenant)
	}
	if _, err := s.Location(); err != nil {
		return err
	}
	if (s.TLSCert == "") != (s.TLSKey == "") {
		return errors.New("config: --syslog-tls-cert and --syslog-tls-key must be given together")
	}
	if s.TLSClientCA != "" && s.TLSCert == "" {
		return errors.New("config: --syslog-tls-client-ca needs --syslog-tls-cert and --syslog-tls-key")
	}
	if s.MaxMessageKiB <= 0 || s.MaxConnections <= 0 || s.IdleTimeout <= 0 {
		return errors.New("config: syslog-max-message-kib, syslog-max-connections and syslog-idle-timeout must be positive")
	}
	return nil
}
