package hub

import (
	"bytes"
	"flag"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"testing"
	"time"
)

var delayPending = flag.Int("delay.pending", 200_000, "pending delayed records BenchmarkDelayPendingRSS keeps (10000000 for the full figure)")

// rssBytes reads the process's resident set size (Linux).
func rssBytes(b *testing.B) int64 {
	raw, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Skip("no /proc/self/status:", err)
	}
	for _, line := range bytes.Split(raw, []byte("\n")) {
		if v, ok := bytes.CutPrefix(line, []byte("VmRSS:")); ok {
			kb, err := strconv.ParseInt(string(bytes.TrimSpace(bytes.TrimSuffix(bytes.TrimSpace(v), []byte("kB")))), 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return kb << 10
		}
	}
	b.Fatal("no VmRSS")
	return 0
}

// BenchmarkDelayPendingRSS produces -delay.pending records, each due at
// its own time within the next day (so each is a pending batch of the
// delay partition), and reports the process's resident memory with all of
// them pending (rss-MiB, after a GC returned what it could) and the Go
// heap in use (heap-MiB). Run it alone: the RSS is the whole test
// process's.
//
//	go test ./hub/ -run '^$' -bench DelayPendingRSS -benchtime 1x -delay.pending 10000000
func BenchmarkDelayPendingRSS(b *testing.B) {
	b.ReportAllocs()
	for range b.N {
		opts := testOptions(b.TempDir())
		opts.DelayedDelivery = true
		h, err := Open(opts)
		if err != nil {
			b.Fatal(err)
		}
		ds, _ := h.CreateDataset("d", DatasetConfig{Partitions: 1})
		p, _ := ds.Partition(0)
		now := time.Now().UnixMilli()
		rng := rand.New(rand.NewPCG(1, 2))
		dues := make([]int64, 0, 10_000)
		for done := 0; done < *delayPending; done += len(dues) {
			dues = dues[:0]
			for range min(10_000, *delayPending-done) {
				dues = append(dues, now+60_000+rng.Int64N(24*time.Hour.Milliseconds()))
			}
			produceDelayedRecords(b, p, now, dues)
		}
		// Records of one produce due at the same millisecond share a batch.
		pending, _ := h.PendingDelayed("d")
		if pending > *delayPending || pending < *delayPending*99/100 {
			b.Fatalf("%d pending, want about %d", pending, *delayPending)
		}
		runtime.GC()
		debug.FreeOSMemory()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		b.ReportMetric(float64(rssBytes(b))/(1<<20), "rss-MiB")
		b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "heap-MiB")
		b.ReportMetric(float64(pending), "pending")
		h.Close()
	}
}
