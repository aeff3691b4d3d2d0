package log

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/weirhub/weir/codecs"
)

// batchOf builds a batch of n records whose values name the batch tag and
// the record's index, so that a reader can check what it got.
func batchOf(t testing.TB, tag string, n, valueSize int, ts int64) []byte {
	t.Helper()
	var b codecs.Builder
	for i := range n {
		v := fmt.Appendf(nil, "%s/%d/%d;", tag, i, n)
		for len(v) < valueSize {
			v = append(v, byte('a'+len(v)%26))
		}
		b.Append(ts+int64(i), []byte(tag), v, nil)
	}
	out, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Clone(out)
}

func openLog(t testing.TB, dir string, opts Options) *Log {
	t.Helper()
	l, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	return l
}

// readAll reads every record from offset to the high watermark.
func readAll(t testing.TB, l *Log, from int64) []string {
	t.Helper()
	var vals []string
	it := l.NewIterator(from)
	want := from
	for it.Next() {
		r := it.Record()
		if r.Offset != want {
			t.Fatalf("iterator gave offset %d, want %d", r.Offset, want)
		}
		want++
		vals = append(vals, string(r.Value[:bytes.IndexByte(r.Value, ';')]))
	}
	if err := it.Err(); err != nil {
		t.Fatalf("iterator: %v", err)
	}
	return vals
}

func TestAppendAssignsOffsetsAndReads(t *testing.T) {
	for _, policy := range []SyncPolicy{SyncAlways, SyncInterval, SyncNever} {
		t.Run(policy.String(), func(t *testing.T) {
			l := openLog(t, t.TempDir(), Options{Sync: policy})
			defer l.Close()
			var want []string
			for i := range 20 {
				n := i%5 + 1
				base, err := l.Append(batchOf(t, fmt.Sprintf("b%d", i), n, 100, 1000))
				if err != nil {
					t.Fatal(err)
				}
				if base != int64(len(want)) {
					t.Fatalf("batch %d: base %d, want %d", i, base, len(want))
				}
				for j := range n {
					want = append(want, fmt.Sprintf("b%d/%d/%d", i, j, n))
				}
			}
			if got := l.HighWatermark(); got != int64(len(want)) {
				t.Fatalf("HighWatermark = %d, want %d", got, len(want))
			}
			got := readAll(t, l, 0)
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("read %v\nwant %v", got, want)
			}
			if got := readAll(t, l, 7); fmt.Sprint(got) != fmt.Sprint(want[7:]) {
				t.Fatalf("read from 7: %v", got)
			}
		})
	}
}

func TestAppendSeveralBatchesInOneCall(t *testing.T) {
	l := openLog(t, t.TempDir(), Options{})
	defer l.Close()
	blob := append(batchOf(t, "x", 3, 10, 0), batchOf(t, "y", 2, 10, 0)...)
	base, err := l.Append(blob)
	if err != nil || base != 0 {
		t.Fatalf("Append = %d, %v", base, err)
	}
	if codecs.BaseOffset(blob[batchSizeAt(blob, 0):]) != 3 {
		t.Fatalf("second batch got base offset %d, want 3", codecs.BaseOffset(blob[batchSizeAt(blob, 0):]))
	}
	if got := readAll(t, l, 0); fmt.Sprint(got) != "[x/0/3 x/1/3 x/2/3 y/0/2 y/1/2]" {
		t.Fatalf("read %v", got)
	}
	// A bad batch anywhere rejects the whole call.
	bad := append(batchOf(t, "z", 1, 10, 0), batchOf(t, "w", 1, 10, 0)...)
	bad[len(bad)-1] ^= 1
	if _, err := l.Append(bad); !errors.Is(err, codecs.ErrCorrupt) {
		t.Fatalf("Append with a corrupt second batch: %v", err)
	}
	if l.HighWatermark() != 5 {
		t.Fatalf("HighWatermark = %d after a rejected append", l.HighWatermark())
	}
}

func batchSizeAt(b []byte, p int) int { return codecs.BatchSize(b[p:]) }

func TestAppendRejects(t *testing.T) {
	l := openLog(t, t.TempDir(), Options{MaxBatchBytes: 4096, SegmentBytes: 1 << 20})
	defer l.Close()
	tests := []struct {
		name  string
		batch []byte
		want  error
	}{
		{"empty", nil, codecs.ErrCorrupt},
		{"too large", batchOf(t, "big", 10, 1000, 0), codecs.ErrTooLarge},
		{"truncated", batchOf(t, "t", 2, 10, 0)[:70], codecs.ErrShort},
		{"bit flip", func() []byte { b := batchOf(t, "f", 2, 10, 0); b[65] ^= 4; return b }(), codecs.ErrCorrupt},
		{"garbage", bytes.Repeat([]byte{0xAB}, 100), codecs.ErrCorrupt},
	}
	for _, tt := range tests {
		if _, err := l.Append(tt.batch); !errors.Is(err, tt.want) {
			t.Errorf("%s: Append = %v, want %v", tt.name, err, tt.want)
		}
		if tt.name == "bit flip" {
			continue // AppendAsyncChecked leaves the checksum to its caller
		}
		if _, _, err := l.AppendAsyncChecked(tt.batch); !errors.Is(err, tt.want) {
			t.Errorf("%s: AppendAsyncChecked = %v, want %v", tt.name, err, tt.want)
		}
	}
	if l.HighWatermark() != 0 || l.Size() != 0 {
		t.Fatalf("rejected batches left hw %d size %d", l.HighWatermark(), l.Size())
	}
	// A checked batch is stored as AppendAsync stores it.
	if base, next, err := l.AppendAsyncChecked(batchOf(t, "ok", 3, 10, 0)); err != nil || base != 0 || next != 3 {
		t.Fatalf("AppendAsyncChecked = %d, %d, %v, want 0, 3, nil", base, next, err)
	}
	if got := readAll(t, l, 0); len(got) != 3 {
		t.Fatalf("read back %d records, want 3", len(got))
	}
}

func TestReadSections(t *testing.T) {
	l := openLog(t, t.TempDir(), Options{IndexIntervalBytes: 1})
	defer l.Close()
	var sizes []int
	for i := range 10 {
		b := batchOf(t, fmt.Sprint(i), 10, 100, 0) // offsets 10i..10i+9
		sizes = append(sizes, len(b))
		if _, err := l.Append(b); err != nil {
			t.Fatal(err)
		}
	}
	read := func(offset int64, max int) (int64, []byte) {
		t.Helper()
		secs, err := l.Read(nil, offset, max)
		if err != nil {
			t.Fatalf("Read(%d, %d): %v", offset, max, err)
		}
		defer ReleaseSections(secs)
		var data []byte
		for i := range secs {
			if data, err = secs[i].AppendTo(data); err != nil {
				t.Fatal(err)
			}
		}
		if len(data) == 0 {
			return -1, nil
		}
		return codecs.BaseOffset(data), data
	}
	// The batch that holds the offset comes first.
	if base, data := read(25, 1<<20); base != 20 || len(data) != sum(sizes[2:]) {
		t.Fatalf("Read(25) starts at %d with %d bytes", base, len(data))
	}
	// At least one whole batch, even past maxBytes.
	if base, data := read(31, 10); base != 30 || len(data) != sizes[3] {
		t.Fatalf("Read(31, 10) = base %d, %d bytes; want one batch of %d", base, len(data), sizes[3])
	}
	// Whole batches only, up to maxBytes.
	if _, data := read(0, sizes[0]+sizes[1]+sizes[2]/2); len(data) != sizes[0]+sizes[1] {
		t.Fatalf("Read(0, 2.5 batches) = %d bytes, want %d", len(data), sizes[0]+sizes[1])
	}
	if base, _ := read(100, 1000); base != -1 {
		t.Fatalf("Read at the high watermark returned data")
	}
	var re *RangeError
	if _, err := l.Read(nil, 101, 100); !errors.As(err, &re) || re.End != 100 {
		t.Fatalf("Read past the end: %v", err)
	}
	if _, err := l.Read(nil, -1, 100); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("Read(-1): %v", err)
	}
}

func sum(xs []int) int {
	n := 0
	for _, x := range xs {
		n += x
	}
	return n
}

func TestRollReopenAndIndexes(t *testing.T) {
	dir := t.TempDir()
	opts := Options{SegmentBytes: 8 << 10, IndexIntervalBytes: 512, Sync: SyncNever}
	l := openLog(t, dir, opts)
	var want []string
	for i := range 200 {
		if _, err := l.Append(batchOf(t, fmt.Sprint(i), 3, 80, int64(i*10))); err != nil {
			t.Fatal(err)
		}
		for j := range 3 {
			want = append(want, fmt.Sprintf("%d/%d/3", i, j))
		}
	}
	if l.Stats().Rolls < 5 {
		t.Fatalf("only %d rolls with 8 KiB segments", l.Stats().Rolls)
	}
	check := func(l *Log) {
		t.Helper()
		if got := readAll(t, l, 0); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("read %d records, want %d", len(got), len(want))
		}
		for _, off := range []int64{0, 1, 299, 300, 301, 599} {
			if got := readAll(t, l, off); len(got) != len(want)-int(off) || got[0] != want[off] {
				t.Fatalf("read from %d: %d records starting %q", off, len(got), got[0])
			}
		}
		for i := 0; i < 200; i += 17 {
			off, err := l.OffsetForTime(int64(i * 10))
			if err != nil || off != int64(i*3) {
				t.Fatalf("OffsetForTime(%d) = %d, %v; want %d", i*10, off, err, i*3)
			}
			// A timestamp between two batches finds the later one's
			// first record at or after it.
			off, _ = l.OffsetForTime(int64(i*10 + 1))
			if off != int64(i*3+1) {
				t.Fatalf("OffsetForTime(%d) = %d, want %d", i*10+1, off, i*3+1)
			}
		}
		if off, _ := l.OffsetForTime(1 << 40); off != l.HighWatermark() {
			t.Fatalf("OffsetForTime(future) = %d, want the high watermark %d", off, l.HighWatermark())
		}
	}
	check(l)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	infos, err := Inspect(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range infos[:len(infos)-1] {
		if in.IndexEntries <= 0 || in.Problem != "" {
			t.Fatalf("closed segment %+v has no index or a problem", in)
		}
	}
	l = openLog(t, dir, opts)
	check(l)
	// Appends continue after reopening.
	if base, err := l.Append(batchOf(t, "after", 1, 10, 5000)); err != nil || base != 600 {
		t.Fatalf("Append after reopen = %d, %v", base, err)
	}
	l.Close()
	if rep, err := Verify(dir, nil); err != nil || rep.Records != 601 {
		t.Fatalf("Verify = %+v, %v", rep, err)
	}
}

func TestDamagedIndexesAreRebuilt(t *testing.T) {
	damage := map[string]func(path string){
		"missing":   func(p string) { os.Remove(p) },
		"truncated": func(p string) { os.Truncate(p, 13) },
		"garbage": func(p string) {
			b, _ := os.ReadFile(p)
			for i := range b {
				b[i] = 0xff
			}
			os.WriteFile(p, b, 0o644)
		},
		"stale": func(p string) { // an index for a shorter segment
			b, _ := os.ReadFile(p)
			os.WriteFile(p, b[:len(b)/2], 0o644)
		},
	}
	for name, f := range damage {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			opts := Options{SegmentBytes: 8 << 10, IndexIntervalBytes: 256, Sync: SyncNever}
			l := openLog(t, dir, opts)
			for i := range 50 {
				if _, err := l.Append(batchOf(t, fmt.Sprint(i), 4, 60, 0)); err != nil {
					t.Fatal(err)
				}
			}
			want := readAll(t, l, 0)
			l.Close()
			f(segmentName(dir, 0, indexSuffix))
			l = openLog(t, dir, opts)
			defer l.Close()
			if got := readAll(t, l, 0); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("after damaging the index: %d records, want %d", len(got), len(want))
			}
			for off := int64(0); off < 40; off += 3 {
				if got := readAll(t, l, off); got[0] != want[off] {
					t.Fatalf("read from %d starts with %q, want %q", off, got[0], want[off])
				}
			}
			if _, err := Verify(dir, nil); err != nil {
				t.Fatalf("Verify after rebuild: %v", err)
			}
		})
	}
}

func TestConcurrentAppendersAndReaders(t *testing.T) {
	for _, policy := range []SyncPolicy{SyncAlways, SyncInterval} {
		t.Run(policy.String(), func(t *testing.T) {
			l := openLog(t, t.TempDir(), Options{Sync: policy, SegmentBytes: 64 << 10, SyncInterval: time.Millisecond})
			defer l.Close()
			const writers, perWriter, per = 8, 40, 5
			total := int64(writers * perWriter * per)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			var readers sync.WaitGroup
			for r := range 3 {
				readers.Add(1)
				go func() {
					defer readers.Done()
					it := l.NewIterator(0)
					seen := map[string]int{}
					for it.Offset() < total {
						for it.Next() {
							rec := it.Record()
							// Every batch arrives whole and in order.
							parts := bytes.Split(rec.Value[:bytes.IndexByte(rec.Value, ';')], []byte("/"))
							tag := string(parts[0])
							if fmt.Sprint(seen[tag]) != string(parts[1]) {
								t.Errorf("reader %d: record %q out of order (seen %d)", r, rec.Value[:12], seen[tag])
								return
							}
							seen[tag]++
						}
						if it.Err() != nil {
							t.Errorf("reader %d: %v", r, it.Err())
							return
						}
						if it.Offset() >= total {
							break
						}
						if err := l.Wait(ctx, it.Offset()); err != nil {
							t.Errorf("reader %d: Wait: %v", r, err)
							return
						}
					}
				}()
			}
			var writersWG sync.WaitGroup
			for w := range writers {
				writersWG.Add(1)
				go func() {
					defer writersWG.Done()
					for i := range perWriter {
						// each writer's records form one tag, numbered on
						b := batchFrom(t, fmt.Sprintf("w%d", w), i*per, per)
						if _, err := l.Append(b); err != nil {
							t.Errorf("writer %d: %v", w, err)
							return
						}
					}
				}()
			}
			writersWG.Wait()
			readers.Wait()
			if l.HighWatermark() != total {
				t.Fatalf("HighWatermark = %d, want %d", l.HighWatermark(), total)
			}
			st := l.Stats()
			t.Logf("%v: %d appends, %d fsyncs, %d rolls", policy, st.Appends, st.Fsyncs, st.Rolls)
		})
	}
}

// batchFrom builds a batch of n records of tag numbered from first on.
func batchFrom(t testing.TB, tag string, first, n int) []byte {
	var b codecs.Builder
	for i := range n {
		b.Append(0, nil, fmt.Appendf(nil, "%s/%d;", tag, first+i), nil)
	}
	out, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Clone(out)
}

// TestGroupCommitSharesFsyncs appends from 32 goroutines with fsync always
// on a MemFS whose fsync takes a millisecond, like a disk's: concurrent
// appends share fsyncs (counted at the file layer), and every acknowledged
// batch survives a power cut.
func TestGroupCommitSharesFsyncs(t *testing.T) {
	fsys := &slowSyncFS{MemFS: NewMemFS(), delay: time.Millisecond}
	opts := Options{Sync: SyncAlways}
	opts.FS = fsys
	l := openLog(t, "/p", opts)
	defer l.Close()
	const appenders, each = 32, 20
	acked := appendAcked(t, l, "g", appenders, each)
	syncs := fsys.syncs.Load()
	if len(acked) != appenders*each {
		t.Fatalf("%d appends acknowledged, want %d", len(acked), appenders*each)
	}
	// Every append waited for an fsync, but concurrent ones shared them.
	if syncs == 0 || syncs >= int64(len(acked)) {
		t.Fatalf("%d fsyncs for %d concurrent appends: want shared fsyncs", syncs, len(acked))
	}
	if missing := lost(acked, survivors(t, fsys.CrashClone(), "/p", Options{Sync: SyncAlways})); len(missing) > 0 {
		t.Fatalf("%d of %d acknowledged batches lost in a power cut, e.g. %v", len(missing), len(acked), missing[0])
	}
	t.Logf("%d appends shared %d fsyncs", len(acked), syncs)
}

func TestSyncAlwaysPublishesOnlyDurableData(t *testing.T) {
	l := openLog(t, t.TempDir(), Options{Sync: SyncAlways})
	defer l.Close()
	_, next, err := l.AppendAsync(batchOf(t, "a", 2, 10, 0))
	if err != nil {
		t.Fatal(err)
	}
	if l.HighWatermark() != 0 {
		t.Fatalf("written but unsynced data is visible: hw %d", l.HighWatermark())
	}
	if secs, err := l.Read(nil, 0, 100); err != nil || len(secs) != 0 {
		t.Fatalf("Read before sync = %d sections, %v", len(secs), err)
	}
	if err := l.WaitDurable(next); err != nil {
		t.Fatal(err)
	}
	if l.HighWatermark() != 2 {
		t.Fatalf("hw %d after WaitDurable", l.HighWatermark())
	}
}

func TestWaitWakesOnAppend(t *testing.T) {
	l := openLog(t, t.TempDir(), Options{})
	defer l.Close()
	done := make(chan error, 1)
	go func() { done <- l.Wait(context.Background(), 0) }()
	select {
	case err := <-done:
		t.Fatalf("Wait returned before any append: %v", err)
	case <-time.After(20 * time.Millisecond):
	}
	if _, err := l.Append(batchOf(t, "x", 1, 1, 0)); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Wait did not wake after an append")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if err := l.Wait(ctx, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait with a deadline = %v", err)
	}
}

func TestRetention(t *testing.T) {
	now := time.UnixMilli(1_000_000)
	clock := func() time.Time { return now }
	dir := t.TempDir()
	l := openLog(t, dir, Options{SegmentBytes: 4 << 10, Sync: SyncNever, RetentionBytes: 16 << 10, Now: clock})
	for i := range 100 {
		if _, err := l.Append(batchOf(t, fmt.Sprint(i), 2, 100, now.UnixMilli()+int64(i))); err != nil {
			t.Fatal(err)
		}
	}
	// A reader holding a section of the oldest segment keeps it readable.
	held, err := l.Read(nil, 0, 100)
	if err != nil || len(held) != 1 {
		t.Fatal(err)
	}
	size := l.Size()
	n, err := l.EnforceRetention()
	if err != nil || n == 0 {
		t.Fatalf("EnforceRetention = %d, %v", n, err)
	}
	if l.Size() < 16<<10 || l.Size() >= size {
		t.Fatalf("size %d -> %d with a 16 KiB limit", size, l.Size())
	}
	start := l.StartOffset()
	if start == 0 || l.HighWatermark() != 200 {
		t.Fatalf("start %d hw %d", start, l.HighWatermark())
	}
	if _, err := os.Stat(segmentName(dir, 0, logSuffix)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("oldest segment file still there: %v", err)
	}
	data, err := held[0].AppendTo(nil)
	if err != nil || codecs.BaseOffset(data) != 0 {
		t.Fatalf("held section unreadable after deletion: %v", err)
	}
	ReleaseSections(held)
	if _, err := l.Read(nil, 0, 100); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("Read below the start offset: %v", err)
	}
	if got := readAll(t, l, start); len(got) != int(200-start) {
		t.Fatalf("read %d records from the start, want %d", len(got), 200-start)
	}
	l.Close()

	// Time retention, including the active segment once all of it expired.
	l = openLog(t, dir, Options{SegmentBytes: 4 << 10, Sync: SyncNever, RetentionTime: time.Hour, Now: clock})
	defer l.Close()
	if n, _ := l.EnforceRetention(); n != 0 {
		t.Fatalf("deleted %d fresh segments", n)
	}
	now = now.Add(2 * time.Hour)
	if _, err := l.EnforceRetention(); err != nil {
		t.Fatal(err)
	}
	if l.StartOffset() != 200 || l.HighWatermark() != 200 || l.Size() != 0 {
		t.Fatalf("after everything expired: start %d hw %d size %d", l.StartOffset(), l.HighWatermark(), l.Size())
	}
	if base, err := l.Append(batchOf(t, "new", 1, 10, now.UnixMilli())); err != nil || base != 200 {
		t.Fatalf("Append after expiry = %d, %v", base, err)
	}
}

func TestSecondOpenIsRefused(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, Options{})
	defer l.Close()
	if _, err := Open(dir, Options{}); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open = %v, want ErrLocked", err)
	}
}

func TestClosedLog(t *testing.T) {
	l := openLog(t, t.TempDir(), Options{})
	l.Close()
	if _, err := l.Append(batchOf(t, "x", 1, 1, 0)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close = %v", err)
	}
	if err := l.Wait(context.Background(), 5); !errors.Is(err, ErrClosed) {
		t.Fatalf("Wait after Close = %v", err)
	}
}

// TestDiskFull injects a write that stores half a batch and fails with
// ENOSPC, as a full disk does: the append fails, the log stays consistent,
// and it works again once there is room.
func TestDiskFull(t *testing.T) {
	dir := t.TempDir()
	fsys := newFaultFS()
	l := openLog(t, dir, Options{Sync: SyncAlways, FS: fsys})
	if _, err := l.Append(batchOf(t, "before", 3, 50, 0)); err != nil {
		t.Fatal(err)
	}
	fsys.failWrites(syscall.ENOSPC)
	if _, err := l.Append(batchOf(t, "full", 3, 50, 0)); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Append on a full disk = %v, want ENOSPC", err)
	}
	if l.HighWatermark() != 3 {
		t.Fatalf("hw %d after a failed append", l.HighWatermark())
	}
	fsys.failWrites(nil)
	if base, err := l.Append(batchOf(t, "after", 2, 50, 0)); err != nil || base != 3 {
		t.Fatalf("Append once there is room = %d, %v", base, err)
	}
	if got := readAll(t, l, 0); fmt.Sprint(got) != "[before/0/3 before/1/3 before/2/3 after/0/2 after/1/2]" {
		t.Fatalf("read %v", got)
	}
	l.Close()
	if _, err := Verify(dir, nil); err != nil {
		t.Fatalf("Verify after a disk-full episode: %v", err)
	}
}

// TestDiskFullReal fills a real 1 MiB tmpfs when the test may mount one.
func TestDiskFullReal(t *testing.T) {
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=256k"); err != nil {
		t.Skipf("cannot mount a small tmpfs here (%v); TestDiskFull injects the fault instead", err)
	}
	defer syscall.Unmount(dir, 0)
	l := openLog(t, dir, Options{Sync: SyncAlways})
	var appended int64
	var err error
	for range 1000 {
		if _, err = l.Append(batchOf(t, "fill", 10, 1000, 0)); err != nil {
			break
		}
		appended += 10
	}
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("filling the disk ended with %v, want ENOSPC", err)
	}
	if l.HighWatermark() != appended {
		t.Fatalf("hw %d, appended %d", l.HighWatermark(), appended)
	}
	if got := readAll(t, l, 0); len(got) != int(appended) {
		t.Fatalf("read %d records, appended %d", len(got), appended)
	}
	l.Close()
	if _, err := Verify(dir, nil); err != nil {
		t.Fatalf("Verify of the full disk: %v", err)
	}
}

// TestReadersNeverSeePartialBatches reads the raw sections while a writer
// appends and checks that every section is a whole number of intact
// batches.
func TestReadersNeverSeePartialBatches(t *testing.T) {
	l := openLog(t, t.TempDir(), Options{Sync: SyncNever, SegmentBytes: 32 << 10})
	defer l.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 400 {
			if _, err := l.Append(batchOf(t, fmt.Sprint(i), i%7+1, 200, 0)); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	var buf []byte
	for {
		select {
		case <-done:
			return
		default:
		}
		secs, err := l.Read(nil, l.StartOffset(), 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		for i := range secs {
			if buf, err = secs[i].AppendTo(buf[:0]); err != nil {
				t.Fatal(err)
			}
			for b := buf; len(b) > 0; {
				h, err := codecs.Validate(b, 0)
				if err != nil {
					t.Fatalf("section holds a bad batch: %v", err)
				}
				b = b[h.Size():]
			}
		}
		ReleaseSections(secs)
	}
}

func TestVerifyAndInspectReportCorruption(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, Options{SegmentBytes: 8 << 10, Sync: SyncNever})
	for i := range 60 {
		if _, err := l.Append(batchOf(t, fmt.Sprint(i), 3, 80, 0)); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	seg := segmentName(dir, 0, logSuffix)
	b, _ := os.ReadFile(seg)
	flipAt := int64(codecs.BatchSize(b)*2 + 100) // inside the third batch
	b[flipAt] ^= 0x10
	os.WriteFile(seg, b, 0o644)
	_, err := Verify(dir, nil)
	var ce *CorruptError
	if !errors.As(err, &ce) {
		t.Fatalf("Verify = %v, want a *CorruptError", err)
	}
	if ce.Path != seg || ce.Position != int64(codecs.BatchSize(b)*2) || ce.Offset != 6 {
		t.Fatalf("Verify reports %s at %d offset %d; want %s at %d offset 6", ce.Path, ce.Position, ce.Offset, seg, codecs.BatchSize(b)*2)
	}
	if !errors.Is(err, codecs.ErrCorrupt) || !errors.Is(err, ErrCorrupt) {
		t.Fatalf("error %v is not classified as corrupt", err)
	}
	// The closed segment's index is intact, so Open trusts it; the bad
	// batch is still never served as data to in-process readers.
	l = openLog(t, dir, Options{SegmentBytes: 8 << 10, Sync: SyncNever})
	it := l.NewIterator(0)
	n := 0
	for it.Next() {
		n++
	}
	if !errors.As(it.Err(), &ce) || n != 6 {
		t.Fatalf("iterator read %d records then %v; want 6 then a *CorruptError", n, it.Err())
	}
	l.Close()
	// Without the index, Open finds the damage itself and stops serving at
	// the bad batch.
	os.Remove(segmentName(dir, 0, indexSuffix))
	l = openLog(t, dir, Options{SegmentBytes: 8 << 10, Sync: SyncNever})
	defer l.Close()
	if _, err := l.ReadBatches(nil, 7, 1<<20); !errors.As(err, &ce) {
		t.Fatalf("ReadBatches of a corrupt offset = %v", err)
	}
	if data, err := l.ReadBatches(nil, 0, 1<<20); err != nil || len(data) != 2*codecs.BatchSize(b) {
		t.Fatalf("ReadBatches before the damage = %d bytes, %v", len(data), err)
	}
	// Later segments are unaffected.
	next := (*l.segs.Load())[1].base
	if got := readAll(t, l, next); len(got) != int(l.HighWatermark()-next) {
		t.Fatalf("read %d records after the damaged segment", len(got))
	}
}

func TestInspect(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, Options{SegmentBytes: 8 << 10, Sync: SyncNever})
	for i := range 60 {
		if _, err := l.Append(batchOf(t, fmt.Sprint(i), 3, 80, int64(1000+i))); err != nil {
			t.Fatal(err)
		}
	}
	infos, err := Inspect(dir)
	if err != nil {
		t.Fatal(err)
	}
	var records int64
	for i, in := range infos {
		records += in.Records
		if in.Active != (i == len(infos)-1) || in.Problem != "" {
			t.Fatalf("segment %d: %+v", i, in)
		}
		if i > 0 && in.BaseOffset != infos[i-1].NextOffset {
			t.Fatalf("segment %d starts at %d, previous ends at %d", i, in.BaseOffset, infos[i-1].NextOffset)
		}
	}
	if records != 180 || infos[0].FirstTimestamp != 1000 || infos[len(infos)-1].MaxTimestamp != 1059+2 {
		t.Fatalf("records %d first ts %d max ts %d", records, infos[0].FirstTimestamp, infos[len(infos)-1].MaxTimestamp)
	}
	l.Close()
}

// copyFile is used by the recovery tests to keep pristine copies.
func copyFile(t testing.TB, dst, src string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
}

var _ = filepath.Join

func TestScanHeadersAndDeleteBefore(t *testing.T) {
	var published atomic.Int64
	l := openLog(t, t.TempDir(), Options{SegmentBytes: 4 << 10, Sync: SyncNever, OnPublish: func() { published.Add(1) }})
	defer l.Close()
	for i := range 60 {
		if _, err := l.Append(batchOf(t, fmt.Sprint(i), 2, 100, 0)); err != nil {
			t.Fatal(err)
		}
	}
	if published.Load() != 60 {
		t.Fatalf("OnPublish called %d times for 60 appends", published.Load())
	}
	var bases []int64
	if err := l.ScanHeaders(31, func(h *codecs.Header) bool { bases = append(bases, h.BaseOffset); return true }); err != nil {
		t.Fatal(err)
	}
	if len(bases) != 45 || bases[0] != 30 || bases[44] != 118 {
		t.Fatalf("ScanHeaders(31) saw %d batches from %v", len(bases), bases[:1])
	}
	n, err := l.DeleteBefore(50)
	if err != nil || n == 0 {
		t.Fatalf("DeleteBefore(50) = %d, %v", n, err)
	}
	if s := l.StartOffset(); s > 50 || s == 0 {
		t.Fatalf("start offset %d after DeleteBefore(50)", s)
	}
	if got := readAll(t, l, l.StartOffset()); len(got) != int(120-l.StartOffset()) {
		t.Fatalf("read %d records after DeleteBefore", len(got))
	}
	// The active segment is never deleted.
	if _, err := l.DeleteBefore(1 << 40); err != nil || l.HighWatermark() != 120 {
		t.Fatalf("DeleteBefore(all) = %v, hw %d", err, l.HighWatermark())
	}
}

// TestReadAtNextOffsetNeverOutOfRange: a reader that asks for the offset
// after the last record it got must never be told that offset is past the
// high watermark, however the writer's publication interleaves (a Kafka
// consumer told OFFSET_OUT_OF_RANGE resets to the start).
func TestReadAtNextOffsetNeverOutOfRange(t *testing.T) {
	l := openLog(t, t.TempDir(), Options{Sync: SyncNever})
	defer l.Close()
	const batches = 20000
	b := batchFrom(t, "x", 0, 1)
	go func() {
		for range batches {
			if _, err := l.Append(b); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	var next int64
	var buf []byte
	for next < batches {
		var err error
		buf, err = l.ReadBatches(buf[:0], next, 1<<16)
		if err != nil {
			t.Fatalf("reading at %d (the offset after what was read): %v", next, err)
		}
		for p := buf; len(p) > 0; p = p[codecs.BatchSize(p):] {
			h, _ := codecs.ParseHeader(p)
			next = h.NextOffset()
		}
	}
}
