package log

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// recycleFiles lists the files kept for reuse in dir on fsys.
func recycleFiles(t *testing.T, fsys FS, dir string) []string {
	t.Helper()
	names, err := fsys.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, n := range names {
		if strings.HasSuffix(n, recycleSuffix) {
			out = append(out, n)
		}
	}
	return out
}

// corruptFiles lists the .corrupt files in dir on fsys.
func corruptFiles(t *testing.T, fsys FS, dir string) []string {
	t.Helper()
	names, err := fsys.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, n := range names {
		if strings.HasSuffix(n, corruptSuffix) {
			out = append(out, n)
		}
	}
	return out
}

// TestRecycleSegments: with fsync always and retention by size, new
// segments take the files of deleted ones, whose old batches lie after the
// new data; readers, Inspect and Verify never take them for records, at
// most one file is kept for reuse, and a reopen finds the log whole.
func TestRecycleSegments(t *testing.T) {
	dir := t.TempDir()
	opts := Options{Sync: SyncAlways, SegmentBytes: 64 << 10, RetentionBytes: 128 << 10}
	l := openLog(t, dir, opts)
	defer l.Close()
	var want []string
	staleSeen := false
	for i := range 400 {
		tag := fmt.Sprint("r", i)
		if _, err := l.Append(batchOf(t, tag, 4, 1000, 0)); err != nil {
			t.Fatal(err)
		}
		for j := range 4 {
			want = append(want, fmt.Sprintf("%s/%d/4", tag, j))
		}
		if _, err := l.EnforceRetention(); err != nil {
			t.Fatal(err)
		}
		if n := len(recycleFiles(t, osFS{}, dir)); n > 1 {
			t.Fatalf("after append %d, %d files kept for reuse, want at most 1", i, n)
		}
		if l.Stats().SegmentsRecycled > 0 && i%50 == 0 {
			path, end := dataEnd(l)
			if fileSize(t, path) > end {
				staleSeen = true
				// The page the data ends in was written whole, zeros
				// after the data (writePadded).
				if pageEnd := (end + 4095) / 4096 * 4096; pageEnd > end {
					b, err := os.ReadFile(path)
					if err != nil {
						t.Fatal(err)
					}
					if tail := b[end:pageEnd]; len(bytes.Trim(tail, "\x00")) != 0 {
						t.Fatalf("the page the data of a recycled segment ends in holds stale bytes after it: % x", tail[:min(16, len(tail))])
					}
				}
				// Inspect and Verify stop at the data, as readers do.
				infos, err := Inspect(dir)
				if err != nil || infos[len(infos)-1].Problem != "" || infos[len(infos)-1].Bytes != end {
					t.Fatalf("Inspect of a recycled active segment = %+v, %v; want %d bytes, no problem", infos[len(infos)-1], err, end)
				}
				if _, err := Verify(dir, nil); err != nil {
					t.Fatalf("Verify of a log with a recycled active segment: %v", err)
				}
			}
		}
	}
	st := l.Stats()
	if st.SegmentsRecycled < 10 {
		t.Fatalf("%d rolls, %d deletions, %d segments recycled: want most new segments to be recycled", st.Rolls, st.SegmentsDeleted, st.SegmentsRecycled)
	}
	if !staleSeen {
		t.Fatal("no recycled active segment was longer than its data: no stale batches to test")
	}
	start := l.StartOffset()
	got := readAll(t, l, start)
	if !slices.Equal(got, want[start:]) {
		t.Fatalf("read %d records from %d, want %d: %v...", len(got), start, len(want)-int(start), got[:min(3, len(got))])
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if files := recycleFiles(t, osFS{}, dir); len(files) != 0 {
		t.Fatalf("after Close, files kept for reuse: %v", files)
	}
	l = openLog(t, dir, opts)
	if ev := l.Recovered(); len(ev) != 0 {
		t.Fatalf("reopening a closed log cut %+v", ev)
	}
	if got := readAll(t, l, start); !slices.Equal(got, want[start:]) {
		t.Fatalf("after reopening, read %d records, want %d", len(got), len(want)-int(start))
	}
	// Every segment's file ends with its data: sealing and Close cut the
	// stale bytes of recycled files.
	for _, s := range *l.segs.Load() {
		if size := fileSize(t, s.path); size != s.size.Load() {
			t.Fatalf("%s is %d bytes, its data %d", filepath.Base(s.path), size, s.size.Load())
		}
	}
}

// TestRecycleWaitsForReaders: a reader holding a segment that retention
// deleted keeps reading its own records while rolls go on: the file is
// not reused until the reader releases it; then the next roll reuses it.
func TestRecycleWaitsForReaders(t *testing.T) {
	dir := t.TempDir()
	opts := Options{Sync: SyncAlways, SegmentBytes: 32 << 10}
	l := openLog(t, dir, opts)
	defer l.Close()
	appendN := func(prefix string, n int) {
		t.Helper()
		for i := range n {
			if _, err := l.Append(batchOf(t, fmt.Sprint(prefix, i), 4, 1000, 0)); err != nil {
				t.Fatal(err)
			}
		}
	}
	appendN("a", 20) // a few segments
	if l.Segments() < 3 {
		t.Fatalf("%d segments, want at least 3", l.Segments())
	}
	secs, err := l.Read(nil, 0, 16<<10)
	if err != nil || len(secs) == 0 {
		t.Fatalf("Read = %d sections, %v", len(secs), err)
	}
	before, err := secs[0].AppendTo(nil)
	if err != nil {
		t.Fatal(err)
	}
	held := secs[0].seg
	if n, err := l.DeleteBefore(l.HighWatermark()); err != nil || n == 0 {
		t.Fatalf("DeleteBefore = %d, %v", n, err)
	}
	if files := recycleFiles(t, osFS{}, dir); len(files) != 1 {
		t.Fatalf("after deleting the held segment, files kept for reuse: %v, want 1", files)
	}
	for range 5 {
		appendN("b", 10)
		if err := l.Roll(); err != nil {
			t.Fatal(err)
		}
	}
	if n := l.Stats().SegmentsRecycled; n != 0 {
		t.Fatalf("%d segments recycled while a reader held the only file kept", n)
	}
	after, err := secs[0].AppendTo(nil)
	if err != nil || !bytes.Equal(before, after) {
		t.Fatalf("the reader's section changed under it (err %v)", err)
	}
	ReleaseSections(secs)
	if !held.freed.Load() {
		t.Fatal("the deleted segment is not freed once the reader released it")
	}
	for range 2 {
		appendN("c", 10)
		if err := l.Roll(); err != nil {
			t.Fatal(err)
		}
	}
	if n := l.Stats().SegmentsRecycled; n != 1 {
		t.Fatalf("%d segments recycled after the reader released the file, want 1", n)
	}
}

// TestRecycleReserveGivenBackWhenIdle: a log whose retention deletes
// segments keeps at most RecycleSegments files for reuse, and a log that
// stops growing gives them back, and the stale tail of its recycled
// active segment, through the shared Syncer's idle rounds.
func TestRecycleReserveGivenBackWhenIdle(t *testing.T) {
	defer func(d time.Duration) { prewriteIdle = d }(prewriteIdle)
	prewriteIdle = 50 * time.Millisecond
	syncer := NewSyncer(time.Hour, 1)
	defer syncer.Close()
	for _, keep := range []int{1, 3} {
		t.Run(fmt.Sprint(keep), func(t *testing.T) {
			dir := t.TempDir()
			opts := Options{Sync: SyncAlways, SegmentBytes: 32 << 10, RetentionBytes: 64 << 10, RecycleSegments: keep, Syncer: syncer}
			l := openLog(t, dir, opts)
			defer l.Close()
			most := 0
			for i := range 300 {
				if _, err := l.Append(batchOf(t, fmt.Sprint(i), 4, 1000, 0)); err != nil {
					t.Fatal(err)
				}
				if i%40 == 0 {
					// Several deletions at once now and then.
					if _, err := l.EnforceRetention(); err != nil {
						t.Fatal(err)
					}
				}
				most = max(most, len(recycleFiles(t, osFS{}, dir)))
			}
			if most > keep {
				t.Fatalf("up to %d files kept for reuse, want at most %d", most, keep)
			}
			if most == 0 || l.Stats().SegmentsRecycled == 0 {
				t.Fatalf("no file kept (%d) or recycled (%d): nothing to give back", most, l.Stats().SegmentsRecycled)
			}
			if _, err := l.EnforceRetention(); err != nil {
				t.Fatal(err)
			}
			path, end := dataEnd(l)
			for deadline := time.Now().Add(10 * time.Second); len(recycleFiles(t, osFS{}, dir)) > 0 || fileSize(t, path) != end; time.Sleep(10 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("an idle log keeps %v and an active file of %d bytes for %d of data after 10s",
						recycleFiles(t, osFS{}, dir), fileSize(t, path), end)
				}
			}
			l.mu.Lock()
			timer := l.idleTimer
			l.mu.Unlock()
			if timer != nil {
				t.Fatal("a log with a Syncer has an idle timer of its own")
			}
		})
	}
}

// recycledLog returns a log on a MemFS whose active segment took a
// recycled file and holds a few batches, their tags, and the file system.
func recycledLog(t *testing.T) (*Log, *MemFS, []string, Options) {
	t.Helper()
	fsys := NewMemFS()
	opts := Options{Sync: SyncAlways, SegmentBytes: 16 << 10, RetentionBytes: 16 << 10, FS: fsys}
	l := openLog(t, "/p", opts)
	var acked []string
	for i := 0; l.Stats().SegmentsRecycled == 0 || l.active.written < 4<<10; i++ {
		if i > 1000 {
			t.Fatal("no segment recycled after 1000 appends")
		}
		tag := fmt.Sprint("t", i)
		if _, err := l.Append(batchOf(t, tag, 3, 100, 0)); err != nil {
			t.Fatal(err)
		}
		acked = append(acked, tag)
		if _, err := l.EnforceRetention(); err != nil {
			t.Fatal(err)
		}
	}
	return l, fsys, acked, opts
}

// TestRecycledRecoveryKeepsNoStaleBytes: after a power cut, recovery of a
// recycled active segment cuts the stale batches after its data with no
// .corrupt file, and reads every acknowledged record and nothing stale;
// damage inside the data, with good batches after it, still gets its
// .corrupt file.
func TestRecycledRecoveryKeepsNoStaleBytes(t *testing.T) {
	l, fsys, acked, opts := recycledLog(t)
	defer l.Close()
	crashed := fsys.CrashClone()
	damaged := fsys.CrashClone()
	path, end := dataEnd(l)
	st, err := fsys.Stat(path)
	if err != nil || st.Size() <= end {
		t.Fatalf("the recycled active segment is %v bytes for %d of data (%v): no stale tail", st.Size(), end, err)
	}

	o := opts
	o.FS = crashed
	r := openLog(t, "/p", o)
	ev := r.Recovered()
	if len(ev) != 1 || ev[0].SavedTo != "" || !strings.Contains(ev[0].Reason, "stale") || ev[0].Position != end {
		t.Fatalf("recovery of a recycled segment: %+v; want one cut at %d of stale bytes, nothing saved", ev, end)
	}
	if files := corruptFiles(t, crashed, "/p"); len(files) != 0 {
		t.Fatalf("recovery of a recycled segment wrote %v", files)
	}
	got := readAll(t, r, r.StartOffset())
	for _, v := range got {
		tag, _, _ := strings.Cut(v, "/")
		if !slices.Contains(acked, tag) {
			t.Fatalf("read %q, never appended", v)
		}
	}
	if lastTag, _, _ := strings.Cut(got[len(got)-1], "/"); lastTag != acked[len(acked)-1] {
		t.Fatalf("the last record read is %q, the last acknowledged batch %s", got[len(got)-1], acked[len(acked)-1])
	}
	r.Close()

	// Damage in the data: a byte of the active segment's second batch.
	f, err := damaged.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	var b [1]byte
	f.ReadAt(b[:], 600)
	b[0] ^= 0xff
	f.WriteAt(b[:], 600)
	f.Sync()
	f.Close()
	o.FS = damaged
	r = openLog(t, "/p", o)
	defer r.Close()
	if ev := r.Recovered(); len(ev) != 1 || ev[0].SavedTo == "" {
		t.Fatalf("recovery of damage inside a recycled segment's data: %+v; want the cut bytes saved", ev)
	}
	if files := corruptFiles(t, damaged, "/p"); len(files) != 1 {
		t.Fatalf("recovery of damage inside a recycled segment's data wrote %v, want one .corrupt file", files)
	}
}

// TestPowerCutRecycledSegments: with fsync always, 64 appenders, small
// segments and retention by size enforced all along, so that new segments
// take recycled files, the power goes at random moments, with the writes
// since the last sync kept whole or torn page by page. After recovery no
// acknowledged batch is lost, offsets only grow, no stale batch is read
// (a stale batch's offset lies below the segment's), and a cut with
// nothing torn keeps no .corrupt file. On a file system whose fsync does
// nothing the same check finds acknowledged batches lost.
func TestPowerCutRecycledSegments(t *testing.T) {
	const appenders, each = 64, 30
	opts := Options{Sync: SyncAlways, SegmentBytes: 24 << 10, RetentionBytes: 48 << 10}
	rng := rand.New(rand.NewPCG(5, 8))
	var cuts []int
	for range 16 {
		cuts = append(cuts, 1+rng.IntN(appenders*each-1))
	}
	slices.Sort(cuts)
	cuts = slices.Compact(cuts)
	for _, c := range []struct {
		name         string
		fs           crashFS
		doSync, torn bool
	}{
		{"memfs", &slowSyncFS{MemFS: NewMemFS(), delay: 200 * time.Microsecond}, true, false},
		{"memfs-torn", &slowSyncFS{MemFS: NewMemFS(), delay: 200 * time.Microsecond}, true, true},
		{"no-fsync", noSyncFS{NewMemFS()}, false, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := opts
			o.FS = c.fs
			l := openLog(t, "/p", o)
			stop := make(chan struct{})
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					case <-time.After(200 * time.Microsecond):
					}
					l.EnforceRetention()
				}
			}()
			// The power goes each time the acknowledged batches reach a cut.
			var mu sync.Mutex
			var acked []tagAt
			var clones []*MemFS
			var ackedAt [][]tagAt
			crng := rand.New(rand.NewPCG(1, 2))
			appendFrom(t, l, "c", appenders, each, func(tag string, base int64, err error) {
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				defer mu.Unlock()
				acked = append(acked, tagAt{tag, base})
				if len(clones) < len(cuts) && len(acked) == cuts[len(clones)] {
					m := c.fs.CrashClone()
					if c.torn {
						m = c.fs.(*slowSyncFS).CrashCloneTorn(crng)
					}
					clones = append(clones, m)
					ackedAt = append(ackedAt, slices.Clone(acked))
				}
			})()
			close(stop)
			wg.Wait()
			st := l.Stats()
			l.Close()
			if len(clones) != len(cuts) {
				t.Fatalf("%d cuts taken, want %d", len(clones), len(cuts))
			}
			var lostAny, stale int
			for i, crashed := range clones {
				// What recovery cuts, on a copy of the cut disk.
				probe := crashed.CrashClone()
				po := opts
				po.FS = probe
				r := openLog(t, "/p", po)
				for _, ev := range r.Recovered() {
					if strings.Contains(ev.Reason, "stale") {
						stale++
						break
					}
				}
				r.Close()
				if c.doSync && !c.torn {
					if files := corruptFiles(t, probe, "/p"); len(files) != 0 {
						t.Fatalf("cut %d: recovery with nothing torn wrote %v", i, files)
					}
				}
				got, start := survivorsFrom(t, crashed, "/p", opts)
				for _, a := range ackedAt[i] {
					if a.base >= start && !got[a.tag] {
						lostAny++
						if c.doSync {
							t.Fatalf("cut %d (after %d acknowledgements): batch %s at offset %d lost (the log starts at %d)", i, len(ackedAt[i]), a.tag, a.base, start)
						}
					}
				}
			}
			if !c.doSync {
				if lostAny == 0 {
					t.Fatal("a log that never fsyncs lost nothing in the power cuts: the test cannot tell")
				}
				return
			}
			if st.SegmentsRecycled < 10 || stale == 0 {
				t.Fatalf("%d segments recycled, %d of %d cuts in a recycled segment with stale bytes: nothing to test", st.SegmentsRecycled, stale, len(clones))
			}
			t.Logf("%d rolls, %d recycled; %d of %d cuts had stale bytes to cut", st.Rolls, st.SegmentsRecycled, stale, len(clones))
		})
	}
}

// tagAt is an acknowledged batch and its base offset.
type tagAt struct {
	tag  string
	base int64
}

// survivorsFrom opens the log in dir of a crashed file system and returns
// the tags of the batches it holds from its start offset, and that offset;
// every batch must be whole, and offsets must grow.
func survivorsFrom(t *testing.T, fsys FS, dir string, opts Options) (map[string]bool, int64) {
	t.Helper()
	opts.FS = fsys
	l := openLog(t, dir, opts)
	defer l.Close()
	start := l.StartOffset()
	got := map[string]int{}
	it := l.NewIterator(start)
	for last := start - 1; it.Next(); {
		r := it.Record()
		if r.Offset <= last {
			t.Fatalf("offset %d after %d", r.Offset, last)
		}
		last = r.Offset
		tag, _, _ := strings.Cut(string(r.Value), "/")
		got[tag]++
	}
	if err := it.Err(); err != nil {
		t.Fatalf("reading after the power cut: %v", err)
	}
	// Offsets go on from the recovered end.
	hw := l.HighWatermark()
	if base, err := l.Append(batchOf(t, "after", 3, 100, 0)); err != nil || base != hw {
		t.Fatalf("the first append after recovery got offset %d (%v), want %d", base, err, hw)
	}
	tags := map[string]bool{}
	for tag, n := range got {
		if n != 3 {
			t.Fatalf("batch %s has %d of its 3 records after the power cut", tag, n)
		}
		tags[tag] = true
	}
	return tags, start
}

// TestPadForLastStaleBatch: a write into a recycled file pads zeros to the
// end of its page while a whole stale batch still follows the page; once
// the page reaches the last stale batch (from the old segment's last index
// entry on), to the end of the stale bytes, so that recovery never finds a
// piece of a stale batch alone after the data (it would take it for
// damage: TestPowerCutRecycledSegments failed 2 runs in 60 that way), and
// later writes need no zeros.
func TestPadForLastStaleBatch(t *testing.T) {
	s := &segment{recycled: true, staleLast: 20000, staleEnd: 24330, zeroed: 24330}
	if got := s.padFor(8000, 100); got != 8192-8100 {
		t.Errorf("a write ending at 8100, well before the last stale batch: %d zeros, want %d (to the page's end)", got, 8192-8100)
	}
	if got := s.padFor(8000, 192); got != 0 {
		t.Errorf("a write ending at a page's end: %d zeros, want 0", got)
	}
	if got := s.padFor(19000, 900); got != 24330-19900 {
		t.Errorf("a write whose page reaches the last stale batch: %d zeros, want %d (to the end of the stale bytes)", got, 24330-19900)
	}
	if got := s.padFor(19900, 100); got != 0 {
		t.Errorf("a write after the zeros: %d zeros, want 0", got)
	}
	s = &segment{recycled: true, staleLast: 1 << 20, staleEnd: 2 << 20, zeroed: 2 << 20}
	if got := s.padFor(1<<20+10, 100); got != 2<<20-(1<<20+110) {
		t.Errorf("a write inside the last stale batch: %d zeros, want %d", got, 2<<20-(1<<20+110))
	}
	if got := (&segment{staleLast: 0, staleEnd: 4096}).padFor(0, 10); got != 0 {
		t.Errorf("a file that is not recycled: %d zeros, want 0", got)
	}
}

// TestWriteThenZerosLong: zeros past the size of zeroBlock are written in
// pieces, all of them.
func TestWriteThenZerosLong(t *testing.T) {
	fsys := NewMemFS()
	f, err := fsys.OpenFile("/f", os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	junk := bytes.Repeat([]byte{0xff}, 3*len(zeroBlock))
	if _, err := f.WriteAt(junk, 0); err != nil {
		t.Fatal(err)
	}
	pad := int64(2*len(zeroBlock) + 100)
	if err := writePadded(f, []byte("data"), 0, pad); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(junk))
	if _, err := f.ReadAt(got, 0); err != nil && err != io.EOF {
		t.Fatal(err)
	}
	if string(got[:4]) != "data" || !bytes.Equal(got[4:4+pad], make([]byte, pad)) || got[4+pad] != 0xff {
		t.Error("writePadded did not write the data, then exactly pad zeros")
	}
}
