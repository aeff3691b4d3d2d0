package log

import (
	"fmt"
	"io/fs"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// noSyncFS is a MemFS on which Sync and SyncDir do nothing: a log that
// never fsyncs. The power-cut tests run on it to show that they notice.
type noSyncFS struct{ *MemFS }

func (f noSyncFS) OpenFile(name string, flag int, perm fs.FileMode) (File, error) {
	file, err := f.MemFS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return noSyncFile{file}, nil
}

func (noSyncFS) SyncDir(string) error { return nil }

type noSyncFile struct{ File }

func (noSyncFile) Sync() error { return nil }

// crashFS is a file system a power cut can be simulated on.
type crashFS interface {
	FS
	CrashClone() *MemFS
}

func (f noSyncFS) CrashClone() *MemFS { return f.MemFS.CrashClone() }

// appendAcked appends batches of tagged records from several goroutines
// and returns the tags of the acknowledged ones.
func appendAcked(t *testing.T, l *Log, prefix string, appenders, each int) []string {
	t.Helper()
	var mu sync.Mutex
	var acked []string
	var wg sync.WaitGroup
	for a := range appenders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				tag := fmt.Sprintf("%s%d.%d", prefix, a, i)
				if _, err := l.Append(batchOf(t, tag, 3, 100, 0)); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				acked = append(acked, tag)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return acked
}

// survivors opens the log in dir of a crashed file system and returns the
// tags of the batches it holds; every batch must be whole.
func survivors(t *testing.T, fsys FS, dir string, opts Options) map[string]bool {
	t.Helper()
	opts.FS = fsys
	l := openLog(t, dir, opts)
	defer l.Close()
	got := map[string]int{}
	for _, v := range readAll(t, l, 0) {
		tag, _, _ := strings.Cut(v, "/")
		got[tag]++
	}
	tags := map[string]bool{}
	for tag, n := range got {
		if n != 3 {
			t.Fatalf("batch %s has %d of its 3 records after the power cut", tag, n)
		}
		tags[tag] = true
	}
	return tags
}

// lost returns the acknowledged tags that did not survive.
func lost(acked []string, survived map[string]bool) []string {
	var out []string
	for _, tag := range acked {
		if !survived[tag] {
			out = append(out, tag)
		}
	}
	return out
}

// TestPowerCutSyncAlways: with fsync always, every acknowledged batch
// survives a power cut, across segment rolls, with concurrent appenders
// sharing group commits. On a file system where fsync does nothing the
// same check finds acknowledged batches lost: the test can tell.
func TestPowerCutSyncAlways(t *testing.T) {
	opts := Options{Sync: SyncAlways, SegmentBytes: 8 << 10}
	for _, c := range []struct {
		name   string
		fs     crashFS
		doSync bool
	}{{"memfs", NewMemFS(), true}, {"no-fsync", noSyncFS{NewMemFS()}, false}} {
		t.Run(c.name, func(t *testing.T) {
			o := opts
			o.FS = c.fs
			l := openLog(t, "/data/p0", o)
			acked := appendAcked(t, l, "a", 8, 25)
			st := l.Stats()
			crashed := c.fs.CrashClone() // the power goes while the log is open
			l.Close()
			missing := lost(acked, survivors(t, crashed, "/data/p0", opts))
			if c.doSync {
				if len(missing) > 0 {
					t.Fatalf("%d of %d acknowledged batches lost in a power cut, e.g. %v", len(missing), len(acked), missing[0])
				}
				if st.Fsyncs == 0 {
					t.Fatal("no fsyncs")
				}
				if st.Rolls == 0 {
					t.Fatal("no segment rolled")
				}
			} else if len(missing) == 0 {
				t.Fatal("a log that never fsyncs lost nothing in a power cut: the test cannot tell")
			}
		})
	}
}

// TestPowerCutSyncInterval: with fsync interval, what was appended before
// an interval sync survives a power cut without Close.
func TestPowerCutSyncInterval(t *testing.T) {
	fsys := NewMemFS()
	opts := Options{Sync: SyncInterval, SyncInterval: 5 * time.Millisecond, FS: fsys}
	l := openLog(t, "/p", opts)
	defer l.Close()
	acked := appendAcked(t, l, "a", 1, 20)
	before := l.Stats().Fsyncs
	for deadline := time.Now().Add(10 * time.Second); l.Stats().Fsyncs == before; {
		if time.Now().After(deadline) {
			t.Fatal("no interval fsync within 10s")
		}
		time.Sleep(time.Millisecond)
	}
	if missing := lost(acked, survivors(t, fsys.CrashClone(), "/p", opts)); len(missing) > 0 {
		t.Fatalf("%d of %d batches appended before an interval fsync lost, e.g. %v", len(missing), len(acked), missing[0])
	}
	// Appended after the last sync: may be lost, and what is left is whole.
	appendAcked(t, l, "b", 1, 5)
	survivors(t, fsys.CrashCloneTorn(rand.New(rand.NewPCG(1, 2))), "/p", opts)
}

// TestPowerCutCloseIsDurable: a log closed with fsync always or interval
// has everything on disk.
func TestPowerCutCloseIsDurable(t *testing.T) {
	for _, policy := range []SyncPolicy{SyncAlways, SyncInterval} {
		t.Run(policy.String(), func(t *testing.T) {
			fsys := NewMemFS()
			opts := Options{Sync: policy, SyncInterval: time.Hour, SegmentBytes: 8 << 10, FS: fsys}
			l := openLog(t, "/p", opts)
			acked := appendAcked(t, l, "a", 4, 20)
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			if missing := lost(acked, survivors(t, fsys.CrashClone(), "/p", opts)); len(missing) > 0 {
				t.Fatalf("%d of %d batches lost after Close, e.g. %v", len(missing), len(acked), missing[0])
			}
		})
	}
}

// TestPowerCutDuringRoll: the power goes while a rolled segment's
// background seal has not synced it, but later segments were synced (and
// their names made durable). The unsealed segment's unsynced tail is lost,
// possibly torn; recovery cuts it like the active segment's and serves
// everything after it.
func TestPowerCutDuringRoll(t *testing.T) {
	fsys := NewMemFS()
	opts := Options{Sync: SyncInterval, SyncInterval: time.Hour, SegmentBytes: 4 << 10, FS: fsys}
	hold := make(chan struct{})
	var first sync.Once
	sealHook = func() {
		held := false
		first.Do(func() { held = true })
		if held {
			<-hold
		}
	}
	defer func() { sealHook = nil }()
	l := openLog(t, "/p", opts)
	for i := 0; l.Stats().Rolls < 3; i++ {
		if i > 1000 {
			t.Fatal("no third roll")
		}
		appendAcked(t, l, fmt.Sprint("r", i, "."), 1, 1)
	}
	// The second and third seals complete; the first is held.
	for deadline := time.Now().Add(10 * time.Second); ; {
		l.mu.Lock()
		n := len(l.pending)
		l.mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d seals pending, want the held one only", n)
		}
		time.Sleep(time.Millisecond)
	}
	segs := *l.segs.Load()
	secondBase, activeBase := segs[1].base, segs[3].base
	crashed := fsys.CrashCloneTorn(rand.New(rand.NewPCG(3, 4)))
	close(hold)
	l.Close()

	opts.FS = crashed
	r := openLog(t, "/p", opts)
	defer r.Close()
	if r.stats.unsealed.Load() != 1 {
		t.Fatalf("recovery found %d unsealed segments, want 1", r.stats.unsealed.Load())
	}
	it := r.NewIterator(0)
	var offsets []int64
	for it.Next() {
		offsets = append(offsets, it.Record().Offset)
	}
	if it.Err() != nil {
		t.Fatalf("reading after the power cut: %v", it.Err())
	}
	// Everything of the two sealed segments is there, in order.
	want := secondBase
	for _, off := range offsets {
		if off < secondBase {
			continue
		}
		if off >= activeBase {
			break
		}
		if off != want {
			t.Fatalf("offset %d after the power cut, want %d", off, want)
		}
		want++
	}
	if want != activeBase {
		t.Fatalf("the sealed segments hold offsets %d to %d after the power cut, want to %d", secondBase, want, activeBase)
	}
}

// slowSyncFS is a MemFS whose file Sync takes delay and is counted.
type slowSyncFS struct {
	*MemFS
	delay time.Duration
	syncs atomic.Int64
}

func (f *slowSyncFS) OpenFile(name string, flag int, perm fs.FileMode) (File, error) {
	file, err := f.MemFS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return slowSyncFile{file, f}, nil
}

type slowSyncFile struct {
	File
	fs *slowSyncFS
}

func (f slowSyncFile) Sync() error {
	f.fs.syncs.Add(1)
	time.Sleep(f.fs.delay)
	return f.File.Sync()
}
