package hub

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weirhub/weir/codecs"
)

func testOptions(dir string) Options {
	return Options{
		DataDir:  dir,
		Defaults: DatasetConfig{Fsync: "never", SegmentBytes: 1 << 20},
		Groups:   GroupOptions{MinSessionTimeout: 50 * time.Millisecond},
	}
}

func openHub(t testing.TB, opts Options) *Hub {
	t.Helper()
	h, err := Open(opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return h
}

func batch(t testing.TB, values ...string) []byte {
	t.Helper()
	var b codecs.Builder
	for _, v := range values {
		b.Append(time.Now().UnixMilli(), nil, []byte(v), nil)
	}
	out, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Clone(out)
}

func idempotentBatch(t testing.TB, pid int64, epoch int16, seq int32, values ...string) []byte {
	t.Helper()
	var b codecs.Builder
	b.SetProducer(pid, epoch, seq)
	for _, v := range values {
		b.Append(time.Now().UnixMilli(), nil, []byte(v), nil)
	}
	out, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Clone(out)
}

// values reads every record of a partition.
func values(t testing.TB, p *Partition) []string {
	t.Helper()
	var out []string
	it := p.Log().NewIterator(p.StartOffset())
	for it.Next() {
		out = append(out, string(it.Record().Value))
	}
	if it.Err() != nil {
		t.Fatal(it.Err())
	}
	return out
}

func TestDatasetsLifecycle(t *testing.T) {
	dir := t.TempDir()
	h := openHub(t, testOptions(dir))
	ds, err := h.CreateDataset("orders", DatasetConfig{Partitions: 3, RetentionTime: time.Hour, Fsync: "always"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.CreateDataset("orders", DatasetConfig{}); !errors.Is(err, ErrDatasetExists) {
		t.Fatalf("second create: %v", err)
	}
	for _, bad := range []string{"", "..", "with space", "sl/ash", string(make([]byte, 250))} {
		if _, err := h.CreateDataset(bad, DatasetConfig{}); !errors.Is(err, ErrInvalidDatasetName) {
			t.Errorf("CreateDataset(%q) = %v, want ErrInvalidDatasetName", bad, err)
		}
	}
	if _, err := h.CreateDataset("neg", DatasetConfig{Partitions: -1}); !errors.Is(err, ErrInvalidPartitions) {
		t.Errorf("negative partitions: %v", err)
	}
	if _, err := h.CreateDataset("badfsync", DatasetConfig{Fsync: "sometimes"}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("bad fsync: %v", err)
	}
	id := ds.ID()
	p, _ := ds.Partition(2)
	if _, err := p.Produce(batch(t, "a", "b"), true); err != nil {
		t.Fatal(err)
	}
	if err := h.AddPartitions("orders", 5); err != nil {
		t.Fatal(err)
	}
	if err := h.AddPartitions("orders", 4); !errors.Is(err, ErrInvalidPartitions) {
		t.Fatalf("shrinking: %v", err)
	}
	h.Close()

	h = openHub(t, testOptions(dir))
	ds, err = h.Dataset("orders")
	if err != nil {
		t.Fatal(err)
	}
	cfg := ds.Config()
	if ds.ID() != id || ds.NumPartitions() != 5 || cfg.RetentionTime != time.Hour || cfg.Fsync != "always" {
		t.Fatalf("after reopen: id %x partitions %d config %+v", ds.ID(), ds.NumPartitions(), cfg)
	}
	p, _ = ds.Partition(2)
	if got := values(t, p); fmt.Sprint(got) != "[a b]" {
		t.Fatalf("records after reopen: %v", got)
	}
	if err := h.DeleteDataset("orders"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Dataset("orders"); !errors.Is(err, ErrUnknownDataset) {
		t.Fatalf("after delete: %v", err)
	}
	ds2, err := h.CreateDataset("orders", DatasetConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if ds2.ID() == id || ds2.NumPartitions() != 1 {
		t.Fatalf("recreated dataset: id %x (old %x), %d partitions", ds2.ID(), id, ds2.NumPartitions())
	}
	p, _ = ds2.Partition(0)
	if got := values(t, p); len(got) != 0 {
		t.Fatalf("recreated dataset has old records: %v", got)
	}
	// Auto creation.
	if _, err := h.DatasetOrCreate("auto"); err != nil {
		t.Fatal(err)
	}
	h.Close()
	opts := testOptions(dir)
	opts.DisableAutoCreate = true
	h = openHub(t, opts)
	defer h.Close()
	if _, err := h.DatasetOrCreate("never"); !errors.Is(err, ErrUnknownDataset) {
		t.Fatalf("auto create disabled: %v", err)
	}
	if entries, _ := os.ReadDir(filepath.Join(dir, "datasets")); len(entries) != 2 {
		t.Fatalf("datasets dir holds %d entries, want orders and auto", len(entries))
	}
}

func TestProduceRejectsBadBatches(t *testing.T) {
	h := openHub(t, testOptions(t.TempDir()))
	defer h.Close()
	ds, _ := h.CreateDataset("t", DatasetConfig{MaxMessageBytes: 1000})
	p, _ := ds.Partition(0)
	big := batch(t, string(make([]byte, 2000)))
	if _, err := p.Produce(big, true); !errors.Is(err, ErrBatchTooLarge) {
		t.Errorf("big batch: %v", err)
	}
	bad := batch(t, "x")
	bad[len(bad)-1] ^= 1
	if _, err := p.Produce(bad, true); !errors.Is(err, ErrCorruptBatch) {
		t.Errorf("bad CRC: %v", err)
	}
	if _, err := p.Produce([]byte{1, 2, 3}, true); !errors.Is(err, ErrCorruptBatch) {
		t.Errorf("garbage: %v", err)
	}
	var b codecs.Builder
	b.Attributes = codecs.AttrTransactional
	b.Append(0, nil, []byte("tx"), nil)
	tx, _ := b.Build()
	if _, err := p.Produce(bytes.Clone(tx), true); !errors.Is(err, ErrInvalidTxnState) {
		t.Errorf("transactional outside a transaction: %v", err)
	}
	if p.HighWatermark() != 0 {
		t.Fatalf("rejected batches were stored")
	}
}

func TestIdempotentProducer(t *testing.T) {
	dir := t.TempDir()
	h := openHub(t, testOptions(dir))
	ds, _ := h.CreateDataset("idem", DatasetConfig{Partitions: 1})
	p, _ := ds.Partition(0)
	pid, epoch, err := h.InitProducerID("", -1, -1)
	if err != nil || pid < 0 || epoch != 0 {
		t.Fatalf("InitProducerID = %d, %d, %v", pid, epoch, err)
	}
	pid2, _, _ := h.InitProducerID("", -1, -1)
	if pid2 == pid {
		t.Fatal("two producers got the same id")
	}
	b0 := idempotentBatch(t, pid, 0, 0, "a", "b")
	r, err := p.Produce(bytes.Clone(b0), true)
	if err != nil || r.BaseOffset != 0 {
		t.Fatalf("first = %+v, %v", r, err)
	}
	if _, err := p.Produce(idempotentBatch(t, pid, 0, 2, "c"), true); err != nil {
		t.Fatal(err)
	}
	// The retry of the first batch is answered with its offset, not stored.
	r, err = p.Produce(bytes.Clone(b0), true)
	if err != nil || r.BaseOffset != 0 || !r.Duplicate {
		t.Fatalf("retry = %+v, %v; want offset 0, duplicate", r, err)
	}
	if _, err := p.Produce(idempotentBatch(t, pid, 0, 7, "gap"), true); !errors.Is(err, ErrOutOfOrderSequence) {
		t.Fatalf("gap: %v", err)
	}
	if _, err := p.Produce(idempotentBatch(t, pid2, 0, 5, "new producer mid-stream"), true); !errors.Is(err, ErrOutOfOrderSequence) {
		t.Fatalf("unknown producer starting at 5: %v", err)
	}
	// A new epoch fences the old one.
	_, e1, _ := h.InitProducerID("", pid, 0)
	if e1 != 1 {
		t.Fatalf("bumped epoch = %d", e1)
	}
	if _, err := p.Produce(idempotentBatch(t, pid, 1, 0, "d"), true); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Produce(idempotentBatch(t, pid, 0, 3, "zombie"), true); !errors.Is(err, ErrInvalidProducerEpoch) {
		t.Fatalf("old epoch: %v", err)
	}
	if got := values(t, p); fmt.Sprint(got) != "[a b c d]" {
		t.Fatalf("stored %v", got)
	}
	h.Close()

	// The producer state survives a restart: from the snapshot, and
	// rebuilt from the log when the snapshot is gone.
	for _, dropSnapshot := range []bool{false, true} {
		if dropSnapshot {
			os.Remove(filepath.Join(dir, "datasets", "idem", "0", producerSnapshot))
		}
		h = openHub(t, testOptions(dir))
		ds, _ = h.Dataset("idem")
		p, _ = ds.Partition(0)
		r, err := p.Produce(idempotentBatch(t, pid, 1, 0, "d"), true)
		if err != nil || r.BaseOffset != 3 || !r.Duplicate {
			t.Fatalf("retry after restart (snapshot dropped: %v) = %+v, %v", dropSnapshot, r, err)
		}
		if _, err := p.Produce(idempotentBatch(t, pid, 1, 5, "gap"), true); !errors.Is(err, ErrOutOfOrderSequence) {
			t.Fatalf("gap after restart: %v", err)
		}
		h.Close()
	}
	h = openHub(t, testOptions(dir))
	defer h.Close()
	if pid3, _, _ := h.InitProducerID("", -1, -1); pid3 == pid || pid3 == pid2 {
		t.Fatalf("producer id %d reused after restart", pid3)
	}
}

func TestSeveralBatchesInOneProduce(t *testing.T) {
	h := openHub(t, testOptions(t.TempDir()))
	defer h.Close()
	ds, _ := h.CreateDataset("multi", DatasetConfig{})
	p, _ := ds.Partition(0)
	blob := append(idempotentBatch(t, 9, 0, 0, "a"), idempotentBatch(t, 9, 0, 1, "b", "c")...)
	r, err := p.Produce(bytes.Clone(blob), true)
	if err != nil || r.BaseOffset != 0 {
		t.Fatalf("Produce = %+v, %v", r, err)
	}
	// The same request retried is a duplicate as a whole.
	r, err = p.Produce(bytes.Clone(blob), true)
	if err != nil || !r.Duplicate || r.BaseOffset != 0 {
		t.Fatalf("retried request = %+v, %v", r, err)
	}
	bad := append(idempotentBatch(t, 9, 0, 3, "d"), idempotentBatch(t, 9, 0, 9, "e")...)
	if _, err := p.Produce(bad, true); !errors.Is(err, ErrOutOfOrderSequence) {
		t.Fatalf("gap inside a request: %v", err)
	}
	if got := values(t, p); fmt.Sprint(got) != "[a b c]" {
		t.Fatalf("stored %v", got)
	}
}

func TestFetchLongPoll(t *testing.T) {
	h := openHub(t, testOptions(t.TempDir()))
	defer h.Close()
	ds, _ := h.CreateDataset("lp", DatasetConfig{Partitions: 2})
	req := FetchRequest{MinBytes: 1, MaxWait: 5 * time.Second, Partitions: []FetchPartition{
		{Dataset: "lp", Partition: 0, Offset: 0, MaxBytes: 1 << 20},
		{Dataset: "lp", Partition: 1, Offset: 0, MaxBytes: 1 << 20},
	}}
	done := make(chan []FetchResult)
	start := time.Now()
	go func() { done <- h.Fetch(context.Background(), req) }()
	time.Sleep(30 * time.Millisecond)
	p1, _ := ds.Partition(1)
	if _, err := p1.Produce(batch(t, "wake"), true); err != nil {
		t.Fatal(err)
	}
	var res []FetchResult
	select {
	case res = <-done:
	case <-time.After(3 * time.Second):
		t.Fatal("fetch was not woken by a produce")
	}
	defer ReleaseFetch(res)
	if time.Since(start) > 2*time.Second || res[1].Bytes == 0 || res[0].Bytes != 0 || res[1].HighWatermark != 1 {
		t.Fatalf("results %+v after %v", res, time.Since(start))
	}
	// Nothing to read: it waits MaxWait, then returns empty.
	req.MaxWait = 100 * time.Millisecond
	req.Partitions[1].Offset = 1
	start = time.Now()
	res2 := h.Fetch(context.Background(), req)
	if el := time.Since(start); el < 90*time.Millisecond || res2[0].Bytes+res2[1].Bytes != 0 {
		t.Fatalf("empty fetch returned after %v with %d bytes", el, res2[0].Bytes+res2[1].Bytes)
	}
	// Errors are per partition and immediate.
	req.Partitions = append(req.Partitions, FetchPartition{Dataset: "lp", Partition: 0, Offset: 99}, FetchPartition{Dataset: "none", Partition: 0})
	req.MaxWait = 5 * time.Second
	start = time.Now()
	res3 := h.Fetch(context.Background(), req)
	if !errors.Is(res3[2].Err, ErrOffsetOutOfRange) || !errors.Is(res3[3].Err, ErrUnknownDataset) || time.Since(start) > time.Second {
		t.Fatalf("errors: %v, %v after %v", res3[2].Err, res3[3].Err, time.Since(start))
	}
}

// TestFetchMinBytesAnsweredWhenReached checks the long poll against
// MinBytes: a fetch waiting with a long MaxWait is not answered while the
// partition holds fewer bytes than MinBytes, and is answered as soon as
// the produce that reaches MinBytes is appended, with every batch, not
// when MaxWait runs out.
func TestFetchMinBytesAnsweredWhenReached(t *testing.T) {
	h := openHub(t, testOptions(t.TempDir()))
	defer h.Close()
	ds, _ := h.CreateDataset("mb", DatasetConfig{})
	p, _ := ds.Partition(0)
	one := int32(len(batch(t, "x")))
	req := FetchRequest{MinBytes: 3 * one, MaxWait: 20 * time.Second, Partitions: []FetchPartition{
		{Dataset: "mb", Partition: 0, Offset: 0, MaxBytes: 1 << 20}}}
	done := make(chan []FetchResult, 1)
	go func() { done <- h.Fetch(context.Background(), req) }()
	for i := range 2 {
		if _, err := p.Produce(batch(t, "x"), true); err != nil {
			t.Fatal(err)
		}
		select {
		case res := <-done:
			t.Fatalf("answered with %d of %d bytes after %d produce(s)", res[0].Bytes, req.MinBytes, i+1)
		case <-time.After(50 * time.Millisecond):
		}
	}
	if _, err := p.Produce(batch(t, "x"), true); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	select {
	case res := <-done:
		defer ReleaseFetch(res)
		if res[0].Err != nil || res[0].Bytes != int64(3*one) || res[0].HighWatermark != 3 {
			t.Fatalf("result %+v", res[0])
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("not answered 10s after MinBytes (%d) were there; MaxWait is %v", req.MinBytes, req.MaxWait)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("answered %v after the produce that reached MinBytes", took)
	}
}

func TestListOffset(t *testing.T) {
	h := openHub(t, testOptions(t.TempDir()))
	defer h.Close()
	ds, _ := h.CreateDataset("lo", DatasetConfig{})
	p, _ := ds.Partition(0)
	var b codecs.Builder
	for i := range 10 {
		b.Reset()
		b.Append(int64(1000+i*10), nil, []byte{byte(i)}, nil)
		out, _ := b.Build()
		p.Produce(bytes.Clone(out), true)
	}
	for _, tt := range []struct{ ts, want int64 }{{-2, 0}, {-1, 10}, {1000, 0}, {1001, 1}, {1050, 5}, {5000, 10}} {
		if got, err := p.ListOffset(tt.ts); err != nil || got != tt.want {
			t.Errorf("ListOffset(%d) = %d, %v; want %d", tt.ts, got, err, tt.want)
		}
	}
}

func TestRetentionScheduling(t *testing.T) {
	h := openHub(t, testOptions(t.TempDir()))
	defer h.Close()
	ds, _ := h.CreateDataset("ret", DatasetConfig{SegmentBytes: 4096, RetentionBytes: 8192})
	p, _ := ds.Partition(0)
	for range 100 {
		p.Produce(batch(t, string(make([]byte, 200))), true)
	}
	if n := h.EnforceRetention(); n == 0 || p.StartOffset() == 0 {
		t.Fatalf("retention deleted %d segments, start offset %d", n, p.StartOffset())
	}
}

var _ = sync.Mutex{}

// TestRetentionReportsUnconsumedRecords: when retention deletes records
// below a group's committed offset, the hub logs a warning naming the
// dataset, the group and the records it will never read, and counts them
// in Stats; a group that had read them is not reported. Retention changed
// on the live dataset (AlterDataset) is what deletes them.
func TestRetentionReportsUnconsumedRecords(t *testing.T) {
	var logs bytes.Buffer
	opts := testOptions(t.TempDir())
	opts.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	h := openHub(t, opts)
	defer h.Close()
	ds, _ := h.CreateDataset("backlog", DatasetConfig{SegmentBytes: 4096})
	p, _ := ds.Partition(0)
	for range 100 {
		if _, err := p.Produce(batch(t, string(make([]byte, 200))), true); err != nil {
			t.Fatal(err)
		}
	}
	commit := func(group string, off int64) {
		t.Helper()
		if err := h.CommitOffsets(OffsetCommitRequest{Group: group, Generation: -1,
			Offsets: map[TopicPartition]CommittedOffset{{"backlog", 0}: {Offset: off}}}); err != nil {
			t.Fatal(err)
		}
	}
	commit("slow", 3)
	commit("done", 100)
	if n := h.EnforceRetention(); n != 0 {
		t.Fatalf("retention deleted %d segments before any retention was set", n)
	}
	cfg := ds.Config()
	cfg.RetentionBytes = 8192
	if _, changed, err := h.AlterDataset("backlog", cfg, false); err != nil || len(changed) == 0 {
		t.Fatalf("AlterDataset retention.bytes: %v %v", changed, err)
	}
	if n := h.EnforceRetention(); n == 0 {
		t.Fatal("retention.bytes set on the live dataset deleted nothing")
	}
	start := p.StartOffset()
	want := start - 3
	if got := h.DatasetStats()["backlog"].UnconsumedDeleted; got != want {
		t.Errorf("Stats UnconsumedDeleted = %d, want %d (start %d, group slow at 3)", got, want, start)
	}
	out := logs.String()
	if !strings.Contains(out, "level=WARN") || !strings.Contains(out, "dataset=backlog") || !strings.Contains(out, "group=slow") ||
		!strings.Contains(out, fmt.Sprintf("records_skipped=%d", want)) {
		t.Errorf("no warning naming the dataset, group and records skipped:\n%s", out)
	}
	if strings.Contains(out, "group=done") {
		t.Errorf("a group that had read everything was reported:\n%s", out)
	}
	// The second run deletes nothing more and reports nothing more.
	h.EnforceRetention()
	if got := h.DatasetStats()["backlog"].UnconsumedDeleted; got != want {
		t.Errorf("after a second run UnconsumedDeleted = %d, want %d", got, want)
	}
}

// TestUpdateDataset: a declarative config applied to an existing dataset
// changes what is safe at once and persistently, and reports what it
// refused (fewer partitions, another fsync policy).
func TestUpdateDataset(t *testing.T) {
	dir := t.TempDir()
	h := openHub(t, testOptions(dir))
	if _, err := h.CreateDataset("orders", DatasetConfig{Partitions: 3, RetentionTime: time.Hour, Fsync: "always"}); err != nil {
		t.Fatal(err)
	}
	changed, refused, err := h.UpdateDataset("orders", DatasetConfig{Partitions: 2, Fsync: "never", RetentionTime: 2 * time.Hour, SegmentBytes: 1 << 16})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"retention.ms=3600000->7200000", "segment.bytes=1048576->65536"}; !slices.Equal(changed, want) {
		t.Errorf("changed = %q, want %q", changed, want)
	}
	if len(refused) != 2 || !strings.Contains(refused[0], "partitions: 2 asked, the dataset has 3") || !strings.Contains(refused[1], "fsync: never asked, the dataset keeps always") {
		t.Errorf("refused = %q", refused)
	}
	if changed, refused, err = h.UpdateDataset("orders", DatasetConfig{Partitions: 4}); err != nil || len(refused) != 0 || !slices.Equal(changed, []string{"partitions=3->4"}) {
		t.Errorf("growing to 4: %q %q %v", changed, refused, err)
	}
	h.Close()
	h = openHub(t, testOptions(dir))
	defer h.Close()
	ds, err := h.Dataset("orders")
	if err != nil {
		t.Fatal(err)
	}
	if c := ds.Config(); c.RetentionTime != 2*time.Hour || c.SegmentBytes != 1<<16 || c.Partitions != 4 || c.Fsync != "always" || ds.NumPartitions() != 4 {
		t.Errorf("after a restart: %+v, %d partitions", c, ds.NumPartitions())
	}
}

// TestDeletedDatasetRemoved: a deleted dataset's directory is removed in
// the background once DeleteDataset returns (Close waits for it), and one
// that a crash left behind is removed by the next Open.
func TestDeletedDatasetRemoved(t *testing.T) {
	dir := t.TempDir()
	datasets := filepath.Join(dir, "datasets")
	left := filepath.Join(datasets, ".deleted-old-1")
	if err := os.MkdirAll(filepath.Join(left, "0"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(left, "0", "00000000000000000000.log"), make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	h := openHub(t, testOptions(dir))
	ds, err := h.CreateDataset("orders", DatasetConfig{Partitions: 2})
	if err != nil {
		t.Fatal(err)
	}
	p, _ := ds.Partition(0)
	if _, err := p.Produce(batch(t, "a", "b"), false); err != nil {
		t.Fatal(err)
	}
	if err := h.DeleteDataset("orders"); err != nil {
		t.Fatal(err)
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(datasets)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		t.Errorf("after Close, datasets/ holds %s", e.Name())
	}
}

// TestDeleteRecordsWithoutProduceLock: DeleteRecords persists the new
// start offset (an fsync, long on a busy disk) without the partition's
// produce lock, so a produce in progress neither waits for it nor holds
// it up.
func TestDeleteRecordsWithoutProduceLock(t *testing.T) {
	h := openHub(t, testOptions(t.TempDir()))
	defer h.Close()
	ds, err := h.CreateDataset("orders", DatasetConfig{})
	if err != nil {
		t.Fatal(err)
	}
	p, _ := ds.Partition(0)
	for range 3 {
		if _, err := p.Produce(batch(t, "a", "b"), false); err != nil {
			t.Fatal(err)
		}
	}
	p.mu.Lock() // a produce holding the lock
	done := make(chan error, 1)
	go func() {
		_, err := p.DeleteRecords(4)
		done <- err
	}()
	select {
	case err := <-done:
		p.mu.Unlock()
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		p.mu.Unlock()
		<-done
		t.Fatal("DeleteRecords waited for the produce lock")
	}
	if got := p.StartOffset(); got != 4 {
		t.Fatalf("start offset %d after DeleteRecords(4), want 4", got)
	}
}
