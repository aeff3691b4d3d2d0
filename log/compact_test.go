package log

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weirhub/weir/codecs"
)

// kv is a key's latest value and the offset it was written at.
type kv struct {
	value  string
	offset int64
}

// readState reads the whole log and applies it: the latest value per key,
// tombstones deleting.
func readState(t *testing.T, l *Log) map[string]kv {
	t.Helper()
	state := map[string]kv{}
	it := l.NewIterator(l.StartOffset())
	last := int64(-1)
	for it.Next() {
		r := it.Record()
		if r.Offset <= last {
			t.Fatalf("offsets go backwards: %d after %d", r.Offset, last)
		}
		last = r.Offset
		if r.Value == nil {
			delete(state, string(r.Key))
		} else {
			state[string(r.Key)] = kv{string(r.Value), r.Offset}
		}
	}
	if err := it.Err(); err != nil {
		t.Fatalf("reading the log back: %v", err)
	}
	return state
}

func checkState(t *testing.T, l *Log, model map[string]kv, when string) {
	t.Helper()
	got := readState(t, l)
	if !maps.Equal(got, model) {
		keys := slices.Sorted(maps.Keys(model))
		for _, k := range slices.Sorted(maps.Keys(got)) {
			if !slices.Contains(keys, k) {
				keys = append(keys, k)
			}
		}
		for _, k := range keys {
			if got[k] != model[k] {
				t.Errorf("%s: key %q = %+v, the model has %+v", when, k, got[k], model[k])
			}
		}
		t.FailNow()
	}
}

// putBatch appends one batch of puts and deletes (nil values) and updates
// the model.
func putBatch(t *testing.T, l *Log, rng *rand.Rand, keys int, ts int64, model map[string]kv) {
	t.Helper()
	var b codecs.Builder
	if rng.IntN(3) == 0 {
		b.Compression = codecs.Snappy
	}
	type op struct {
		k string
		v []byte
	}
	var ops []op
	for range 1 + rng.IntN(6) {
		k := fmt.Sprintf("key-%03d", rng.IntN(keys))
		var v []byte
		if rng.IntN(4) != 0 {
			v = fmt.Appendf(nil, "%s=%d", k, rng.Int64())
		}
		b.Append(ts, []byte(k), v, nil)
		ops = append(ops, op{k, v})
	}
	batch, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	base, err := l.Append(batch)
	if err != nil {
		t.Fatal(err)
	}
	for i, o := range ops {
		if o.v == nil {
			delete(model, o.k)
		} else {
			model[o.k] = kv{string(o.v), base + int64(i)}
		}
	}
}

// TestCompactModel writes random puts and deletes over many keys, compacts
// at random moments with a key map too small for them (several passes),
// and checks after every compaction, and after reopening, that reading the
// log back gives the state a map kept beside it has.
func TestCompactModel(t *testing.T) {
	for seed := range uint64(4) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 7))
			fsys := NewMemFS()
			now := time.UnixMilli(1_700_000_000_000)
			opts := Options{FS: fsys, Compact: true, SegmentBytes: 4096, IndexIntervalBytes: 256,
				DeleteRetention: time.Minute, CompactMapBytes: 4096, Now: func() time.Time { return now }}
			if seed%2 == 1 {
				opts.MinCleanableRatio = -1 // every run cleans what is dirty
			}
			l, err := Open("/data/p0", opts)
			if err != nil {
				t.Fatal(err)
			}
			model := map[string]kv{}
			var total CompactStats
			for step := range 1500 {
				now = now.Add(time.Second)
				putBatch(t, l, rng, 300, now.UnixMilli(), model)
				if rng.IntN(100) == 0 {
					st, err := l.Compact()
					if err != nil {
						t.Fatalf("step %d: %v", step, err)
					}
					total.Passes = max(total.Passes, st.Passes)
					total.Segments += st.Segments
					total.RecordsRemoved += st.RecordsRemoved
					total.TombstonesRemoved += st.TombstonesRemoved
					checkState(t, l, model, fmt.Sprintf("step %d after compaction", step))
				}
			}
			l.Compact()
			checkState(t, l, model, "at the end")
			if total.Passes < 2 || total.Segments == 0 || total.RecordsRemoved == 0 || total.TombstonesRemoved == 0 {
				t.Errorf("compaction did too little to test: %+v", total)
			}
			if l.DeleteHorizon() == 0 {
				t.Errorf("DeleteHorizon = 0 after tombstones were removed")
			}
			horizon := l.DeleteHorizon()
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			l, err = Open("/data/p0", opts)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			checkState(t, l, model, "after reopening")
			if l.DeleteHorizon() != horizon {
				t.Errorf("DeleteHorizon after reopening = %d, want %d", l.DeleteHorizon(), horizon)
			}
			var ce *CompactedError
			if err := l.CheckResume(horizon - 1); !errors.As(err, &ce) || !errors.Is(err, ErrCompacted) {
				t.Errorf("CheckResume(%d) = %v, want a *CompactedError", horizon-1, err)
			}
			if err := l.CheckResume(horizon); err != nil {
				t.Errorf("CheckResume(%d) = %v, want nil", horizon, err)
			}
		})
	}
}

// TestCompactOnlyDirty: after a compaction the log below the cleaner
// checkpoint is clean; a run does nothing until the segments written
// since are MinCleanableRatio of the closed bytes, then maps only those,
// and the checkpoint survives reopening.
func TestCompactOnlyDirty(t *testing.T) {
	dir := t.TempDir()
	now := time.UnixMilli(1_700_000_000_000)
	opts := Options{Compact: true, SegmentBytes: 4096, DeleteRetention: time.Hour, Now: func() time.Time { return now }}
	l, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	model := map[string]kv{}
	put := func(from, to int) { // keys from..to-1, each once more
		for i := from; i < to; i++ {
			var b codecs.Builder
			k, v := fmt.Sprintf("key-%04d", i), fmt.Sprintf("value-%d-%d", i, now.UnixNano())
			b.Append(now.UnixMilli(), []byte(k), []byte(v), nil)
			batch, _ := b.Build()
			base, err := l.Append(batch)
			if err != nil {
				t.Fatal(err)
			}
			model[k] = kv{v, base}
		}
		l.Roll()
		l.sealWG.Wait()
	}
	compact := func(what string) CompactStats {
		t.Helper()
		st, err := l.Compact()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		checkState(t, l, model, what)
		return st
	}
	put(0, 400)
	put(0, 400) // every key twice
	st := compact("the first compaction")
	if st.CleanBytes != 0 || st.MappedBytes == 0 || st.RecordsRemoved != 400 {
		t.Fatalf("the first compaction: %+v, want every record mapped and 400 removed", st)
	}
	clean := st.DirtyBytes - st.BytesBefore + st.BytesAfter // the closed bytes now
	put(0, 20)                                              // a little dirt: below the ratio
	if st := compact("a little dirt"); st.Passes != 0 || st.Segments != 0 || st.MappedBytes != 0 {
		t.Fatalf("with %d dirty bytes of %d: %+v, want nothing done", st.DirtyBytes, st.DirtyBytes+st.CleanBytes, st)
	}
	put(0, 600) // now more than half
	st = compact("the second compaction")
	if st.CleanBytes != clean || st.MappedBytes == 0 || st.MappedBytes > st.DirtyBytes || st.RecordsRemoved != 420 {
		t.Fatalf("the second compaction: %+v, want %d clean bytes not mapped and 420 records removed", st, clean)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if l, err = Open(dir, opts); err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	put(0, 10)
	if st := compact("after reopening"); st.CleanBytes == 0 || st.MappedBytes != 0 || st.RecordsRemoved != 0 {
		t.Fatalf("after reopening, a little dirt: %+v, want the checkpoint kept (clean bytes) and nothing mapped or removed", st)
	}
}

// TestCompactKeepsTombstonesUntilDeleteRetention: a tombstone stays while
// it is younger than DeleteRetention, superseded values go at once.
func TestCompactKeepsTombstonesUntilDeleteRetention(t *testing.T) {
	now := time.UnixMilli(1_700_000_000_000)
	l, err := Open(t.TempDir(), Options{Compact: true, Now: func() time.Time { return now }, DeleteRetention: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	appendKV := func(k string, v []byte) {
		var b codecs.Builder
		b.Append(now.UnixMilli(), []byte(k), v, nil)
		batch, _ := b.Build()
		if _, err := l.Append(batch); err != nil {
			t.Fatal(err)
		}
	}
	appendKV("a", []byte("1"))
	appendKV("a", []byte("2"))
	appendKV("b", []byte("1"))
	appendKV("b", nil)
	l.Roll()
	l.sealWG.Wait() // a segment still being sealed is not compacted yet
	count := func() (n int) {
		it := l.NewIterator(0)
		for it.Next() {
			n++
		}
		return n
	}
	if _, err := l.Compact(); err != nil {
		t.Fatal(err)
	}
	if got := count(); got != 2 {
		t.Errorf("after compacting young tombstones: %d records, want 2 (a=2 and b's tombstone)", got)
	}
	now = now.Add(2 * time.Hour)
	st, err := l.Compact()
	if err != nil {
		t.Fatal(err)
	}
	if got := count(); got != 1 || st.TombstonesRemoved != 1 {
		t.Errorf("after DeleteRetention: %d records, %d tombstones removed; want 1 and 1", got, st.TombstonesRemoved)
	}
	if l.HighWatermark() != 4 {
		t.Errorf("HighWatermark = %d, want 4: compaction keeps offsets", l.HighWatermark())
	}
}

// TestCompactPowerCut cuts the power at every step of every segment swap
// of a compaction (a MemFS crash clone taken there) and opens what is
// left: the state read back is always the model's, cleaned or not.
func TestCompactPowerCut(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	fsys := NewMemFS()
	now := time.UnixMilli(1_700_000_000_000)
	opts := Options{FS: fsys, Sync: SyncAlways, Compact: true, SegmentBytes: 4096, DeleteRetention: -1,
		Now: func() time.Time { return now }}
	l, err := Open("/d", opts)
	if err != nil {
		t.Fatal(err)
	}
	model := map[string]kv{}
	for range 300 {
		putBatch(t, l, rng, 40, now.UnixMilli(), model)
	}
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	l.sealWG.Wait()
	var clones []*MemFS
	var steps []string
	compactHook = func(step string) {
		if strings.HasPrefix(step, "renamed") {
			// As if the file system had made the renames so far durable
			// on its own, as a journal may.
			fsys.SyncDir("/d")
		}
		clones = append(clones, fsys.CrashClone())
		steps = append(steps, step)
	}
	defer func() { compactHook = nil }()
	st, err := l.Compact()
	if err != nil {
		t.Fatal(err)
	}
	compactHook = nil
	if st.Segments < 2 {
		t.Fatalf("compaction rewrote %d segments, want several: %+v", st.Segments, st)
	}
	checkState(t, l, model, "after compaction")
	l.Close()
	for i, c := range clones {
		o := opts
		o.FS = c
		cl, err := Open("/d", o)
		if err != nil {
			t.Fatalf("power cut %d (%s): open: %v", i, steps[i], err)
		}
		checkState(t, cl, model, fmt.Sprintf("power cut %d (%s)", i, steps[i]))
		names, _ := c.ReadDir("/d")
		for _, n := range names {
			if strings.HasSuffix(n, cleanedSuffix) || strings.HasSuffix(n, swapSuffix) {
				t.Errorf("power cut %d (%s): %s left after Open", i, steps[i], n)
			}
		}
		// The reopened log compacts again and goes on.
		if _, err := cl.Compact(); err != nil {
			t.Fatalf("power cut %d: compacting again: %v", i, err)
		}
		checkState(t, cl, model, fmt.Sprintf("power cut %d, compacted again", i))
		cl.Close()
	}
	if len(clones) < 8 {
		t.Errorf("only %d power cuts taken", len(clones))
	}
}

// TestCompactWhileAppending compacts over and over while a writer appends
// and a reader follows: the writer is never refused, the reader never
// fails, and the state read back at the end is the model's.
func TestCompactWhileAppending(t *testing.T) {
	l, err := Open(t.TempDir(), Options{Compact: true, SegmentBytes: 8192, DeleteRetention: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	model := map[string]kv{}
	done := make(chan struct{})
	compactions := make(chan error, 1)
	go func() {
		var err error
		for n := 0; err == nil; n++ {
			select {
			case <-done:
				compactions <- nil
				return
			default:
			}
			_, err = l.Compact()
		}
		compactions <- err
	}()
	readerErr := make(chan error, 1)
	go func() {
		it := l.NewIterator(0)
		for {
			for it.Next() {
			}
			if err := it.Err(); err != nil {
				readerErr <- err
				return
			}
			select {
			case <-done:
				readerErr <- nil
				return
			default:
			}
			time.Sleep(time.Millisecond)
		}
	}()
	rng := rand.New(rand.NewPCG(3, 4))
	for range 3000 {
		putBatch(t, l, rng, 50, time.Now().UnixMilli(), model)
	}
	close(done)
	if err := <-compactions; err != nil {
		t.Fatal(err)
	}
	if err := <-readerErr; err != nil {
		t.Fatalf("reader: %v", err)
	}
	l.Roll()
	l.sealWG.Wait()
	if _, err := l.Compact(); err != nil {
		t.Fatal(err)
	}
	checkState(t, l, model, "after appending beside compaction")
	if l.Stats().SegmentsCompacted == 0 {
		t.Errorf("no segment was compacted")
	}
}

// TestCompactIOErrors fails each kind of I/O on the cleaned files in turn:
// Compact returns the error, the log keeps serving the old segments with
// the same state, and appends go on.
func TestCompactIOErrors(t *testing.T) {
	for _, op := range []string{"open", "write", "sync"} {
		t.Run(op, func(t *testing.T) {
			var failing atomic.Bool
			fsys := &FaultFS{FS: NewMemFS(), Fail: func(o, path string) error {
				if failing.Load() && o == op && strings.Contains(path, cleanedSuffix) {
					return errors.New("injected")
				}
				return nil
			}}
			l, err := Open("/d", Options{FS: fsys, Compact: true, SegmentBytes: 4096, DeleteRetention: -1})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			rng := rand.New(rand.NewPCG(5, 6))
			model := map[string]kv{}
			for range 200 {
				putBatch(t, l, rng, 20, time.Now().UnixMilli(), model)
			}
			l.Roll()
			l.sealWG.Wait()
			failing.Store(true)
			if _, err := l.Compact(); err == nil || !strings.Contains(err.Error(), "injected") {
				t.Fatalf("Compact with failing %s = %v, want the injected error", op, err)
			}
			checkState(t, l, model, "after a failed compaction")
			putBatch(t, l, rng, 20, time.Now().UnixMilli(), model)
			failing.Store(false)
			if _, err := l.Compact(); err != nil {
				t.Fatal(err)
			}
			checkState(t, l, model, "after compacting again")
		})
	}
}
