package idindex

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// The index is one ordered key space (the same bytes whatever the store
// underneath):
//
//	'k' key        -> seq     the by-id row: the lowest seq Put for key
//	's' seq key    -> (empty) the same entry by seq, for Prune
//	'm' name       -> value   metadata: "format", "watermark", "pruned"
//
// seq is 8 bytes big-endian. A by-id row is one exact key, so a Lookup is a
// point read (Pebble answers most misses from its bloom filters). Put
// never reads: it merges its seq into the row, keeping the lower of the
// stored and the new one (Pebble's merge operator, folded by its reads and
// compactions), so a key Put twice answers its first seq.
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
const formatVersion = "idindex 2"

// appendByID appends the by-id row key of key.
func appendByID(dst []byte, key string) []byte {
	return append(append(dst, prefixByID), key...)
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

// decodeSeq decodes a by-id row's value (a seq, never 0). It never
// panics and refuses any byte string encodeSeq cannot produce.
func decodeSeq(v []byte) (uint64, error) {
	if len(v) != seqLen {
		return 0, fmt.Errorf("%w: seq of %d bytes, want %d", errRow, len(v), seqLen)
	}
	seq := binary.BigEndian.Uint64(v)
	if seq == 0 {
		return 0, fmt.Errorf("%w: seq 0", errRow)
	}
	return seq, nil
}

func encodeSeq(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }

// decodeBySeq decodes a by-seq row key, with the same guarantees.
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
