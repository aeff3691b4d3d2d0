package log

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// blockedWrites is a file system whose segment writes can be held: the
// first write after hold waits until release, and then fails with the
// error release was given (nil: it goes through). Writes after it pass.
type blockedWrites struct {
	FaultFS
	mu      sync.Mutex
	held    bool
	entered chan struct{} // closed when the held write has begun
	release chan error
}

func newBlockedWrites() *blockedWrites {
	w := &blockedWrites{}
	w.FaultFS = FaultFS{FS: OSFS(), Fail: func(op, path string) error {
		if op != "write" || !strings.HasSuffix(path, logSuffix) {
			return nil
		}
		w.mu.Lock()
		held := w.held
		w.held = false
		w.mu.Unlock()
		if !held {
			return nil
		}
		close(w.entered)
		return <-w.release
	}}
	return w
}

// hold makes the next segment write wait.
func (w *blockedWrites) hold() {
	w.mu.Lock()
	w.held, w.entered, w.release = true, make(chan struct{}), make(chan error, 1)
	w.mu.Unlock()
}

// staged waits until n appends wait in the log's stage.
func staged(t *testing.T, l *Log, n int64) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; {
		l.mu.Lock()
		got := l.stage.appends
		l.mu.Unlock()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d appends staged, want %d", got, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// appendAll appends one batch per tag from a goroutine each and returns
// their errors in tag order.
func appendAll(t *testing.T, l *Log, tags []string) []error {
	errs := make([]error, len(tags))
	var wg sync.WaitGroup
	for i, tag := range tags {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = l.Append(batchOf(t, tag, 2, 100, 0))
		}()
	}
	wg.Wait()
	return errs
}

// await receives from ch, failing the test if nothing comes in 10 s (a
// stage that nobody writes leaves its appenders waiting).
func await[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("%s did not return in 10 s", what)
		panic("unreachable")
	}
}

// TestStageCombinesWrites: appends that arrive while a write runs are
// staged and written together by the next flusher with one write, and
// every one of them is durable and readable, in offset order, once
// acknowledged. Without the stage each would make a write of its own.
func TestStageCombinesWrites(t *testing.T) {
	dir := t.TempDir()
	fsys := newBlockedWrites()
	l := openLog(t, dir, Options{Sync: SyncAlways, FS: fsys})
	fsys.hold()
	first := make(chan error, 1)
	go func() {
		_, err := l.Append(batchOf(t, "first", 2, 100, 0))
		first <- err
	}()
	<-fsys.entered
	tags := []string{"a", "b", "c", "d", "e", "f", "g", "h"}
	done := make(chan []error, 1)
	go func() { done <- appendAll(t, l, tags) }()
	staged(t, l, int64(len(tags)))
	fsys.release <- nil
	if err := await(t, first, "the held append"); err != nil {
		t.Fatal(err)
	}
	for i, err := range await(t, done, "the staged appends") {
		if err != nil {
			t.Fatalf("append %s: %v", tags[i], err)
		}
	}
	st := l.Stats()
	if st.Appends != 9 || st.Writes != 2 {
		t.Fatalf("%d appends made %d writes, want 9 in 2 (the held one, then the 8 staged behind it)", st.Appends, st.Writes)
	}
	if l.HighWatermark() != 18 {
		t.Fatalf("hw %d, want 18", l.HighWatermark())
	}
	got := readAll(t, l, 0)
	var batches []string
	for i := 0; i < len(got); i += 2 {
		tag := got[i][:strings.IndexByte(got[i], '/')]
		if got[i] != tag+"/0/2" || got[i+1] != tag+"/1/2" {
			t.Fatalf("records %d-%d are %q %q, not one whole batch", i, i+1, got[i], got[i+1])
		}
		batches = append(batches, tag)
	}
	slices.Sort(batches)
	if want := append([]string{"first"}, tags...); fmt.Sprint(batches) != fmt.Sprint(slices.Sorted(slices.Values(want))) {
		t.Fatalf("batches read %v, want %v", batches, want)
	}
	l.Close()
	if _, err := Verify(dir, nil); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	l = openLog(t, dir, Options{})
	defer l.Close()
	if n := len(readAll(t, l, 0)); n != 18 {
		t.Fatalf("reopened log holds %d records, want 18", n)
	}
}

// TestStageWriteFailure: a write that fails (half written, as on a full
// disk) fails every append it carried and every append staged behind it,
// with the write's error from Append; the log is cut back to where it was
// before them, hands out their offsets again, and works on.
func TestStageWriteFailure(t *testing.T) {
	dir := t.TempDir()
	fsys := newBlockedWrites()
	// No zeros written ahead: the first sync would start writing them
	// on a goroutine of its own, and that write, not the append's, could
	// be the one held (2 runs in 300 failed so under -race).
	l := openLog(t, dir, Options{Sync: SyncAlways, FS: fsys, PrewriteBytes: -1})
	if _, err := l.Append(batchOf(t, "before", 3, 50, 0)); err != nil {
		t.Fatal(err)
	}
	fsys.hold()
	first := make(chan error, 1)
	go func() {
		_, err := l.Append(batchOf(t, "lost", 2, 100, 0))
		first <- err
	}()
	<-fsys.entered
	tags := []string{"x", "y", "z"}
	done := make(chan []error, 1)
	go func() { done <- appendAll(t, l, tags) }()
	staged(t, l, int64(len(tags)))
	fsys.release <- syscall.ENOSPC
	if err := await(t, first, "the held append"); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Append of the failed write = %v, want ENOSPC", err)
	}
	for i, err := range await(t, done, "the staged appends") {
		if !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("Append %s, staged behind the failed write = %v, want ENOSPC", tags[i], err)
		}
	}
	if hw := l.HighWatermark(); hw != 3 {
		t.Fatalf("hw %d after the failed write, want 3", hw)
	}
	if base, err := l.Append(batchOf(t, "after", 2, 50, 0)); err != nil || base != 3 {
		t.Fatalf("Append after the failure = %d, %v; want base 3", base, err)
	}
	if got := readAll(t, l, 0); fmt.Sprint(got) != "[before/0/3 before/1/3 before/2/3 after/0/2 after/1/2]" {
		t.Fatalf("read %v", got)
	}
	if st := l.Stats(); st.Appends != 2 {
		t.Fatalf("Stats.Appends = %d, want 2 (failed appends are not counted)", st.Appends)
	}
	l.Close()
	if _, err := Verify(dir, nil); err != nil {
		t.Fatalf("Verify after a failed write: %v", err)
	}
}

// TestAppendStaged: callers that take offsets under a lock of their own
// (AppendStaged) and wait for the write after releasing it share writes;
// with AppendAsync under the same lock each append is a write of its
// own. A failed write is Wait's error, and its offsets go to the appends
// after.
func TestAppendStaged(t *testing.T) {
	for _, detached := range []bool{true, false} {
		t.Run(fmt.Sprint("detached=", detached), func(t *testing.T) {
			l := openLog(t, t.TempDir(), Options{Sync: SyncAlways})
			defer l.Close()
			const callers, each = 16, 40
			var mu sync.Mutex // the caller's own lock
			var wg sync.WaitGroup
			for c := range callers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range each {
						b := batchOf(t, fmt.Sprintf("c%d.%d", c, i), 2, 100, 0)
						mu.Lock()
						var next int64
						var err error
						if detached {
							var w Staged
							_, next, w, err = l.AppendStaged(b, true)
							mu.Unlock()
							if err == nil {
								err = w.Wait()
							}
						} else {
							_, next, err = l.AppendAsync(b)
							mu.Unlock()
						}
						if err == nil {
							err = l.WaitDurable(next)
						}
						if err != nil {
							t.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			st := l.Stats()
			if n := len(readAll(t, l, 0)); n != callers*each*2 {
				t.Fatalf("read %d records, want %d", n, callers*each*2)
			}
			if combined := st.Writes*2 <= st.Appends; combined != detached {
				t.Fatalf("%d appends took %d writes (detached %v)", st.Appends, st.Writes, detached)
			}
			t.Logf("%d appends, %d writes", st.Appends, st.Writes)
		})
	}

	t.Run("failure", func(t *testing.T) {
		var full atomic.Bool
		fsys := &FaultFS{FS: OSFS(), Fail: func(op, path string) error {
			if op == "write" && full.Load() {
				return syscall.ENOSPC
			}
			return nil
		}}
		l := openLog(t, t.TempDir(), Options{Sync: SyncAlways, FS: fsys})
		defer l.Close()
		if _, err := l.Append(batchOf(t, "before", 3, 50, 0)); err != nil {
			t.Fatal(err)
		}
		full.Store(true)
		base, _, w, err := l.AppendStaged(batchOf(t, "lost", 2, 50, 0), true)
		if err != nil || base != 3 {
			t.Fatalf("AppendStaged = %d, %v; want base 3", base, err)
		}
		if err := w.Wait(); !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("Wait of a failed write = %v, want ENOSPC", err)
		}
		full.Store(false)
		if base, err := l.Append(batchOf(t, "after", 2, 50, 0)); err != nil || base != 3 {
			t.Fatalf("Append after the failure = %d, %v; want base 3", base, err)
		}
		if got := readAll(t, l, 0); fmt.Sprint(got) != "[before/0/3 before/1/3 before/2/3 after/0/2 after/1/2]" {
			t.Fatalf("read %v", got)
		}
	})
}

// TestWriteVec writes lists of buffers, with and without zeros after them,
// into an operating-system file (one pwritev per UIO_MAXIOV buffers,
// resumed after a short write) and into a MemFS file (joined), over bytes
// written before: the file must then hold exactly the buffers in order,
// then pad zeros, then the old bytes.
func TestWriteVec(t *testing.T) {
	osFS := OSFS()
	files := map[string]func(t *testing.T) File{
		"os": func(t *testing.T) File {
			f, err := osFS.OpenFile(filepath.Join(t.TempDir(), "f"), os.O_RDWR|os.O_CREATE, 0o644)
			if err != nil {
				t.Fatal(err)
			}
			return f
		},
		"memfs": func(t *testing.T) File {
			f, err := NewMemFS().OpenFile("/f", os.O_RDWR|os.O_CREATE, 0o644)
			if err != nil {
				t.Fatal(err)
			}
			return f
		},
	}
	for name, open := range files {
		for _, n := range []int{1, 2, 1023, 1024, 2500} {
			for _, pad := range []int64{0, 100, int64(len(zeroBlock)) + 7} {
				t.Run(fmt.Sprintf("%s/buffers=%d/pad=%d", name, n, pad), func(t *testing.T) {
					f := open(t)
					defer f.Close()
					var iov [][]byte
					var want []byte
					for i := range n {
						b := bytes.Repeat([]byte{byte('a' + i%26)}, 1+i%7)
						iov = append(iov, b)
						want = append(want, b...)
					}
					size := int64(len(want))
					const at = 10
					old := bytes.Repeat([]byte{0xff}, at+int(size+pad)+50)
					if _, err := f.WriteAt(old, 0); err != nil {
						t.Fatal(err)
					}
					if err := writeVec(f, slices.Clone(iov), size, at, pad); err != nil {
						t.Fatal(err)
					}
					got := make([]byte, len(old))
					if _, err := f.ReadAt(got, 0); err != nil && err != io.EOF {
						t.Fatal(err)
					}
					switch {
					case !bytes.Equal(got[:at], old[:at]):
						t.Error("the bytes before pos changed")
					case !bytes.Equal(got[at:at+size], want):
						t.Error("the buffers are not where they belong, in order")
					case !bytes.Equal(got[at+size:at+size+pad], make([]byte, pad)):
						t.Error("the pad is not zeros")
					case !bytes.Equal(got[at+size+pad:], old[at+size+pad:]):
						t.Error("bytes after the pad changed")
					}
				})
			}
		}
	}
}
