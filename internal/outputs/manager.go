package outputs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/vigil-sec/vigil/internal/event"
)

// DeadLetterType is the type of the event recording a message an output
// gave up on.
const DeadLetterType = "system.output_failed"

// Defaults of the delivery engine (Options overrides them for tests).
const (
	// DefaultAckWait is the consumer's ack wait: a message delivered to a
	// node that died is delivered again this long after. While a message
	// is in the core's hands it is kept in progress every AckWait/4, so a
	// long retry never makes JetStream deliver it twice.
	DefaultAckWait    = 5 * time.Second
	DefaultMinBackoff = time.Second
	DefaultMaxBackoff = 5 * time.Minute
	// maxInFlight is the consumer's MaxAckPending: how many messages an
	// output holds at once (also the largest batch or group).
	maxInFlight = 256
	// MaxDigest bounds the messages of one digest (digest_interval): a
	// digest output's MaxAckPending is raised to it, and a window that
	// holds that many is sent early rather than stall the consumer.
	MaxDigest = 1000
	// maxGroup bounds a group_wait group.
	maxGroup = 100
	// maxRetryAfter caps a receiver's Retry-After hint.
	maxRetryAfter = time.Hour
	// repeatCap bounds the repeat_interval memory per output; past it,
	// entries older than the interval are dropped first, then the rest.
	repeatCap = 100_000
)

// Options builds a Manager.
type Options struct {
	JetStream jetstream.JetStream
	// Stream is the events stream (store.StreamName); SubjectPrefix its
	// subjects' prefix (store.SubjectPrefix), for the consumers' filters.
	Stream        string
	SubjectPrefix string
	Definitions   []Definition
	// DeadLetter appends a system.output_failed event through the normal
	// ingest path (tenant = the failed event's). Required.
	DeadLetter func(ctx context.Context, e *event.Event) error
	PublicURL  string
	Logger     *slog.Logger
	// Registerer receives the output metrics (nil: not registered).
	Registerer prometheus.Registerer
	AckWait    time.Duration
	MinBackoff time.Duration
	MaxBackoff time.Duration
	// MaxDigest overrides the MaxDigest bound (tests).
	MaxDigest int
	// Replicas of the repeat_interval bucket (RepeatBucket): the stream's.
	// 0 means 1.
	Replicas int
	// RepeatBucketBytes overrides DefaultRepeatBucketBytes (tests).
	RepeatBucketBytes int64
	Now               func() time.Time
}

// Manager runs every configured output: one goroutine per output reading
// its own durable consumer, so one output's retries never delay another
// or the hub (which reads the log through its own consumer).
type Manager struct {
	opts    Options
	outputs []*output
	byName  map[string]*output
	metrics *managerMetrics
	started atomic.Bool
	// repeats is the repeat_interval memory every node shares (nil when
	// no output has a repeat_interval).
	repeats *repeatStore
}

// ConsumerName is the durable consumer of output name.
func ConsumerName(name string) string { return "vigil-output-" + name }

// NewManager builds every output's sender (a definition its type refuses
// is reported with its index and name) and creates or updates its durable
// consumer: a new output starts at the end of the log, a known one resumes
// from its ack floor.
func NewManager(ctx context.Context, opts Options) (*Manager, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.AckWait <= 0 {
		opts.AckWait = DefaultAckWait
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = DefaultMinBackoff
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = DefaultMaxBackoff
	}
	if opts.MaxDigest <= 0 {
		opts.MaxDigest = MaxDigest
	}
	if opts.DeadLetter == nil {
		return nil, errors.New("outputs: no dead-letter appender")
	}
	m := &Manager{opts: opts, byName: map[string]*output{}}
	var err error
	if m.metrics, err = newManagerMetrics(opts.Registerer, m); err != nil {
		return nil, err
	}
	if m.repeats, err = openRepeats(ctx, opts.JetStream, opts.Definitions, opts.Replicas, opts.RepeatBucketBytes); err != nil {
		return nil, fmt.Errorf("outputs: %w", err)
	}
	for _, d := range opts.Definitions {
		o, err := m.newOutput(ctx, d)
		if err != nil {
			m.closeSenders()
			return nil, &DefinitionError{Index: d.Index, Name: d.Name, Err: err}
		}
		m.outputs = append(m.outputs, o)
		m.byName[d.Name] = o
		m.metrics.deliveries.WithLabelValues(d.Name, ResultDelivered) // exported at 0
	}
	return m, nil
}

func (m *Manager) newOutput(ctx context.Context, d Definition) (*output, error) {
	env := Env{
		// Its own connection pool: closing one output's idle
		// connections (Close) touches no other's.
		HTTP:      &http.Client{Timeout: d.Timeout, Transport: outputTransport(d.Concurrency)},
		Logger:    m.opts.Logger.With("output", d.Name, "type", d.Type.Name),
		PublicURL: m.opts.PublicURL,
		Now:       m.opts.Now,

		DigestInterval: d.DigestInterval,
	}
	sender, err := d.Type.New(d.Options, env)
	if err != nil {
		return nil, err
	}
	o := &output{m: m, def: d, sender: sender, log: env.Logger, repeat: map[string]sent{}, state: "starting", inFlight: maxInFlight}
	if d.Concurrency > 1 {
		o.slots = make(chan struct{}, d.Concurrency)
	}
	if d.DigestInterval > 0 {
		o.inFlight = m.opts.MaxDigest
	}
	if !d.RateLimit.IsZero() {
		o.limiter = rate.NewLimiter(rate.Every(d.RateLimit.Per/time.Duration(d.RateLimit.N)), d.RateLimit.N)
	}
	if b, ok := sender.(Batcher); ok && b.MaxBatch() > 1 {
		o.maxBatch = min(b.MaxBatch(), maxInFlight)
	}
	cfg := jetstream.ConsumerConfig{
		Durable:        ConsumerName(d.Name),
		Description:    "Vigil output " + d.Name + " (" + d.Type.Name + ")",
		DeliverPolicy:  jetstream.DeliverNewPolicy,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        m.opts.AckWait,
		MaxAckPending:  o.inFlight,
		MaxDeliver:     -1, // the core decides when to give up (max_age)
		FilterSubjects: subjectFilters(m.opts.SubjectPrefix, d),
	}
	// A known output keeps where its consumer starts: `vigil migrate`
	// creates it again from its ack floor (by start sequence), and
	// JetStream refuses to change a consumer's deliver policy.
	if c, err := m.opts.JetStream.Consumer(ctx, m.opts.Stream, cfg.Durable); err == nil {
		old := c.CachedInfo().Config
		cfg.DeliverPolicy, cfg.OptStartSeq, cfg.OptStartTime = old.DeliverPolicy, old.OptStartSeq, old.OptStartTime
		if d.DigestInterval > 0 {
			o.restoreLastDigest(old.Metadata[lastDigestKey], &cfg)
		}
	}
	if o.cons, err = m.opts.JetStream.CreateOrUpdateConsumer(ctx, m.opts.Stream, cfg); err != nil {
		_ = sender.Close()
		return nil, fmt.Errorf("durable consumer %s: %w", cfg.Durable, err)
	}
	o.consCfg = cfg
	return o, nil
}

// lastDigestKey is the consumer metadata key holding when a digest output
// last had a digest accepted (RFC 3339). Kept with the consumer, it
// survives a restart and moves with the consumer (vigil migrate): a node
// restarting, or crash-looping, does not mail a digest at every start.
const lastDigestKey = "vigil_last_digest"

// restoreLastDigest takes the last digest's time from the consumer's
// metadata (v) and keeps it in cfg. A time in the future (the clock went
// back, or the value was edited) counts as now: the next digest waits one
// interval at most.
func (o *output) restoreLastDigest(v string, cfg *jetstream.ConsumerConfig) {
	t, err := time.Parse(time.RFC3339Nano, v)
	if v == "" || err != nil {
		return
	}
	o.lastDigest = t
	if now := time.Now(); t.After(now) { // wall clock, as the timers
		o.lastDigest = now
	}
	cfg.Metadata = map[string]string{lastDigestKey: o.lastDigest.UTC().Format(time.RFC3339Nano)}
}

// saveLastDigest records o.lastDigest in the consumer's metadata. A
// failure costs only an early digest after a restart: logged, not fatal.
func (o *output) saveLastDigest(ctx context.Context) {
	cfg := o.consCfg
	cfg.Metadata = map[string]string{lastDigestKey: o.lastDigest.UTC().Format(time.RFC3339Nano)}
	if _, err := o.m.opts.JetStream.CreateOrUpdateConsumer(ctx, o.m.opts.Stream, cfg); err != nil {
		o.log.Warn("output: could not record the digest's time (the first digest after a restart may come early)", "err", err)
		return
	}
	o.consCfg = cfg
}

// outputTransport is an output's own connection pool, keeping as many
// idle connections per host as it has requests in flight (net/http keeps
// 2: with more in flight, every burst would open new connections).
func outputTransport(concurrency int) *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = max(http.DefaultMaxIdleConnsPerHost, concurrency)
	return t
}

// subjectFilters narrows an output's consumer to its tenants and
// categories when the filter names few enough of them, so JetStream does
// not even send it the rest (the matcher still checks every event).
func subjectFilters(prefix string, d Definition) []string {
	if prefix == "" {
		return nil
	}
	tenants := d.Tenants
	if len(tenants) == 0 {
		tenants = []string{"*"}
	}
	cats := d.Filter.Categories
	if len(cats) == 0 {
		cats = []string{"*"}
	}
	if len(tenants)*len(cats) > 16 || (tenants[0] == "*" && cats[0] == "*") {
		return nil
	}
	var out []string
	for _, t := range tenants {
		for _, c := range cats {
			out = append(out, prefix+"."+t+"."+c+".>")
		}
	}
	return out
}

func (m *Manager) closeSenders() {
	for _, o := range m.outputs {
		if err := o.sender.Close(); err != nil {
			o.log.Warn("output close", "err", err)
		}
	}
}

// Run delivers until ctx ends, then stops every output (the messages in
// their hands are released to be delivered again at the next start) and
// closes the senders.
func (m *Manager) Run(ctx context.Context) error {
	if !m.started.CompareAndSwap(false, true) {
		return errors.New("outputs: manager already running")
	}
	var wg sync.WaitGroup
	for _, o := range m.outputs {
		wg.Add(1)
		go func() { // one per output: stopped by ctx
			defer wg.Done()
			o.run(ctx)
		}()
	}
	wg.Wait()
	m.closeSenders()
	return nil
}

// output is one configured output at run time.
type output struct {
	m        *Manager
	def      Definition
	sender   Sender
	sendMu   sync.Mutex // a Sender is not required to be safe for concurrent use (test vs delivery)
	testing  atomic.Bool
	cons     jetstream.Consumer
	limiter  *rate.Limiter
	maxBatch int
	// inFlight is the consumer's MaxAckPending: maxInFlight, or
	// MaxDigest for a digest output (a digest holds its messages).
	inFlight int
	log      *slog.Logger
	// lastDigest is when the last digest was accepted (the delivery
	// goroutine only), kept in the consumer's metadata (lastDigestKey)
	// across restarts; zero when none was; digested: one was since the
	// start. consCfg is the consumer's config as last created or updated.
	lastDigest time.Time
	digested   bool
	consCfg    jetstream.ConsumerConfig

	// repeat: detection id → last sent by this node. Read by the delivery
	// loop, written by whoever delivered (its workers, with concurrency).
	// What other nodes and earlier runs sent is in m.repeats.
	repeatMu sync.Mutex
	repeat   map[string]sent

	// slots bounds the Sends in flight when concurrency is above 1 (nil:
	// the delivery loop sends itself, one at a time, in log order);
	// workers counts them, and the loop waits for them before it ends.
	slots   chan struct{}
	workers sync.WaitGroup

	heldMu sync.Mutex
	held   map[jetstream.Msg]struct{}

	nDelivered, nFailed, nSuppressed, nRetrying atomic.Int64
	statMu                                      sync.Mutex
	state                                       string
	lastErr                                     string
	lastErrAt, lastOKAt                         time.Time
}

// run is the output's delivery loop: a reader moves messages from the
// consumer into the output's hands (kept in progress while held) and the
// loop delivers them in order.
func (o *output) run(ctx context.Context) {
	o.held = map[jetstream.Msg]struct{}{}
	o.setState("running")
	var it jetstream.MessagesContext
	for try := 1; ; try++ {
		var err error
		if it, err = o.cons.Messages(jetstream.PullMaxMessages(o.inFlight)); err == nil {
			break
		}
		// The log may be briefly unreachable (an external NATS
		// restarting): keep trying rather than stop the output.
		o.noteErr(fmt.Errorf("consume: %w", err))
		if !sleep(ctx, backoff(o.m.opts.MinBackoff, o.m.opts.MaxBackoff, try)) {
			o.setState("stopped")
			return
		}
	}
	ch := make(chan jetstream.Msg, o.inFlight) // never blocks the reader: MaxAckPending bounds what it gets
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // reader: stopped by it.Stop below
		defer wg.Done()
		defer close(ch)
		o.read(ctx, it, ch)
	}()
	rctx, stopHB := context.WithCancel(ctx)
	go func() { // keeps held messages in progress: stopped by stopHB
		defer wg.Done()
		o.heartbeat(rctx)
	}()
	o.deliverLoop(ctx, ch)
	it.Stop()
	for range ch { // the reader's last messages: released below
	}
	stopHB()
	wg.Wait()
	// Released, not left to the ack wait: the next start (or another node
	// sharing the stream) delivers them at once.
	o.heldMu.Lock()
	for msg := range o.held {
		_ = msg.Nak()
	}
	o.held = map[jetstream.Msg]struct{}{}
	o.heldMu.Unlock()
	o.setState("stopped")
}

func (o *output) read(ctx context.Context, it jetstream.MessagesContext, ch chan<- jetstream.Msg) {
	for {
		msg, err := it.Next()
		if err != nil {
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) || ctx.Err() != nil {
				return
			}
			o.log.Warn("output: reading its consumer", "err", err)
			if !sleep(ctx, 100*time.Millisecond) {
				return
			}
			continue
		}
		o.heldMu.Lock()
		o.held[msg] = struct{}{}
		o.heldMu.Unlock()
		ch <- msg
	}
}

func (o *output) heartbeat(ctx context.Context) {
	t := time.NewTicker(o.m.opts.AckWait / 4)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		o.heldMu.Lock()
		for msg := range o.held {
			_ = msg.InProgress()
		}
		o.heldMu.Unlock()
	}
}

// done acknowledges msg: it is never delivered to this output again.
func (o *output) done(msg jetstream.Msg) {
	if err := msg.Ack(); err != nil {
		o.log.Debug("output: ack", "err", err)
	}
	o.heldMu.Lock()
	delete(o.held, msg)
	o.heldMu.Unlock()
}

func (o *output) deliverLoop(ctx context.Context, ch <-chan jetstream.Msg) {
	defer o.workers.Wait() // their messages are held until they end
	for {
		var first jetstream.Msg
		select {
		case <-ctx.Done():
			return
		case msg, ok := <-ch:
			if !ok {
				return
			}
			first = msg
		}
		p, ok := o.take(ctx, first)
		if !ok {
			continue
		}
		todo := []pending{p}
		switch {
		case o.def.DigestInterval > 0:
			o.digest(ctx, ch, todo)
		case o.def.Type.Groups && o.def.GroupWait > 0 && created(p):
			// Detections created within group_wait go out as one
			// message; anything else taken meanwhile follows, alone.
			var rest []pending
			for _, raw := range o.collect(ctx, ch, maxGroup-1, o.def.GroupWait) {
				if q, ok := o.take(ctx, raw); ok && created(q) {
					todo = append(todo, q)
				} else if ok {
					rest = append(rest, q)
				}
			}
			o.deliver(ctx, todo)
			for _, q := range rest {
				if ctx.Err() != nil {
					return
				}
				o.deliver(ctx, []pending{q})
			}
		case o.maxBatch > 1:
			for _, raw := range o.collect(ctx, ch, o.maxBatch-1, 0) {
				if q, ok := o.take(ctx, raw); ok {
					todo = append(todo, q)
				}
			}
			o.dispatch(ctx, todo)
		default:
			o.dispatch(ctx, todo)
		}
		if ctx.Err() != nil {
			return
		}
	}
}

// digestStartGrace is how long the first digest after a start collects
// (at least): the messages a stopped or crashed node held come back
// together but may arrive in several pulls, and used to go out as two
// digests (seen in TestOutputsDigestKill9 whenever the restarting node
// was busy reading its log).
const digestStartGrace = 2 * time.Second

// digest delivers todo and whatever the output takes until the digest
// window closes as one Send: at once when the last digest was accepted
// at least digest_interval ago (after group_wait, if set; the first since
// the start after digestStartGrace), else when that interval has run out. The messages stay unacknowledged, kept in
// progress by the heartbeat, until the Send returned nil, so a stop or a
// crash before it leaves them to be delivered again at the next start.
// A window that holds inFlight messages is sent early: the consumer
// hands out no more until some are acknowledged.
func (o *output) digest(ctx context.Context, ch <-chan jetstream.Msg, todo []pending) {
	wait := o.def.GroupWait
	if !o.digested {
		// The first digest since the start: what a crash left held comes
		// back after the consumer's ack wait, not necessarily in one
		// pull; collect it for a moment so it stays one digest.
		wait = max(wait, digestStartGrace)
	}
	if !o.lastDigest.IsZero() {
		// Wall clock, as the timers: opts.Now may be a test's clock.
		wait = max(wait, time.Until(o.lastDigest.Add(o.def.DigestInterval)))
	}
	var timer <-chan time.Time
	if wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		timer = t.C
	}
collect:
	for len(todo) < o.inFlight {
		if timer == nil { // due now: only what is already there joins
			select {
			case raw, ok := <-ch:
				if !ok {
					return // stopping: released by run
				}
				if q, ok := o.take(ctx, raw); ok {
					todo = append(todo, q)
				}
				continue
			default:
				break collect
			}
		}
		select {
		case raw, ok := <-ch:
			if !ok {
				return
			}
			if q, ok := o.take(ctx, raw); ok {
				todo = append(todo, q)
			}
		case <-timer:
			break collect
		case <-ctx.Done():
			return
		}
	}
	if len(todo) == o.inFlight {
		o.log.Info("output: digest sent early, it holds the most messages a digest may", "messages", len(todo))
	}
	o.deliver(ctx, todo)
	if ctx.Err() == nil {
		o.lastDigest, o.digested = time.Now(), true
		o.saveLastDigest(ctx)
	}
}

func created(p pending) bool { return p.msg.Event.Type == "detection.created" }

// collect returns what arrives on ch within wait (0: what is already
// there), at most n messages.
func (o *output) collect(ctx context.Context, ch <-chan jetstream.Msg, n int, wait time.Duration) []jetstream.Msg {
	var msgs []jetstream.Msg
	var timer <-chan time.Time
	if wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		timer = t.C
	}
	for len(msgs) < n {
		if timer == nil {
			select {
			case msg, ok := <-ch:
				if !ok {
					return msgs
				}
				msgs = append(msgs, msg)
				continue
			default:
				return msgs
			}
		}
		select {
		case msg, ok := <-ch:
			if !ok {
				return msgs
			}
			msgs = append(msgs, msg)
		case <-timer:
			return msgs
		case <-ctx.Done():
			return msgs
		}
	}
	return msgs
}

// pending is one message on its way.
type pending struct {
	raw jetstream.Msg
	msg Message
}

// take turns raw into a Message, or acknowledges it when this output does
// not take it.
func (o *output) take(ctx context.Context, raw jetstream.Msg) (pending, bool) {
	m, ok, err := o.message(ctx, raw)
	if err != nil {
		o.log.Warn("output: stored message is not an event; skipped", "err", err)
	}
	if !ok {
		o.done(raw)
		return pending{}, false
	}
	return pending{raw: raw, msg: m}, true
}

// message decodes raw and decides whether this output takes it: the
// tenants, the filter, its own dead-letter records (never delivered by
// the output that failed, or one failure would feed the next), and
// repeat_interval.
func (o *output) message(ctx context.Context, raw jetstream.Msg) (Message, bool, error) {
	meta, err := raw.Metadata()
	if err != nil {
		return Message{}, false, err
	}
	e, err := event.DecodeStored(raw.Data())
	if err != nil {
		return Message{}, false, fmt.Errorf("seq %d: %w", meta.Sequence.Stream, err)
	}
	e.Seq = meta.Sequence.Stream
	e.SetStored(raw.Data())
	if len(o.def.Tenants) > 0 && !contains(o.def.Tenants, e.Tenant) {
		return Message{}, false, nil
	}
	if !o.def.Matcher.Match(e) {
		return Message{}, false, nil
	}
	if e.Type == DeadLetterType {
		if out, _ := e.DataMap()["output"].(string); out == o.def.Name {
			return Message{}, false, nil
		}
	}
	m := Message{Event: e, Body: e.JSON()}
	if e.Category == event.CategoryDetection && len(e.Data) > 0 {
		var d Detection
		if err := json.Unmarshal(e.Data, &d); err == nil && d.ID != "" {
			m.Detection = &d
		}
	}
	if d := m.Detection; d != nil && o.def.RepeatInterval > 0 && e.Type != "detection.created" {
		if o.repeats(ctx, d) {
			o.nSuppressed.Add(1)
			o.m.metrics.deliveries.WithLabelValues(o.def.Name, ResultSuppressed).Inc()
			return Message{}, false, nil
		}
	}
	return m, true, nil
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// Results of vigil_output_deliveries_total.
const (
	ResultDelivered  = "delivered"
	ResultRetry      = "retry"
	ResultDeadLetter = "dead_letter"
	ResultSuppressed = "suppressed"
)

// deliver sends todo (one request) until it is accepted, or dead-letters
// it: at once for a permanent error, else once its oldest message is
// older than max_age. It returns early only when ctx ends (the messages
// stay unacknowledged and are delivered again).
func (o *output) deliver(ctx context.Context, todo []pending) {
	msgs := make([]Message, len(todo))
	for i, p := range todo {
		msgs[i] = p.msg
		text, err := render(o.def.Template, o.def.Name, o.m.opts.PublicURL, p.msg)
		if err != nil {
			// Checked at start on a sample; an event may still miss what
			// the template reads: the default text then, never no text.
			text, _ = render(defaultTemplate, o.def.Name, o.m.opts.PublicURL, p.msg)
		}
		msgs[i].Text = text
	}
	oldest := o.m.opts.Now()
	for _, p := range todo {
		if t := p.msg.Event.ReceivedAt; !t.IsZero() && t.Before(oldest) {
			oldest = t
		}
	}
	var (
		attempts  int
		lastErr   error
		firstTime = o.m.opts.Now()
		retrying  bool // counted in nRetrying (workers add and remove their own)
	)
	defer func() {
		if retrying {
			o.nRetrying.Add(-int64(len(todo)))
		}
	}()
	for {
		if o.limiter != nil {
			if err := o.limiter.Wait(ctx); err != nil {
				return
			}
		}
		attempts++
		err := o.send(ctx, msgs)
		if err == nil {
			o.accepted(ctx, todo)
			return
		}
		if ctx.Err() != nil {
			return
		}
		lastErr = err
		o.noteErr(err)
		now := o.m.opts.Now()
		var wait time.Duration
		var de *DeliveryError
		if errors.As(err, &de) && de.RetryAfter > 0 {
			wait = min(de.RetryAfter, maxRetryAfter)
		} else {
			wait = backoff(o.m.opts.MinBackoff, o.m.opts.MaxBackoff, attempts)
		}
		reason := ""
		deadline := oldest.Add(o.def.MaxAge)
		switch {
		case IsPermanent(err):
			reason = "permanent"
		case !now.Before(deadline):
			reason = "max_age"
		case now.Add(wait).After(deadline):
			// The last attempt is made at max_age, not skipped.
			wait = deadline.Sub(now)
		}
		if reason != "" {
			o.deadLetter(ctx, todo, reason, attempts, firstTime, lastErr)
			return
		}
		if !retrying {
			o.nRetrying.Add(int64(len(todo)))
			retrying = true
		}
		o.setState("retrying")
		o.m.metrics.deliveries.WithLabelValues(o.def.Name, ResultRetry).Add(float64(len(todo)))
		o.log.Info("output: delivery failed; retrying", "attempt", attempts, "in", wait.Round(time.Millisecond), "err", safeErr(err))
		if !sleep(ctx, wait) {
			return
		}
	}
}

// dispatch delivers todo: on the delivery loop itself (in log order), or
// with concurrency on a worker once one of the output's slots is free
// (the loop waits for one; ctx ending stops the wait, and todo stays
// held, to be released when the output stops).
func (o *output) dispatch(ctx context.Context, todo []pending) {
	if o.slots == nil {
		o.deliver(ctx, todo)
		return
	}
	select {
	case o.slots <- struct{}{}:
	case <-ctx.Done():
		return
	}
	o.workers.Add(1)
	go func() { // a worker: owned by the delivery loop, which waits for it
		defer o.workers.Done()
		defer func() { <-o.slots }()
		o.deliver(ctx, todo)
	}()
}

// send calls the sender, bounded by its timeout; under the output's lock
// unless the type's Sender is safe for concurrent use.
func (o *output) send(ctx context.Context, msgs []Message) error {
	ctx, cancel := context.WithTimeout(ctx, o.def.Timeout)
	defer cancel()
	if !o.def.Type.Concurrent {
		o.sendMu.Lock()
		defer o.sendMu.Unlock()
	}
	return o.sender.Send(ctx, msgs)
}

func (o *output) accepted(ctx context.Context, todo []pending) {
	now := o.m.opts.Now()
	for _, p := range todo {
		o.done(p.raw)
		if d := p.msg.Detection; d != nil && o.def.RepeatInterval > 0 {
			o.remember(ctx, d, now)
		}
		if t := p.msg.Event.ReceivedAt; !t.IsZero() {
			o.m.metrics.latency.WithLabelValues(o.def.Name).Observe(now.Sub(t).Seconds())
		}
	}
	o.m.metrics.deliveries.WithLabelValues(o.def.Name, ResultDelivered).Add(float64(len(todo)))
	o.statMu.Lock()
	o.state, o.lastOKAt = "running", now
	o.statMu.Unlock()
	// Last: whoever reads the count sees the metrics and state above.
	o.nDelivered.Add(int64(len(todo)))
}

// repeats reports whether an update of d repeats what this output sent
// within repeat_interval: by this node (its own memory), else by any node
// or an earlier run (the shared bucket). A bucket that cannot be read
// lets the update go out: an extra message, never a lost one.
func (o *output) repeats(ctx context.Context, d *Detection) bool {
	now := o.m.opts.Now()
	o.repeatMu.Lock()
	prev, ok := o.repeat[d.ID]
	o.repeatMu.Unlock()
	if ok && prev.suppresses(d.Status, now, o.def.RepeatInterval) {
		return true
	}
	if o.m.repeats == nil {
		return false
	}
	shared, ok, err := o.m.repeats.get(ctx, o.def.Name, d.ID)
	if err != nil {
		if ctx.Err() == nil {
			o.log.Warn("output: repeat_interval memory not read; the update goes out", "detection", d.ID, "err", err)
		}
		return false
	}
	return ok && shared.suppresses(d.Status, now, o.def.RepeatInterval)
}

// remember records a detection sent, for repeat_interval: in this node's
// bounded memory and in the shared bucket.
func (o *output) remember(ctx context.Context, d *Detection, now time.Time) {
	s := sent{Status: d.Status, At: now}
	o.rememberLocally(d.ID, s)
	if o.m.repeats == nil {
		return
	}
	// Not cancelled with ctx: a message accepted just before a stop is
	// still recorded, or the next start would send its update again.
	if err := o.m.repeats.put(context.WithoutCancel(ctx), o.def.Name, d.ID, s); err != nil {
		o.log.Warn("output: repeat_interval memory not recorded (after a restart, or on another node, the next update may go out again)", "detection", d.ID, "err", err)
	}
}

func (o *output) rememberLocally(id string, s sent) {
	o.repeatMu.Lock()
	defer o.repeatMu.Unlock()
	if len(o.repeat) >= repeatCap {
		for id, old := range o.repeat {
			if s.At.Sub(old.At) >= o.def.RepeatInterval {
				delete(o.repeat, id)
			}
		}
		if len(o.repeat) >= repeatCap {
			clear(o.repeat) // worst case: one extra message per detection
		}
	}
	o.repeat[id] = s
}

// deadLetter records each message of todo as a system.output_failed event
// through the ingest path and then acknowledges it. An append that fails
// is retried (the message stays unacknowledged until its record is in the
// log); the record's id is derived from output and event, so a record
// appended twice (a crash in between) is stored once.
func (o *output) deadLetter(ctx context.Context, todo []pending, reason string, attempts int, first time.Time, lastErr error) {
	errText := safeErr(lastErr)
	if n := tenantsOf(todo); n > 1 {
		// One request held events of several tenants (a digest, a group
		// or a batch of an output of every tenant), and each record goes
		// to its event's tenant: the receiver's answer may quote the
		// request (some echo the body), so it stays in the node's log.
		o.log.Warn("output: request of several tenants refused; its answer is kept out of the dead-letter records", "tenants", n, "err", errText)
		errText = fmt.Sprintf("the receiver's answer is not recorded here: the request held events of %d tenants (see the node's log)", n)
	}
	for _, p := range todo {
		e := deadLetterEvent(o.def, p.msg.Event, reason, attempts, first, errText, o.m.opts.Now())
		for try := 1; ; try++ {
			err := o.m.opts.DeadLetter(ctx, e)
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return
			}
			var invalid *event.BatchError
			if errors.As(err, &invalid) {
				// Refused by validation: appending it again cannot
				// succeed, and holding the message would stop the output.
				o.log.Error("output: dead-letter record refused; the message is dropped", "event_id", p.msg.Event.ID, "err", err)
				break
			}
			o.log.Error("output: dead-letter record not appended; retrying", "event_id", p.msg.Event.ID, "err", err)
			if !sleep(ctx, backoff(o.m.opts.MinBackoff, o.m.opts.MaxBackoff, try)) {
				return
			}
		}
		o.done(p.raw)
	}
	o.nFailed.Add(int64(len(todo)))
	o.m.metrics.deliveries.WithLabelValues(o.def.Name, ResultDeadLetter).Add(float64(len(todo)))
	o.setState("running")
	o.log.Warn("output: gave up; dead-lettered as "+DeadLetterType, "messages", len(todo), "reason", reason, "attempts", attempts, "err", errText)
}

// tenantsOf counts the tenants of todo's events.
func tenantsOf(todo []pending) int {
	seen := map[string]bool{}
	for _, p := range todo {
		seen[p.msg.Event.Tenant] = true
	}
	return len(seen)
}

// DeadLetterData is the data of a system.output_failed event.
type DeadLetterData struct {
	Output         string    `json:"output"`
	OutputType     string    `json:"output_type"`
	EventID        string    `json:"event_id"`
	EventType      string    `json:"event_type"`
	EventSeq       uint64    `json:"event_seq"`
	DetectionID    string    `json:"detection_id,omitempty"`
	Reason         string    `json:"reason"` // "max_age" or "permanent"
	LastError      string    `json:"last_error"`
	Attempts       int       `json:"attempts"`
	FirstAttemptAt time.Time `json:"first_attempt_at"`
	FailedAt       time.Time `json:"failed_at"`
}

func deadLetterEvent(d Definition, failed *event.Event, reason string, attempts int, first time.Time, errText string, now time.Time) *event.Event {
	dl := DeadLetterData{
		Output: d.Name, OutputType: d.Type.Name, EventID: failed.ID, EventType: failed.Type, EventSeq: failed.Seq,
		Reason: reason, LastError: errText, Attempts: attempts, FirstAttemptAt: first.UTC(), FailedAt: now.UTC(),
	}
	if failed.Category == event.CategoryDetection {
		if id, ok := failed.DataMap()["id"].(string); ok {
			dl.DetectionID = id
		}
	}
	data, _ := json.Marshal(dl)
	sum := sha256.Sum256([]byte(d.Name + "/" + failed.ID))
	return &event.Event{
		ID:   "output-failed-" + hex.EncodeToString(sum[:16]),
		Type: DeadLetterType, Category: event.CategorySystem, Severity: event.SeverityHigh,
		Source: "vigil-outputs", Tenant: failed.Tenant, Time: now,
		Message: truncate(fmt.Sprintf("output %s gave up on event %s (%s) after %d attempts: %s", d.Name, failed.ID, failed.Type, attempts, errText), 768),
		Action:  "deliver", Outcome: "failure", Resource: "output:" + d.Name,
		Tags: []string{"output:" + d.Name},
		Data: data,
	}
}

// truncate cuts s to at most n bytes on a rune boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// backoff is exponential with jitter: attempt n waits a random time in
// [d/2, d] with d = min·2^(n-1), capped at max.
func backoff(minD, maxD time.Duration, attempt int) time.Duration {
	d := minD
	for i := 1; i < attempt && d < maxD; i++ {
		d *= 2
	}
	d = min(d, maxD)
	return d/2 + rand.N(d/2+1)
}

// sleep waits d or until ctx ends; false when ctx ended.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// safeErr is err's text without the URLs it may carry: chat webhook URLs
// are credentials (Slack, Teams), so only their scheme and host are kept.
func safeErr(err error) string {
	if err == nil {
		return ""
	}
	s := err.Error()
	var ue *url.Error
	if errors.As(err, &ue) && ue.URL != "" {
		s = strings.ReplaceAll(s, ue.URL, redactURL(ue.URL))
	}
	return truncate(s, 512)
}

func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "[url]"
	}
	if u.Path == "" || u.Path == "/" {
		return u.Scheme + "://" + u.Host
	}
	return u.Scheme + "://" + u.Host + "/…"
}

func (o *output) noteErr(err error) {
	o.statMu.Lock()
	o.lastErr, o.lastErrAt = safeErr(err), o.m.opts.Now()
	o.statMu.Unlock()
}

func (o *output) setState(s string) {
	o.statMu.Lock()
	o.state = s
	o.statMu.Unlock()
}

var defaultTemplate = mustTemplate(parseTemplate("default", ""))

func mustTemplate[T any](t T, err error) T {
	if err != nil {
		panic(err)
	}
	return t
}
