package log

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// fileSize is the size of the file at path.
func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

// dataEnd is where the data of l's active segment ends.
func dataEnd(l *Log) (string, int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.active.path, l.active.written
}

// TestPrewriteWindow: with fsync always, appends leave zeros written ahead
// of the active segment's data (the file is longer than the data), which
// readers, Inspect and Verify never take for records; the window is given
// back (the file ends with its data) when the segment is sealed, when the
// log stops growing for a while, and on Close.
func TestPrewriteWindow(t *testing.T) {
	defer func(d time.Duration) { prewriteIdle = d }(prewriteIdle)
	prewriteIdle = 50 * time.Millisecond
	dir := t.TempDir()
	opts := Options{Sync: SyncAlways, SegmentBytes: 8 << 20}
	l := openLog(t, dir, opts)
	defer l.Close()
	var want []string
	appendSome := func(prefix string, n int) {
		t.Helper()
		for i := range n {
			tag := fmt.Sprint(prefix, i)
			if _, err := l.Append(batchOf(t, tag, 4, 1000, 0)); err != nil {
				t.Fatal(err)
			}
			for j := range 4 {
				want = append(want, fmt.Sprintf("%s/%d/4", tag, j))
			}
		}
	}
	checkRead := func(when string) {
		t.Helper()
		got := readAll(t, l, 0)
		if len(got) != len(want) {
			t.Fatalf("%s: read %d records, want %d", when, len(got), len(want))
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("%s: record %d is %q, want %q", when, i, got[i], want[i])
			}
		}
	}

	appendSome("a", 100)
	path, end := dataEnd(l)
	if size := fileSize(t, path); size <= end {
		t.Fatalf("after 100 appends the active segment's file is %d bytes, its data %d: no window written ahead", size, end)
	}
	checkRead("with a window")
	infos, err := Inspect(dir)
	if err != nil || len(infos) != 1 || infos[0].Problem != "" || infos[0].Bytes != end || infos[0].Records != 400 {
		t.Fatalf("Inspect with a window = %+v, %v; want %d bytes, 400 records, no problem", infos, err, end)
	}
	if rep, err := Verify(dir, nil); err != nil || rep.Bytes != end {
		t.Fatalf("Verify with a window = %+v, %v; want %d bytes", rep, err, end)
	}

	// Sealed: the file ends with its data.
	if err := l.Roll(); err != nil {
		t.Fatal(err)
	}
	l.sealWG.Wait()
	if size := fileSize(t, path); size != end {
		t.Fatalf("a sealed segment of %d bytes of data has a file of %d", end, size)
	}

	// Idle: the window of the new active segment is given back.
	appendSome("b", 100)
	path, end = dataEnd(l)
	if size := fileSize(t, path); size <= end {
		t.Fatalf("the new segment's file is %d bytes, its data %d: no window", size, end)
	}
	for deadline := time.Now().Add(10 * time.Second); fileSize(t, path) != end; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("an idle log's active segment is %d bytes, its data %d, after 10s", fileSize(t, path), end)
		}
	}
	checkRead("after the idle give-back")

	// Appends go on after the give-back, and a window is written again.
	appendSome("c", 100)
	path, end = dataEnd(l)
	if size := fileSize(t, path); size <= end {
		t.Fatalf("after the give-back, appends wrote no window: file %d bytes, data %d", size, end)
	}
	checkRead("with a new window")
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if size := fileSize(t, path); size != end {
		t.Fatalf("after Close the active segment's file is %d bytes, its data %d", size, end)
	}
	l = openLog(t, dir, opts)
	checkRead("reopened")
	if ev := l.Recovered(); len(ev) != 0 {
		t.Fatalf("reopening a closed log cut %+v", ev)
	}
}

// TestPrewriteOff: with PrewriteBytes negative, the file never runs past
// the data.
func TestPrewriteOff(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, Options{Sync: SyncAlways, PrewriteBytes: -1})
	defer l.Close()
	for i := range 50 {
		if _, err := l.Append(batchOf(t, fmt.Sprint("a", i), 4, 1000, 0)); err != nil {
			t.Fatal(err)
		}
	}
	if path, end := dataEnd(l); fileSize(t, path) != end {
		t.Fatalf("with no window the file is %d bytes, its data %d", fileSize(t, path), end)
	}
}

// TestPowerCutPrewriteWindow: with fsync always, many appenders and a
// window of zeros ahead of the data, the power goes at random moments and
// the writes since the last sync land torn, page by page in any order
// (CrashCloneTorn): new batches over the zeros, whole, in part or not at
// all. After recovery every acknowledged batch is there, every batch read
// is whole and was appended (no zeros and nothing torn read as records),
// and the segment's file ends with its data. Some of the cut logs must
// have had a window, else the test proves nothing; on a file system whose
// fsync does nothing the same check finds acknowledged batches lost.
func TestPowerCutPrewriteWindow(t *testing.T) {
	const appenders, each = 64, 30
	// Segments of a few windows: each starts with a window claimed right
	// where the next appends go, which must wait for its zeros.
	opts := Options{Sync: SyncAlways, SegmentBytes: 96 << 10}
	rng := rand.New(rand.NewPCG(7, 11))
	var cuts []int
	for range 16 {
		cuts = append(cuts, 1+rng.IntN(appenders*each-1))
	}
	slices.Sort(cuts)
	cuts = slices.Compact(cuts)
	for _, c := range []struct {
		name   string
		fs     crashFS
		doSync bool
	}{
		{"memfs", &slowSyncFS{MemFS: NewMemFS(), delay: 200 * time.Microsecond}, true},
		{"no-fsync", noSyncFS{NewMemFS()}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := opts
			o.FS = c.fs
			l := openLog(t, "/p", o)
			clones, ackedAt := cutWhileAppending(t, l, c.fs, appenders, each, cuts, c.doSync)
			l.Close()
			if len(clones) != len(cuts) {
				t.Fatalf("%d cuts taken, want %d", len(clones), len(cuts))
			}
			var lostAny, windows int
			for i, crashed := range clones {
				if windowAtCut(t, crashed, "/p") {
					windows++
				}
				missing := lost(ackedAt[i], survivorsOf(t, crashed, "/p", opts, true))
				lostAny += len(missing)
				if c.doSync && len(missing) > 0 {
					t.Fatalf("cut %d (after %d acknowledgements): %d acknowledged batches lost, e.g. %v", i, len(ackedAt[i]), len(missing), missing[0])
				}
				checkNoWindowAfterOpen(t, crashed, "/p", opts)
			}
			if !c.doSync {
				if lostAny == 0 {
					t.Fatal("a log that never fsyncs lost nothing in the power cuts: the test cannot tell")
				}
				return
			}
			if windows == 0 {
				t.Fatalf("none of %d cuts found a segment longer than its data: no window to test", len(clones))
			}
			t.Logf("%d of %d cuts had a window", windows, len(clones))
		})
	}
}

// windowAtCut reports whether the last segment of the log in dir on fsys
// runs past its last valid batch by at least a page and ends with zeros,
// as a window does.
func windowAtCut(t *testing.T, fsys FS, dir string) bool {
	t.Helper()
	bases, err := listSegments(fsys, dir, false)
	if err != nil {
		t.Fatalf("listing %s: %v", dir, err)
	}
	if len(bases) == 0 { // no segment's name was made durable
		return false
	}
	f, err := fsys.OpenFile(segmentName(dir, bases[len(bases)-1], logSuffix), os.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	res := scanSegment(f, bases[len(bases)-1], st.Size(), true, nil)
	if res.end >= st.Size() {
		return false
	}
	// Its last page: what a torn batch left before it does not matter.
	zeros, err := zerosFrom(f, max(res.end, st.Size()-4096), st.Size())
	return err == nil && zeros && st.Size()-res.end >= 4096
}

// checkNoWindowAfterOpen opens (recovers) and closes the log in dir on
// fsys, then checks that every segment file ends with its data.
func checkNoWindowAfterOpen(t *testing.T, fsys FS, dir string, opts Options) {
	t.Helper()
	opts.FS = fsys
	l := openLog(t, dir, opts)
	segs := slices.Clone(*l.segs.Load())
	l.Close()
	for _, s := range segs {
		st, err := fsys.Stat(s.path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() != s.size.Load() {
			t.Fatalf("after recovery and Close, %s is %d bytes, its data %d", filepath.Base(s.path), st.Size(), s.size.Load())
		}
	}
}

// TestPrewriteIdleSyncer: logs that share a Syncer have their windows
// given back by its idle rounds, with no timer of their own, and a log
// that keeps growing keeps its window.
func TestPrewriteIdleSyncer(t *testing.T) {
	defer func(d time.Duration) { prewriteIdle = d }(prewriteIdle)
	prewriteIdle = 50 * time.Millisecond
	s := NewSyncer(time.Hour, 2)
	defer s.Close()
	var logs []*Log
	for i := range 3 {
		l := openLog(t, filepath.Join(t.TempDir(), fmt.Sprint(i)), Options{Sync: SyncAlways, SegmentBytes: 8 << 20, Syncer: s})
		defer l.Close()
		logs = append(logs, l)
		for j := range 100 {
			if _, err := l.Append(batchOf(t, fmt.Sprint(j), 4, 1000, 0)); err != nil {
				t.Fatal(err)
			}
		}
		if path, end := dataEnd(l); fileSize(t, path) <= end {
			t.Fatalf("log %d: file of %d bytes, data %d: no window", i, fileSize(t, path), end)
		}
	}
	// The last log keeps growing for a few idle rounds: its window stays.
	busy := logs[2]
	for deadline := time.Now().Add(4 * prewriteIdle); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if _, err := busy.Append(batchOf(t, "busy", 4, 1000, 0)); err != nil {
			t.Fatal(err)
		}
	}
	if path, end := dataEnd(busy); fileSize(t, path) <= end {
		t.Fatalf("a log that kept growing has a file of %d bytes, data %d: its window was given back", fileSize(t, path), end)
	}
	for i, l := range logs {
		path, end := dataEnd(l)
		for deadline := time.Now().Add(10 * time.Second); fileSize(t, path) != end; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("log %d, idle: file of %d bytes, data %d, after 10s", i, fileSize(t, path), end)
			}
		}
		l.mu.Lock()
		timer := l.idleTimer
		l.mu.Unlock()
		if timer != nil {
			t.Fatalf("log %d has an idle timer of its own beside the Syncer", i)
		}
	}
}
