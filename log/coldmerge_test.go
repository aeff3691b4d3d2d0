package log

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weirhub/weir/codecs"
)

// countingTier counts a Tier's GET requests (Get and GetVersion).
type countingTier struct {
	Tier
	gets atomic.Int64
}

func (c *countingTier) Get(ctx context.Context, name string, off, n int64) (io.ReadCloser, error) {
	c.gets.Add(1)
	return c.Tier.Get(ctx, name, off, n)
}

func (c *countingTier) GetVersion(ctx context.Context, name string) ([]byte, string, error) {
	c.gets.Add(1)
	return c.Tier.GetVersion(ctx, name)
}

// rec is a record as a reader sees it.
type rec struct {
	off, ts int64
	val     string
}

// readRecs reads every record from offset 0, checking that offsets only
// grow.
func readRecs(t *testing.T, l *Log) []rec {
	t.Helper()
	var out []rec
	it := l.NewIterator(l.StartOffset())
	for it.Next() {
		r := it.Record()
		if len(out) > 0 && r.Offset <= out[len(out)-1].off {
			t.Fatalf("offset %d after %d", r.Offset, out[len(out)-1].off)
		}
		out = append(out, rec{r.Offset, r.Timestamp, string(r.Value)})
	}
	if err := it.Err(); err != nil {
		t.Fatalf("reading from the start: %v", err)
	}
	return out
}

// appendSmallSegments appends n batches of 3 records with growing
// timestamps (a few out of order), rolling after 1 to 5 batches as
// segments that roll by age or idleness do, and returns the records.
func appendSmallSegments(t *testing.T, l *Log, rng *rand.Rand, n int) []rec {
	t.Helper()
	var out []rec
	for i := range n {
		ts := int64(10_000 + 10*i)
		if rng.IntN(10) == 0 {
			ts -= 500 // late: the time index must not assume order
		}
		b := batchOf(t, fmt.Sprint("b", i), 3, 200, ts)
		base, err := l.Append(b)
		if err != nil {
			t.Fatal(err)
		}
		for j := range 3 {
			out = append(out, rec{base + int64(j), ts + int64(j), ""})
		}
		if rng.IntN(3) == 0 {
			if err := l.Roll(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := l.Roll(); err != nil {
		t.Fatal(err)
	}
	return out
}

// settleTier runs tier passes until every sealed segment is uploaded, all
// but the last closed one (local retention keeps it) and the active one
// are cold, and no more runs merge.
func settleTier(t *testing.T, l *Log) {
	t.Helper()
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	for range 1000 {
		before := l.TierStats().MergedSegments
		if err := l.tierPass(l.tier.ctx); err != nil {
			t.Fatalf("tier pass: %v", err)
		}
		st := l.TierStats()
		if tierSettled(l) && int(st.ColdSegments) >= len(*l.segs.Load())-2 && st.MergedSegments == before {
			// One more pass for the retired objects.
			if err := l.tierPass(l.tier.ctx); err != nil {
				t.Fatalf("tier pass: %v", err)
			}
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("the tier did not settle: %+v", l.TierStats())
}

// dirObjects counts the segment objects of a directory tier and their
// bytes.
func dirObjects(t *testing.T, dir string) (n int, bytes int64) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if isSegmentObject(e.Name()) {
			info, err := e.Info()
			if err != nil {
				t.Fatal(err)
			}
			n++
			bytes += info.Size()
		}
	}
	return n, bytes
}

// TestTierMergeModel: a log on a directory tier whose segments roll early
// (1 to 5 small batches each) and all go cold. Tier passes then merge
// adjacent cold segments into segments of up to SegmentBytes, each with
// its offset and time index: the records read from offset 0 (offsets,
// timestamps, values) are the model's before and after, OffsetForTime
// answers for every timestamp as the model does, a merged segment's time
// index bounds every record before each entry, the tier holds fewer
// objects (the replaced ones are deleted), and a catch-up read from 0 on
// a reopened log makes fewer GET requests. Logs objects and GETs per GiB
// before and after.
func TestTierMergeModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	dir := t.TempDir()
	tier := &countingTier{Tier: dirTier(dir)}
	fsys := NewMemFS()
	opts := Options{FS: fsys, Tier: tier, SegmentBytes: 64 << 10, IndexIntervalBytes: 256, LocalRetentionBytes: 1,
		Sync: SyncNever, TierMergeBytes: -1}
	l := openLog(t, "/d", opts)
	model := appendSmallSegments(t, l, rng, 300)
	settleTier(t, l)
	fill := func(got []rec) {
		for i := range got {
			model[i].val = got[i].val
		}
	}
	got := readRecs(t, l)
	if len(got) != len(model) {
		t.Fatalf("read %d records, want %d", len(got), len(model))
	}
	fill(got)
	check := func(when string, l *Log) {
		t.Helper()
		if got := readRecs(t, l); !slices.Equal(got, model) {
			t.Fatalf("%s: read %d records from 0, not the %d written", when, len(got), len(model))
		}
		for _, r := range model {
			// The model's answer: the first record at or after ts.
			want := l.HighWatermark()
			for _, m := range model {
				if m.ts >= r.ts {
					want = m.off
					break
				}
			}
			if off, err := l.OffsetForTime(r.ts); err != nil || off != want {
				t.Fatalf("%s: OffsetForTime(%d) = %d, %v; want %d", when, r.ts, off, err, want)
			}
		}
	}
	check("before merging", l)
	segsBefore := l.TierStats().RemoteSegments
	objsBefore, bytesBefore := dirObjects(t, dir)
	l.Close()
	catchUp := func(opts Options) int64 {
		t.Helper()
		l := openLog(t, "/d", opts)
		defer l.Close()
		g0 := tier.gets.Load()
		if got := readRecs(t, l); len(got) != len(model) {
			t.Fatalf("catch-up read %d records, want %d", len(got), len(model))
		}
		return tier.gets.Load() - g0
	}
	getsBefore := catchUp(opts)

	opts.TierMergeBytes = 0 // SegmentBytes
	l = openLog(t, "/d", opts)
	settleTier(t, l)
	st := l.TierStats()
	if st.MergedSegments == 0 || st.RemoteSegments >= segsBefore/4 {
		t.Fatalf("after merging: %+v; want far fewer than the %d segments before", st, segsBefore)
	}
	check("after merging", l)
	// Each merged time index entry bounds the records before it.
	l.tier.mu.Lock()
	man := slices.Clone(l.tier.man.Segments)
	l.tier.mu.Unlock()
	for _, ms := range man {
		b, err := os.ReadFile(filepath.Join(dir, ms.Object(timeIndexSuffix)))
		if err != nil {
			t.Fatal(err)
		}
		last := int64(-1 << 63)
		for i := range len(b) / timeEntrySize {
			ts, rel := timeEntry(b, i)
			if ts < last {
				t.Fatalf("segment %d: time index entry %d: %d after %d", ms.Base, i, ts, last)
			}
			last = ts
			for _, r := range model {
				if r.off >= ms.Base && r.off < ms.Base+int64(rel) && r.ts > ts {
					t.Fatalf("segment %d: entry (%d, %d), but offset %d has timestamp %d", ms.Base, ts, rel, r.off, r.ts)
				}
			}
		}
	}
	objsAfter, bytesAfter := dirObjects(t, dir)
	if objsAfter != 3*int(st.RemoteSegments) {
		t.Fatalf("%d objects in the tier after merging, want the %d of %d listed segments", objsAfter, 3*st.RemoteSegments, st.RemoteSegments)
	}
	l.Close()
	getsAfter := catchUp(opts)
	l = openLog(t, "/d", opts)
	defer l.Close()
	check("after a reopen", l)
	gib := func(b int64) float64 { return float64(b) / (1 << 30) }
	t.Logf("before merging: %d segments, %d objects (%.0f/GiB), catch-up read from 0: %d GETs (%.0f/GiB)",
		segsBefore, objsBefore, float64(objsBefore)/gib(bytesBefore), getsBefore, float64(getsBefore)/gib(bytesBefore))
	t.Logf("after merging:  %d segments, %d objects (%.0f/GiB), catch-up read from 0: %d GETs (%.0f/GiB)",
		st.RemoteSegments, objsAfter, float64(objsAfter)/gib(bytesAfter), getsAfter, float64(getsAfter)/gib(bytesAfter))
	if getsAfter >= getsBefore/2 {
		t.Fatalf("catch-up read: %d GETs after merging, %d before; want fewer than half", getsAfter, getsBefore)
	}
}

// TestTierMergeReadAcross: a consumer reads from offset 0 in small steps
// while the tier merges the cold segments it has not read yet, and the
// one it holds: it reads every record exactly once, in order. The objects
// of a segment a reader holds stay in the tier until it lets go.
func TestTierMergeReadAcross(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 9))
	tier := newMemTier()
	opts := Options{FS: NewMemFS(), Tier: tier, SegmentBytes: 64 << 10, IndexIntervalBytes: 256, LocalRetentionBytes: 1,
		Sync: SyncNever, TierMergeBytes: -1}
	l := openLog(t, "/d", opts)
	model := appendSmallSegments(t, l, rng, 200)
	settleTier(t, l)
	l.Close()
	l = openLog(t, "/d", opts)
	defer l.Close()
	// Merging from here on, by this test's calls only (the uploader is
	// stopped): several merged segments, one run per call.
	l.stopTier()
	ctx := context.Background()
	l.mu.Lock()
	l.opts.TierMergeBytes = 8 << 10
	l.mu.Unlock()
	var held *Section
	var heldObj string
	next, merges := int64(0), 0
	for next < l.HighWatermark() {
		secs, err := l.Read(nil, next, 700)
		if err != nil {
			t.Fatalf("Read(%d): %v", next, err)
		}
		for i := range secs {
			got := sectionRecords(t, &secs[i])
			for _, r := range got {
				if r.off < next {
					continue // before the offset asked for, in the same batch
				}
				if r.off != next || r.ts != model[next].ts {
					t.Fatalf("read offset %d (timestamp %d), want %d (timestamp %d)", r.off, r.ts, next, model[next].ts)
				}
				next++
			}
			if held == nil && secs[i].seg.cold != nil && merges == 0 {
				// Keep the first cold section: its segment is merged
				// away under it.
				held, heldObj = &secs[i], secs[i].seg.cold.ms.Object(logSuffix)
				continue
			}
			secs[i].Release()
		}
		// A merge between every two reads.
		l.tier.mu.Lock()
		merged, err := l.tierMerge(ctx)
		l.tierRetire(ctx)
		l.tier.mu.Unlock()
		if err != nil {
			t.Fatal(err)
		} else if merged {
			merges++
		}
		if held != nil {
			tier.mu.Lock()
			_, ok := tier.objs[heldObj]
			tier.mu.Unlock()
			if !ok {
				t.Fatalf("%s was deleted while a reader holds it", heldObj)
			}
		}
	}
	if next != int64(len(model)) || merges < 2 {
		t.Fatalf("read up to %d of %d records with %d merges; want all with at least 2 merges", next, len(model), merges)
	}
	if held == nil {
		t.Fatal("no cold section was held")
	}
	if !held.seg.deleted.Load() {
		t.Fatalf("the held segment %s was not merged away", heldObj)
	}
	held.Release()
	l.tier.mu.Lock()
	l.tierRetire(ctx)
	l.tier.mu.Unlock()
	tier.mu.Lock()
	_, ok := tier.objs[heldObj]
	tier.mu.Unlock()
	if ok {
		t.Fatalf("%s stays after its last reader let go", heldObj)
	}
	if got := unlisted(t, tier); len(got) != 0 {
		t.Fatalf("objects the manifest does not list: %v", got)
	}
}

// sectionRecords decodes the records of a section: offset and
// timestamp of each.
func sectionRecords(t *testing.T, s *Section) []rec {
	t.Helper()
	b, err := s.AppendTo(nil)
	if err != nil {
		t.Fatalf("reading a section: %v", err)
	}
	var out []rec
	var it codecs.RecordIter
	for len(b) > 0 {
		h, err := codecs.ParseHeader(b)
		if err != nil {
			t.Fatal(err)
		}
		if err := it.Reset(b[:h.Size()]); err != nil {
			t.Fatal(err)
		}
		for it.Next() {
			out = append(out, rec{off: it.Record().Offset, ts: it.Record().Timestamp})
		}
		if err := it.Err(); err != nil {
			t.Fatal(err)
		}
		b = b[h.Size():]
	}
	return out
}

// TestTierMergeCrash: a crash at each step of a merge (after the merged
// objects went up, at the manifest write, after it) loses nothing: the
// reopened log reads every record with its offset and timestamp, merges
// what is left, and sweeps the objects no manifest lists.
func TestTierMergeCrash(t *testing.T) {
	for _, point := range []string{"merge-uploaded", "manifest", "merge-listed"} {
		t.Run(point, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(5, 1))
			tier := newMemTier()
			fsys := NewMemFS()
			opts := Options{FS: fsys, Tier: tier, SegmentBytes: 16 << 10, IndexIntervalBytes: 256, LocalRetentionBytes: 1,
				Sync: SyncAlways, TierMergeBytes: -1}
			l := openLog(t, "/d", opts)
			model := appendSmallSegments(t, l, rng, 150)
			settleTier(t, l)
			got := readRecs(t, l)
			for i := range got {
				model[i].val = got[i].val
			}
			l.Close()

			var mu sync.Mutex
			var crashed *MemFS
			armed := false
			tierHook = func(p string) error {
				mu.Lock()
				defer mu.Unlock()
				if p == "merge-uploaded" {
					armed = true
				}
				// Once crashed, the process is dead: nothing more happens.
				if armed && p == point || crashed != nil {
					if crashed == nil {
						crashed = fsys.CrashClone()
					}
					return errors.New("crash")
				}
				return nil
			}
			defer func() { tierHook = nil }()
			opts.TierMergeBytes = 0
			l = openLog(t, "/d", opts)
			for range 100 {
				l.tierPass(l.tier.ctx)
				mu.Lock()
				done := crashed != nil
				mu.Unlock()
				if done {
					break
				}
			}
			// The log's own tier loop may be in a pass: the hook goes
			// once it has stopped.
			l.Close()
			tierHook = nil
			if crashed == nil {
				t.Fatalf("no merge reached %q", point)
			}

			opts.FS, opts.TierOrphanAge = crashed, 10*time.Millisecond
			l = openLog(t, "/d", opts)
			defer l.Close()
			if got := readRecs(t, l); !slices.Equal(got, model) {
				t.Fatalf("after the crash: read %d records, not the %d written", len(got), len(model))
			}
			settleTier(t, l)
			if got := readRecs(t, l); !slices.Equal(got, model) {
				t.Fatalf("merged after the crash: read %d records, not the %d written", len(got), len(model))
			}
			if st := l.TierStats(); st.MergedSegments == 0 || st.RemoteSegments >= 25 {
				t.Fatalf("after the crash, the merges did not finish: %+v", st)
			}
			waitFor(t, l, "no unlisted object", func() bool { return len(unlisted(t, tier)) == 0 })
			if got := strings.Join(unlisted(t, tier), " "); got != "" {
				t.Fatal(got)
			}
		})
	}
}

// TestTierMergeStaleLocalCopies: the local copies of segments merged in
// the cold tier come back (a power cut before their deletion reached the
// directory). The reopened log serves the merged cold segment in their
// place, deletes them, and never uploads them again over it.
func TestTierMergeStaleLocalCopies(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 3))
	tier := newMemTier()
	fsys := NewMemFS()
	opts := Options{FS: fsys, Tier: tier, SegmentBytes: 16 << 10, IndexIntervalBytes: 256, Sync: SyncAlways, TierMergeBytes: -1}
	l := openLog(t, "/d", opts)
	model := appendSmallSegments(t, l, rng, 60)
	waitFor(t, l, "every closed segment uploaded", func() bool { return tierSettled(l) })
	got := readRecs(t, l)
	for i := range got {
		model[i].val = got[i].val
	}
	l.Close()
	copies := fsys.CrashClone() // every segment local, durably
	localBefore, err := listSegments(copies, "/d", false)
	if err != nil {
		t.Fatal(err)
	}

	opts.LocalRetentionBytes, opts.TierMergeBytes = 1, 0
	l = openLog(t, "/d", opts)
	settleTier(t, l)
	if st := l.TierStats(); st.MergedSegments == 0 {
		t.Fatalf("nothing merged: %+v", st)
	}
	l.Close()

	opts.FS = copies
	l = openLog(t, "/d", opts)
	defer l.Close()
	if got := readRecs(t, l); !slices.Equal(got, model) {
		t.Fatalf("with the stale copies back: read %d records, not the %d written", len(got), len(model))
	}
	after, err := listSegments(copies, "/d", false)
	if err != nil {
		t.Fatal(err)
	}
	if len(after) >= len(localBefore) {
		t.Fatalf("the stale local copies stay: %d segment files, %d before", len(after), len(localBefore))
	}
	settleTier(t, l)
	if got := readRecs(t, l); !slices.Equal(got, model) {
		t.Fatalf("after more passes: read %d records, not the %d written", len(got), len(model))
	}
	m, err := ReadManifest(context.Background(), tier)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i < len(m.Segments); i++ {
		if m.Segments[i-1].Next != m.Segments[i].Base {
			t.Fatalf("the manifest lists %d-%d then %d-%d", m.Segments[i-1].Base, m.Segments[i-1].Next, m.Segments[i].Base, m.Segments[i].Next)
		}
	}
	l.Close()
	dr := openLog(t, "/other", Options{FS: NewMemFS(), Tier: tier, SegmentBytes: 16 << 10})
	defer dr.Close()
	if got := readRecs(t, dr); !slices.Equal(got, model) {
		t.Fatalf("a new log on the tier read %d records, not the %d written", len(got), len(model))
	}
}

// TestTierMergeRetentionMeanwhile: retention deletes the first segment of
// a run while its merged objects go up. The merge is dropped (its objects
// unlisted), the next one merges what is left, and the records retention
// deleted stay deleted, also after a reopen.
func TestTierMergeRetentionMeanwhile(t *testing.T) {
	rng := rand.New(rand.NewPCG(2, 4))
	tier := newMemTier()
	opts := Options{FS: NewMemFS(), Tier: tier, SegmentBytes: 64 << 10, IndexIntervalBytes: 256, LocalRetentionBytes: 1,
		Sync: SyncNever, TierMergeBytes: -1, TierOrphanAge: time.Millisecond}
	l := openLog(t, "/d", opts)
	appendSmallSegments(t, l, rng, 60)
	settleTier(t, l)
	l.Close()
	l = openLog(t, "/d", opts)
	defer func() { l.Close() }()
	l.stopTier() // the passes are this test's
	ctx := context.Background()
	l.mu.Lock()
	l.opts.TierMergeBytes = 0
	l.mu.Unlock()
	cut := (*l.segs.Load())[1].base
	tierHook = func(p string) error {
		if p == "merge-uploaded" {
			if n, err := l.DeleteBefore(cut); n != 1 || err != nil {
				t.Errorf("DeleteBefore(%d) = %d, %v; want 1 segment", cut, n, err)
			}
		}
		return nil
	}
	l.tier.mu.Lock()
	merged, err := l.tierMerge(ctx)
	l.tier.mu.Unlock()
	tierHook = nil
	if err != nil || merged {
		t.Fatalf("the merge under retention: merged %v, %v; want it dropped", merged, err)
	}
	if m, _ := ReadManifest(ctx, tier); m.Segments[0].Base != 0 {
		t.Fatalf("the manifest changed: it starts at %d", m.Segments[0].Base)
	}
	if err := l.tierPass(ctx); err != nil { // forgets the deleted segment
		t.Fatal(err)
	}
	for range 100 {
		l.tier.mu.Lock()
		merged, err = l.tierMerge(ctx)
		l.tier.mu.Unlock()
		if err != nil {
			t.Fatal(err)
		}
		if !merged {
			break
		}
	}
	want := readRecs(t, l)
	if l.TierStats().MergedSegments == 0 || want[0].off != cut {
		t.Fatalf("after the merges: %+v, reading from %d; want merges, from %d", l.TierStats(), want[0].off, cut)
	}
	l.Close()
	l = openLog(t, "/d", opts)
	if got := readRecs(t, l); l.StartOffset() != cut || !slices.Equal(got, want) {
		t.Fatalf("after a reopen: start %d, %d records; want start %d, %d records", l.StartOffset(), len(got), cut, len(want))
	}
}
