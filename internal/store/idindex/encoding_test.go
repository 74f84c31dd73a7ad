package idindex

import (
	"bytes"
	"testing"
)

// FuzzDecodeSeq: any bytes decode without a panic, and whatever decodes
// is exactly what encodeSeq makes of the result.
func FuzzDecodeSeq(f *testing.F) {
	f.Add(encodeSeq(1))
	f.Add(encodeSeq(1<<64 - 1))
	f.Add(make([]byte, 8)) // seq 0
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		seq, err := decodeSeq(b)
		if err != nil {
			return
		}
		if seq == 0 {
			t.Fatalf("%x decodes to seq 0", b)
		}
		if again := encodeSeq(seq); !bytes.Equal(again, b) {
			t.Fatalf("%x decodes to %d, which encodes to %x", b, seq, again)
		}
	})
}

func FuzzDecodeBySeq(f *testing.F) {
	f.Add(appendBySeq(nil, "acme/0192f1c4-1111-7000-8000-000000000001", 42))
	f.Add(appendBySeq(nil, "t/x", 1<<63))
	f.Add([]byte{prefixBySeq, 0, 0, 0, 0, 0, 0, 0, 0, 'a'}) // seq 0
	f.Add(appendByID(nil, "t/x"))
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
