package wsnative_test

import (
	"testing"

	"github.com/vigil-sec/vigil/internal/transport/wsnative"
)

// FuzzClientMessage feeds arbitrary frames to the native protocol's client
// message and cursor decoders: they must never panic, and an accepted
// message must name a known op. Seeds: testdata/fuzz/FuzzClientMessage.
func FuzzClientMessage(f *testing.F) {
	for _, seed := range []string{
		`{"op":"subscribe","id":"s1","filter":{"categories":["audit"]},"from":"latest"}`,
		`{"op":"subscribe","id":"s2","from":{"seq":1042}}`,
		`{"op":"subscribe","id":"s3","from":{"time":"2026-11-22T10:00:00Z"}}`,
		`{"op":"unsubscribe","id":"s1"}`, `{"op":"ping"}`, `{"op":"dance"}`, `not json`, `{"op":"subscribe"}`,
		`{"op":"subscribe","id":"x","from":{"seq":1,"time":"x"}}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		m, err := wsnative.DecodeClientMessage(payload)
		if err != nil {
			return
		}
		switch m.Op {
		case "subscribe", "unsubscribe", "ping":
		default:
			t.Fatalf("accepted unknown op %q", m.Op)
		}
		_, _ = wsnative.ParseCursor(m.From)
	})
}
