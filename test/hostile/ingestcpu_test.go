package hostile

// Issue 12 items 3-4 (second pass): the ingest path got cheaper without
// getting easier to fool. Over a real node's REST endpoint: a JSON array
// cut by the new scanner cannot be made to smuggle a second event out of
// a string, a malformed array is still refused whole, and the late-retry
// dedup still answers retries of UUIDv7 ids — the fresh ones the id index
// is no longer asked about, within the window, and old ones after it.

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/vigil-sec/vigil/internal/config"
	"github.com/vigil-sec/vigil/internal/testnode"
)

// ingestcpuAcks returns the acknowledgements of an accepted batch.
func ingestcpuAcks(t *testing.T, out map[string]any) []map[string]any {
	t.Helper()
	evs, _ := out["events"].([]any)
	acks := make([]map[string]any, len(evs))
	for i, e := range evs {
		acks[i], _ = e.(map[string]any)
	}
	return acks
}

// ingestcpuPublish posts one event with id and returns its ack.
func ingestcpuPublish(t *testing.T, n *testnode.Node, tok, id string) (seq float64, dup bool) {
	t.Helper()
	status, out, _ := ingestPost(t, n, tok, "application/json", []byte(fmt.Sprintf(`[{"id":%q,"type":"audit.query"}]`, id)))
	acks := ingestcpuAcks(t, out)
	if status != http.StatusOK || len(acks) != 1 {
		t.Fatalf("publish %s: HTTP %d %v", id, status, out)
	}
	seq, _ = acks[0]["seq"].(float64)
	dup, _ = acks[0]["duplicate"].(bool)
	return seq, dup
}

func TestIngestArrayScannerAndRetriesOfUUIDv7(t *testing.T) {
	const window = 2 * time.Second
	n := testnode.Start(t, func(c *config.Config) { c.DedupWindow = window })
	tok := n.AdminToken()

	// A string holding what looks like the end of one element and the
	// start of another: one event, its message intact.
	msg := `"},{"id":"smuggled-2","type":"audit.query"}, ] [ {"`
	body := fmt.Sprintf(`[ {"id":"smuggle-1","type":"audit.query","message":%q} ]`, msg)
	status, out, _ := ingestPost(t, n, tok, "application/json", []byte(body))
	if status != http.StatusOK || out["accepted"] != float64(1) {
		t.Fatalf("array with a bracketed string: HTTP %d %v, want one event accepted", status, out)
	}
	if ingestStored(t, n, tok, "smuggled-2") {
		t.Fatal("an event was smuggled out of a string")
	}
	if !ingestStored(t, n, tok, "smuggle-1") {
		t.Fatal("the event itself was not stored")
	}

	// Malformed arrays: refused whole, naming the array, nothing stored.
	for i, bad := range []string{
		`[{"id":"bad-%d-a","type":"audit.query"} {"id":"bad-%d-b","type":"audit.query"}]`,
		`[{"id":"bad-%d-a","type":"audit.query"},{"id":"bad-%d-b","type":"audit.query"]}]`,
		`[{"id":"bad-%d-a","type":"audit.query"}] [{"id":"bad-%d-b","type":"audit.query"}]`,
	} {
		status, out, _ := ingestPost(t, n, tok, "application/json", []byte(fmt.Sprintf(bad, i, i)))
		if status != http.StatusBadRequest || !strings.Contains(fmt.Sprint(out), "malformed JSON array") {
			t.Fatalf("malformed array %d: HTTP %d %v, want 400 naming the malformed array", i, status, out)
		}
		for _, suffix := range []string{"a", "b"} {
			if id := fmt.Sprintf("bad-%d-%s", i, suffix); ingestStored(t, n, tok, id) {
				t.Fatalf("%s of a refused body was stored", id)
			}
		}
	}

	// A fresh UUIDv7 (as the client package makes) and one made an hour
	// ago (as a retry long after its first send carries): each retried
	// until well after the dedup window, every retry must be answered as
	// a duplicate of the first copy — from the in-memory window first,
	// from the id index after it.
	fresh := uuid.Must(uuid.NewV7()).String()
	ms := time.Now().Add(-time.Hour).UnixMilli()
	old := fmt.Sprintf("%08x-%04x-7abc-8def-0123456789ab", ms>>16, ms&0xffff)
	first := map[string]float64{}
	for _, id := range []string{fresh, old} {
		seq, dup := ingestcpuPublish(t, n, tok, id)
		if dup || seq == 0 {
			t.Fatalf("first send of %s: seq %v duplicate %v", id, seq, dup)
		}
		first[id] = seq
	}
	start := time.Now()
	retries := 0
	for time.Since(start) < 3*window {
		for _, id := range []string{fresh, old} {
			seq, dup := ingestcpuPublish(t, n, tok, id)
			if !dup || seq != first[id] {
				t.Fatalf("retry of %s %v after its first send: seq %v duplicate %v, want the duplicate of seq %v", id, time.Since(start), seq, dup, first[id])
			}
			retries++
		}
		time.Sleep(50 * time.Millisecond) // pacing the retries, not waiting for a state
	}
	// Nothing was stored twice: the next event takes the next seq.
	seq, _ := ingestcpuPublish(t, n, tok, "after-the-retries")
	if want := first[old] + 1; seq != want {
		t.Fatalf("after %d retries the next event got seq %v, want %v: a retry was stored again", retries, seq, want)
	}
}
