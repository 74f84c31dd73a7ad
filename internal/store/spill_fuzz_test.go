package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
)

// FuzzSpillAdopt: whatever a spill directory's manifest says, Open never
// panics, and what it keeps reads back, seq for seq, as the log's bodies
// (a manifest that lies about seqs, sizes or offsets is refused, or its
// records fail their seq and CRC checks). The directory holds one real
// segment of seqs 1..300; the log holds the same bodies, and seqs past
// 300 differ.
//
//	go test ./internal/store -run '^$' -fuzz FuzzSpillAdopt -fuzztime 60s
func FuzzSpillAdopt(f *testing.F) {
	const n = 300
	body := func(seq uint64) []byte {
		return fmt.Appendf(nil, `{"seq-%d":"%s"}`, seq, bytes.Repeat([]byte{'x'}, int(seq%50)))
	}
	var seg []byte
	var index []int64
	for seq := uint64(1); seq <= n; seq++ {
		if (seq-1)%spillIndexEvery == 0 {
			index = append(index, int64(len(seg)))
		}
		b := body(seq)
		seg = binary.LittleEndian.AppendUint64(seg, seq)
		seg = binary.LittleEndian.AppendUint32(seg, uint32(len(b)))
		seg = binary.LittleEndian.AppendUint32(seg, crc32.Checksum(b, spillCRC))
		seg = append(seg, b...)
	}
	valid, err := json.Marshal(spillManifest{Version: 1, Stream: "s1", Segments: []spillManifestSegment{{File: "00000001.spill", First: 1, Last: n, Size: int64(len(seg)), Index: index}}})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(valid)
	f.Add(bytes.Replace(valid, []byte(`"last":300`), []byte(`"last":299`), 1))
	f.Add(bytes.Replace(valid, []byte(`"first":1`), []byte(`"first":2`), 1))
	f.Add(bytes.Replace(valid, []byte(`00000001.spill`), []byte(`../00000001.spill`), 1))
	f.Add([]byte(`{"version":1,"stream":"s1","segments":[{"file":"00000001.spill","first":1,"last":18446744073709551615,"size":1,"index":[0]}]}`))
	f.Add([]byte(`{`))
	view := &spillLogView{identity: "s1", first: 1, last: n + 50, body: func(_ context.Context, seq uint64) ([]byte, error) {
		if seq > n {
			return []byte("another event"), nil
		}
		return body(seq), nil
	}}
	f.Fuzz(func(t *testing.T, manifest []byte) {
		dir := filepath.Join(t.TempDir(), spillDirName)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "00000001.spill"), seg, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, spillManifestName), manifest, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := openReplaySpill(context.Background(), dir, 1<<30, 0, slog.New(slog.DiscardHandler), view)
		if err != nil {
			t.Fatal(err)
		}
		defer s.close()
		if _, err := os.Stat(filepath.Join(dir, spillManifestName)); !os.IsNotExist(err) {
			t.Fatalf("the manifest outlived Open: %v", err)
		}
		s.mu.RLock()
		segs := append([]*spillSegment(nil), s.segs...)
		s.mu.RUnlock()
		for _, sg := range segs {
			if sg.first < 1 || sg.flushed > n {
				t.Fatalf("kept seqs %d..%d of a segment holding 1..%d", sg.first, sg.flushed, n)
			}
			for seq := sg.first; seq <= sg.flushed; seq++ {
				got, err := spillRecordAt(sg.path, sg.first, sg.index, seq)
				if err != nil {
					continue // a reader would go to the log here
				}
				if !bytes.Equal(got, body(seq)) {
					t.Fatalf("seq %d reads %q, the log holds %q", seq, got, body(seq))
				}
			}
		}
	})
}
