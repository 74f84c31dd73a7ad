package idindex

import (
	"bytes"
	"testing"
)

// FuzzDecodeByID: any bytes decode without a panic, and whatever decodes
// is exactly what appendByID makes of the result (one encoding per entry,
// so a Lookup's row is this key's or an error).
func FuzzDecodeByID(f *testing.F) {
	f.Add(appendByID(nil, "acme/0192f1c4-1111-7000-8000-000000000001", 42))
	f.Add(appendByID(nil, "t/x", 1))
	f.Add([]byte{prefixByID, 0x80, 0x00, 'a', 0, 0, 0, 0, 0, 0, 0, 1}) // non-minimal length
	f.Add([]byte{prefixByID})
	f.Add(appendBySeq(nil, "t/x", 1))
	f.Fuzz(func(t *testing.T, b []byte) {
		key, seq, err := decodeByID(b)
		if err != nil {
			return
		}
		if again := appendByID(nil, key, seq); !bytes.Equal(again, b) {
			t.Fatalf("%x decodes to (%q, %d), which encodes to %x", b, key, seq, again)
		}
		if !bytes.HasPrefix(b, appendByIDPrefix(nil, key)) {
			t.Fatalf("%x: not under its key's prefix", b)
		}
	})
}

func FuzzDecodeBySeq(f *testing.F) {
	f.Add(appendBySeq(nil, "acme/0192f1c4-1111-7000-8000-000000000001", 42))
	f.Add(appendBySeq(nil, "t/x", 1<<63))
	f.Add([]byte{prefixBySeq, 0, 0, 0, 0, 0, 0, 0, 0, 'a'}) // seq 0
	f.Add(appendByID(nil, "t/x", 1))
	f.Fuzz(func(t *testing.T, b []byte) {
		key, seq, err := decodeBySeq(b)
		if err != nil {
			return
		}
		if again := appendBySeq(nil, key, seq); !bytes.Equal(again, b) {
			t.Fatalf("%x decodes to (%q, %d), which encodes to %x", b, key, seq, again)
		}
		if bytes.Compare(b, bySeqBound(seq)) < 0 || bytes.Compare(b, bySeqBound(seq+1)) >= 0 && seq != 1<<64-1 {
			t.Fatalf("%x (seq %d) is outside [bySeqBound(seq), bySeqBound(seq+1))", b, seq)
		}
	})
}

func FuzzDecodeWatermark(f *testing.F) {
	f.Add(encodeWatermark(0))
	f.Add(encodeWatermark(123456789))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		w, err := decodeWatermark(b)
		if err != nil {
			return
		}
		if again := encodeWatermark(w); !bytes.Equal(again, b) {
			t.Fatalf("%x decodes to %d, which encodes to %x", b, w, again)
		}
	})
}

// TestByIDOrder: the rows of one key sort by seq, and no other key's row
// sorts among them (what Lookup's single seek relies on).
func TestByIDOrder(t *testing.T) {
	keys := []string{"a", "a/", "a/b", "a/b\x00", "a/c", "b", string(make([]byte, 200))}
	for _, k := range keys {
		lo, hi := appendByID(nil, k, 1), appendByID(nil, k, 1<<64-1)
		if bytes.Compare(appendByID(nil, k, 2), appendByID(nil, k, 1000)) >= 0 {
			t.Fatalf("%q: seq 2 does not sort before seq 1000", k)
		}
		for _, other := range keys {
			if other == k {
				continue
			}
			for _, seq := range []uint64{1, 7, 1<<64 - 1} {
				r := appendByID(nil, other, seq)
				if bytes.Compare(r, lo) >= 0 && bytes.Compare(r, hi) <= 0 || bytes.HasPrefix(r, appendByIDPrefix(nil, k)) {
					t.Fatalf("row of %q seq %d falls among the rows of %q", other, seq, k)
				}
			}
		}
	}
}
