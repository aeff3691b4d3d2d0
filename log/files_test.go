package log

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
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

// indexMappings counts the mappings of this process whose file is an
// index file under dir.
func indexMappings(t *testing.T, dir string) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Fatalf("reading the mappings: %v", err)
	}
	n := 0
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, dir) && (strings.HasSuffix(line, indexSuffix) || strings.HasSuffix(line, timeIndexSuffix)) {
			n++
		}
	}
	return n
}

// indexFDs counts this process's open descriptors on index files under dir.
func indexFDs(t *testing.T, dir string) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatalf("listing open files: %v", err)
	}
	n := 0
	for _, fd := range fds {
		p, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name()))
		if err == nil && strings.HasPrefix(p, dir) && (strings.HasSuffix(p, indexSuffix) || strings.HasSuffix(p, timeIndexSuffix)) {
			n++
		}
	}
	return n
}

// TestIdleClosedSegmentsHoldNoIndexes reopens a log of many closed
// segments: their indexes are neither open, nor mapped, nor in memory
// until a read needs one; a read loads only the index of the segment it
// reads, and the loaded indexes stay within the cache's memory bound
// while every segment is read, with every record read back.
func TestIdleClosedSegmentsHoldNoIndexes(t *testing.T) {
	const segments = 40
	dir := t.TempDir()
	opts := Options{SegmentBytes: 8 << 10, IndexIntervalBytes: 512, SkipLock: true}
	l := openLog(t, dir, opts)
	records := 0
	for i := 0; len(*l.segs.Load()) <= segments; i++ {
		if _, err := l.Append(batchOf(t, fmt.Sprintf("b%d", i), 4, 300, 0)); err != nil {
			t.Fatal(err)
		}
		records += 4
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	files := NewFileCache(8)
	opts.Files = files
	l = openLog(t, dir, opts)
	defer l.Close()
	segs := *l.segs.Load()
	closed := segs[:len(segs)-1]
	loaded := func() int {
		n := 0
		for _, s := range closed {
			if s.off.loaded() {
				n++
			}
			if s.tim.loaded() {
				n++
			}
		}
		return n
	}
	if n := loaded(); n != 0 {
		t.Fatalf("after Open, %d indexes of the %d closed segments are in memory, want 0", n, len(closed))
	}
	if n := indexMappings(t, dir); n != 0 {
		t.Fatalf("after Open, %d index files are mapped, want 0", n)
	}
	if n := indexFDs(t, dir); n != 0 {
		t.Fatalf("after Open, %d index files are open, want 0", n)
	}
	if st := files.Stats(); st.IndexesLoaded != 0 || st.IndexBytes != 0 {
		t.Fatalf("after Open, the cache holds %d indexes of %d bytes, want none", st.IndexesLoaded, st.IndexBytes)
	}

	// One read in the middle of the log loads that segment's offset index only.
	mid := closed[len(closed)/2]
	it := l.NewIterator(mid.base + 1)
	it.ChunkBytes = 1
	if !it.Next() {
		t.Fatalf("reading offset %d: %v", mid.base+1, it.Err())
	}
	if !mid.off.loaded() || loaded() != 1 {
		t.Fatalf("after reading offset %d: its segment's index loaded %v, %d indexes in memory; want it alone", mid.base+1, mid.off.loaded(), loaded())
	}

	// Reading everything keeps the indexes within a bound of three.
	bound := 3 * int64(len(mid.off.entries()))
	files.SetIndexMemory(bound)
	it = l.NewIterator(0)
	it.ChunkBytes = 1
	n := 0
	for it.Next() {
		n++
		if st := files.Stats(); st.IndexBytes > bound {
			t.Fatalf("after %d records, indexes of %d bytes loaded, bound %d", n, st.IndexBytes, bound)
		}
	}
	if it.Err() != nil || n != records {
		t.Fatalf("read %d records (%v), want %d", n, it.Err(), records)
	}
	if st := files.Stats(); st.IndexEvictions == 0 || st.IndexLoads < int64(len(closed)) {
		t.Fatalf("reading every segment: %d index loads, %d evictions; want one load per closed segment (%d) and evictions", st.IndexLoads, st.IndexEvictions, len(closed))
	}
	if n := indexMappings(t, dir) + indexFDs(t, dir); n != 0 {
		t.Fatalf("after reading, %d index files mapped or open, want 0", n)
	}
	// Offsets by time still use (and load) the time indexes.
	if _, err := l.OffsetForTime(0); err != nil {
		t.Fatal(err)
	}
}
