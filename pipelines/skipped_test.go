package pipelines

import (
	"context"
	"fmt"
	"testing"

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
		if err := c.Produce(context.Background(), "in", []hub.Record{{Value: fmt.Appendf(nil, `{"i":%d,"pad":"0123456789012345678901234567890123456789"}`, i)}}); err != nil {
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
