package pipelines

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/weirhub/weir/hub"
	"github.com/weirhub/weir/internal/hubtest"
)

// TestRetentionSkipIsCounted: a pipeline whose committed position fell
// below the log start (retention deleted records it had not read) counts
// the records skipped instead of jumping over them in silence (issue 10
// item 1).
func TestRetentionSkipIsCounted(t *testing.T) {
	h := openTestHub(t)
	if _, err := h.CreateDataset("in", hub.DatasetConfig{Partitions: 1, SegmentBytes: 4096}); err != nil {
		t.Fatal(err)
	}
	start := hubtest.LoseToRetention(t, h, "in", "p", 400, 10, 300)
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
	part, _ := ds.Partition(0)
	hubtest.AppendCorruptBatch(t, part, 50)
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
