package log

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// openFDs counts this process's open file descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatalf("counting open files: %v", err)
	}
	return len(fds)
}

// TestOpenFilesBounded runs 300 logs of several segments each, sharing a
// FileCache of 32 files and one Syncer, under an open-file limit of 160:
// far fewer than their 1,200 segment files. Appending to all of them and
// then reading every one from its oldest segment works, and the files open
// stay within the cache's limit.
func TestOpenFilesBounded(t *testing.T) {
	const logs, cacheLimit = 300, 32
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &old); err != nil {
		t.Fatal(err)
	}
	lim := old
	lim.Cur = 160
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	defer syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old)
	before := openFDs(t)

	files := NewFileCache(cacheLimit)
	syncer := NewSyncer(5*time.Millisecond, 2)
	defer syncer.Close()
	root := t.TempDir()
	opts := Options{SegmentBytes: 4096, Files: files, Syncer: syncer, SkipLock: true}
	ls := make([]*Log, logs)
	for i := range ls {
		ls[i] = openLog(t, filepath.Join(root, fmt.Sprint(i)), opts)
	}
	const rounds = 12 // about 4 segments per log
	for r := range rounds {
		for i, l := range ls {
			if _, err := l.Append(batchOf(t, fmt.Sprintf("l%d.r%d", i, r), 3, 400, 0)); err != nil {
				t.Fatalf("log %d round %d: %v", i, r, err)
			}
		}
	}
	for i, l := range ls {
		if got := len(*l.segs.Load()); got < 3 {
			t.Fatalf("log %d has %d segments, want several", i, got)
		}
		l.sealWG.Wait()
	}
	if n := files.Stats().Open; n > cacheLimit {
		t.Fatalf("%d segment files open after appending, limit %d", n, cacheLimit)
	}
	// Read every log from its first segment, a little of each at a time.
	its := make([]*Iterator, logs)
	counts := make([]int, logs)
	for i, l := range ls {
		its[i] = l.NewIterator(0)
		its[i].ChunkBytes = 1
	}
	for more := true; more; {
		more = false
		for i, it := range its {
			if it.Next() {
				counts[i]++
				more = true
			} else if it.Err() != nil {
				t.Fatalf("reading log %d: %v", i, it.Err())
			}
		}
		if n := files.Stats().Open; n > cacheLimit {
			t.Fatalf("%d segment files open while reading, limit %d", n, cacheLimit)
		}
	}
	for i, n := range counts {
		if n != rounds*3 {
			t.Fatalf("log %d: read %d records, want %d", i, n, rounds*3)
		}
	}
	if now := openFDs(t); now > before+cacheLimit+8 {
		t.Fatalf("%d file descriptors open, %d before the logs: more than the cache's %d", now, before, cacheLimit)
	}
	st := files.Stats()
	t.Logf("%d logs: %d files open, %d opens, %d evictions", logs, st.Open, st.Opens, st.Evictions)
	for _, l := range ls {
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if n := files.Stats().Open; n != 0 {
		t.Fatalf("%d files still open after closing every log", n)
	}
}
