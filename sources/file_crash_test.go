package sources

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

const fileCrashEnv = "WEIR_FILE_CRASH_CHILD"

// TestFileCrashChild is the child process of TestFileCrash (it skips
// when run otherwise). It tails dir/logs/app.log* and "stores" each
// batch the way the hub would: appended to dir/out.txt and fsynced, then
// acknowledged. Checkpoints are written at every acknowledgement. It runs
// until killed.
func TestFileCrashChild(t *testing.T) {
	dir := os.Getenv(fileCrashEnv)
	if dir == "" {
		t.Skip("the child of TestFileCrash")
	}
	outPath := filepath.Join(dir, "out.txt")
	// A kill may have torn the last write: keep whole lines only.
	if data, err := os.ReadFile(outPath); err == nil {
		if err := os.Truncate(outPath, int64(bytes.LastIndexByte(data, '\n')+1)); err != nil {
			t.Fatal(err)
		}
	}
	out, err := os.OpenFile(outPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	s := openFileSource(t, filepath.Join(dir, "state"), "batch_size: 100\ncheckpoint_interval: 0s\nclose_after: 300ms\n",
		filepath.Join(dir, "logs", "app.log*"))
	var buf []byte
	for {
		msgs, ack, err := s.Read(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		buf = buf[:0]
		for _, m := range msgs {
			buf = append(append(buf, m.Value...), '\n')
		}
		if _, err := out.Write(buf); err != nil {
			t.Fatal(err)
		}
		if err := out.Sync(); err != nil {
			t.Fatal(err)
		}
		if err := ack(context.Background(), nil); err != nil {
			t.Fatal(err)
		}
	}
}

// TestFileCrash kills the source with SIGKILL at random moments, at
// least five times, while a writer appends and rotates, restarting it
// each time. The child acknowledges a batch only once it is durably in
// its output, and writes checkpoints at every acknowledgement: in the
// end every line is in the output, and a line is there twice only if its
// batch was stored and not yet acknowledged at a kill: at most one batch
// per kill.
func TestFileCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("kills child processes")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Skip(err)
	}
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "logs"), 0o755); err != nil {
		t.Fatal(err)
	}
	const total, rotateEvery, batchSize, kills = 15000, 3000, 100, 6
	var written atomic.Int64
	werr := make(chan error, 1)
	go func() {
		werr <- fileRotatingWriter(filepath.Join(dir, "logs", "app.log"), total, rotateEvery, &written)
	}()

	var stderr bytes.Buffer
	start := func() *exec.Cmd {
		cmd := exec.Command(exe, "-test.run=^TestFileCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), fileCrashEnv+"="+dir)
		cmd.Stderr, cmd.Stdout = &stderr, &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range kills {
		cmd := start()
		time.Sleep(time.Duration(300+rng.IntN(500)) * time.Millisecond)
		cmd.Process.Kill()
		cmd.Wait()
	}
	select {
	case err := <-werr:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("writer did not finish")
	}

	// The last run reads what is left.
	cmd := start()
	var counts map[int]int
	for deadline := time.Now().Add(20 * time.Second); ; {
		counts = fileOutput(t, filepath.Join(dir, "out.txt"))
		if len(counts) >= total {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("%d of %d lines in the output after 20s; child output:\n%s", len(counts), total, stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // nothing more comes
	cmd.Process.Kill()
	cmd.Wait()
	counts = fileOutput(t, filepath.Join(dir, "out.txt"))

	dups := 0
	for n := range total {
		switch c := counts[n]; {
		case c == 0:
			t.Errorf("line %d lost", n)
		case c > 1:
			dups += c - 1
		}
	}
	if len(counts) != total {
		t.Errorf("%d distinct lines in the output, want %d", len(counts), total)
	}
	t.Logf("%d kills, %d lines written, %d read twice", kills, total, dups)
	if dups > kills*batchSize {
		t.Errorf("%d lines read twice; want at most one batch per kill (%d)", dups, kills*batchSize)
	}
}

// fileOutput counts the lines of the crash test's output.
func fileOutput(t testing.TB, path string) map[int]int {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	counts := map[int]int{}
	for line := range strings.Lines(string(data)) {
		if !strings.HasSuffix(line, "\n") {
			break // torn by a kill
		}
		n, err := strconv.Atoi(strings.TrimPrefix(strings.TrimSuffix(line, "\n"), "line-"))
		if err != nil {
			t.Fatalf("output line %q", line)
		}
		counts[n]++
	}
	return counts
}

// fileRemove removes path, returning the identity it had.
func fileRemove(t *testing.T, path string) fileKey {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := fileStatKey(fi, path)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	return key
}

// fileReuseInode creates a file with content that gets the inode of old
// (a deleted file), renaming it to path; files that get another inode
// are moved to junk, a directory made before old was deleted (making it
// after could take the inode). It skips the test when the filesystem
// does not reuse the inode within a bounded number of tries.
func fileReuseInode(t *testing.T, path, junk string, old fileKey, content string) {
	t.Helper()
	cand := filepath.Join(filepath.Dir(path), "candidate.tmp")
	for i := range 200 {
		if err := os.WriteFile(cand, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(cand)
		if err != nil {
			t.Fatal(err)
		}
		if k, _ := fileStatKey(fi, cand); k == old {
			if err := os.Rename(cand, path); err != nil {
				t.Fatal(err)
			}
			return
		}
		// Keep the wrong inode in use, so the next try gets another.
		if err := os.Rename(cand, filepath.Join(junk, strconv.Itoa(i))); err != nil {
			t.Skipf("cannot move a file aside: %v", err)
		}
	}
	t.Skip("the filesystem did not reuse the inode in 200 tries")
}

// TestFileInodeReuse deletes a read file and makes a new file with the
// same inode: it is read from its beginning, not from the old file's
// checkpoint.
func TestFileInodeReuse(t *testing.T) {
	old := strings.Join(fileLineNames("old", 0, 5), "\n") + "\n"
	newer := strings.Join(fileLineNames("new", 0, 3), "\n") + "\n"
	for _, tc := range []struct {
		name    string
		content string // of the new file
		birth   bool   // needs birth times to tell the files apart
	}{
		{"other content", newer + newer, false},
		{"longer than fingerprint", strings.Repeat(newer, 200), false},
		{"same first bytes", old + newer, true},
	} {
		t.Run("stopped/"+tc.name, func(t *testing.T) {
			dir, state := t.TempDir(), t.TempDir()
			a := filepath.Join(dir, "a.log")
			fileAppend(t, a, old)
			if tc.birth {
				f, err := os.Open(a)
				if err != nil {
					t.Fatal(err)
				}
				bt := fileBirthTime(f)
				f.Close()
				if bt == 0 {
					t.Skip("the filesystem does not record birth times: a file with the same inode and first bytes is taken for the old one")
				}
				time.Sleep(20 * time.Millisecond) // a later birth time, whatever the clock's grain
			}
			s := openFileSource(t, state, "", filepath.Join(dir, "*.log"))
			if got := fileValues(fileReadN(t, s, 5, 5*time.Second)); len(got) != 5 {
				t.Fatalf("read %v", got)
			}
			fileClose(t, s)
			junk := t.TempDir()
			fileReuseInode(t, a, junk, fileRemove(t, a), tc.content)
			s = openFileSource(t, state, "", filepath.Join(dir, "*.log"))
			defer fileClose(t, s)
			want := strings.Split(strings.TrimSuffix(tc.content, "\n"), "\n")
			if got := fileValues(fileReadN(t, s, len(want), 5*time.Second)); strings.Join(got, ",") != strings.Join(want, ",") {
				t.Fatalf("read %d records %v..., want %d from the beginning", len(got), got[:min(len(got), 6)], len(want))
			}
			fileExpectNothing(t, s, 50*time.Millisecond)
		})
	}
	t.Run("running", func(t *testing.T) {
		// Deleted while the source runs: its checkpoint is dropped when it
		// is closed, so even the same first bytes do not fool it.
		dir := t.TempDir()
		a := filepath.Join(dir, "a.log")
		fileAppend(t, a, old)
		// No checkpoint writes meanwhile: a new checkpoint file could take
		// the inode.
		s := openFileSource(t, t.TempDir(), "close_after: 50ms\ncheckpoint_interval: 1h\n", filepath.Join(dir, "*.log"))
		defer fileClose(t, s)
		if got := fileValues(fileReadN(t, s, 5, 5*time.Second)); len(got) != 5 {
			t.Fatalf("read %v", got)
		}
		junk := t.TempDir()
		key := fileRemove(t, a)
		for deadline := time.Now().Add(5 * time.Second); ; {
			fileReadBatch(t, s, 20*time.Millisecond)
			s.mu.Lock()
			_, known := s.known[key]
			s.mu.Unlock()
			if !known {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("deleted file not closed")
			}
		}
		fileReuseInode(t, a, junk, key, old+newer)
		want := append(fileLineNames("old", 0, 5), fileLineNames("new", 0, 3)...)
		if got := fileValues(fileReadN(t, s, 8, 5*time.Second)); strings.Join(got, ",") != strings.Join(want, ",") {
			t.Fatalf("read %v, want %v", got, want)
		}
	})
}
