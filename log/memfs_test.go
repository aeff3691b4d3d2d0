package log

import (
	"bytes"
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
	appendFrom(t, l, prefix, appenders, each, func(tag string, _ int64, err error) {
		if err != nil {
			t.Error(err)
			return
		}
		mu.Lock()
		acked = append(acked, tag)
		mu.Unlock()
	})()
	return acked
}

// appendFrom appends batches of 3 records tagged prefix<appender>.<i> from
// appenders goroutines, each batches each, and hands every outcome to
// done, concurrently. wait waits for them all.
func appendFrom(t *testing.T, l *Log, prefix string, appenders, each int, done func(tag string, base int64, err error)) (wait func()) {
	var wg sync.WaitGroup
	for a := range appenders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				tag := fmt.Sprintf("%s%d.%d", prefix, a, i)
				base, err := l.Append(batchOf(t, tag, 3, 100, 0))
				done(tag, base, err)
			}
		}()
	}
	return wg.Wait
}

// survivors opens the log in dir of a crashed file system and returns the
// tags of the batches it holds; every batch must be whole.
func survivors(t *testing.T, fsys FS, dir string, opts Options) map[string]bool {
	t.Helper()
	return survivorsOf(t, fsys, dir, opts, false)
}

// survivorsOf is survivors; with gaps, the offsets after recovery need only
// grow, for a power cut in the middle of rolls: a segment whose background
// seal had not synced it loses its unsynced tail while a later segment
// synced by its own sealer keeps its records (never acknowledged ones).
func survivorsOf(t *testing.T, fsys FS, dir string, opts Options, gaps bool) map[string]bool {
	t.Helper()
	opts.FS = fsys
	l := openLog(t, dir, opts)
	defer l.Close()
	got := map[string]int{}
	var vals []string
	if gaps {
		it := l.NewIterator(0)
		for last := int64(-1); it.Next(); {
			r := it.Record()
			if r.Offset <= last {
				t.Fatalf("offset %d after %d", r.Offset, last)
			}
			last = r.Offset
			vals = append(vals, string(r.Value))
		}
		if err := it.Err(); err != nil {
			t.Fatalf("reading after the power cut: %v", err)
		}
	} else {
		vals = readAll(t, l, 0)
	}
	for _, v := range vals {
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

// holdSeal makes the background seal of the segment with base offset
// base wait, before it syncs, until the returned release is called; the
// seals of other segments run. Whichever sealer goroutine runs first, only
// that segment's seal is held.
func holdSeal(t *testing.T, base int64) (release func()) {
	hold := make(chan struct{})
	sealHook = func(b int64) {
		if b == base {
			<-hold
		}
	}
	var once sync.Once
	release = func() { once.Do(func() { close(hold) }) }
	t.Cleanup(func() { release(); sealHook = nil })
	return release
}

// durableWhole reports whether path is on the disk of m whole: its name
// made durable in its directory and all its data synced.
func durableWhole(m *MemFS, path string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	d, name, err := m.dirOf(path)
	if err != nil || d.synced[name] == nil || d.synced[name] != d.entries[name] {
		return false
	}
	n := d.synced[name]
	n.mu.RLock()
	defer n.mu.RUnlock()
	return bytes.Equal(n.synced, n.data)
}

// nameDurable reports whether path's name is durable in its directory.
func nameDurable(m *MemFS, path string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	d, name, err := m.dirOf(path)
	return err == nil && d.synced[name] != nil
}

// waitDurableWhole waits (at most 10s) until the segments with the given
// bases are on the disk of m whole.
func waitDurableWhole(t *testing.T, m *MemFS, dir string, bases ...int64) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; {
		all := true
		for _, b := range bases {
			all = all && durableWhole(m, segmentName(dir, b, logSuffix))
		}
		if all {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("segments %v not synced within 10s", bases)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestPowerCutDuringRoll: the power goes while the first rolled segment's
// background seal has not synced it, but the two segments rolled after it
// were synced (and their names made durable) by their own sealers. The
// unsealed segment's unsynced tail is lost, possibly torn; recovery cuts it
// like the active segment's and serves everything after it.
//
// The seal held is the first segment's by its base offset: sealers are
// goroutines, and the first to reach the hook may be any segment's (holding
// "the first sealer to run" held the second segment's now and then, whose
// unsynced tail is then rightly lost).
func TestPowerCutDuringRoll(t *testing.T) {
	fsys := NewMemFS()
	opts := Options{Sync: SyncInterval, SyncInterval: time.Hour, SegmentBytes: 4 << 10, FS: fsys}
	release := holdSeal(t, 0)
	l := openLog(t, "/p", opts)
	for i := 0; l.Stats().Rolls < 3; i++ {
		if i > 1000 {
			t.Fatal("no third roll")
		}
		appendAcked(t, l, fmt.Sprint("r", i, "."), 1, 1)
	}
	segs := *l.segs.Load()
	secondBase, activeBase := segs[1].base, segs[3].base
	// The second and third segments are synced; the first is not.
	waitDurableWhole(t, fsys, "/p", segs[1].base, segs[2].base)
	// And the active segment's name (the third sealer's directory sync).
	for deadline := time.Now().Add(10 * time.Second); !nameDurable(fsys, segs[3].path); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the active segment's name not durable within 10s")
		}
	}
	crashed := fsys.CrashCloneTorn(rand.New(rand.NewPCG(3, 4)))
	release()
	l.Close()

	opts.FS = crashed
	r := openLog(t, "/p", opts)
	defer r.Close()
	// The second and third segments wait for the first to be durable
	// before they count as sealed, and have no index files yet.
	if r.stats.unsealed.Load() != 3 {
		t.Fatalf("recovery found %d unsealed segments, want 3", r.stats.unsealed.Load())
	}
	for _, ev := range r.Recovered() {
		if ev.Segment == segs[1].path || ev.Segment == segs[2].path {
			t.Fatalf("recovery cut a synced segment: %+v", ev)
		}
	}
	it := r.NewIterator(0)
	var offsets []int64
	for it.Next() {
		offsets = append(offsets, it.Record().Offset)
	}
	if it.Err() != nil {
		t.Fatalf("reading after the power cut: %v", it.Err())
	}
	// Everything of the two synced segments is there, in order.
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
		t.Fatalf("the synced segments hold offsets %d to %d after the power cut, want to %d", secondBase, want, activeBase)
	}
}

// TestSealsDurableInOrder: with fsync always, a segment whose seal finished
// its sync does not count as durable, nor is it shown to readers, while a
// segment rolled before it is not yet synced: a WaitDurable for the earlier
// segment's records must not return before they are on disk. (Sealers ran
// independently, and a later one advanced the durable offset and the high
// watermark past the earlier segment's unsynced tail: an acknowledged
// record lost in a power cut, and readers skipping offsets.)
func TestSealsDurableInOrder(t *testing.T) {
	fsys := NewMemFS()
	opts := Options{Sync: SyncAlways, SegmentBytes: 4 << 10, FS: fsys}
	release := holdSeal(t, 0)
	l := openLog(t, "/p", opts)
	defer l.Close()
	defer release() // before Close, which waits for the sealers
	var acked []string
	var next0 int64
	for i := range 3 {
		tag := fmt.Sprint("s", i)
		_, next, err := l.AppendAsync(batchOf(t, tag, 3, 100, 0))
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			next0 = next
		}
		acked = append(acked, tag)
		if err := l.Roll(); err != nil {
			t.Fatal(err)
		}
	}
	segs := *l.segs.Load()
	waitDurableWhole(t, fsys, "/p", segs[1].base, segs[2].base)
	done := make(chan error, 1)
	go func() { done <- l.WaitDurable(next0) }()
	// The later sealers, done syncing, must not publish past the first
	// segment: give them time to (wrongly) do so.
	for end := time.Now().Add(300 * time.Millisecond); time.Now().Before(end); time.Sleep(time.Millisecond) {
		select {
		case err := <-done:
			missing := lost(acked[:1], survivors(t, fsys.CrashClone(), "/p", Options{Sync: SyncAlways}))
			t.Fatalf("WaitDurable(%d) returned (%v) while the segment holding it was not synced; lost in a power cut: %v", next0, err, missing)
		default:
		}
		if hw := l.HighWatermark(); hw > 0 {
			t.Fatalf("high watermark %d while the first segment, to %d, was not synced", hw, next0)
		}
	}
	release()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	if missing := lost(acked, survivors(t, fsys.CrashClone(), "/p", Options{Sync: SyncAlways})); len(missing) > 0 {
		t.Fatalf("lost after WaitDurable and Sync: %v", missing)
	}
}

// slowSyncFS is a MemFS whose file Sync takes delay and is counted. Like
// a disk's fdatasync it makes durable what was written before the call:
// what is written while it takes its time waits for the next one. With
// after set, a Sync calls it with the file's name in place of the delay.
type slowSyncFS struct {
	*MemFS
	delay time.Duration
	syncs atomic.Int64
	after func(name string)
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
	err := f.File.Sync()
	if f.fs.after != nil {
		f.fs.after(f.Name())
	} else {
		time.Sleep(f.fs.delay)
	}
	return err
}
