package log

import (
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weirhub/weir/codecs"
)

// keyedBatch builds a batch of one record per key/value pair (a nil value
// is a tombstone) at timestamp ts.
func keyedBatch(t *testing.T, ts int64, kvs ...[]byte) []byte {
	t.Helper()
	var b codecs.Builder
	for i := 0; i+1 < len(kvs); i += 2 {
		b.Append(ts, kvs[i], kvs[i+1], nil)
	}
	out, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	return append([]byte(nil), out...)
}

// TestTierNoColdWhileCompacting pins the race fixed by Log.compacting: a
// tier pass that runs while a compaction is between two segments must not
// move a segment the compaction is rewriting to the tier. Segment A holds
// k=old, segment B the tombstone of k, both uploaded, and the tombstone is
// past DeleteRetention. The compaction pauses once A's cleaned files are
// written (compactHook "cleaned"); there local retention shrinks so that
// A, and only A, may leave the disk, and a tier pass runs. Had A become
// cold, its swap would be skipped (the log no longer lists the local A)
// while B's tombstone went: k would read back as "old".
func TestTierNoColdWhileCompacting(t *testing.T) {
	tier := newMemTier()
	var now atomic.Int64
	now.Store(1_700_000_000_000)
	opts := Options{FS: NewMemFS(), Tier: tier, Compact: true, MinCleanableRatio: -1, DeleteRetention: time.Minute,
		Now: func() time.Time { return time.UnixMilli(now.Load()) }, Sync: SyncNever}
	l := openLog(t, "/d", opts)
	defer l.Close()
	pad := make([]byte, 512)
	appendRoll := func(b []byte) {
		if _, err := l.Append(b); err != nil {
			t.Fatal(err)
		}
		if err := l.Roll(); err != nil {
			t.Fatal(err)
		}
	}
	ts := now.Load()
	appendRoll(keyedBatch(t, ts, []byte("k"), []byte("old"), []byte("a"), pad)) // segment A
	appendRoll(keyedBatch(t, ts, []byte("k"), nil, []byte("b"), pad))           // segment B
	if _, err := l.Append(keyedBatch(t, ts, []byte("c"), pad)); err != nil {    // the active segment
		t.Fatal(err)
	}
	waitFor(t, l, "A and B uploaded", func() bool { return l.TierStats().RemoteSegments == 2 && tierSettled(l) })
	now.Add(time.Hour.Milliseconds()) // the tombstone comes of age

	var paused, moved bool
	compactHook = func(step string) {
		if step != "cleaned" || paused {
			return
		}
		paused = true
		segs := *l.segs.Load()
		if len(segs) != 3 || segs[0].cold != nil {
			t.Errorf("at the pause the log has %d segments, the first cold: %v", len(segs), len(segs) > 0 && segs[0].cold != nil)
			return
		}
		// Local retention now keeps B and the active segment, not A.
		lim := l.Limits()
		lim.LocalRetentionBytes = segs[1].written + segs[2].written
		if err := l.SetLimits(lim); err != nil {
			t.Error(err)
			return
		}
		if err := l.tierPass(l.tier.ctx); err != nil {
			t.Errorf("tier pass during the compaction: %v", err)
		}
		moved = (*l.segs.Load())[0].cold != nil
	}
	defer func() { compactHook = nil }()
	st, err := l.Compact()
	compactHook = nil
	if err != nil {
		t.Fatal(err)
	}
	if !paused {
		t.Fatalf("the compaction never reached the hook: %+v", st)
	}
	if moved {
		t.Errorf("a tier pass moved segment A to the tier while a compaction was rewriting it")
	}
	model := map[string]kv{"a": {string(pad), 1}, "b": {string(pad), 3}, "c": {string(pad), 4}}
	checkState(t, l, model, "after the compaction")
	// Once the compaction is over, the next passes move A and B (compacted,
	// then uploaded again) to the tier, and the state stays.
	lim := l.Limits()
	lim.LocalRetentionBytes = 1
	if err := l.SetLimits(lim); err != nil {
		t.Fatal(err)
	}
	// (A tier pass may merge the two small cold segments into one.)
	waitFor(t, l, "A and B cold", func() bool {
		segs := *l.segs.Load()
		return l.TierStats().ColdSegments >= 1 && l.LocalStartOffset() == segs[len(segs)-1].base
	})
	checkState(t, l, model, "after A went cold")
}

// TestTierColdWhileCompactingLater: a compaction holds back from the tier
// only the segments it may still rewrite. Segments A (k=old, a), B (the
// tombstone of k, past DeleteRetention, and b) and C (c=old, c) are
// uploaded;
// the compaction pauses once C's cleaned files are written, its last
// pass done with A and B (cleaned and swapped in). There local retention
// shrinks to C and the active segment, and a tier pass uploads the
// cleaned A and B and moves them to the tier while the compaction runs;
// C stays local until it ends. The state reads the same throughout.
func TestTierColdWhileCompactingLater(t *testing.T) {
	tier := newMemTier()
	var now atomic.Int64
	now.Store(1_700_000_000_000)
	opts := Options{FS: NewMemFS(), Tier: tier, Compact: true, MinCleanableRatio: -1, DeleteRetention: time.Minute,
		Now: func() time.Time { return time.UnixMilli(now.Load()) }, Sync: SyncNever, TierMergeBytes: -1}
	l := openLog(t, "/d", opts)
	defer l.Close()
	pad := make([]byte, 512)
	appendRoll := func(b []byte) {
		if _, err := l.Append(b); err != nil {
			t.Fatal(err)
		}
		if err := l.Roll(); err != nil {
			t.Fatal(err)
		}
	}
	ts := now.Load()
	appendRoll(keyedBatch(t, ts, []byte("k"), []byte("old"), []byte("a"), pad)) // segment A: 0, 1
	appendRoll(keyedBatch(t, ts, []byte("k"), nil, []byte("b"), pad))           // segment B: 2, 3
	appendRoll(keyedBatch(t, ts, []byte("c"), []byte("old"), []byte("c"), pad)) // segment C: 4, 5
	if _, err := l.Append(keyedBatch(t, ts, []byte("d"), pad)); err != nil {    // the active segment: 6
		t.Fatal(err)
	}
	waitFor(t, l, "A, B and C uploaded", func() bool { return l.TierStats().RemoteSegments == 3 && tierSettled(l) })
	now.Add(time.Hour.Milliseconds()) // the tombstone comes of age

	model := map[string]kv{"a": {string(pad), 1}, "b": {string(pad), 3}, "c": {string(pad), 5}, "d": {string(pad), 6}}
	cleaned := 0
	var coldAtPause []bool
	compactHook = func(step string) {
		if step != "cleaned" {
			return
		}
		if cleaned++; cleaned != 3 {
			return
		}
		// C's cleaned files are written; A and B are done.
		segs := *l.segs.Load()
		lim := l.Limits()
		lim.LocalRetentionBytes = segs[2].written + segs[3].written
		if err := l.SetLimits(lim); err != nil {
			t.Error(err)
			return
		}
		if err := l.tierPass(l.tier.ctx); err != nil {
			t.Errorf("tier pass during the compaction: %v", err)
		}
		for _, s := range *l.segs.Load() {
			coldAtPause = append(coldAtPause, s.cold != nil)
		}
	}
	defer func() { compactHook = nil }()
	st, err := l.Compact()
	compactHook = nil
	if err != nil {
		t.Fatal(err)
	}
	if cleaned < 3 {
		t.Fatalf("the compaction cleaned %d segments, want 3: %+v", cleaned, st)
	}
	if want := []bool{true, true, false, false}; !slices.Equal(coldAtPause, want) {
		t.Fatalf("at the pause the segments are cold: %v, want %v (A and B cold, C and the active one local)", coldAtPause, want)
	}
	checkState(t, l, model, "after the compaction")
	lim := l.Limits()
	lim.LocalRetentionBytes = 1
	if err := l.SetLimits(lim); err != nil {
		t.Fatal(err)
	}
	waitFor(t, l, "C cold", func() bool {
		segs := *l.segs.Load()
		return l.LocalStartOffset() == segs[len(segs)-1].base
	})
	checkState(t, l, model, "after C went cold")
}
