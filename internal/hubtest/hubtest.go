// Package hubtest puts a hub's datasets into the states that tests of the
// packages above hub need and that producing through the hub refuses to
// make: a stored batch that does not decode (as an old log or a disk error
// leaves), and records that retention deleted before a group read them.
package hubtest

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"strings"
	"testing"

	"github.com/weirhub/weir/codecs"
	"github.com/weirhub/weir/hub"
)

// AppendCorruptBatch appends to p, below the produce check, a batch of n
// records whose zstd payload is garbled under a valid CRC, and returns the
// offsets it covers.
func AppendCorruptBatch(t testing.TB, p *hub.Partition, n int) (base, last int64) {
	t.Helper()
	b := &codecs.Builder{Compression: codecs.Zstd}
	for i := range n {
		b.Append(0, nil, fmt.Appendf(nil, `{"bad":%d,"pad":"0123456789"}`, i), nil)
	}
	batch, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	batch = bytes.Clone(batch)
	for i := codecs.HeaderSize + 8; i < len(batch); i++ {
		batch[i] ^= 0x5a
	}
	binary.BigEndian.PutUint32(batch[17:21], codecs.Checksum(batch))
	base, err = p.Log().Append(batch)
	if err != nil {
		t.Fatal(err)
	}
	return base, base + int64(n) - 1
}

// LoseToRetention produces n records of about 60 bytes, {"i":0} to
// {"i":n-1}, to partition 0 of dataset (one with small segments, such as
// SegmentBytes 4096), commits offset committed for group, and has
// retention delete the segments before offset deleteBefore. It returns
// the log start then, past committed: the records from committed to it
// are the ones the group lost.
func LoseToRetention(t testing.TB, h *hub.Hub, dataset, group string, n int, committed, deleteBefore int64) int64 {
	t.Helper()
	ds, err := h.Dataset(dataset)
	if err != nil {
		t.Fatal(err)
	}
	c := hub.NewLocalClient(h)
	for i := range n {
		rec := []hub.Record{{Value: fmt.Appendf(nil, `{"i":%d,"pad":"%s"}`, i, strings.Repeat("x", 40))}}
		if err := c.Produce(context.Background(), dataset, rec, hub.ProduceOptions{}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	tp := hub.TopicPartition{Topic: dataset, Partition: 0}
	if err := h.CommitOffsets(hub.OffsetCommitRequest{Group: group, Generation: -1,
		Offsets: map[hub.TopicPartition]hub.CommittedOffset{tp: {Offset: committed}}}); err != nil {
		t.Fatal(err)
	}
	part, err := ds.Partition(0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := part.Log().DeleteBefore(deleteBefore); err != nil {
		t.Fatal(err)
	}
	start := part.StartOffset()
	if start <= committed {
		t.Fatalf("log start %d after DeleteBefore(%d): the test needs it past the committed %d", start, deleteBefore, committed)
	}
	return start
}

// ProduceNumbered produces the records from to to-1 of dataset in one
// call, each value format with its number (`{"i":%d}`).
func ProduceNumbered(t testing.TB, h *hub.Hub, dataset string, from, to int, format string) {
	t.Helper()
	var recs []hub.Record
	for i := from; i < to; i++ {
		recs = append(recs, hub.Record{Value: fmt.Appendf(nil, format, i)})
	}
	if err := hub.NewLocalClient(h).Produce(context.Background(), dataset, recs, hub.ProduceOptions{}).FirstErr(); err != nil {
		t.Fatal(err)
	}
}
