package sources

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// fileLineNumber parses "line-000123" to 123.
func fileLineNumber(t testing.TB, v string) int {
	t.Helper()
	n, err := strconv.Atoi(strings.TrimPrefix(v, "line-"))
	if err != nil || !strings.HasPrefix(v, "line-") {
		t.Fatalf("unexpected record %q", v)
	}
	return n
}

// fileConsume reads and acknowledges batches, counting each numbered
// line, until done reports true or d passes; it publishes the highest
// line seen in high.
func fileConsume(t testing.TB, s *fileSource, seen map[int]int, high *atomic.Int64, d time.Duration, done func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !done() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up after %v", d)
		}
		recs, ack := fileReadBatch(t, s, 50*time.Millisecond)
		for _, r := range recs {
			n := fileLineNumber(t, r.value)
			seen[n]++
			if int64(n) > high.Load() {
				high.Store(int64(n))
			}
		}
		if ack != nil {
			ack(context.Background(), nil)
		}
	}
}

// fileCheckOnce checks that lines [0, total) were each seen once, except
// those missing is allowed to excuse (which may be missing, not twice).
func fileCheckOnce(t testing.TB, seen map[int]int, total int, mayMiss func(int) bool) {
	t.Helper()
	missing, twice := 0, 0
	for n := range total {
		switch c := seen[n]; {
		case c == 0 && (mayMiss == nil || !mayMiss(n)):
			if missing++; missing <= 5 {
				t.Errorf("line %d never read", n)
			}
		case c > 1:
			if twice++; twice <= 5 {
				t.Errorf("line %d read %d times", n, c)
			}
		}
	}
	for n := range seen {
		if n < 0 || n >= total {
			t.Errorf("line %d was never written", n)
		}
	}
	if missing+twice > 0 {
		t.Fatalf("%d lines missing, %d read more than once, of %d", missing, twice, total)
	}
}

// TestFileRenameRotation rotates the file by rename while a writer
// appends at a steady rate, the way logrotate does by default: the old
// file is renamed, the writer goes on appending to it for a moment, then
// reopens the path, creating the new file. Every line is read once,
// whether the globs match the rotated files or only the live one.
func TestFileRenameRotation(t *testing.T) {
	for _, tc := range []struct{ name, glob string }{{"live only", "app.log"}, {"rotated too", "app.log*"}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			live := filepath.Join(dir, "app.log")
			const total, rotateEvery = 12000, 2500
			s := openFileSource(t, t.TempDir(), "batch_size: 500\nclose_after: 300ms\n", filepath.Join(dir, tc.glob))
			defer fileClose(t, s)
			var written atomic.Int64
			werr := make(chan error, 1)
			go func() { werr <- fileRotatingWriter(live, total, rotateEvery, &written) }()
			seen := map[int]int{}
			var high atomic.Int64
			writerDone := false
			fileConsume(t, s, seen, &high, 20*time.Second, func() bool {
				if !writerDone {
					select {
					case err := <-werr:
						if err != nil {
							t.Fatal(err)
						}
						writerDone = true
					default:
					}
				}
				return writerDone && len(seen) >= total
			})
			fileExpectNothing(t, s, 100*time.Millisecond)
			fileCheckOnce(t, seen, total, nil)
		})
	}
}

// fileRotatingWriter appends "line-N" at about 5000 lines a second,
// renaming the file to path.K every rotateEvery lines, then writing 20
// more lines to the renamed file before creating a new one at path.
func fileRotatingWriter(path string, total, rotateEvery int, written *atomic.Int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer func() { f.Close() }()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	var buf []byte
	write := func(i int) error {
		buf = fmt.Appendf(buf[:0], "line-%06d\n", i)
		_, err := f.Write(buf)
		written.Store(int64(i + 1))
		return err
	}
	rotations := 0
	for i := 0; i < total; {
		<-tick.C
		for range 5 {
			if i == total {
				break
			}
			if err := write(i); err != nil {
				return err
			}
			i++
			if i%rotateEvery == 0 {
				rotations++
				if err := os.Rename(path, fmt.Sprintf("%s.%d", path, rotations)); err != nil {
					return err
				}
				for j := 0; j < 20 && i < total; j++ {
					if err := write(i); err != nil {
						return err
					}
					i++
				}
				time.Sleep(5 * time.Millisecond)
				f.Close()
				if f, err = os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// TestFileCopyTruncate rotates the file by copytruncate while a writer
// appends: the content is copied elsewhere and the file truncated to 0,
// the writer pausing meanwhile (logrotate loses lines written between
// the copy and the truncation; its users accept that window). Lines
// written after a truncation are all read, none twice. In "caught up"
// the rotation waits until the source read everything, so every line is
// read exactly once; in "racing" it does not, so lines written just
// before a truncation and not yet read when it happens are in the copy
// only.
func TestFileCopyTruncate(t *testing.T) {
	for _, caughtUp := range []bool{true, false} {
		name := map[bool]string{true: "caught up", false: "racing"}[caughtUp]
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			live := filepath.Join(dir, "app.log")
			rotated := filepath.Join(t.TempDir(), "app.log.rotated")
			const total, rotateEvery = 12000, 2000
			s := openFileSource(t, t.TempDir(), "batch_size: 300\n", live)
			defer fileClose(t, s)
			var high atomic.Int64
			high.Store(-1)
			var truncatedAt []int // lines written before each truncation
			werr := make(chan error, 1)
			go func() {
				werr <- fileTruncatingWriter(live, rotated, total, rotateEvery, func(i int) {
					truncatedAt = append(truncatedAt, i)
					if !caughtUp {
						return
					}
					for deadline := time.Now().Add(10 * time.Second); high.Load() < int64(i-1) && time.Now().Before(deadline); {
						time.Sleep(time.Millisecond)
					}
				})
			}()
			seen := map[int]int{}
			writerDone := false
			fileConsume(t, s, seen, &high, 20*time.Second, func() bool {
				if !writerDone {
					select {
					case err := <-werr:
						if err != nil {
							t.Fatal(err)
						}
						writerDone = true
					default:
					}
				}
				return writerDone && high.Load() == total-1
			})
			fileExpectNothing(t, s, 100*time.Millisecond)
			last := truncatedAt[len(truncatedAt)-1]
			missed := 0
			fileCheckOnce(t, seen, total, func(n int) bool {
				if caughtUp || n >= last {
					return false
				}
				missed++
				return true
			})
			t.Logf("%d truncations; %d lines written just before one were not read before it", len(truncatedAt), missed)
		})
	}
}

// fileTruncatingWriter appends "line-N" at about 5000 lines a second and
// every rotateEvery lines copies the file to rotated and truncates it,
// calling before(i) first with the number of lines written.
func fileTruncatingWriter(path, rotated string, total, rotateEvery int, before func(int)) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	var buf []byte
	for i := 0; i < total; {
		<-tick.C
		for range 5 {
			if i == total {
				break
			}
			buf = fmt.Appendf(buf[:0], "line-%06d\n", i)
			if _, err := f.Write(buf); err != nil {
				return err
			}
			i++
			if i%rotateEvery == 0 && i < total {
				before(i)
				if err := fileCopy(path, rotated); err != nil {
					return err
				}
				if err := os.Truncate(path, 0); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func fileCopy(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}

// TestFileTruncateRegrow truncates a file and writes more than was read
// before the source looks again: the changed first bytes tell it the file
// is new content, read from 0.
func TestFileTruncateRegrow(t *testing.T) {
	dir := t.TempDir()
	live := filepath.Join(dir, "app.log")
	fileWriteLines(t, live, "old", 0, 10)
	s := openFileSource(t, t.TempDir(), "", live)
	defer fileClose(t, s)
	if got := fileValues(fileReadN(t, s, 10, 5*time.Second)); len(got) != 10 {
		t.Fatalf("read %v", got)
	}
	// Nothing polls between Reads: truncate and regrow past the read
	// position, then read.
	if err := os.Truncate(live, 0); err != nil {
		t.Fatal(err)
	}
	fileWriteLines(t, live, "new", 0, 20)
	got := fileValues(fileReadN(t, s, 20, 5*time.Second))
	if want := fileLineNames("new", 0, 20); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("after truncation: read %v, want %v", got, want)
	}
	fileExpectNothing(t, s, 50*time.Millisecond)
}
