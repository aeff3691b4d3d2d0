package log

import (
	"context"
	"encoding/binary"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// blockingTier holds a merge's Put of its merged .log object (a name
// tagged with a writer and a generation: BASE.WRITER.GEN.log) until
// release is closed, after closing entered.
type blockingTier struct {
	*memTier
	once    sync.Once
	entered chan struct{}
	release chan struct{}
}

func (b *blockingTier) Put(ctx context.Context, name string, r io.Reader) error {
	if strings.Count(name, ".") == 3 && strings.HasSuffix(name, logSuffix) {
		b.once.Do(func() { close(b.entered) })
		select {
		case <-b.release:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return b.memTier.Put(ctx, name, r)
}

// TestTierMergeUploadsMeanwhile: while a merge's transfer to the store
// is held up, a segment sealed meanwhile is uploaded (and the manifest
// lists it); the merge then finishes, and every record reads.
func TestTierMergeUploadsMeanwhile(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 4))
	mem := newMemTier()
	opts := Options{FS: NewMemFS(), Tier: mem, SegmentBytes: 64 << 10, IndexIntervalBytes: 256, LocalRetentionBytes: 1,
		Sync: SyncNever, TierMergeBytes: -1}
	l := openLog(t, "/d", opts)
	appendSmallSegments(t, l, rng, 60)
	settleTier(t, l)
	l.Close()

	bt := &blockingTier{memTier: mem, entered: make(chan struct{}), release: make(chan struct{})}
	opts.Tier, opts.TierMergeBytes = bt, 0
	l = openLog(t, "/d", opts)
	defer l.Close()
	released := false
	defer func() {
		if !released {
			close(bt.release)
		}
	}()
	select {
	case <-bt.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("no merge started")
	}
	if _, err := l.Append(batchOf(t, "meanwhile", 3, 200, 20_000)); err != nil {
		t.Fatal(err)
	}
	if err := l.Roll(); err != nil {
		t.Fatal(err)
	}
	end := l.HighWatermark()
	waitFor(t, l, "the segment sealed during the merge uploaded", func() bool { return l.TierStats().RemoteEnd >= end })
	if l.TierStats().MergedSegments != 0 {
		t.Fatalf("the merge finished while its transfer was held: %+v", l.TierStats())
	}
	close(bt.release)
	released = true
	waitFor(t, l, "the merge done", func() bool { return l.TierStats().MergedSegments > 0 })
	got := readRecs(t, l)
	if len(got) != int(end) || got[len(got)-1].off != end-1 {
		t.Fatalf("read %d records, want %d", len(got), end)
	}
}

// TestTierMergeCorruptPart: a cold segment's .log object is damaged in
// the store: one byte of its last batch (the CRC-32C catches it), or the
// base offset of its first batch (outside the segment's range; the CRC
// does not cover it). Merges that would take it are dropped: the
// manifest keeps listing it as it is, the failure is counted, and it is
// not merged into anything; the other runs merge.
func TestTierMergeCorruptPart(t *testing.T) {
	for _, c := range []struct {
		name   string
		damage func(b []byte, ms ManifestSegment)
	}{
		{"crc", func(b []byte, ms ManifestSegment) { b[ms.Bytes-1] ^= 0x40 }},
		{"offset", func(b []byte, ms ManifestSegment) { binary.BigEndian.PutUint64(b, uint64(ms.Next+5)) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(6, 2))
			tier := newMemTier()
			opts := Options{FS: NewMemFS(), Tier: tier, SegmentBytes: 16 << 10, IndexIntervalBytes: 256, LocalRetentionBytes: 1,
				Sync: SyncNever, TierMergeBytes: -1}
			l := openLog(t, "/d", opts)
			appendSmallSegments(t, l, rng, 150)
			settleTier(t, l)
			l.Close()
			m, err := ReadManifest(context.Background(), tier)
			if err != nil {
				t.Fatal(err)
			}
			bad := m.Segments[len(m.Segments)/2]
			name := bad.Object(logSuffix)
			tier.mu.Lock()
			c.damage(tier.objs[name], bad)
			tier.mu.Unlock()

			opts.TierMergeBytes = 0
			l = openLog(t, "/d", opts)
			defer l.Close()
			settleTier(t, l)
			st := l.TierStats()
			if st.MergeCorrupt == 0 || st.MergedSegments == 0 {
				t.Fatalf("after merging: %+v; want merges, and the corrupt part counted", st)
			}
			m, err = ReadManifest(context.Background(), tier)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Contains(m.Segments, bad) {
				t.Fatalf("the manifest no longer lists the corrupt segment %s as it was: %+v", name, m.Segments)
			}
			for _, s := range m.Segments {
				if s != bad && s.Base <= bad.Base && bad.Base < s.Next {
					t.Fatalf("the corrupt segment %s was merged into %s", name, s.Object(logSuffix))
				}
			}
		})
	}
}

// TestTierMergeRetentionAtManifestWrite: retention deletes the first
// segment of a run while the manifest that lists the merged segment is
// written. The merged segment begins below the start offset; the records
// retention deleted stay deleted, also after a reopen (the manifest
// records the start).
func TestTierMergeRetentionAtManifestWrite(t *testing.T) {
	rng := rand.New(rand.NewPCG(2, 8))
	tier := newMemTier()
	opts := Options{FS: NewMemFS(), Tier: tier, SegmentBytes: 64 << 10, IndexIntervalBytes: 256, LocalRetentionBytes: 1,
		Sync: SyncNever, TierMergeBytes: -1}
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
	armed := false
	tierHook = func(p string) error {
		switch {
		case p == "merge-uploaded":
			armed = true
		case p == "manifest" && armed:
			armed = false
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
	if err != nil || !merged {
		t.Fatalf("the merge: merged %v, %v; want it listed", merged, err)
	}
	if err := l.tierPass(ctx); err != nil {
		t.Fatal(err)
	}
	want := readRecs(t, l)
	if l.StartOffset() != cut || want[0].off != cut {
		t.Fatalf("after the merge: start %d, reading from %d; want %d", l.StartOffset(), want[0].off, cut)
	}
	if m, err := ReadManifest(ctx, tier); err != nil || m.Segments[0].Base >= cut || m.Start != cut {
		t.Fatalf("the manifest: start %d, first segment %+v (%v); want a segment from below %d, start %d", m.Start, m.Segments[0], err, cut, cut)
	}
	l.Close()
	l = openLog(t, "/d", opts)
	if got := readRecs(t, l); l.StartOffset() != cut || !slices.Equal(got, want) {
		t.Fatalf("after a reopen: start %d, %d records from %d; want start %d, %d records", l.StartOffset(), len(got), got[0].off, cut, len(want))
	}
	// A new server on the prefix, with an empty directory, starts there too.
	l.Close()
	dr := openLog(t, "/other", Options{FS: NewMemFS(), Tier: tier, SegmentBytes: 64 << 10})
	defer dr.Close()
	if got := readRecs(t, dr); dr.StartOffset() != cut || !slices.Equal(got, want) {
		t.Fatalf("a new log on the tier: start %d, %d records; want start %d, %d records", dr.StartOffset(), len(got), cut, len(want))
	}
}
