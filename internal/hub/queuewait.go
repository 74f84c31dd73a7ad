package hub

import (
	"sync"
	"time"
)

// queueWaits summarises how long live deliveries waited in client queues
// before a writer took them (issue 12 item 1): ingest admission holds
// publishers when the typical client is behind, not when one slow client
// is (that one is lagged by its own queue bound).
//
// Waits are counted in power-of-two millisecond buckets per window of
// queueWaitWindow; QueueWait reads the median of the last complete window.
type queueWaits struct {
	mu      sync.Mutex
	window  int64 // index of the window being counted (UnixNano / width)
	current [queueWaitBuckets]uint32
	last    [queueWaitBuckets]uint32
	lastIdx int64
}

const (
	queueWaitWindow  = 50 * time.Millisecond
	queueWaitBuckets = 16 // bucket i: waits below 2^i ms; the last is open-ended
)

func queueWaitBucket(d time.Duration) int {
	ms := d.Milliseconds()
	b := 0
	for ms > 0 && b < queueWaitBuckets-1 {
		ms >>= 1
		b++
	}
	return b
}

// note counts one taken batch whose oldest live delivery waited d.
func (w *queueWaits) note(now time.Time, d time.Duration) {
	idx := now.UnixNano() / int64(queueWaitWindow)
	w.mu.Lock()
	w.roll(idx)
	w.current[queueWaitBucket(d)]++
	w.mu.Unlock()
}

// roll moves to window idx: the counted window becomes the last one if it
// is the one just before idx, else the last one is empty.
func (w *queueWaits) roll(idx int64) {
	if idx == w.window {
		return
	}
	if idx == w.window+1 {
		w.last = w.current
	} else {
		w.last = [queueWaitBuckets]uint32{}
	}
	w.lastIdx = idx - 1
	w.current = [queueWaitBuckets]uint32{}
	w.window = idx
}

// median is the upper bound of the bucket holding the median wait of the
// last complete window (0 if nothing was taken then).
func (w *queueWaits) median(now time.Time) time.Duration {
	idx := now.UnixNano() / int64(queueWaitWindow)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.roll(idx)
	var total uint32
	for _, n := range w.last {
		total += n
	}
	if total == 0 {
		return 0
	}
	var seen uint32
	for b, n := range w.last {
		seen += n
		if 2*seen >= total {
			if b == 0 {
				return 0 // under a millisecond
			}
			return time.Duration(1<<b) * time.Millisecond
		}
	}
	return 0
}

// QueueWait is the median time live deliveries waited in client queues
// over the last complete 50 ms window, rounded up to a power of two
// milliseconds (0: under 1 ms, or nothing was delivered then).
func (h *Hub) QueueWait() time.Duration { return h.waits.median(time.Now()) }
