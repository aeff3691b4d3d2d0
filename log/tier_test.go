package log

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// memTier is a Tier in memory that can be made to fail.
type memTier struct {
	mu      sync.Mutex
	objs    map[string][]byte
	mod     map[string]time.Time // when each object was put
	down    bool
	gets    int
	deletes int
}

func newMemTier() *memTier { return &memTier{objs: map[string][]byte{}, mod: map[string]time.Time{}} }

var errDown = errors.New("memtier: down")

func (m *memTier) Put(_ context.Context, name string, r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.down {
		return errDown
	}
	m.objs[name] = b
	m.mod[name] = time.Now()
	return nil
}

func (m *memTier) List(context.Context) ([]TierObject, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.down {
		return nil, errDown
	}
	var out []TierObject
	for k, b := range m.objs {
		out = append(out, TierObject{Name: k, Size: int64(len(b)), Modified: m.mod[k]})
	}
	return out, nil
}

func (m *memTier) PutIfAbsent(ctx context.Context, name string, r io.Reader) error {
	m.mu.Lock()
	_, ok := m.objs[name]
	m.mu.Unlock()
	if ok {
		return fs.ErrExist
	}
	return m.Put(ctx, name, r)
}

func (m *memTier) Get(_ context.Context, name string, off, n int64) (io.ReadCloser, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.down {
		return nil, errDown
	}
	m.gets++
	b, ok := m.objs[name]
	if !ok {
		return nil, fmt.Errorf("%s: %w", name, fs.ErrNotExist)
	}
	b = b[off:]
	if n >= 0 {
		b = b[:n]
	}
	return io.NopCloser(bytes.NewReader(bytes.Clone(b))), nil
}

func (m *memTier) Delete(_ context.Context, names []string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.down {
		return errDown
	}
	m.deletes++
	for _, n := range names {
		delete(m.objs, n)
	}
	return nil
}

func (m *memTier) GetVersion(_ context.Context, name string) ([]byte, string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.down {
		return nil, "", errDown
	}
	m.gets++
	b, ok := m.objs[name]
	if !ok {
		return nil, "", fmt.Errorf("%s: %w", name, fs.ErrNotExist)
	}
	return bytes.Clone(b), testVersion(b), nil
}

func (m *memTier) PutIfMatch(_ context.Context, name string, r io.Reader, version string) (string, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return "", err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.down {
		return "", errDown
	}
	if cur, ok := m.objs[name]; !ok || testVersion(cur) != version {
		return "", fmt.Errorf("%s: %w", name, ErrTierFenced)
	}
	m.objs[name] = b
	m.mod[name] = time.Now()
	return testVersion(b), nil
}

// testVersion is the version the test tiers give an object: a hash.
func testVersion(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

func (m *memTier) names(suffix string) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for k := range m.objs {
		if strings.HasSuffix(k, suffix) {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

func localLogs(t *testing.T, fsys FS, dir string) int {
	t.Helper()
	names, err := fsys.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, name := range names {
		if strings.HasSuffix(name, logSuffix) {
			n++
		}
	}
	return n
}

// waitFor polls cond (kicking the tier) for up to 10s.
func waitFor(t *testing.T, l *Log, what string, cond func() bool) {
	t.Helper()
	for range 1000 {
		l.EnforceRetention()
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s; tier stats %+v", what, l.TierStats())
}

func appendTagged(t *testing.T, l *Log, n int) []string {
	t.Helper()
	var want []string
	for i := range n {
		tag := fmt.Sprintf("r%d", i)
		if _, err := l.Append(batchOf(t, tag, 1, 200, int64(1000+i))); err != nil {
			t.Fatal(err)
		}
		want = append(want, tag+"/0/1")
	}
	return want
}

// TestTierMovesSegmentsAndReadsStayWhole: closed segments are uploaded,
// local copies go past local retention, and every offset stays readable
// through Read, the iterator and OffsetForTime; a reopen, and a new log
// directory pointed at the same tier, serve the whole history.
func TestTierMovesSegmentsAndReadsStayWhole(t *testing.T) {
	tier := newMemTier()
	fsys := NewMemFS()
	opts := Options{FS: fsys, Tier: tier, SegmentBytes: 4096, IndexIntervalBytes: 512, LocalRetentionBytes: 8192,
		Sync: SyncNever}
	l := openLog(t, "/d", opts)
	want := appendTagged(t, l, 200)
	waitFor(t, l, "local copies deleted", func() bool {
		st := l.TierStats()
		return st.ColdSegments > 0 && localLogs(t, fsys, "/d") <= 4
	})
	if got := l.StartOffset(); got != 0 {
		t.Fatalf("StartOffset() = %d, want 0 (the cold start)", got)
	}
	if l.LocalStartOffset() == 0 {
		t.Fatalf("LocalStartOffset() = 0 after local deletion")
	}
	if got := readAll(t, l, 0); !slices.Equal(got, want) {
		t.Fatalf("read %d records from 0, want %d", len(got), len(want))
	}
	if got := readAll(t, l, 37); !slices.Equal(got, want[37:]) {
		t.Fatalf("read from 37: %d records, want %d", len(got), len(want)-37)
	}
	if off, err := l.OffsetForTime(1005); err != nil || off != 5 {
		t.Fatalf("OffsetForTime(1005) = %d, %v; want 5", off, err)
	}
	st := l.TierStats()
	if st.RemoteSegments == 0 || st.RemoteBytes == 0 || l.Size() > 4*4096 {
		t.Fatalf("stats %+v, local size %d", st, l.Size())
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	l = openLog(t, "/d", opts)
	if got := readAll(t, l, 0); !slices.Equal(got, want) {
		t.Fatalf("after reopen: read %d records from 0, want %d", len(got), len(want))
	}
	more := appendTagged(t, l, 10)
	l.Close()

	// Disaster recovery: an empty directory on the same tier.
	l = openLog(t, "/fresh", opts)
	defer l.Close()
	man, err := ReadManifest(context.Background(), tier)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := l.HighWatermark(), man.End(); got != want {
		t.Fatalf("fresh HighWatermark() = %d, want the manifest's end %d", got, want)
	}
	got := readAll(t, l, 0)
	all := append(slices.Clone(want), more...)
	if len(got) == 0 || !slices.Equal(got, all[:len(got)]) {
		t.Fatalf("fresh directory read %d records, not a prefix of the %d written", len(got), len(all))
	}
}

// TestTierRetentionDeletesRemote: retention of the total deletes from the
// tier, manifest first; nothing inside retention goes.
func TestTierRetentionDeletesRemote(t *testing.T) {
	tier := newMemTier()
	opts := Options{FS: NewMemFS(), Tier: tier, SegmentBytes: 4096, LocalRetentionBytes: 4096, Sync: SyncNever}
	l := openLog(t, "/d", opts)
	defer l.Close()
	appendTagged(t, l, 200)
	waitFor(t, l, "uploads", func() bool { return l.TierStats().ColdSegments >= 5 })
	before := len(tier.names(logSuffix))
	l.SetLimits(Limits{SegmentBytes: 4096, RetentionBytes: 3 * 4096})
	waitFor(t, l, "remote deletion", func() bool { return len(tier.names(logSuffix)) < before && tier.deletes > 0 })
	man, err := ReadManifest(context.Background(), tier)
	if err != nil {
		t.Fatal(err)
	}
	start := l.StartOffset()
	if len(man.Segments) > 0 && man.Segments[0].Next <= start {
		t.Fatalf("manifest still lists %+v below start %d", man.Segments[0], start)
	}
	if got := readAll(t, l, start); len(got) != int(l.HighWatermark()-start) {
		t.Fatalf("read %d records from the start %d, want %d", len(got), start, l.HighWatermark()-start)
	}
}

// TestTierDownHoldsLocalCopies: a store that fails keeps every local copy,
// retries, and catches up once back.
func TestTierDownHoldsLocalCopies(t *testing.T) {
	tier := newMemTier()
	fsys := NewMemFS()
	opts := Options{FS: fsys, Tier: tier, SegmentBytes: 4096, LocalRetentionBytes: 4096, Sync: SyncNever}
	l := openLog(t, "/d", opts)
	defer l.Close()
	tier.mu.Lock()
	tier.down = true
	tier.mu.Unlock()
	want := appendTagged(t, l, 100)
	waitFor(t, l, "a failed pass", func() bool { return l.TierStats().UploadFailures > 0 })
	if l.TierStats().ColdSegments != 0 || l.StartOffset() != 0 {
		t.Fatalf("segments left the disk while the store was down: %+v", l.TierStats())
	}
	tier.mu.Lock()
	tier.down = false
	tier.mu.Unlock()
	waitFor(t, l, "catch-up", func() bool { return l.TierStats().ColdSegments > 0 })
	if got := readAll(t, l, 0); !slices.Equal(got, want) {
		t.Fatalf("read %d records, want %d", len(got), len(want))
	}
}

// TestTierCrash: a power cut at each step of a tier pass (before the
// manifest is written, before a local copy is removed, before the store
// deletes) loses no synced record.
func TestTierCrash(t *testing.T) {
	for _, point := range []string{"manifest", "remove", "delete"} {
		t.Run(point, func(t *testing.T) {
			tier := newMemTier()
			fsys := NewMemFS()
			opts := Options{FS: fsys, Tier: tier, SegmentBytes: 4096, LocalRetentionBytes: 4096, Sync: SyncAlways}
			var mu sync.Mutex
			var crashed *MemFS
			var acked atomic.Int64
			ackedAtCrash := int64(-1)
			armed := point != "delete"
			tierHook = func(p string) error {
				mu.Lock()
				defer mu.Unlock()
				if p != point || !armed || crashed != nil {
					return nil
				}
				ackedAtCrash = acked.Load() // acknowledged, so synced, before the cut
				crashed = fsys.CrashClone()
				return errors.New("crash")
			}
			defer func() { tierHook = nil }()
			l := openLog(t, "/d", opts)
			var want []string
			for i := range 150 {
				tag := fmt.Sprintf("r%d", i)
				if _, err := l.Append(batchOf(t, tag, 1, 200, int64(1000+i))); err != nil {
					t.Fatal(err)
				}
				want = append(want, tag+"/0/1")
				acked.Add(1)
			}
			if point == "delete" {
				waitFor(t, l, "uploads", func() bool { return l.TierStats().ColdSegments >= 8 })
				mu.Lock()
				armed = true
				mu.Unlock()
				l.SetLimits(Limits{SegmentBytes: 4096, RetentionBytes: 5 * 4096})
			}
			waitFor(t, l, "the crash point", func() bool { mu.Lock(); defer mu.Unlock(); return crashed != nil })
			l.Close()
			tierHook = nil

			l = openLog(t, "/d", Options{FS: crashed, Tier: tier, SegmentBytes: 4096, Sync: SyncAlways})
			defer l.Close()
			start := l.StartOffset()
			got := readAll(t, l, start)
			if int64(len(got)) < ackedAtCrash-start || !slices.Equal(got, want[start:start+int64(len(got))]) {
				t.Fatalf("after the crash read %d records from %d; %d were acknowledged", len(got), start, ackedAtCrash)
			}
			if point != "delete" && start != 0 {
				t.Fatalf("start offset %d after a crash without retention", start)
			}
		})
	}
}

// TestTierBoundaryNeverOutOfRange: readers of offsets that exist never get
// a RangeError while local copies move to the tier under them (the race
// of KAFKA-16073).
func TestTierBoundaryNeverOutOfRange(t *testing.T) {
	tier := newMemTier()
	l := openLog(t, "/d", Options{FS: NewMemFS(), Tier: tier, SegmentBytes: 4096, IndexIntervalBytes: 256,
		LocalRetentionBytes: 4096, Sync: SyncNever})
	defer l.Close()
	stop := make(chan struct{})
	errs := make(chan error, 4)
	var wg sync.WaitGroup
	for r := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := uint64(r + 1)
			var buf []byte
			for {
				select {
				case <-stop:
					return
				default:
				}
				hw := l.HighWatermark()
				if hw == 0 {
					continue
				}
				rng = rng*6364136223846793005 + 1442695040888963407
				off := int64(rng>>33) % hw
				var err error
				if buf, err = l.ReadBatches(buf[:0], off, 1024); err != nil {
					errs <- fmt.Errorf("ReadBatches(%d) with the high watermark at %d: %w", off, hw, err)
					return
				}
			}
		}()
	}
	for i := range 400 {
		if _, err := l.Append(batchOf(t, fmt.Sprintf("r%d", i), 1, 200, int64(i))); err != nil {
			t.Fatal(err)
		}
		if i%20 == 0 {
			l.EnforceRetention()
		}
	}
	waitFor(t, l, "local copies deleted", func() bool { return l.TierStats().ColdSegments > 10 })
	close(stop)
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
}

// TestTierDownAtOpen: a log with local segments opens while the store is
// down, serves them, and gets its cold segments back once the store
// answers; an empty directory cannot open (it would not know its end).
func TestTierDownAtOpen(t *testing.T) {
	tier := newMemTier()
	fsys := NewMemFS()
	opts := Options{FS: fsys, Tier: tier, SegmentBytes: 4096, LocalRetentionBytes: 4096, Sync: SyncNever}
	l := openLog(t, "/d", opts)
	want := appendTagged(t, l, 100)
	waitFor(t, l, "local copies deleted", func() bool { return l.TierStats().ColdSegments > 2 })
	l.Close()
	tier.mu.Lock()
	tier.down = true
	tier.mu.Unlock()
	if _, err := Open("/empty", opts); !errors.Is(err, ErrTierUnavailable) {
		t.Fatalf("Open of an empty directory with the store down: %v, want ErrTierUnavailable", err)
	}
	l = openLog(t, "/d", opts)
	defer l.Close()
	local := l.StartOffset()
	if local == 0 {
		t.Fatal("cold segments listed while the store is down")
	}
	if got := readAll(t, l, local); !slices.Equal(got, want[local:]) {
		t.Fatalf("read %d local records, want %d", len(got), len(want)-int(local))
	}
	tier.mu.Lock()
	tier.down = false
	tier.mu.Unlock()
	waitFor(t, l, "the cold segments back", func() bool { return l.StartOffset() == 0 })
	if got := readAll(t, l, 0); !slices.Equal(got, want) {
		t.Fatalf("read %d records, want %d", len(got), len(want))
	}
}

// dirTier is a Tier in a local directory (for the kill -9 tests, whose
// tier must outlive the process): puts write a synced temporary file and
// rename it.
type dirTier string

func (d dirTier) Put(_ context.Context, name string, r io.Reader) error {
	f, err := os.CreateTemp(string(d), ".tmp-*")
	if err != nil {
		return err
	}
	_, err = io.Copy(f, r)
	if err == nil {
		err = f.Sync()
	}
	f.Close()
	if err == nil {
		err = os.Rename(f.Name(), filepath.Join(string(d), name))
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}

func (d dirTier) PutIfAbsent(ctx context.Context, name string, r io.Reader) error {
	if _, err := os.Stat(filepath.Join(string(d), name)); err == nil {
		return fs.ErrExist
	}
	return d.Put(ctx, name, r)
}

func (d dirTier) Get(_ context.Context, name string, off, n int64) (io.ReadCloser, error) {
	b, err := os.ReadFile(filepath.Join(string(d), name))
	if err != nil {
		return nil, err
	}
	b = b[off:]
	if n >= 0 {
		b = b[:n]
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

func (d dirTier) GetVersion(_ context.Context, name string) ([]byte, string, error) {
	b, err := os.ReadFile(filepath.Join(string(d), name))
	if err != nil {
		return nil, "", err
	}
	return b, testVersion(b), nil
}

// PutIfMatch compares and replaces without a lock: the crash tests have
// one writer at a time.
func (d dirTier) PutIfMatch(ctx context.Context, name string, r io.Reader, version string) (string, error) {
	cur, err := os.ReadFile(filepath.Join(string(d), name))
	if err != nil || testVersion(cur) != version {
		return "", fmt.Errorf("%s: %w", name, ErrTierFenced)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return "", err
	}
	return testVersion(b), d.Put(ctx, name, bytes.NewReader(b))
}

func (d dirTier) Delete(_ context.Context, names []string) error {
	for _, n := range names {
		if err := os.Remove(filepath.Join(string(d), n)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

// tierSettled reports whether the manifest lists every sealed local
// segment at its current size (compacted ones uploaded again).
func tierSettled(l *Log) bool {
	ts := l.tier
	ts.mu.Lock()
	defer ts.mu.Unlock()
	segs := *l.segs.Load()
	for _, s := range segs[:len(segs)-1] {
		if ms, ok := ts.man.find(s.base); !ok || ms.Bytes != s.size.Load() {
			return false
		}
	}
	return true
}

// TestTierCompaction: a compacted log with a tier. Compaction rewrites
// uploaded local segments, which go up again under new names (the
// manifest swaps to them, the old objects go); once local retention moves
// segments to the tier, compaction rewrites those in the tier too (see
// TestTierCompactModel). After every compaction,
// reading the log back gives the state a model map has, and so does a
// new log on the tier with an empty directory.
func TestTierCompaction(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 9))
	tier := newMemTier()
	var now atomic.Int64 // read by the uploader
	now.Store(1_700_000_000_000)
	opts := Options{FS: NewMemFS(), Tier: tier, Compact: true, SegmentBytes: 4096, IndexIntervalBytes: 256,
		DeleteRetention: time.Minute, CompactMapBytes: 4096, Now: func() time.Time { return time.UnixMilli(now.Load()) }, Sync: SyncNever}
	l := openLog(t, "/d", opts)
	defer l.Close()
	model := map[string]kv{}
	var total CompactStats
	for step := range 1200 {
		putBatch(t, l, rng, 200, now.Add(1000), model)
		if step == 600 {
			lim := l.Limits()
			lim.LocalRetentionBytes = 3 * 4096
			l.SetLimits(lim)
		}
		if step%100 == 99 {
			st, err := l.Compact()
			if err != nil {
				t.Fatalf("step %d: %v", step, err)
			}
			total.Segments += st.Segments
			total.TombstonesRemoved += st.TombstonesRemoved
			waitFor(t, l, "the compacted segments uploaded", func() bool { return tierSettled(l) })
			checkState(t, l, model, fmt.Sprintf("step %d after compaction", step))
		}
	}
	if total.Segments == 0 || total.TombstonesRemoved == 0 || l.TierStats().ColdSegments == 0 {
		t.Fatalf("too little happened to test: %+v, tier %+v", total, l.TierStats())
	}
	man, err := ReadManifest(context.Background(), tier)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(tier.names(".log")); got != len(man.Segments) {
		t.Errorf("the tier holds %d .log objects, the manifest lists %d: replaced versions left behind", got, len(man.Segments))
	}
	l.Roll()
	waitFor(t, l, "the last segment uploaded", func() bool { return tierSettled(l) })
	dr := openLog(t, "/other", Options{FS: NewMemFS(), Tier: tier, SegmentBytes: 4096})
	defer dr.Close()
	checkState(t, dr, model, "a new log on the tier")
}

// unlisted returns the tier's objects that its manifest does not list.
func unlisted(t *testing.T, tier *memTier) []string {
	t.Helper()
	m, err := ReadManifest(context.Background(), tier)
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{ManifestName: true}
	for _, s := range m.Segments {
		listed[s.Object(logSuffix)], listed[s.Object(indexSuffix)], listed[s.Object(timeIndexSuffix)] = true, true, true
	}
	tier.mu.Lock()
	defer tier.mu.Unlock()
	var out []string
	for k := range tier.objs {
		if !listed[k] {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// TestTierSweepsOrphans: a crash between the upload of segments and the
// manifest write that lists them leaves objects no manifest lists (the
// next log uploads the segments again under its own tag). A log sweeps
// them once they are older than TierOrphanAge, at its first tier pass,
// and never an object it does not recognise as a segment's; every record
// stays readable.
func TestTierSweepsOrphans(t *testing.T) {
	tier := newMemTier()
	fsys := NewMemFS()
	tierHook = func(p string) error {
		if p == "manifest" {
			return errors.New("crash") // the process dies before the manifest write
		}
		return nil
	}
	defer func() { tierHook = nil }()
	l := openLog(t, "/d", Options{FS: fsys, Tier: tier, SegmentBytes: 4096, Sync: SyncAlways})
	want := appendTagged(t, l, 100)
	waitFor(t, l, "uploads", func() bool { return len(tier.names(logSuffix)) >= 5 })
	crashed := fsys.CrashClone()
	l.Close()
	tierHook = nil
	if err := tier.Put(context.Background(), "NOTES.txt", strings.NewReader("not the log's")); err != nil {
		t.Fatal(err)
	}
	orphans := unlisted(t, tier)
	if len(orphans) < 4 {
		t.Fatalf("after the crash the tier has unlisted objects %v; want the uploads the manifest missed", orphans)
	}

	// Young orphans stay: the next log uploads again, under its own tag.
	opts := Options{FS: crashed, Tier: tier, SegmentBytes: 4096, Sync: SyncAlways}
	l = openLog(t, "/d", opts)
	waitFor(t, l, "uploads", func() bool { return l.TierStats().RemoteSegments >= 5 })
	if got := unlisted(t, tier); len(got) < len(orphans) || l.TierStats().OrphansSwept != 0 {
		t.Fatalf("swept objects younger than TierOrphanAge: unlisted %v, before %v; stats %+v", got, orphans, l.TierStats())
	}
	l.Close()

	// Past the age, the first pass sweeps them.
	time.Sleep(20 * time.Millisecond)
	opts.TierOrphanAge = 10 * time.Millisecond
	opts.LocalRetentionBytes = 4096
	l = openLog(t, "/d", opts)
	defer l.Close()
	waitFor(t, l, "the sweep", func() bool { return l.TierStats().OrphansSwept > 0 })
	if got := unlisted(t, tier); !slices.Equal(got, []string{"NOTES.txt"}) {
		t.Fatalf("after the sweep the tier has unlisted %v; want only NOTES.txt", got)
	}
	if n := l.TierStats().OrphansSwept; n != int64(len(orphans)-1) {
		t.Fatalf("swept %d objects; %d were orphans", n, len(orphans)-1)
	}
	waitFor(t, l, "local copies gone", func() bool { return l.TierStats().ColdSegments >= 5 })
	if got := readAll(t, l, 0); !slices.Equal(got, want) {
		t.Fatalf("after the sweep read %d records, want %d", len(got), len(want))
	}
}
