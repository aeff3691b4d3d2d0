package log

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// countRecords reads the whole log and counts its records and tombstones.
func countRecords(t *testing.T, l *Log) (records, tombs int) {
	t.Helper()
	it := l.NewIterator(l.StartOffset())
	for it.Next() {
		records++
		if it.Record().Value == nil {
			tombs++
		}
	}
	if err := it.Err(); err != nil {
		t.Fatalf("reading the log back: %v", err)
	}
	return records, tombs
}

// TestTierCompactModel: random puts and deletes into a compacted log with
// a tier whose local retention moves segments to the store early, with
// compaction at random moments (a key map too small for the keys: several
// passes) and tier passes in the background. After every compaction, the
// log read back (cold part included) gives the state of a model map; cold
// segments get compacted (rewritten in the store), tombstones there go
// after DeleteRetention; in the end every key is in the log at most once,
// the store holds no object its manifest does not list, and a new log on
// the store with an empty directory reads the same state.
func TestTierCompactModel(t *testing.T) {
	for seed := range uint64(3) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 11))
			tier := newMemTier()
			var now atomic.Int64
			now.Store(1_700_000_000_000)
			opts := Options{FS: NewMemFS(), Tier: tier, Compact: true, SegmentBytes: 4096, IndexIntervalBytes: 256,
				DeleteRetention: time.Minute, CompactMapBytes: 4096, LocalRetentionBytes: 2 * 4096,
				Now: func() time.Time { return time.UnixMilli(now.Load()) }, Sync: SyncNever}
			if seed == 1 {
				opts.MinCleanableRatio = -1
			}
			l := openLog(t, "/d", opts)
			defer func() { l.Close() }()
			model := map[string]kv{}
			var total CompactStats
			for step := range 1500 {
				putBatch(t, l, rng, 150, now.Add(1000), model)
				if step%10 == 0 {
					l.EnforceRetention() // kicks a tier pass
				}
				if rng.IntN(60) == 0 {
					// The rolled segments sealed and a tier pass run here
					// (besides those the uploader runs when it will), so
					// that a loaded machine does not leave it all pending.
					if err := l.Sync(); err != nil {
						t.Fatal(err)
					}
					if err := l.tierPass(l.tier.ctx); err != nil {
						t.Fatalf("step %d: tier pass: %v", step, err)
					}
					st, err := l.Compact()
					if err != nil {
						t.Fatalf("step %d: %v", step, err)
					}
					total.Segments += st.Segments
					total.ColdSegments += st.ColdSegments
					total.TombstonesRemoved += st.TombstonesRemoved
					total.Passes = max(total.Passes, st.Passes)
					checkState(t, l, model, fmt.Sprintf("step %d after compaction", step))
				}
			}
			if total.ColdSegments == 0 || total.TombstonesRemoved == 0 || l.TierStats().ColdSegments == 0 {
				t.Fatalf("too little happened to test: %+v, tier %+v", total, l.TierStats())
			}

			// All of it past DeleteRetention and cold but the last closed
			// segment (local retention keeps one byte: it, beside the
			// empty active one): one run leaves each key once, and no
			// tombstone.
			now.Add(time.Hour.Milliseconds())
			lim := l.Limits()
			lim.LocalRetentionBytes, lim.MinCleanableRatio = 1, -1
			if err := l.SetLimits(lim); err != nil {
				t.Fatal(err)
			}
			l.Roll()
			waitFor(t, l, "the closed segments cold", func() bool {
				segs := *l.segs.Load()
				return tierSettled(l) && l.TierStats().ColdSegments == int64(len(segs)-2)
			})
			st, err := l.Compact()
			if err != nil {
				t.Fatal(err)
			}
			if st.ColdSegments == 0 {
				t.Fatalf("the last compaction rewrote no cold segment: %+v", st)
			}
			checkState(t, l, model, "after compacting the cold log")
			if n, tombs := countRecords(t, l); n != len(model) || tombs != 0 {
				t.Fatalf("after compacting the cold log it holds %d records (%d tombstones) for %d live keys", n, tombs, len(model))
			}
			waitFor(t, l, "replaced objects deleted", func() bool { return len(unlisted(t, tier)) == 0 })

			l.Close()
			l = openLog(t, "/d", opts)
			checkState(t, l, model, "after reopening")
			dr := openLog(t, "/other", Options{FS: NewMemFS(), Tier: tier, SegmentBytes: 4096})
			defer dr.Close()
			checkState(t, dr, model, "a new log on the tier")
		})
	}
}

// TestTierCompactCrash: a crash at each step of rewriting a cold segment
// (cleaned files written, its new objects uploaded, the manifest write,
// just after it) loses nothing: the log opened again on what the disk
// and the store hold reads the model's state at every offset, compacts
// again, and sweeps the objects the crash left unlisted.
func TestTierCompactCrash(t *testing.T) {
	for _, point := range []string{"cleaned", "cold-uploaded", "manifest", "cold-listed"} {
		t.Run(point, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(5, 5))
			tier := newMemTier()
			fsys := NewMemFS()
			var now atomic.Int64
			now.Store(time.Now().UnixMilli())
			opts := Options{FS: fsys, Tier: tier, Compact: true, SegmentBytes: 4096, IndexIntervalBytes: 256,
				DeleteRetention: time.Minute, MinCleanableRatio: -1, LocalRetentionBytes: 2 * 4096,
				Now: func() time.Time { return time.UnixMilli(now.Load()) }, Sync: SyncAlways}
			l := openLog(t, "/d", opts)
			model := map[string]kv{}
			for range 400 {
				putBatch(t, l, rng, 100, now.Add(1000), model)
			}
			l.Roll()
			waitFor(t, l, "segments cold", func() bool { return tierSettled(l) && l.TierStats().ColdSegments >= 8 })
			now.Add(time.Hour.Milliseconds()) // tombstones come of age

			var mu sync.Mutex
			var crashed *MemFS
			armed := false
			crash := func() error {
				mu.Lock()
				defer mu.Unlock()
				if crashed == nil {
					crashed = fsys.CrashClone()
				}
				return errors.New("crash")
			}
			tierHook = func(p string) error {
				mu.Lock()
				if p == "cold-swap" {
					armed = true
				}
				// Once crashed, the process is dead: nothing more happens.
				hit := armed && p == point || crashed != nil
				mu.Unlock()
				if hit {
					return crash()
				}
				return nil
			}
			compactHook = func(step string) {
				// The first segment cleaned is the oldest, a cold one.
				if step == "cleaned" && point == "cleaned" {
					crash()
				}
			}
			defer func() { tierHook, compactHook = nil, nil }()
			l.Compact() // fails at the crash point, or after it
			tierHook, compactHook = nil, nil
			if crashed == nil {
				t.Fatalf("the compaction never reached %q", point)
			}
			l.Close()

			opts.FS, opts.TierOrphanAge = crashed, 10*time.Millisecond
			l = openLog(t, "/d", opts)
			defer l.Close()
			checkState(t, l, model, "after the crash")
			st, err := l.Compact()
			if err != nil || st.ColdSegments == 0 {
				t.Fatalf("compacting after the crash: %+v, %v", st, err)
			}
			checkState(t, l, model, "compacted after the crash")
			waitFor(t, l, "no unlisted object", func() bool { now.Add(1000); return len(unlisted(t, tier)) == 0 })
			checkState(t, l, model, "after the sweep")
		})
	}
}

// TestTierCompactOldCheckpoint: a checkpoint written by a run that left
// the cold segments out (as Weir did before it compacted them) does not
// make them count as clean: segment A, moved to the tier uncompacted,
// holds k=old below the checkpoint, and B the tombstone of k. Trusting
// the checkpoint, a run would remove the tombstone that came of age (its
// key in no map, below the checkpoint) and k would read back as "old".
func TestTierCompactOldCheckpoint(t *testing.T) {
	tier := newMemTier()
	fsys := NewMemFS()
	var now atomic.Int64
	now.Store(1_700_000_000_000)
	// No merging: the test needs the layout of A, the local segment
	// and B.
	opts := Options{FS: fsys, Tier: tier, Compact: true, DeleteRetention: time.Minute, LocalRetentionBytes: 1,
		Now: func() time.Time { return time.UnixMilli(now.Load()) }, Sync: SyncAlways, TierMergeBytes: -1}
	l := openLog(t, "/d", opts)
	pad := make([]byte, 512)
	ts := now.Load()
	for _, b := range [][]byte{
		keyedBatch(t, ts, []byte("k"), []byte("old"), []byte("a"), pad), // A
		keyedBatch(t, ts, []byte("b"), pad),                             // stays local
		keyedBatch(t, ts, []byte("k"), nil, []byte("c"), pad),           // B
	} {
		if _, err := l.Append(b); err != nil {
			t.Fatal(err)
		}
		l.Roll()
	}
	waitFor(t, l, "A cold", func() bool { return tierSettled(l) && l.TierStats().ColdSegments >= 1 })
	end := (*l.segs.Load())[3].base
	l.Close()
	// The checkpoint an older Weir wrote: the offset alone.
	if err := writeFileSync(fsys, "/d/"+checkpointFile, fmt.Appendf(nil, "%d", end), true); err != nil {
		t.Fatal(err)
	}
	now.Add(time.Hour.Milliseconds())
	l = openLog(t, "/d", opts)
	defer l.Close()
	if _, err := l.Compact(); err != nil {
		t.Fatal(err)
	}
	checkState(t, l, map[string]kv{"a": {string(pad), 1}, "b": {string(pad), 2}, "c": {string(pad), 4}}, "after compacting")
}
