package hub

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestFetchWakeUpNotLost races each produce against the fetch that waits
// for it: a fetch long-polls at the high watermark with a long MaxWait
// while one batch is produced after a spin of 0 to 40µs, so that the
// append lands at every point of the fetch's way from its read that found
// nothing to its wait (the waiter's registration, the re-read, the timer),
// and across segment rolls. The produce is the only wake-up the fetch
// gets: one that missed it sleeps out MaxWait with data there, and the
// test fails when a fetch takes more than two seconds while MaxWait is
// 20s. Issue 9 suspected such a lost wake-up behind the giant stalls of
// the latency knee.
func TestFetchWakeUpNotLost(t *testing.T) {
	for _, fsync := range []string{"never", "interval"} {
		t.Run(fsync, func(t *testing.T) {
			opts := testOptions(t.TempDir())
			opts.Defaults.Fsync = fsync
			h := openHub(t, opts)
			defer h.Close()
			ds, err := h.CreateDataset("race", DatasetConfig{})
			if err != nil {
				t.Fatal(err)
			}
			p, _ := ds.Partition(0)
			blob := batch(t, strings.Repeat("x", 1000)) // 1 MiB segments roll every thousand or so
			req := FetchRequest{MinBytes: 1, MaxWait: 20 * time.Second, Partitions: []FetchPartition{{Dataset: "race", MaxBytes: 1 << 20}}}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			offsets, results := make(chan int64), make(chan FetchResult, 1)
			defer close(offsets)
			go func() {
				for off := range offsets {
					req.Partitions[0].Offset = off
					res := h.Fetch(ctx, req)
					results <- res[0]
					ReleaseFetch(res)
				}
			}()
			const rounds = 5000
			for off := int64(0); off < rounds; off++ {
				offsets <- off
				for end := time.Now().Add(time.Duration(off%41) * time.Microsecond); time.Now().Before(end); {
				}
				if _, err := p.Produce(blob, false); err != nil {
					t.Fatalf("Produce: %v", err)
				}
				select {
				case r := <-results:
					if r.Err != nil || r.Bytes == 0 {
						t.Fatalf("Fetch at offset %d: %d bytes, high watermark %d, %v", off, r.Bytes, r.HighWatermark, r.Err)
					}
				case <-time.After(2 * time.Second):
					cancel() // ends the fetch
					t.Fatalf("Fetch at offset %d not answered 2s after its batch was produced (MaxWait %v): the produce's wake-up was lost", off, req.MaxWait)
				}
			}
		})
	}
}
