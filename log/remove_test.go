package log

import (
	"io/fs"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// stallFS blocks the Remove calls, and the Close calls of files, whose
// operation and path stall picks, until Release: a disk on which freeing
// a deleted file's blocks takes a long time.
type stallFS struct {
	FS
	stall   func(op, path string) bool
	gate    chan struct{}
	once    sync.Once
	mu      sync.Mutex
	stalled []string // op and path of each call that waited
}

func newStallFS(fsys FS, stall func(op, path string) bool) *stallFS {
	return &stallFS{FS: fsys, stall: stall, gate: make(chan struct{})}
}

func (f *stallFS) wait(op, path string) {
	if f.stall(op, path) {
		f.mu.Lock()
		f.stalled = append(f.stalled, op+" "+path)
		f.mu.Unlock()
		<-f.gate
	}
}

// Release lets every blocked call, and the ones after, go on.
func (f *stallFS) Release() { f.once.Do(func() { close(f.gate) }) }

func (f *stallFS) Stalled() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.stalled)
}

func (f *stallFS) Remove(name string) error {
	f.wait("remove", name)
	return f.FS.Remove(name)
}

func (f *stallFS) OpenFile(name string, flag int, perm fs.FileMode) (File, error) {
	file, err := f.FS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &stallFile{File: file, fs: f}, nil
}

type stallFile struct {
	File
	fs *stallFS
}

func (f *stallFile) Close() error {
	f.fs.wait("close", f.Name())
	return f.File.Close()
}

// within fails the test unless fn returns within d.
func within(t *testing.T, d time.Duration, what string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s did not return within %s while a deleted segment's file was being removed", what, d)
	}
}

// TestRemovalOffAppendPath: deleting segments (DeleteBefore, retention)
// and releasing the last reader of a deleted segment return while the
// filesystem takes its time to unlink the files and close their last
// descriptor, and appends and reads go on meanwhile: no lock of the log
// or of the shared file cache is held across either. The segments stay
// deleted across a reopen, and across a power cut once the directory is
// synced, even if their files were never unlinked; Close waits for the
// unlinks.
func TestRemovalOffAppendPath(t *testing.T) {
	for _, tc := range []struct {
		name   string
		delete func(l *Log) (int, error)
		reader bool // a reader holds the deleted segment and releases it while its close stalls
	}{
		{"DeleteBefore", func(l *Log) (int, error) { return l.DeleteBefore(l.HighWatermark()) }, false},
		{"retention", func(l *Log) (int, error) { return l.EnforceRetention() }, false},
		{"reader", func(l *Log) (int, error) { return l.DeleteBefore(l.HighWatermark()) }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mem := NewMemFS()
			var armed sync.Mutex
			on := false
			sfs := newStallFS(mem, func(op, path string) bool {
				armed.Lock()
				defer armed.Unlock()
				if tc.reader {
					// The unlinks go through: only the close of the last
					// descriptor, by the reader's release, frees blocks.
					return on && op == "close" && strings.HasSuffix(path, "00000000000000000000.log")
				}
				return on && (op == "remove" || strings.HasSuffix(path, "00000000000000000000.log"))
			})
			opts := Options{FS: sfs, SegmentBytes: 16 << 10, Files: NewFileCache(4)}
			if tc.name == "retention" {
				opts.RetentionBytes = 1
			}
			t.Cleanup(sfs.Release)
			l := openLog(t, "/d", opts)
			for i := range 40 {
				if _, err := l.Append(batchOf(t, "a", 4, 300, int64(i))); err != nil {
					t.Fatal(err)
				}
			}
			if l.Segments() < 3 {
				t.Fatalf("%d segments, want 3 or more", l.Segments())
			}
			var secs []Section
			if tc.reader {
				var err error
				if secs, err = l.Read(nil, 0, 1<<10); err != nil || len(secs) == 0 {
					t.Fatalf("Read = %d sections, %v", len(secs), err)
				}
			}
			armed.Lock()
			on = true
			armed.Unlock()
			var n int
			var err error
			within(t, 5*time.Second, "deleting the segments", func() { n, err = tc.delete(l) })
			if err != nil || n == 0 {
				t.Fatalf("deleting = %d segments, %v", n, err)
			}
			if tc.reader {
				within(t, 5*time.Second, "the reader's release", func() { ReleaseSections(secs) })
			}
			within(t, 5*time.Second, "an append", func() {
				if _, err := l.Append(batchOf(t, "b", 4, 300, 100)); err != nil {
					t.Error(err)
				}
			})
			within(t, 5*time.Second, "a read", func() {
				if got := readAll(t, l, l.StartOffset()); len(got) == 0 {
					t.Error("read nothing after the deletion")
				}
			})
			for deadline := time.Now().Add(5 * time.Second); len(sfs.Stalled()) == 0; time.Sleep(time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatal("no removal stalled: the test does not test what it says")
				}
			}
			start, hw := l.StartOffset(), l.HighWatermark()
			names, _ := mem.ReadDir("/d")
			for _, name := range names {
				if strings.HasPrefix(name, "00000000000000000000.log") && name != "00000000000000000000.log"+deletedSuffix {
					t.Fatalf("the deleted segment's file is still %s", name)
				}
			}
			// A power cut now, the directory synced: the files were never
			// unlinked, the segments stay deleted.
			if err := mem.SyncDir("/d"); err != nil {
				t.Fatal(err)
			}
			crashed := mem.CrashClone()
			lc := openLog(t, "/d", Options{FS: crashed, SegmentBytes: 16 << 10, SkipLock: true})
			if got := lc.StartOffset(); got != start {
				t.Errorf("after a power cut with the unlinks pending, start offset %d, want %d", got, start)
			}
			if err := lc.Close(); err != nil {
				t.Fatal(err)
			}
			names, _ = crashed.ReadDir("/d")
			for _, name := range names {
				if strings.HasSuffix(name, deletedSuffix) {
					t.Errorf("Open left %s after a power cut", name)
				}
			}

			closed := make(chan error, 1)
			go func() { closed <- l.Close() }()
			if !tc.reader { // with a reader, only a close is pending, which Close need not wait for
				select {
				case err := <-closed:
					t.Fatalf("Close returned (%v) before the pending unlinks were done", err)
				case <-time.After(50 * time.Millisecond):
				}
			}
			sfs.Release()
			if err := <-closed; err != nil {
				t.Fatal(err)
			}
			names, _ = mem.ReadDir("/d")
			for _, name := range names {
				if strings.HasSuffix(name, deletedSuffix) || strings.HasPrefix(name, "00000000000000000000.") {
					t.Errorf("after Close the deleted segment's file %s is left", name)
				}
			}
			l2 := openLog(t, "/d", Options{FS: mem, SegmentBytes: 16 << 10})
			defer l2.Close()
			if got, gotHW := l2.StartOffset(), l2.HighWatermark(); got != start || gotHW != hw {
				t.Errorf("reopened: start %d, high watermark %d; want %d, %d", got, gotHW, start, hw)
			}
		})
	}
}
