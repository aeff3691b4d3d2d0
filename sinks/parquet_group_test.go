package sinks

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/weirhub/weir/connectors"
	"github.com/weirhub/weir/hub"
	"github.com/weirhub/weir/internal/brokertest"
	"github.com/weirhub/weir/internal/ducktest"
	"github.com/weirhub/weir/pipelines"
)

// TestParquetSinkGroupRebalance runs the same parquet pipeline as two
// members of one group over a dataset of four partitions: member A alone
// first, holding the end of every partition in unfinished files, then B
// joining (A's partitions are revoked and two move to B), then A leaving
// gracefully. Every record must be in exactly one published file: A
// drops what it held of the partitions that moved instead of publishing
// it on its stop while B writes the same records again. Both the
// in-process group client and the Kafka one (over weir's Kafka front
// door) are run.
func TestParquetSinkGroupRebalance(t *testing.T) {
	for _, overKafka := range []bool{false, true} {
		t.Run(map[bool]string{false: "in-process", true: "kafka"}[overKafka], func(t *testing.T) {
			testParquetGroupRebalance(t, overKafka)
		})
	}
}

func testParquetGroupRebalance(t *testing.T, overKafka bool) {
	var h *hub.Hub
	head := ""
	if overKafka {
		w := brokertest.StartWeir(t, hub.Options{Groups: hub.GroupOptions{MinSessionTimeout: 100 * time.Millisecond}})
		h = w.Hub
		head = fmt.Sprintf("hub: {data_dir: %s, kafka: {brokers: [%s]}}\n", t.TempDir(), w.Addr)
	} else {
		var err error
		h, err = hub.Open(hub.Options{DataDir: t.TempDir(), Defaults: hub.DatasetConfig{Fsync: "never"},
			Groups: hub.GroupOptions{MinSessionTimeout: 100 * time.Millisecond}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { h.Close() })
	}
	if _, err := h.CreateDataset("events", hub.DatasetConfig{Partitions: 4, Fsync: "never"}); err != nil {
		t.Fatal(err)
	}
	lake := t.TempDir()
	src := head + fmt.Sprintf(`
datasets:
  events: {partitions: 4}
pipelines:
  lake:
    from: events
    to:
      - parquet:
          path: %s/events
          rotate: {rows: 7, interval: 0s}
        batching: {count: 5, period: 10ms}
`, lake)
	client := hub.NewLocalClient(h)
	ctx := context.Background()
	next := 0
	// produce writes perPart records to every partition, with ids going on.
	produce := func(perPart int) {
		t.Helper()
		counts := make([]int, 4)
		var recs []hub.Record
		for ; slices.Min(counts) < perPart; next++ {
			key := []byte("k" + strconv.Itoa(next))
			p := hub.PartitionForKey(key, 4)
			if counts[p] == perPart {
				continue
			}
			counts[p]++
			recs = append(recs, hub.Record{Key: key, Value: fmt.Appendf(nil, `{"id":%d,"p":%d}`, next, p)})
		}
		for _, r := range client.Produce(ctx, "events", recs, hub.ProduceOptions{}) {
			if r.Err != nil {
				t.Fatal(r.Err)
			}
		}
	}
	committedAll := func(want int64) func() bool {
		return func() bool {
			offs := h.FetchOffsets("lake", nil)
			for p := range int32(4) {
				if offs[hub.TopicPartition{Topic: "events", Partition: p}].Offset != want {
					return false
				}
			}
			return true
		}
	}
	start := func() (stop func()) {
		cfg, err := pipelines.Load("lake.yaml", []byte(src), pipelines.LoadOptions{Env: func(string) (string, bool) { return "", false }})
		if err != nil {
			t.Fatal(err)
		}
		opts := pipelines.Options{Hub: h, DrainTimeout: 10 * time.Second}
		if overKafka {
			opts.Hub = nil
		}
		e, err := pipelines.New(cfg, opts)
		if err != nil {
			t.Fatal(err)
		}
		runCtx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- e.Run(runCtx) }()
		return func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		}
	}
	waitUntil := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s (group %+v, offsets %v)", what, h.DescribeGroup("lake").State, h.FetchOffsets("lake", nil))
			}
		}
	}
	stableWith := func(n int) func() bool {
		return func() bool {
			g := h.DescribeGroup("lake")
			return g.State == hub.GroupStable && len(g.Members) == n
		}
	}

	// A alone: 25 records a partition make three files of 7 each and
	// leave 4 held in an unfinished file of every partition.
	produce(25)
	stopA := start()
	waitUntil("A's files of the first 21 records of every partition", committedAll(21))
	time.Sleep(50 * time.Millisecond) // the last records reach A's open files

	// B joins: the group revokes A's partitions and gives two to B.
	stopB := start()
	waitUntil("a group of two", stableWith(2))
	produce(10) // 35 a partition: five files each, whoever writes them
	waitUntil("every partition published up to 35", committedAll(35))

	// A leaves gracefully: it publishes what it holds and commits.
	stopA()
	waitUntil("a group of B alone", stableWith(1))
	produce(7)
	waitUntil("every partition published up to 42", committedAll(42))
	stopB()

	// No two published files of a partition overlap.
	files := lakeFiles(t, filepath.Join(lake, "events"))
	type span struct{ first, last int64 }
	spans := map[int][]span{}
	for _, f := range files {
		var p int
		var s span
		if _, err := fmt.Sscanf(strings.TrimSuffix(f, ".parquet"), "part-%d-%d-%d", &p, &s.first, &s.last); err != nil {
			t.Fatalf("file %s: %v", f, err)
		}
		spans[p] = append(spans[p], s)
	}
	for p, ss := range spans {
		slices.SortFunc(ss, func(a, b span) int { return int(a.first - b.first) })
		end := int64(-1)
		for _, s := range ss {
			if s.first != end+1 {
				t.Errorf("partition %d: a file starts at offset %d after one ending at %d (files %v)", p, s.first, end, files)
			}
			end = max(end, s.last)
		}
		if end != 41 {
			t.Errorf("partition %d: files end at offset %d, want 41", p, end)
		}
	}
	glob := fmt.Sprintf("read_parquet('%s/events/*.parquet')", lake)
	if got := ducktest.Scalar(t, "select count(*) || '/' || count(distinct id) from "+glob); got != "168/168" {
		t.Errorf("rows/distinct ids = %s, want 168/168 (files %v)", got, files)
	}
}

// TestParquetSinkRelease: Release drops the unfinished file of a revoked
// partition unpublished, and forgets the partition's mark, so that when
// the partition comes back after another member published more of it,
// the records that member published are skipped.
func TestParquetSinkRelease(t *testing.T) {
	dir := t.TempDir()
	conf := "path: " + dir + "/r\nrotate: {rows: 5, interval: 0}"
	a := newTestParquet(t, t.TempDir(), conf)
	ctx := context.Background()
	recs := func(p int32, from, to int64) []*connectors.Message {
		var out []*connectors.Message
		for o := from; o <= to; o++ {
			m := event(int(o), 21, "")
			m.Partition, m.Offset = p, o
			out = append(out, m)
		}
		return out
	}
	if err := a.Write(ctx, append(recs(0, 0, 6), recs(1, 0, 2)...)); err != nil { // p0: 0-4 published, 5-6 held
		t.Fatal(err)
	}
	a.Release([]hub.TopicPartition{{Topic: "events", Partition: 0}})
	held := map[int32]int64{}
	a.Held(func(_ string, p int32, o int64) { held[p] = o })
	if len(held) != 1 || held[1] != 0 {
		t.Fatalf("Held after releasing partition 0 = %v, want {1: 0}", held)
	}
	// Partition 0's new owner, rotating files at other sizes, writes it
	// from the committed offset 5 and publishes 5-7 and 8-9; then the
	// partition comes back, read again from 5 (the new owner did not
	// commit).
	b := newTestParquet(t, t.TempDir(), "path: "+dir+"/r\nrotate: {rows: 3, interval: 0}")
	if err := b.Write(ctx, recs(0, 5, 9)); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.Write(ctx, recs(0, 5, 12)); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(ctx); err != nil {
		t.Fatal(err)
	}
	want := []string{"part-0-0-4.parquet", "part-0-10-12.parquet", "part-0-5-7.parquet", "part-0-8-9.parquet", "part-1-0-2.parquet"}
	if files := lakeFiles(t, filepath.Join(dir, "r")); !slices.Equal(files, want) {
		t.Fatalf("files %v, want %v", files, want)
	}
}
