package log

import (
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// cutWhileAppending appends tagged batches from many goroutines and, each
// time the count of acknowledged batches reaches one of cuts, takes a
// crash clone of fsys while the others keep appending: the power goes at
// that moment. It returns, for each cut, the clone and the tags
// acknowledged before it.
func cutWhileAppending(t *testing.T, l *Log, fsys crashFS, appenders, each int, cuts []int, torn bool) (clones []FS, ackedAt [][]string) {
	t.Helper()
	var mu sync.Mutex
	var acked []string
	rng := rand.New(rand.NewPCG(uint64(appenders), uint64(each)))
	appendFrom(t, l, "c", appenders, each, func(tag string, _ int64, err error) {
		if err != nil {
			t.Error(err)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		acked = append(acked, tag)
		if len(clones) < len(cuts) && len(acked) == cuts[len(clones)] {
			var c FS
			if m, ok := fsys.(interface{ CrashCloneTorn(*rand.Rand) *MemFS }); ok && torn {
				c = m.CrashCloneTorn(rng)
			} else {
				c = fsys.CrashClone()
			}
			clones = append(clones, c)
			ackedAt = append(ackedAt, slices.Clone(acked))
		}
	})()
	return clones, ackedAt
}

// TestPowerCutGroupCommit: with fsync always and 64 appenders sharing
// group commits, on a disk whose fsync takes a while (so that appends are
// written while a sync runs and gathered for the next one), and segments
// small enough to roll every few dozen batches (so that rolls land in the
// middle of group commits, sealed in the background), the power goes at a
// dozen random moments: every batch acknowledged before the cut is there
// after recovery, whole. On a file system whose fsync does nothing the same
// check finds acknowledged batches lost.
func TestPowerCutGroupCommit(t *testing.T) {
	const appenders, each = 64, 30
	opts := Options{Sync: SyncAlways, SegmentBytes: 16 << 10}
	rng := rand.New(rand.NewPCG(9, 9))
	var cuts []int
	for range 12 {
		cuts = append(cuts, 1+rng.IntN(appenders*each-1))
	}
	slices.Sort(cuts)
	cuts = slices.Compact(cuts)
	for _, c := range []struct {
		name   string
		fs     crashFS
		doSync bool
	}{
		{"memfs", &slowSyncFS{MemFS: NewMemFS(), delay: 300 * time.Microsecond}, true},
		{"no-fsync", noSyncFS{NewMemFS()}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := opts
			o.FS = c.fs
			l := openLog(t, "/p", o)
			clones, ackedAt := cutWhileAppending(t, l, c.fs, appenders, each, cuts, c.doSync)
			st := l.Stats()
			l.Close()
			if len(clones) != len(cuts) {
				t.Fatalf("%d cuts taken, want %d", len(clones), len(cuts))
			}
			var lostAny int
			for i, crashed := range clones {
				missing := lost(ackedAt[i], survivorsOf(t, crashed, "/p", opts, true))
				lostAny += len(missing)
				if c.doSync && len(missing) > 0 {
					t.Fatalf("cut %d (after %d acknowledgements): %d acknowledged batches lost, e.g. %v", i, len(ackedAt[i]), len(missing), missing[0])
				}
			}
			if !c.doSync {
				if lostAny == 0 {
					t.Fatal("a log that never fsyncs lost nothing in the power cuts: the test cannot tell")
				}
				return
			}
			if st.Rolls < 10 {
				t.Fatalf("%d rolls: want rolls during the group commits", st.Rolls)
			}
			t.Logf("%d appends, %d fsyncs (with the seals'), %d rolls", st.Appends, st.Fsyncs, st.Rolls)
		})
	}
}

// TestGroupCommitWaitsForEarlierSeal: while the background seal of the
// first segment has not synced it, appends written to the segments after
// it are not acknowledged, however many group commits sync those: an
// acknowledgement of a later record would vouch for the earlier segment's
// unsynced tail. Once the seal is released every append is acknowledged
// and survives a power cut.
func TestGroupCommitWaitsForEarlierSeal(t *testing.T) {
	fsys := NewMemFS()
	opts := Options{Sync: SyncAlways, SegmentBytes: 4 << 10, FS: fsys}
	release := holdSeal(t, 0)
	l := openLog(t, "/p", opts)
	defer l.Close()
	defer release() // before Close, which waits for the sealers

	const appenders, each = 16, 10
	var mu sync.Mutex
	var acked []string
	ackedBase := map[string]int64{}
	wait := appendFrom(t, l, "w", appenders, each, func(tag string, base int64, err error) {
		if err != nil {
			t.Error(err)
			return
		}
		mu.Lock()
		acked = append(acked, tag)
		ackedBase[tag] = base
		mu.Unlock()
	})
	// On a failure, the appenders end before the test does.
	defer func() { release(); wait() }()
	// Wait until the first segment rolled and a group commit started that
	// covers records of the second: without the wait for the earlier seal
	// it would acknowledge them as soon as its fdatasync returns.
	for deadline := time.Now().Add(30 * time.Second); l.Stats().Rolls < 1; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no roll within 30s")
		}
	}
	secondBase := (*l.segs.Load())[1].base
	covering := func() bool {
		mu.Lock()
		for _, base := range ackedBase {
			if base >= secondBase {
				mu.Unlock()
				return true // wrongly: checked below
			}
		}
		mu.Unlock()
		l.gc.mu.Lock()
		defer l.gc.mu.Unlock()
		return l.gc.syncing && l.gc.covering > secondBase
	}
	for deadline := time.Now().Add(30 * time.Second); !covering(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no group commit of the second segment within 30s")
		}
	}
	mu.Lock()
	crashed := fsys.CrashClone()
	before := slices.Clone(acked)
	for tag, base := range ackedBase {
		if base >= secondBase {
			mu.Unlock()
			t.Fatalf("batch %s at offset %d acknowledged while the segment before %d was not synced", tag, base, secondBase)
		}
	}
	mu.Unlock()
	if missing := lost(before, survivorsOf(t, crashed, "/p", Options{Sync: SyncAlways}, true)); len(missing) > 0 {
		t.Fatalf("%d acknowledged batches lost while the seal was held, e.g. %v", len(missing), missing[0])
	}
	release()
	wait()
	if len(acked) != appenders*each {
		t.Fatalf("%d appends acknowledged, want %d", len(acked), appenders*each)
	}
	if missing := lost(acked, survivorsOf(t, fsys.CrashClone(), "/p", Options{Sync: SyncAlways}, true)); len(missing) > 0 {
		t.Fatalf("%d acknowledged batches lost, e.g. %v", len(missing), missing[0])
	}
}

// TestGroupCommitSyncFailure: when an fdatasync fails in the middle of
// group commits, no append waiting for it is acknowledged, every later
// append fails with ErrFailed, no appender is left waiting, and every
// append acknowledged before survives a power cut.
func TestGroupCommitSyncFailure(t *testing.T) {
	mem := NewMemFS()
	var syncs atomic.Int64
	fsys := &FaultFS{FS: mem, Fail: func(op, path string) error {
		if op == "sync" && strings.HasSuffix(path, logSuffix) && syncs.Add(1) > 20 {
			return errors.New("injected I/O error")
		}
		return nil
	}}
	l := openLog(t, "/p", Options{Sync: SyncAlways, FS: fsys})
	defer l.Close()
	const appenders, each = 16, 50
	var mu sync.Mutex
	var acked []string
	var failed atomic.Int64
	appendFrom(t, l, "f", appenders, each, func(tag string, _ int64, err error) {
		if err != nil {
			if !errors.Is(err, ErrFailed) {
				t.Errorf("Append after a failed fdatasync: %v, want ErrFailed", err)
			}
			failed.Add(1)
			return
		}
		mu.Lock()
		acked = append(acked, tag)
		mu.Unlock()
	})()
	if failed.Load() == 0 || len(acked) == 0 {
		t.Fatalf("%d appends acknowledged, %d failed: want both", len(acked), failed.Load())
	}
	if missing := lost(acked, survivors(t, mem.CrashClone(), "/p", Options{Sync: SyncAlways})); len(missing) > 0 {
		t.Fatalf("%d acknowledged batches lost, e.g. %v", len(missing), missing[0])
	}
}

// TestGroupCommitAcksOnlyWhatWasSynced: a sync acknowledges the appends
// written before it started, not those written while it ran, which wait
// for the next sync.
func TestGroupCommitAcksOnlyWhatWasSynced(t *testing.T) {
	// Segment syncs make durable what was written before the call, then
	// report on entered and wait for a token on proceed, until done.
	entered, proceed, done := make(chan struct{}), make(chan struct{}), make(chan struct{})
	g := &slowSyncFS{MemFS: NewMemFS(), after: func(name string) {
		if !strings.HasSuffix(name, logSuffix) {
			return
		}
		select {
		case entered <- struct{}{}:
		case <-done:
			return
		}
		select {
		case <-proceed:
		case <-done:
		}
	}}
	l := openLog(t, "/p", Options{Sync: SyncAlways, FS: g})
	defer l.Close()
	defer close(done)

	doneA := make(chan error, 1)
	go func() { _, err := l.Append(batchOf(t, "a", 3, 100, 0)); doneA <- err }()
	<-entered // the first sync runs, its snapshot holding a
	_, nextB, err := l.AppendAsync(batchOf(t, "b", 3, 100, 0))
	if err != nil {
		t.Fatal(err)
	}
	doneB := make(chan error, 1)
	go func() { doneB <- l.WaitDurable(nextB) }()
	waiting := func() bool {
		l.gc.mu.Lock()
		defer l.gc.mu.Unlock()
		return l.gc.waiting[0]+l.gc.waiting[1] > 0
	}
	for deadline := time.Now().Add(30 * time.Second); !waiting(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("b's WaitDurable not waiting within 30s")
		}
	}
	proceed <- struct{}{} // the first sync returns
	if err := <-doneA; err != nil {
		t.Fatal(err)
	}
	l.gc.mu.Lock()
	synced := l.gc.synced
	l.gc.mu.Unlock()
	if synced >= nextB {
		t.Fatalf("durable up to %d after the first sync, which b (to %d) was written after", synced, nextB)
	}
	select {
	case <-entered: // the second sync runs
	case err := <-doneB:
		t.Fatalf("b acknowledged (%v) without a sync started after its write", err)
	}
	select {
	case err := <-doneB:
		t.Fatalf("b acknowledged (%v) before the sync that covers it returned", err)
	default:
	}
	if missing := lost([]string{"a"}, survivors(t, g.CrashClone(), "/p", Options{Sync: SyncAlways})); len(missing) > 0 {
		t.Fatalf("acknowledged batch lost: %v", missing)
	}
	proceed <- struct{}{}
	if err := <-doneB; err != nil {
		t.Fatal(err)
	}
	if missing := lost([]string{"a", "b"}, survivors(t, g.CrashClone(), "/p", Options{Sync: SyncAlways})); len(missing) > 0 {
		t.Fatalf("acknowledged batches lost: %v", missing)
	}
}

// TestGroupCommitClose: Close in the middle of group commits with many
// appenders returns, every Append returns (acknowledged or ErrClosed), and
// every acknowledged batch survives a power cut after the Close.
func TestGroupCommitClose(t *testing.T) {
	fsys := &slowSyncFS{MemFS: NewMemFS(), delay: 200 * time.Microsecond}
	l := openLog(t, "/p", Options{Sync: SyncAlways, SegmentBytes: 16 << 10, FS: fsys})
	var mu sync.Mutex
	var acked []string
	started := make(chan struct{})
	var once sync.Once
	wait := appendFrom(t, l, "x", 64, 50, func(tag string, _ int64, err error) {
		switch {
		case err == nil:
			mu.Lock()
			acked = append(acked, tag)
			mu.Unlock()
			once.Do(func() { close(started) })
		case !errors.Is(err, ErrClosed):
			t.Errorf("Append during Close: %v, want nil or ErrClosed", err)
		}
	})
	<-started
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	wait()
	if missing := lost(acked, survivorsOf(t, fsys.CrashClone(), "/p", Options{Sync: SyncAlways}, true)); len(missing) > 0 {
		t.Fatalf("%d of %d acknowledged batches lost, e.g. %v", len(missing), len(acked), missing[0])
	}
}
