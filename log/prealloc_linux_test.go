package log

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// diskBytes is what a file takes on disk, allocated blocks included.
func diskBytes(t *testing.T, path string) int64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512
}

// A new segment reserves its blocks; once sealed it gives back what it
// did not use, and its size is always where its data ends.
func TestPreallocation(t *testing.T) {
	dir := t.TempDir()
	const segBytes = 32 << 20
	l := openLog(t, dir, Options{SegmentBytes: segBytes})
	for i := range 10 {
		if _, err := l.Append(batchOf(t, "p", 100, 1000, int64(i))); err != nil {
			t.Fatal(err)
		}
	}
	first := segmentName(dir, 0, logSuffix)
	st, err := os.Stat(first)
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() > 2<<20 {
		t.Fatalf("size %d: preallocation changed the size", st.Size())
	}
	if got := diskBytes(t, first); got < segBytes {
		t.Skipf("this filesystem did not preallocate (%d bytes on disk)", got)
	}
	if err := l.Roll(); err != nil {
		t.Fatal(err)
	}
	if got := diskBytes(t, first); got > st.Size()+1<<20 {
		t.Fatalf("a sealed segment of %d bytes still takes %d on disk", st.Size(), got)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	segs, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	if len(segs) != 2 {
		t.Fatalf("segments %v", segs)
	}
	l = openLog(t, dir, Options{SegmentBytes: segBytes})
	defer l.Close()
	if n := len(readAll(t, l, 0)); n != 1000 {
		t.Fatalf("%d records after reopening, want 1000", n)
	}
}
