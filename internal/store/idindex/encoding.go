package idindex

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// The index is one ordered key space with empty values (the same bytes
// whatever the store underneath):
//
//	'k' uvarint(len(key)) key seq       the by-id entry (seq: 8 bytes big-endian)
//	's' seq key                         the same entry by seq, for Prune
//	'm' name                            metadata: "format", "watermark"
//
// The length prefix makes the by-id encoding prefix-free, so every stored
// key that starts with 'k' uvarint(len(key)) key is this key with some seq,
// and because seqs are big-endian the lowest seq sorts first: a Lookup is
// one seek, and a key Put twice keeps both rows and answers the lowest.
// Nothing is ever read back before a write (no read-modify-write).
const (
	prefixByID  = 'k'
	prefixBySeq = 's'
	prefixMeta  = 'm'

	seqLen = 8

	// MaxKeyLen is the longest key Put accepts (tenant + "/" + id; Vigil
	// limits both far below this).
	MaxKeyLen = 4096
)

var (
	metaFormat    = []byte{prefixMeta, 'f', 'o', 'r', 'm', 'a', 't'}
	metaWatermark = []byte{prefixMeta, 'w', 'a', 't', 'e', 'r', 'm', 'a', 'r', 'k'}
	// metaPrunedBelow: every by-seq row below it is deleted (same encoding
	// as the watermark).
	metaPrunedBelow = []byte{prefixMeta, 'p', 'r', 'u', 'n', 'e', 'd'}
)

// formatVersion is stored under metaFormat; another value is refused.
const formatVersion = "idindex 1"

// appendByIDPrefix appends 'k' uvarint(len(key)) key: every row of key
// starts with it.
func appendByIDPrefix(dst []byte, key string) []byte {
	dst = append(dst, prefixByID)
	dst = binary.AppendUvarint(dst, uint64(len(key)))
	return append(dst, key...)
}

// appendByID appends the by-id row of (key, seq).
func appendByID(dst []byte, key string, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(appendByIDPrefix(dst, key), seq)
}

// appendBySeq appends the by-seq row of (key, seq).
func appendBySeq(dst []byte, key string, seq uint64) []byte {
	dst = append(dst, prefixBySeq)
	dst = binary.BigEndian.AppendUint64(dst, seq)
	return append(dst, key...)
}

// bySeqBound is the first by-seq row with a seq >= seq (an exclusive upper
// bound for the rows below seq).
func bySeqBound(seq uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{prefixBySeq}, seq)
}

var errRow = errors.New("malformed index row")

// decodeByID decodes a by-id row. It never panics and refuses any byte
// string appendByID cannot produce.
func decodeByID(b []byte) (key string, seq uint64, err error) {
	if len(b) < 1 || b[0] != prefixByID {
		return "", 0, fmt.Errorf("%w: by-id row does not start with %q", errRow, prefixByID)
	}
	n, w := binary.Uvarint(b[1:])
	if w <= 0 {
		return "", 0, fmt.Errorf("%w: by-id row has a bad key length", errRow)
	}
	if w != uvarintLen(n) {
		return "", 0, fmt.Errorf("%w: by-id row has a non-minimal key length", errRow)
	}
	rest := b[1+w:]
	if n == 0 || n > MaxKeyLen || uint64(len(rest)) != n+seqLen {
		return "", 0, fmt.Errorf("%w: by-id row of %d bytes for a key of %d", errRow, len(b), n)
	}
	seq = binary.BigEndian.Uint64(rest[n:])
	if seq == 0 {
		return "", 0, fmt.Errorf("%w: by-id row with seq 0", errRow)
	}
	return string(rest[:n]), seq, nil
}

// decodeBySeq decodes a by-seq row, with the same guarantees.
func decodeBySeq(b []byte) (key string, seq uint64, err error) {
	if len(b) < 1 || b[0] != prefixBySeq {
		return "", 0, fmt.Errorf("%w: by-seq row does not start with %q", errRow, prefixBySeq)
	}
	if len(b) < 1+seqLen+1 || len(b) > 1+seqLen+MaxKeyLen {
		return "", 0, fmt.Errorf("%w: by-seq row of %d bytes", errRow, len(b))
	}
	seq = binary.BigEndian.Uint64(b[1:])
	if seq == 0 {
		return "", 0, fmt.Errorf("%w: by-seq row with seq 0", errRow)
	}
	return string(b[1+seqLen:]), seq, nil
}

// decodeWatermark decodes the value stored under metaWatermark.
func decodeWatermark(v []byte) (uint64, error) {
	if len(v) != seqLen {
		return 0, fmt.Errorf("%w: watermark of %d bytes, want %d", errRow, len(v), seqLen)
	}
	return binary.BigEndian.Uint64(v), nil
}

func encodeWatermark(w uint64) []byte { return binary.BigEndian.AppendUint64(nil, w) }

func uvarintLen(n uint64) int {
	w := 1
	for n >= 0x80 {
		n >>= 7
		w++
	}
	return w
}
