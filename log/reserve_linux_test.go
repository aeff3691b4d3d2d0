package log

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// diskBytes is what the files under dir take on disk, allocated blocks
// included (st_blocks, as du counts them).
func diskBytes(t *testing.T, dir string) int64 {
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

// TestDiskFollowsData opens 1,000 logs, as a dataset of 1,000 partitions
// does, and checks that the disk they take follows their data: nothing for
// an empty log, a bounded reserve ahead of the data while a log is open,
// and the data alone (rounded to blocks) once it is closed or sealed.
func TestDiskFollowsData(t *testing.T) {
	const logs = 1000
	const segBytes = 8 << 20 // whole-segment preallocation would take 8 GiB
	root := t.TempDir()
	opts := Options{SegmentBytes: segBytes}
	for i := range logs {
		l := openLog(t, filepath.Join(root, "empty", fmt.Sprint(i)), opts)
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if got := diskBytes(t, filepath.Join(root, "empty")); got > 4<<20 {
		t.Fatalf("%d empty logs take %d bytes on disk", logs, got)
	}

	const block = 4 << 10
	// With fsync always the reserve is a window of zeros (see prewrite.go),
	// bounded the same way.
	for _, policy := range []SyncPolicy{SyncInterval, SyncAlways} {
		o := opts
		o.Sync = policy
		var data, openDisk int64
		small := filepath.Join(root, "small-"+policy.String())
		for i := range logs {
			dir := filepath.Join(small, fmt.Sprint(i))
			l := openLog(t, dir, o)
			b := batchOf(t, "p", 4, 200, 0)
			if _, err := l.Append(b); err != nil {
				t.Fatal(err)
			}
			data += int64(len(b))
			openDisk += diskBytes(t, dir)
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
		}
		if limit := data + logs*(reserveMin+block); openDisk > limit {
			t.Fatalf("fsync %s: %d open logs holding %d bytes take %d on disk, want at most %d", policy, logs, data, openDisk, limit)
		}
		if got, limit := diskBytes(t, small), data+logs*block; got > limit {
			t.Fatalf("fsync %s: %d closed logs holding %d bytes take %d on disk, want at most %d", policy, logs, data, got, limit)
		}
	}

	// A log that grows: the reserve stays a bounded step ahead of the data,
	// and a sealed segment gives back what it did not use.
	dir := filepath.Join(root, "big")
	l := openLog(t, dir, opts)
	defer l.Close()
	var written int64
	for range 300 {
		b := batchOf(t, "g", 20, 1000, 0)
		if _, err := l.Append(b); err != nil {
			t.Fatal(err)
		}
		written += int64(len(b))
		if got, limit := diskBytes(t, dir), written+max(reserveMin, written/8, reserveMax)+block; got > limit {
			t.Fatalf("a log of %d bytes takes %d on disk, want at most %d", written, got, limit)
		}
	}
	if err := l.Roll(); err != nil {
		t.Fatal(err)
	}
	l.sealWG.Wait()
	first := segmentName(dir, 0, logSuffix)
	st, err := os.Stat(first)
	if err != nil {
		t.Fatal(err)
	}
	if got := diskBytes(t, dir); got > st.Size()+4*block { // the segment rounded up, two indexes
		t.Fatalf("a sealed segment of %d bytes and its indexes take %d on disk", st.Size(), got)
	}
	if n := len(readAll(t, l, 0)); n != 300*20 {
		t.Fatalf("read %d records, want %d", n, 300*20)
	}
}
