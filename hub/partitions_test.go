package hub

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"
)

func openFDs(t *testing.T) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatalf("counting open files: %v", err)
	}
	return len(fds)
}

// heapInUse is the live heap after a collection.
func heapInUse() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse)
}

// duBytes is the disk the files under dir take (st_blocks, as du counts).
func duBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var total int64
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		var st syscall.Stat_t
		if err := syscall.Stat(path, &st); err != nil {
			return err
		}
		total += st.Blocks * 512
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return total
}

// TestManyPartitionsAreCheap creates a dataset of 1,000 partitions with
// the default 1 GiB segments and fsync interval: the empty dataset takes
// well under 100 MiB of disk, files open stay within MaxOpenFiles whatever
// the partition count, producing to every partition and reading each back
// works, and the hub reopens them.
func TestManyPartitionsAreCheap(t *testing.T) {
	const parts, maxFiles = 1000, 64
	dir := t.TempDir()
	opts := Options{DataDir: dir, MaxOpenFiles: maxFiles}
	before := openFDs(t)
	heapBefore := heapInUse()
	h := openHub(t, opts)
	start := time.Now()
	ds, err := h.CreateDataset("many", DatasetConfig{Partitions: parts})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("created %d partitions in %v", parts, time.Since(start))
	if got := duBytes(t, dir); got > 100<<20 {
		t.Fatalf("an empty dataset of %d partitions takes %d bytes of disk", parts, got)
	}
	checkFDs := func(when string) {
		t.Helper()
		if now := openFDs(t); now > before+maxFiles+16 {
			t.Fatalf("%s: %d files open, %d before the hub; MaxOpenFiles is %d", when, now, before, maxFiles)
		}
	}
	checkFDs("after create")
	if heap := heapInUse() - heapBefore; heap > parts*32<<10 {
		t.Fatalf("%d empty partitions hold %d bytes of heap, more than 32 KiB each", parts, heap)
	} else {
		t.Logf("%d empty partitions hold %d bytes of heap", parts, heap)
	}
	var data int64
	for i := range parts {
		p, _ := ds.Partition(int32(i))
		b := batch(t, fmt.Sprintf("p%d", i))
		data += int64(len(b))
		if _, err := p.Produce(b, true); err != nil {
			t.Fatalf("produce to %d: %v", i, err)
		}
	}
	checkFDs("after producing")
	if got := duBytes(t, dir); got > data+parts*(64<<10+8<<10)+(1<<20) {
		t.Fatalf("%d partitions holding %d bytes take %d bytes of disk", parts, data, got)
	}
	for i := range parts {
		p, _ := ds.Partition(int32(i))
		b, err := p.Log().ReadBatches(nil, 0, 1<<20)
		if err != nil || len(b) == 0 {
			t.Fatalf("reading partition %d: %d bytes, %v", i, len(b), err)
		}
	}
	checkFDs("after reading")
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	h = openHub(t, opts)
	defer h.Close()
	t.Logf("reopened %d partitions in %v", parts, time.Since(start))
	checkFDs("after reopening")
	ds, err = h.Dataset("many")
	if err != nil {
		t.Fatal(err)
	}
	for i := range parts {
		p, _ := ds.Partition(int32(i))
		if hw := p.HighWatermark(); hw != 1 {
			t.Fatalf("partition %d has high watermark %d after reopening, want 1", i, hw)
		}
	}
}
