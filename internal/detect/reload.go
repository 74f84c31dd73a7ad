package detect

// Hot reload (docs/detections.md, "Hot reload"): SIGHUP, a change in the
// rules directory (polled) or POST /api/v1/rules/reload loads the rules
// again without a restart. Correlations whose id and content hash did not
// change keep their windows; a file that changed and no longer loads keeps
// its previous version running (state "stale"). Every node reloads its own
// rules directory; a node that reloads on SIGHUP or on request tells the
// others through a core NATS subject, so the leader — the one node that
// evaluates — reloads whichever node was asked.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/detect/sigma"
	"github.com/vigil-sec/vigil/internal/domain"
)

// ReloadSubject is the core NATS subject on which a node that reloads its
// rules on SIGHUP or on request asks the other nodes to reload theirs.
const ReloadSubject = "vigil.control.rules.reload"

// DefaultRulesPoll is how often the rules directory is checked for
// changes (one stat per file).
const DefaultRulesPoll = 2 * time.Second

// minRemoteReload spaces the reloads other nodes ask for: a flood of
// requests costs at most one reload per interval.
const minRemoteReload = time.Second

// reloader is the engine's reload state.
type reloader struct {
	mu       sync.Mutex // serialises reloads
	stamp    uint64     // the rule sources' stat stamp when last loaded
	instance string     // random per engine: ignores its own broadcasts
	// overflow of correlation states a reload dropped, so the overflow
	// counter never goes down.
	droppedOverflow atomic.Uint64
}

// ReloadReport says what a reload did.
type ReloadReport struct {
	Node    string    `json:"node"`
	Trigger string    `json:"trigger"`
	At      time.Time `json:"at"`
	Loaded  int       `json:"loaded"`
	Failed  int       `json:"failed"`
	// Stale files run their previous version: the one on disk is broken.
	Stale     int      `json:"stale"`
	Added     []string `json:"added"`
	Removed   []string `json:"removed"`
	Changed   []string `json:"changed"`
	Unchanged int      `json:"unchanged"`
	// Correlations whose windows were kept (same id and hash) and reset
	// (changed or removed).
	StateKept  int            `json:"correlation_state_kept"`
	StateReset int            `json:"correlation_state_reset"`
	Errors     []*sigma.Error `json:"errors"`
}

// overflowTotal counts new correlation keys refused at the cap, across
// reloads.
func (e *Engine) overflowTotal() uint64 {
	return e.eval.Load().overflowTotal() + e.reload.droppedOverflow.Load()
}

func newInstance() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Reload loads the rules again from where they were loaded and swaps them
// in between two events, keeping the correlation state of unchanged
// rules. An unreadable rules directory is an error and the running rules
// stay.
func (e *Engine) Reload(ctx context.Context, trigger string) (ReloadReport, error) {
	e.reload.mu.Lock()
	defer e.reload.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return ReloadReport{}, err
	}
	prev := e.rules.Load()
	// Stamped before reading: a write during the read changes the stamp
	// again and the next poll reloads once more.
	stamp := rulesStamp(prev.opts)
	next, err := ReloadRules(prev)
	if err != nil {
		e.log.Error("rules reload failed; the previous rules keep running", "trigger", trigger, "err", err)
		return ReloadReport{}, err
	}
	e.reload.stamp = stamp
	ne := NewEvaluator(next, e.opts.MaxKeys, e.opts.MaxEventIDs)
	e.evalMu.Lock()
	kept, reset, dropped := ne.adopt(e.eval.Load())
	e.eval.Store(ne)
	e.rules.Store(next)
	e.evalMu.Unlock()
	e.reload.droppedOverflow.Add(dropped)

	rep := ReloadReport{Node: e.opts.NodeID, Trigger: trigger, At: time.Now().UTC(), Loaded: next.Len(),
		Stale: next.Stale(), StateKept: kept, StateReset: reset, Errors: next.Errors(),
		Added: []string{}, Removed: []string{}, Changed: []string{}}
	if rep.Errors == nil {
		rep.Errors = []*sigma.Error{}
	}
	for _, in := range next.infos {
		if in.State == "error" {
			rep.Failed++
		}
	}
	was := map[string]string{}
	for _, r := range prev.rules {
		was[r.meta.RuleID] = r.hash
	}
	for _, r := range next.rules {
		h, ok := was[r.meta.RuleID]
		switch {
		case !ok:
			rep.Added = append(rep.Added, r.meta.RuleID)
		case h != r.hash:
			rep.Changed = append(rep.Changed, r.meta.RuleID)
		default:
			rep.Unchanged++
		}
		delete(was, r.meta.RuleID)
	}
	for id := range was {
		rep.Removed = append(rep.Removed, id)
	}
	sort.Strings(rep.Removed)
	for _, se := range next.Errors() {
		e.log.Error("rule not loaded", "path", se.Path, "line", se.Line, "rule", se.Rule, "reason", se.Reason)
	}
	e.log.Info("detection rules reloaded", "trigger", trigger, "loaded", rep.Loaded, "failed", rep.Failed,
		"stale_files", rep.Stale, "added", len(rep.Added), "changed", len(rep.Changed), "removed", len(rep.Removed),
		"correlation_state_kept", kept, "correlation_state_reset", reset)
	return rep, nil
}

// adopt takes over the correlation state of old's rules that ev's rule
// set holds unchanged (same rule id and content hash). It returns how
// many states it kept and dropped, and the overflow count of the dropped.
func (ev *Evaluator) adopt(old *Evaluator) (kept, reset int, droppedOverflow uint64) {
	was := map[string]*corrState{}
	for _, r := range old.rs.rules {
		if st := old.state[r.idx]; st != nil {
			was[r.meta.RuleID+"\x1f"+r.hash] = st
		}
	}
	for _, r := range ev.rs.rules {
		if r.corr == nil {
			continue
		}
		k := r.meta.RuleID + "\x1f" + r.hash
		if st, ok := was[k]; ok {
			ev.state[r.idx] = st
			delete(was, k)
			kept++
		}
	}
	for _, st := range was {
		reset++
		droppedOverflow += st.overflow.Load()
	}
	return kept, reset, droppedOverflow
}

// rulesStamp summarises name, size and modification time of every rule
// source: a change to it means a file was added, removed or written.
func rulesStamp(opts LoadOptions) uint64 {
	h := fnv.New64a()
	add := func(path string, fi fs.FileInfo, err error) {
		if err != nil {
			fmt.Fprintf(h, "%s\x00err\x00", path)
			return
		}
		fmt.Fprintf(h, "%s\x00%d\x00%d\x00", path, fi.Size(), fi.ModTime().UnixNano())
	}
	if opts.Dir != "" {
		_ = filepath.WalkDir(opts.Dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				add(path, nil, err)
				return nil
			}
			if d.IsDir() || !isRuleFile(path) {
				return nil
			}
			fi, err := os.Stat(path) // follows links: a swapped link is a change
			add(path, fi, err)
			return nil
		})
	}
	for _, f := range opts.Files {
		fi, err := os.Stat(f)
		add(f, fi, err)
	}
	return h.Sum64()
}

// reloadRequest is the message on ReloadSubject.
type reloadRequest struct {
	Node     string `json:"node"`
	Instance string `json:"instance"`
	Trigger  string `json:"trigger"`
}

// broadcastReload asks the other nodes to reload their rules.
func (e *Engine) broadcastReload(trigger string) bool {
	if e.opts.JetStream == nil {
		return false
	}
	b, _ := json.Marshal(reloadRequest{Node: e.opts.NodeID, Instance: e.reload.instance, Trigger: trigger})
	if err := e.opts.JetStream.Conn().Publish(ReloadSubject, b); err != nil {
		e.log.Warn("rules reload: could not ask the other nodes", "err", err)
		return false
	}
	return true
}

// watchRules reloads the rules on SIGHUP (Options.ReloadOnSIGHUP), when
// the rule sources change (polled every Options.RulesPoll) and when
// another node asks, until ctx ends. Run owns it.
func (e *Engine) watchRules(ctx context.Context) {
	var hup chan os.Signal
	if e.opts.ReloadOnSIGHUP {
		hup = make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
	}
	var remote chan *nats.Msg
	if e.opts.JetStream != nil {
		remote = make(chan *nats.Msg, 16) // overflow is dropped: requests coalesce anyway
		sub, err := e.opts.JetStream.Conn().ChanSubscribe(ReloadSubject, remote)
		if err != nil {
			e.log.Warn("rules reload: not listening for other nodes' requests", "err", err)
			remote = nil
		} else {
			defer func() { _ = sub.Unsubscribe() }()
		}
	}
	opts := e.rules.Load().opts
	poll := e.opts.RulesPoll
	polling := poll > 0 && (opts.Dir != "" || len(opts.Files) > 0)
	every := minRemoteReload
	if polling {
		every = min(poll, every)
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	var lastPoll, lastRemote time.Time
	pendingRemote := ""
	reload := func(trigger string) {
		if _, err := e.Reload(ctx, trigger); err != nil && ctx.Err() == nil {
			e.log.Warn("rules reload", "trigger", trigger, "err", err)
		}
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			reload("SIGHUP")
			e.broadcastReload("SIGHUP")
		case m := <-remote:
			var req reloadRequest
			if json.Unmarshal(m.Data, &req) != nil || req.Instance == e.reload.instance {
				continue
			}
			pendingRemote = "request from node " + strconv.Quote(req.Node)
		case now := <-tick.C:
			if polling && now.Sub(lastPoll) >= poll {
				lastPoll = now
				e.reload.mu.Lock()
				changed := rulesStamp(opts) != e.reload.stamp
				e.reload.mu.Unlock()
				if changed {
					reload("rules changed")
				}
			}
		}
		if pendingRemote != "" && time.Since(lastRemote) >= minRemoteReload {
			lastRemote = time.Now()
			reload(pendingRemote)
			pendingRemote = ""
		}
	}
}

// HandleReload serves POST /api/v1/rules/reload (global admins only): this
// node reloads and reports, and asks the other nodes to reload theirs.
func (e *Engine) HandleReload(w http.ResponseWriter, r *http.Request) {
	p, ok := principal(w, r)
	if !ok {
		return
	}
	if !p.IsGlobalAdmin() {
		auth.WriteErr(w, domain.Errorf(domain.KindForbidden, "only an admin of every tenant may reload the rules"))
		return
	}
	rep, err := e.Reload(r.Context(), "api")
	if err != nil {
		kind := domain.KindInternal
		if errors.Is(err, context.Canceled) {
			kind = domain.KindUnavailable
		}
		auth.WriteErr(w, domain.Errorf(kind, "reload failed, the previous rules keep running: %w", err))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"reload": rep, "other_nodes_asked": e.broadcastReload("api")})
}
