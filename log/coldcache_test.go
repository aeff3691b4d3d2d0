package log

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"slices"
	"testing"
	"time"
)

// TestColdCache: reads through the cache return the object's bytes at any
// offset and length, fetch chunk-aligned ranges, stay within the limit on
// disk, read ahead, and fail retriably while the store is down.
func TestColdCache(t *testing.T) {
	tier, obj, rng := randomObject(9*DefaultChunkBytes+123, 1)
	dir := t.TempDir() + "/cache"
	c, err := NewColdCache(dir, 3*DefaultChunkBytes)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 200 {
		off := rng.Int64N(int64(len(obj)))
		n := rng.IntN(3 * DefaultChunkBytes / 2)
		p := make([]byte, n)
		got, err := c.readAt(tier, "/d", "seg.log", int64(len(obj)), p, off, time.Second)
		want := obj[off:min(off+int64(n), int64(len(obj)))]
		if err != nil || got != len(want) || !bytes.Equal(p[:got], want) {
			t.Fatalf("read %d: readAt(%d bytes at %d) = %d, %v; want the object's %d bytes", i, n, off, got, err, len(want))
		}
		if st := c.Stats(); st.Bytes > 3*DefaultChunkBytes {
			t.Fatalf("cache holds %d bytes, limit %d", st.Bytes, 3*DefaultChunkBytes)
		}
	}
	// Settle read-ahead, then check the disk.
	time.Sleep(100 * time.Millisecond)
	var onDisk int64
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if fi, err := e.Info(); err == nil {
			onDisk += fi.Size()
		}
	}
	if onDisk > 3*DefaultChunkBytes {
		t.Fatalf("%d bytes on disk, limit %d", onDisk, 3*DefaultChunkBytes)
	}
	st := c.Stats()
	if st.Gets == 0 || st.GetBytes > st.Gets*DefaultChunkBytes || st.Hits == 0 {
		t.Fatalf("stats %+v", st)
	}

	// A sequential scan mostly finds its next chunk fetched ahead.
	c2, _ := NewColdCache("", 64<<20)
	p := make([]byte, 64<<10)
	for off := int64(0); off < int64(len(obj)); off += int64(len(p)) {
		if _, err := c2.readAt(tier, "/d", "seg.log", int64(len(obj)), p, off, time.Second); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
	if st := c2.Stats(); st.Gets != 10 || st.Misses > 3 {
		t.Fatalf("sequential scan: %+v; want 10 GETs, few misses", st)
	}

	// With a dir, the chunks fetched ahead for that scan stay in memory:
	// the disk holds only the ones the scan waited for.
	c4, err := NewColdCache(t.TempDir()+"/cache4", 64<<20)
	if err != nil {
		t.Fatal(err)
	}
	for off := int64(0); off < int64(len(obj)); off += int64(len(p)) {
		got, err := c4.readAt(tier, "/d", "seg.log", int64(len(obj)), p, off, time.Second)
		if want := obj[off:min(off+int64(len(p)), int64(len(obj)))]; err != nil || !bytes.Equal(p[:got], want) {
			t.Fatalf("sequential scan with a dir: readAt at %d = %d, %v", off, got, err)
		}
		time.Sleep(time.Millisecond)
	}
	if st := c4.Stats(); st.Gets != 10 || st.Bytes > st.Misses*DefaultChunkBytes || st.Staged == 0 || st.Staged > stagedChunks*DefaultChunkBytes {
		t.Fatalf("sequential scan with a dir: %+v; want 10 GETs, only the missed chunks on disk", st)
	}

	tier.mu.Lock()
	tier.down = true
	tier.mu.Unlock()
	c3, _ := NewColdCache("", 0)
	if _, err := c3.readAt(tier, "/d", "seg.log", int64(len(obj)), p, 0, time.Second); !errors.Is(err, ErrTierUnavailable) {
		t.Fatalf("read while the store is down: %v, want ErrTierUnavailable", err)
	}
}

// TestColdCacheWriteTo: writeTo gives the object's bytes at any offset and
// length, from chunks on disk (with a dir, the ones a read waited for)
// and staged in memory, and fails retriably while the store is down.
func TestColdCacheWriteTo(t *testing.T) {
	tier, obj, rng := randomObject(5*DefaultChunkBytes+77, 3)
	c, err := NewColdCache(t.TempDir()+"/cache", 2*DefaultChunkBytes)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1000) // smaller than a chunk: several writes per chunk on disk
	var out bytes.Buffer
	for i := range 100 {
		off := rng.Int64N(int64(len(obj)))
		n := rng.Int64N(3 * DefaultChunkBytes / 2)
		out.Reset()
		got, err := c.writeTo(&out, tier, "/d", "seg.log", int64(len(obj)), off, n, buf, time.Second)
		want := obj[off:min(off+n, int64(len(obj)))]
		if err != nil || got != int64(len(want)) || !bytes.Equal(out.Bytes(), want) {
			t.Fatalf("write %d: writeTo(%d bytes at %d) = %d, %v; want the object's %d bytes", i, n, off, got, err, len(want))
		}
	}
	if st := c.Stats(); st.Bytes == 0 || st.Staged == 0 {
		t.Fatalf("stats %+v: want chunks both on disk and staged", st)
	}
	tier.mu.Lock()
	tier.down = true
	tier.mu.Unlock()
	c2, _ := NewColdCache("", 0)
	if _, err := c2.writeTo(&out, tier, "/d", "seg.log", int64(len(obj)), 0, 10, buf, time.Second); !errors.Is(err, ErrTierUnavailable) {
		t.Fatalf("write while the store is down: %v, want ErrTierUnavailable", err)
	}
}

// TestColdCacheRecyclesReadThrough: a sequential read through many
// chunks into a cache with a dir reuses the buffers of the staged chunks
// it has read through for the chunks it fetches ahead, instead of
// allocating one per chunk: few chunks stay staged, none is fetched
// twice, and every byte read is the object's.
func TestColdCacheRecyclesReadThrough(t *testing.T) {
	const chunks = 12
	tier, obj, _ := randomObject(chunks*DefaultChunkBytes-5, 5)
	// No spare buffers: the reads must recycle their own.
	for len(chunkBufs) > 0 {
		<-chunkBufs
	}
	c, err := NewColdCache(t.TempDir()+"/cache", 64<<20)
	if err != nil {
		t.Fatal(err)
	}
	p := make([]byte, 64<<10)
	var out bytes.Buffer
	buf := make([]byte, 1000)
	for off := int64(0); off < int64(len(obj)); off += int64(len(p)) {
		want := obj[off:min(off+int64(len(p)), int64(len(obj)))]
		// Alternate the two read paths a fetch and an iterator take.
		if off/int64(len(p))%2 == 0 {
			got, err := c.readAt(tier, "/d", "seg.log", int64(len(obj)), p, off, time.Second)
			if err != nil || !bytes.Equal(p[:got], want) {
				t.Fatalf("readAt at %d = %d, %v; want the object's bytes", off, got, err)
			}
		} else {
			out.Reset()
			got, err := c.writeTo(&out, tier, "/d", "seg.log", int64(len(obj)), off, int64(len(p)), buf, time.Second)
			if err != nil || got != int64(len(want)) || !bytes.Equal(out.Bytes(), want) {
				t.Fatalf("writeTo at %d = %d, %v; want the object's bytes", off, got, err)
			}
		}
		time.Sleep(200 * time.Microsecond)
	}
	st := c.Stats()
	if st.Gets != chunks {
		t.Fatalf("stats %+v: want %d GETs, each chunk once", st, chunks)
	}
	if st.Staged > (readAhead+2)*DefaultChunkBytes {
		t.Fatalf("stats %+v: %d chunks staged after reading through %d; want at most %d (read-through buffers reused)",
			st, st.Staged/DefaultChunkBytes, chunks, readAhead+2)
	}
}

// TestColdCacheForgetsClosedLog: closing a log drops its chunks from the
// cache it shares (no read names them again: a log opened again has
// another cache ID), and their buffers go back to the spares.
func TestColdCacheForgetsClosedLog(t *testing.T) {
	tier := newMemTier()
	cache, err := NewColdCache(t.TempDir()+"/cache", 64<<20)
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{FS: NewMemFS(), Tier: tier, SegmentBytes: 4096, LocalRetentionBytes: 1, Sync: SyncNever, ColdCache: cache}
	l := openLog(t, "/d", opts)
	want := appendTagged(t, l, 100)
	waitFor(t, l, "local copies deleted", func() bool { return l.TierStats().ColdSegments > 3 })
	if got := readAll(t, l, 0); !slices.Equal(got, want[:len(got)]) || len(got) < 50 {
		t.Fatalf("read %d records, want a prefix of the %d written", len(got), len(want))
	}
	// Another log's chunks stay.
	other, _, _ := randomObject(1000, 7)
	if _, err := cache.readAt(other, "/other", "seg.log", 1000, make([]byte, 10), 0, time.Second); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // read-ahead settles
	if st := cache.Stats(); st.Bytes+st.Staged <= 1000 {
		t.Fatalf("stats %+v before Close: want the log's chunks cached", st)
	}
	l.Close()
	if st := cache.Stats(); st.Bytes+st.Staged != 1000 {
		t.Fatalf("stats %+v after Close: want only the other log's 1000 bytes", st)
	}
}

// randomObject returns a tier holding seg.log, size random bytes from
// seed, the bytes, and the generator that made them.
func randomObject(size int, seed uint64) (*memTier, []byte, *rand.Rand) {
	tier := newMemTier()
	obj := make([]byte, size)
	rng := rand.New(rand.NewPCG(seed, seed+1))
	for i := range obj {
		obj[i] = byte(rng.Uint32())
	}
	tier.Put(context.Background(), "seg.log", bytes.NewReader(obj))
	return tier, obj, rng
}
