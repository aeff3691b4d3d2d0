package pipelines

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/weirhub/weir/hub"
	"github.com/weirhub/weir/internal/brokertest"
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

// TestCorruptBatchDeadLettered: with on_corrupt: dead_letter, a pipeline
// over a dataset holding one poison batch among good ones delivers every
// good record, dead-letters one record describing the bad range, counts
// its offsets and commits past it, so that its stats and the group's
// committed offset agree: in process and over hub: {kafka} (issue 18).
func TestCorruptBatchDeadLettered(t *testing.T) {
	for _, mode := range []string{"embedded", "kafka"} {
		t.Run(mode, func(t *testing.T) {
			var h *hub.Hub
			hubConf := ""
			if mode == "kafka" {
				w := brokertest.StartWeir(t, hub.Options{})
				h, hubConf = w.Hub, fmt.Sprintf("hub: {kafka: {brokers: [%s]}}\n", w.Addr)
			} else {
				h = openTestHub(t)
			}
			ds, err := h.CreateDataset("in", hub.DatasetConfig{Partitions: 1})
			if err != nil {
				t.Fatal(err)
			}
			produce := func(from, to int) { hubtest.ProduceNumbered(t, h, "in", from, to, "r%d") }
			produce(0, 100)
			part, _ := ds.Partition(0)
			base, last := hubtest.AppendCorruptBatch(t, part, 50)
			produce(100, 200)
			out := newMemSink(t, "corrupt-dl-"+mode)
			cfg := loadTest(t, hubConf+`
datasets: {in: {}}
pipelines:
  p: {from: in, on_corrupt: dead_letter, to: [{memory: {id: corrupt-dl-`+mode+`}}]}
`)
			opts := Options{UntilDrained: true, DrainTimeout: 5 * time.Second}
			if mode == "embedded" {
				opts.Hub = h
			}
			e, err := New(cfg, opts)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := e.Run(ctx); err != nil || ctx.Err() != nil {
				t.Fatalf("Run = %v (context %v)", err, ctx.Err())
			}
			got := out.values()
			if len(got) != 200 || got[0] != "r0" || got[99] != "r99" || got[100] != "r100" || got[199] != "r199" {
				t.Fatalf("delivered %d records (%q...), want r0 to r199", len(got), got[:min(len(got), 3)])
			}
			st := statsOf(e, "pipelines.p")
			if st.In != 200 || st.Out != 200 || st.Dead != 1 || st.Corrupt != last-base+1 || st.Lag != 0 {
				t.Fatalf("stats %+v, want in and out 200, dead 1, corrupt %d, lag 0", st, last-base+1)
			}
			committed := h.FetchOffsets("p", nil)[hub.TopicPartition{Topic: "in", Partition: 0}].Offset
			if committed != part.HighWatermark() || committed != st.In+st.Corrupt {
				t.Fatalf("committed %d; want the end %d = in %d + corrupt %d", committed, part.HighWatermark(), st.In, st.Corrupt)
			}
			values, reasons, stages := readDead(t, h, "p-dead")
			want := fmt.Sprintf(`{"dataset":"in","partition":0,"base_offset":%d,"last_offset":%d,`, base, last)
			if len(values) != 1 || !strings.HasPrefix(values[0], want) || stages[0] != "read" || !strings.Contains(reasons[0], "in/0") {
				t.Fatalf("dead letters %q (reasons %q, stages %q), want one starting %s", values, reasons, stages, want)
			}
		})
	}
}
