package pipelines

import (
	"context"
	"encoding/binary"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/weirhub/weir/codecs"
	"github.com/weirhub/weir/hub"
)

// TestRetentionSkipIsCounted: a pipeline whose committed position fell
// below the log start (retention deleted records it had not read) counts
// the records skipped instead of jumping over them in silence (issue 10
// item 1).
func TestRetentionSkipIsCounted(t *testing.T) {
	h := openTestHub(t)
	ds, err := h.CreateDataset("in", hub.DatasetConfig{Partitions: 1, SegmentBytes: 4096})
	if err != nil {
		t.Fatal(err)
	}
	c := hub.NewLocalClient(h)
	for i := range 400 {
		if err := c.Produce(context.Background(), "in", []hub.Record{{Value: fmt.Appendf(nil, `{"i":%d,"pad":"0123456789012345678901234567890123456789"}`, i)}}, hub.ProduceOptions{}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	tp := hub.TopicPartition{Topic: "in", Partition: 0}
	if err := h.CommitOffsets(hub.OffsetCommitRequest{Group: "p", Generation: -1, Offsets: map[hub.TopicPartition]hub.CommittedOffset{tp: {Offset: 10}}}); err != nil {
		t.Fatal(err)
	}
	part, _ := ds.Partition(0)
	if _, err := part.Log().DeleteBefore(300); err != nil {
		t.Fatal(err)
	}
	start := part.StartOffset()
	if start <= 10 {
		t.Fatalf("log start %d after DeleteBefore(300): the test needs it past the committed 10", start)
	}
	out := newMemSink(t, "skip-out")
	cfg := loadTest(t, `
datasets: {in: {}}
pipelines:
  p:
    from: in
    to: [{memory: {id: skip-out}}]
`)
	e := runEngine(t, cfg, h)
	if got := len(out.values()); int64(got) != 400-start {
		t.Fatalf("delivered %d, want the %d records left", got, 400-start)
	}
	if st := statsOf(e, "pipelines.p"); st.Skipped != start-10 {
		t.Fatalf("pipeline stats %+v; want skipped %d (offsets 10 to %d)", st, start-10, start)
	}
}

// TestCorruptBatchFailsADrain: a pipeline over a partition holding a
// batch whose stored bytes do not decode (a valid CRC over a corrupt
// zstd payload, as an old log or a disk error leaves) reports it and,
// when it must drain, fails the run instead of retrying for ever (issue
// 18, consumer side).
func TestCorruptBatchFailsADrain(t *testing.T) {
	h := openTestHub(t)
	ds, err := h.CreateDataset("in", hub.DatasetConfig{Partitions: 1})
	if err != nil {
		t.Fatal(err)
	}
	b := &codecs.Builder{Compression: codecs.Zstd}
	for i := range 50 {
		b.Append(0, nil, fmt.Appendf(nil, `{"i":%d,"pad":"0123456789"}`, i), nil)
	}
	batch, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	batch = append([]byte(nil), batch...)
	for i := codecs.HeaderSize + 8; i < len(batch); i++ {
		batch[i] ^= 0x5a
	}
	binary.BigEndian.PutUint32(batch[17:21], codecs.Checksum(batch))
	part, _ := ds.Partition(0)
	if _, err := part.Log().Append(batch); err != nil {
		t.Fatal(err)
	}
	newMemSink(t, "corrupt-out")
	cfg := loadTest(t, `
datasets: {in: {}}
pipelines:
  p: {from: in, to: [{memory: {id: corrupt-out}}]}
`)
	e, err := New(cfg, Options{Hub: h, UntilDrained: true, DrainTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = e.Run(ctx)
	if ctx.Err() != nil {
		t.Fatal("Run hung on a corrupt batch")
	}
	if err == nil || !strings.Contains(err.Error(), "corrupt record batch") {
		t.Fatalf("Run = %v, want an error naming the corrupt batch", err)
	}
	t.Log(err)
}
