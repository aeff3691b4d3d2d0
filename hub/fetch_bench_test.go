package hub

import (
	"bytes"
	"context"
	"testing"
	"time"
)

// BenchmarkFetchWoken is the tail of a produce→consume trip inside the
// hub: a fetch long-polls a partition (MinBytes 1, MaxWait 5s) and each
// op produces one batch of one 1 KiB record and waits for the fetch it
// wakes. allocs/op are the hub's allocations per produce and woken fetch
// (no Kafka framing: hub/kafka adds its own), ns/op the mean round trip.
func BenchmarkFetchWoken(b *testing.B) {
	h := openHub(b, Options{DataDir: b.TempDir(), Defaults: DatasetConfig{Fsync: "never", SegmentBytes: 64 << 20}})
	defer h.Close()
	ds, err := h.CreateDataset("tail", DatasetConfig{})
	if err != nil {
		b.Fatal(err)
	}
	p, _ := ds.Partition(0)
	blob := batch(b, string(bytes.Repeat([]byte("x"), 1024)))
	req := FetchRequest{MinBytes: 1, MaxWait: 5 * time.Second, Partitions: []FetchPartition{{Dataset: "tail", Partition: 0, MaxBytes: 1 << 20}}}
	ctx := context.Background()
	// The fetcher runs in a goroutine of its own, as a connection's does,
	// and says when it is about to wait, so that each produce wakes it.
	offsets, results := make(chan int64), make(chan []FetchResult)
	go func() {
		for off := range offsets {
			req.Partitions[0].Offset = off
			results <- h.Fetch(ctx, req)
		}
	}()
	b.SetBytes(int64(len(blob)))
	b.ReportAllocs()
	var off int64
	for b.Loop() {
		offsets <- off
		time.Sleep(0) // let the fetch start waiting (it may also find the batch at once)
		if _, err := p.Produce(blob, true); err != nil {
			b.Fatal(err)
		}
		res := <-results
		if res[0].Err != nil || res[0].Bytes == 0 {
			b.Fatalf("fetch at %d: %+v", off, res[0])
		}
		ReleaseFetch(res)
		off++
	}
	close(offsets)
}
