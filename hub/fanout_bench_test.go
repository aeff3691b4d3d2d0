package hub

import (
	"bytes"
	"testing"

	"github.com/weirhub/weir/codecs"
)

// BenchmarkFanEvent is the shared reader's work on one event of
// BenchmarkBroadcast (a 100-byte JSON value): its copy and its JSON.
func BenchmarkFanEvent(b *testing.B) {
	value := append([]byte(`{"t":1700000000000000000,"n":123456}`), bytes.Repeat([]byte(" "), 64)...)
	r := &codecs.Record{Offset: 123456, Timestamp: 1700000000000, Key: []byte("123456"), Value: value}
	var e fanEvent
	var scratch, slab []byte
	b.SetBytes(int64(len(value)))
	b.ReportAllocs()
	for b.Loop() {
		newFanEvent(&e, 0, r, "1a2b3c4d-123457", &scratch, &slab)
	}
}
