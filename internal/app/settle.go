package app

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Resident memory after a restart (issue 12 item 8): a node that starts on
// a long log reads a lot of it at once in the first seconds: the detection
// engine replays up to its last million events to rebuild its correlation
// windows, the statistics their last 200,000, the id index what was stored
// while the node was down, and JetStream decompresses every S2 block those
// reads touch into a fresh buffer. All of it is garbage a few seconds
// later, but the collector's goal stays where the replay left it (twice
// the replay's live heap) until the next collection, which an idle node
// does not run for up to two minutes, and the runtime keeps up to that
// goal's worth of freed pages resident: RSS 164-245 MB a minute after a
// restart at 1 M events against 63 MB empty (docs/performance.md, "RSS
// after restart (issue 12 item 8, second pass)").
//
// So once the start-up catch-up is over the node returns the freed pages
// to the OS (debug.FreeOSMemory: one collection and one scavenge, a few
// milliseconds), and once more when JetStream has dropped the block caches
// the replay left (settleCacheExpiry). Nothing else: the live heap left is
// what the node keeps, and later bursts are the collector's ordinary
// business.
const (
	// settlePoll is how often the catch-up's progress is checked.
	settlePoll = 250 * time.Millisecond
	// settleStandbyWait: a detection engine that is not the leader then
	// is a standby (another node leads) and replays nothing.
	settleStandbyWait = 30 * time.Second
	// settleCacheExpiry: JetStream keeps each message block it read
	// cached (strongly referenced) until 10 s after the last access
	// (its filestore's defaultCacheBufferExpiration, not configurable from
	// the server's options): the blocks the replay read last are still
	// live at the first release and freed after it, so a second release
	// follows this long after the first.
	settleCacheExpiry = 12 * time.Second
	// settleMaxWait: past it the memory is returned even if some reader
	// has not reached the start's head (an unreadable last event is never
	// seen by the readers that skip it); the release is harmless anyway.
	settleMaxWait = 5 * time.Minute
)

// startSettle notes the head at start and starts the goroutine that
// returns the start-up catch-up's memory once it is over.
func (p *node) startSettle(ctx context.Context) error {
	head, err := p.log.Head(ctx)
	if err != nil {
		return err
	}
	begin := time.Now()
	took := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "vigil_startup_catchup_seconds",
		Help: "Time from start until the detection replay, the statistics replay, the dedup index and the id index had read the log up to its head at start (0 until then); freed memory is returned to the OS at that moment.",
	})
	if err := p.m.Registry.Register(took); err != nil {
		return err
	}
	p.goBackground(func(ctx context.Context) { p.settle(ctx, head, begin, took) })
	return nil
}

// settle waits until the start-up catch-up is over, then returns the
// freed memory to the OS once (see above). It ends early with ctx.
func (p *node) settle(ctx context.Context, head uint64, begin time.Time, took prometheus.Gauge) {
	if _, err := p.log.WaitDedupIndex(ctx); err != nil {
		return // ctx ended
	}
	t := time.NewTicker(settlePoll)
	defer t.Stop()
	waiting := p.catchingUp(head, time.Since(begin))
	for waiting != "" && time.Since(begin) < settleMaxWait {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		waiting = p.catchingUp(head, time.Since(begin))
	}
	elapsed := time.Since(begin)
	before := heapRetained()
	debug.FreeOSMemory()
	after := heapRetained()
	took.Set(elapsed.Seconds())
	msg := "start-up catch-up done: freed memory returned to the OS"
	if waiting != "" {
		msg = "start-up catch-up not over after " + settleMaxWait.String() + ": freed memory returned to the OS anyway"
	}
	var replayed uint64
	if p.det != nil {
		replayed = p.det.ReplayedTo()
	}
	p.logger.Info(msg, "head", head, "took", elapsed.Round(time.Millisecond), "waiting_for", waiting,
		"detection_replayed_to", replayed, "statistics_seq", p.st.LastSeq(), "id_index_watermark", p.log.IDIndex().Watermark,
		"heap_resident_mib_before", before>>20, "heap_resident_mib_after", after>>20)
	select {
	case <-ctx.Done():
		return
	case <-time.After(settleCacheExpiry):
	}
	before = heapRetained()
	debug.FreeOSMemory()
	after = heapRetained()
	p.logger.Info("JetStream's block caches of the start-up replay expired: freed memory returned to the OS",
		"heap_resident_mib_before", before>>20, "heap_resident_mib_after", after>>20)
}

// catchingUp names a reader that has not yet read the log up to head
// ("" when none): the detection engine's replay (unless it is a standby),
// the statistics' replay and the id index.
func (p *node) catchingUp(head uint64, since time.Duration) string {
	if p.det != nil {
		switch {
		case p.det.Leader():
			if p.det.ReplayedTo() < head {
				return "detection replay"
			}
		case since < settleStandbyWait:
			// Not leading yet, or not any more: a lease not renewed in
			// time during the replay (a loaded machine) is taken again
			// within seconds, with the replay from the start.
			return "detection leadership"
		}
	}
	if p.st != nil && p.st.LastSeq() < head {
		return "statistics replay"
	}
	if ix := p.log.IDIndex(); ix.Enabled && !ix.CaughtUp {
		return "id index"
	}
	return ""
}

// heapRetained is the heap memory the runtime holds from the OS: in use,
// free but not yet returned, and its own metadata.
func heapRetained() uint64 {
	s := []metrics.Sample{
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/memory/classes/heap/unused:bytes"},
		{Name: "/memory/classes/heap/free:bytes"},
	}
	metrics.Read(s)
	var n uint64
	for _, v := range s {
		if v.Value.Kind() == metrics.KindUint64 {
			n += v.Value.Uint64()
		}
	}
	return n
}
