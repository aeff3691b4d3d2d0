package hub

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weirhub/weir/codecs"
	"github.com/weirhub/weir/internal/objstore"
	"github.com/weirhub/weir/internal/objstore/s3test"
	wlog "github.com/weirhub/weir/log"

	"golang.org/x/time/rate"
)

// TestColdStoreDatasets: remote.storage.enable and the local retention
// settings come from Kafka configs and alter like the others; a dataset
// asking for the cold tier needs a cold store; the directory store gets the
// segments; deleting the dataset deletes its objects, so a new dataset of
// the same name starts empty.
func TestColdStoreDatasets(t *testing.T) {
	dir := t.TempDir()
	store, err := objstore.NewDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	plain := openHub(t, testOptions(t.TempDir()))
	if _, err := plain.CreateDataset("x", DatasetConfig{RemoteStorage: true}); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("remote storage without a cold store: %v, want ErrInvalidConfig", err)
	}
	plain.Close()
	opts := testOptions(dir)
	opts.ColdStore, opts.RetentionCheckInterval = store, 10*time.Millisecond
	h := openHub(t, opts)
	defer h.Close()
	var cfg DatasetConfig
	for k, v := range map[string]string{"remote.storage.enable": "true", "segment.bytes": "4096", "local.retention.ms": "-2"} {
		if err := cfg.ApplyKafkaConfig(k, v); err != nil {
			t.Fatal(err)
		}
	}
	if err := cfg.ApplyKafkaConfig("remote.storage.enable", "maybe"); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("remote.storage.enable=maybe: %v", err)
	}
	ds, err := h.CreateDataset("cold", cfg)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := ds.Partition(0)
	var want []string
	for i := range 100 {
		v := fmt.Sprintf("v%03d-%s", i, strings.Repeat("y", 150))
		want = append(want, v)
		if _, err := p.Produce(batch(t, v), true); err != nil {
			t.Fatal(err)
		}
	}
	// local.retention.bytes=-2: local copies stay, uploads happen anyway.
	waitHub(t, "uploads", func() bool { return p.Log().TierStats().RemoteSegments > 2 })
	if p.Log().TierStats().ColdSegments != 0 {
		t.Fatal("local copies deleted without a local retention")
	}
	cur := ds.Config()
	cur.LocalRetentionBytes = 4096
	if _, changed, err := h.AlterDataset("cold", cur, false); err != nil || !strings.Contains(strings.Join(changed, ","), "local.retention.bytes=-2->4096") {
		t.Fatalf("AlterDataset: %v %v", changed, err)
	}
	waitHub(t, "local deletion", func() bool { return p.Log().TierStats().ColdSegments > 2 })
	if got := values(t, p); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("read %d records, want %d", len(got), len(want))
	}
	if got := ds.Config().KafkaConfigs()["remote.storage.enable"]; got != "true" {
		t.Fatalf("remote.storage.enable = %q", got)
	}
	off := cur
	off.RemoteStorage = false
	if _, _, err := h.AlterDataset("cold", off, false); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("turning remote storage off while open: %v", err)
	}
	if err := h.DeleteDataset("cold"); err != nil {
		t.Fatal(err)
	}
	if objs, err := store.List(context.Background(), "cold/"); err != nil || len(objs) != 0 {
		t.Fatalf("after DeleteDataset the store holds %d objects (%v)", len(objs), err)
	}
	cfg.LocalRetentionBytes = 4096
	ds, err = h.CreateDataset("cold", cfg)
	if err != nil {
		t.Fatal(err)
	}
	p, _ = ds.Partition(0)
	if p.HighWatermark() != 0 {
		t.Fatalf("a new dataset of a deleted name starts at %d", p.HighWatermark())
	}
	// Its cold reads never see the old dataset's cached chunks.
	want = want[:0]
	for i := range 100 {
		v := fmt.Sprintf("new%03d-%s", i, strings.Repeat("w", 150))
		want = append(want, v)
		if _, err := p.Produce(batch(t, v), true); err != nil {
			t.Fatal(err)
		}
	}
	waitHub(t, "local deletion", func() bool { return p.Log().TierStats().ColdSegments > 2 })
	if got := values(t, p); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("the new dataset read %d records, want its %d", len(got), len(want))
	}
}

func waitHub(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for range 3000 { // 30s: a loaded machine makes versitygw slow (TestColdStoreMergesSmall/s3 took over 10s on main)
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

// TestColdStoreModel runs random steps against a dataset on the directory
// store (produce, restart, change the local and total retention, enforce
// retention) and checks after each that the partition holds exactly the
// model's records from its start offset, that the start offset only moves
// with total retention, and that a read from any offset in range succeeds.
func TestColdStoreModel(t *testing.T) {
	dir := t.TempDir()
	store, err := objstore.NewDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	opts := testOptions(dir)
	opts.ColdStore, opts.RetentionCheckInterval = store, time.Hour
	h := openHub(t, opts)
	defer func() { h.Close() }()
	if _, err := h.CreateDataset("m", DatasetConfig{RemoteStorage: true, SegmentBytes: 4096, LocalRetentionBytes: 8192}); err != nil {
		t.Fatal(err)
	}
	var model []string
	rng := uint64(7)
	rand := func(n int) int { rng = rng*6364136223846793005 + 1442695040888963407; return int(rng>>33) % n }
	totalLimit := false
	for step := range 60 {
		ds, _ := h.Dataset("m")
		p, _ := ds.Partition(0)
		switch op := rand(10); {
		case op < 6:
			for range 1 + rand(30) {
				v := fmt.Sprintf("s%d-%d-%s", step, len(model), strings.Repeat("z", rand(300)))
				if _, err := p.Produce(batch(t, v), true); err != nil {
					t.Fatal(err)
				}
				model = append(model, v)
			}
		case op == 6:
			h.Close()
			h = openHub(t, opts)
		case op == 7:
			cfg := ds.Config()
			cfg.LocalRetentionBytes = int64(4096 * (1 + rand(4)))
			if _, _, err := h.AlterDataset("m", cfg, false); err != nil {
				t.Fatal(err)
			}
		case op == 8 && step > 40:
			cfg := ds.Config()
			cfg.RetentionBytes = int64(4096 * (6 + rand(6)))
			if _, _, err := h.AlterDataset("m", cfg, false); err != nil {
				t.Fatal(err)
			}
			totalLimit = true
		default:
			h.EnforceRetention()
			p.Log().Roll()
		}
		ds, _ = h.Dataset("m")
		p, _ = ds.Partition(0)
		h.EnforceRetention()
		start, hw := p.StartOffset(), p.HighWatermark()
		if hw != int64(len(model)) || (!totalLimit && start != 0) {
			t.Fatalf("step %d: partition [%d, %d), model has %d records (total limit %v)", step, start, hw, len(model), totalLimit)
		}
		got := values(t, p)
		if strings.Join(got, "\n") != strings.Join(model[start:], "\n") {
			t.Fatalf("step %d: read %d records from %d, model has %d", step, len(got), start, len(model)-int(start))
		}
		if hw > start {
			off := start + int64(rand(int(hw-start)))
			it := p.Log().NewIterator(off)
			if !it.Next() || string(it.Record().Value) != model[off] {
				t.Fatalf("step %d: read at %d: %v", step, off, it.Err())
			}
		}
	}
	ds, _ := h.Dataset("m")
	p, _ := ds.Partition(0)
	waitHub(t, "cold segments", func() bool { h.EnforceRetention(); return p.Log().TierStats().ColdSegments > 2 })
	start := p.StartOffset()
	if got := values(t, p); strings.Join(got, "\n") != strings.Join(model[start:], "\n") {
		t.Fatalf("at the end: read %d records from %d, model has %d", len(got), start, len(model)-int(start))
	}
	if st := h.Stats(); st[0].RemoteSegments == 0 || st[0].LocalStartOffset <= start {
		t.Fatalf("stats %+v", st[0])
	}
}

// openColdHub opens a hub with a new data directory on store, with
// retention checked often, and creates the dataset name there.
func openColdHub(t *testing.T, store objstore.Store, name string, cfg DatasetConfig) (*Hub, *Partition) {
	t.Helper()
	opts := testOptions(t.TempDir())
	opts.ColdStore, opts.RetentionCheckInterval = store, 10*time.Millisecond
	h := openHub(t, opts)
	ds, err := h.CreateDataset(name, cfg)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := ds.Partition(0)
	return h, p
}

// TestColdStoreFencing: two hubs pointed at one prefix of the cold store
// (the directory store, and S3 with If-Match on versitygw). The second
// reads the manifest, the first writes it again, so the second's first
// manifest write is refused: it stops uploading and keeps its local
// segments, while the first goes on uploading, and its segments read back
// whole (the second never overwrote an object the manifest lists).
func TestColdStoreFencing(t *testing.T) {
	stores := map[string]func(t *testing.T) objstore.Store{
		"dir": func(t *testing.T) objstore.Store {
			s, err := objstore.NewDir(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		"s3": func(t *testing.T) objstore.Store {
			s, err := objstore.NewS3(s3test.Start(t).Options("fence/"))
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
	}
	for name, newStore := range stores {
		t.Run(name, func(t *testing.T) {
			store := newStore(t)
			cfg := DatasetConfig{RemoteStorage: true, SegmentBytes: 4096, LocalRetentionBytes: 4096}
			open := func() (*Hub, *Partition) { return openColdHub(t, store, "f", cfg) }
			var want []string
			produce := func(p *Partition, tag string, n int, keep bool) {
				t.Helper()
				for i := range n {
					v := fmt.Sprintf("%s%03d-%s", tag, i, strings.Repeat("z", 150))
					if keep {
						want = append(want, v)
					}
					if _, err := p.Produce(batch(t, v), true); err != nil {
						t.Fatal(err)
					}
				}
			}
			h1, p1 := open()
			defer h1.Close()
			produce(p1, "a", 60, true)
			waitHub(t, "the first hub's uploads", func() bool { return p1.Log().TierStats().RemoteSegments > 2 })

			h2, p2 := open()
			defer h2.Close()
			before := p1.Log().TierStats().RemoteSegments
			produce(p1, "b", 60, true)
			waitHub(t, "the first hub's next uploads", func() bool { return p1.Log().TierStats().RemoteSegments > before })

			// The second hub takes records until its first manifest write
			// is refused; then it refuses them with a storage error that
			// names the fencing (its disk would only grow).
			var fencedErr error
			for i := 0; i < 400 && fencedErr == nil; i++ {
				v := fmt.Sprintf("x%03d-%s", i, strings.Repeat("z", 150))
				if _, err := p2.Produce(batch(t, v), true); err != nil {
					fencedErr = err
				} else if i >= 60 {
					time.Sleep(10 * time.Millisecond)
				}
			}
			if !errors.Is(fencedErr, ErrStorage) || !errors.Is(fencedErr, wlog.ErrTierFenced) {
				t.Fatalf("produce to the fenced hub: %v; want an ErrStorage wrapping log.ErrTierFenced", fencedErr)
			}
			if !p2.Log().TierStats().Fenced {
				t.Fatal("the hub refusing produce is not fenced")
			}
			if st := p2.Log().TierStats(); st.Uploaded != 0 || st.LocalDeleted != 0 {
				t.Fatalf("the fenced hub: %+v; want nothing uploaded, its segments local", st)
			}
			if _, err := p2.Produce(batch(t, "y"), true); !errors.Is(err, wlog.ErrTierFenced) {
				t.Fatalf("a second produce to the fenced hub: %v; want log.ErrTierFenced", err)
			}
			if got := values(t, p2); len(got) == 0 {
				t.Fatal("the fenced hub reads nothing back; its local segments should stay readable")
			}

			before = p1.Log().TierStats().RemoteSegments
			produce(p1, "c", 60, true)
			waitHub(t, "the first hub's uploads after the fencing", func() bool {
				st := p1.Log().TierStats()
				return st.RemoteSegments > before && st.ColdSegments > 4
			})
			if p1.Log().TierStats().Fenced {
				t.Fatal("the first hub was fenced")
			}
			if got := values(t, p1); strings.Join(got, ",") != strings.Join(want, ",") {
				t.Fatalf("the first hub read %d records, want its %d", len(got), len(want))
			}
			m, err := wlog.ReadManifest(context.Background(), (&coldTier{s: store, prefix: "f/0/"}))
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range m.Segments {
				if s.Tag != m.Writer {
					t.Fatalf("manifest written by %s lists segment %d uploaded by %s", m.Writer, s.Base, s.Tag)
				}
			}
		})
	}
}

// TestColdStoreCompacted: a compacted dataset with remote storage. Its
// compacted segments go to the store again (the manifest swaps to them),
// local copies go after, and reading from offset 0 gives the latest value
// of every key, also on a new hub with an empty data directory.
func TestColdStoreCompacted(t *testing.T) {
	store, err := objstore.NewDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	// Local copies stay (-2) until the compacted versions are uploaded.
	cfg := DatasetConfig{RemoteStorage: true, CleanupPolicy: "compact", SegmentBytes: 4096}
	for _, k := range []string{"local.retention.ms", "local.retention.bytes"} {
		if err := cfg.ApplyKafkaConfig(k, "-2"); err != nil {
			t.Fatal(err)
		}
	}
	open := func() (*Hub, *Partition) { return openColdHub(t, store, "k", cfg) }
	h, p := open()
	defer h.Close()
	latest := map[string]string{}
	const n = 400
	for i := range n {
		k, v := fmt.Sprintf("key%02d", i%20), fmt.Sprintf("v%03d-%s", i, strings.Repeat("q", 100))
		latest[k] = v
		var b codecs.Builder
		b.Append(time.Now().UnixMilli(), []byte(k), []byte(v), nil)
		out, _ := b.Build()
		if _, err := p.Produce(out, true); err != nil {
			t.Fatal(err)
		}
	}
	p.Log().Roll() // every record in a segment that goes to the store
	read := func(p *Partition) (map[string]string, int) {
		t.Helper()
		got, count := map[string]string{}, 0
		it := p.Log().NewIterator(p.StartOffset())
		for it.Next() {
			got[string(it.Record().Key)] = string(it.Record().Value)
			count++
		}
		if it.Err() != nil {
			t.Fatal(it.Err())
		}
		return got, count
	}
	// Compact as segments seal, until the store holds compacted versions
	// of them all (some segments uploaded twice); then local copies go.
	rewritten := 0
	waitHub(t, "compacted segments in the store", func() bool {
		c := h.Compact()
		rewritten += c
		st := p.Log().TierStats()
		// All local (the active segment is empty), and the store holds
		// every segment at its compacted size.
		return rewritten >= 10 && c == 0 && st.ColdSegments == 0 && st.RemoteBytes == p.Log().Size() &&
			st.RemoteSegments == p.Log().Stats().Rolls && st.Uploaded > st.RemoteSegments
	})
	cur := p.ds.Config()
	cur.LocalRetentionBytes = 1
	if _, _, err := h.AlterDataset("k", cur, false); err != nil {
		t.Fatal(err)
	}
	// Gone but the last closed segment (and the empty active one): the
	// cold ones may have merged into fewer.
	waitHub(t, "local copies gone", func() bool { return p.Log().TierStats().ColdSegments > 0 && p.Log().Segments() <= 2 })
	got, count := read(p)
	if !maps.Equal(got, latest) || count >= n {
		t.Fatalf("after compaction: %d records, %d keys; want the 20 latest values of %d records, compacted", count, len(got), n)
	}
	h.Close()
	h2, p2 := open()
	defer h2.Close()
	if got, count2 := read(p2); !maps.Equal(got, latest) || count2 != count {
		t.Fatalf("a new hub on the prefix: %d records, %d keys; want the 20 latest values in %d records", count2, len(got), count)
	}
}

// TestColdUploadPace: with ColdUploadBytesPerSecond, an upload of a
// segment's bytes takes the time that rate allows, keeps its size known
// up front (one PUT to S3), stores every byte, and stops when its context
// ends; without it, the same upload is not held back.
func TestColdUploadPace(t *testing.T) {
	const size, bps = 2 << 20, 4 << 20
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i * 13)
	}
	for _, paced := range []bool{false, true} {
		store, err := objstore.NewDir(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		opts := testOptions(t.TempDir())
		opts.ColdStore = store
		if paced {
			opts.ColdUploadBytesPerSecond = bps
		}
		h := openHub(t, opts)
		tier := h.coldTier("ds", 0)
		if r := tier.paced(context.Background(), strings.NewReader("x")); r.(interface{ Len() int }).Len() != 1 {
			t.Fatalf("paced=%v: the reader lost its Len", paced)
		}
		start := time.Now()
		if err := tier.Put(context.Background(), "seg", bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
		took := time.Since(start)
		// The limiter starts with a full burst: a tenth of a second.
		if floor := time.Duration(size-bps/10) * time.Second / bps; paced && took < floor {
			t.Errorf("paced at %d B/s: %d bytes took %v, want at least %v", bps, size, took, floor)
		} else if !paced && took > 5*time.Second {
			t.Errorf("unpaced: %d bytes took %v", size, took)
		}
		rc, err := store.Get(context.Background(), "ds/0/seg", 0, -1)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("paced=%v: stored %d bytes (%v), want the %d put", paced, len(got), err, size)
		}
		if paced {
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			err := tier.Put(ctx, "cut", bytes.NewReader(data))
			cancel()
			if err == nil {
				t.Fatal("a paced upload outlived its context")
			}
		}
	}
}

// fileSection is a reader of a whole file with objstore.FileSection, as
// the log gives a sealed segment, that counts its reads.
type fileSection struct {
	*io.SectionReader
	f     *os.File
	reads int
}

func (s *fileSection) Read(p []byte) (int, error) {
	s.reads++
	return s.SectionReader.Read(p)
}

func (s *fileSection) Len() int { return int(s.Size()) }

func (s *fileSection) FileSection() (*os.File, int64, int64) { return s.f, 0, s.Size() }

// TestColdUploadPaceSendfile: a paced upload of a segment file to S3
// (versitygw) keeps its FileSection, so the store sends the file itself
// (sendfile: the reader is never read), and in steps it asks the pace
// for: it takes the time the rate allows, not much more, and stores
// every byte.
func TestColdUploadPaceSendfile(t *testing.T) {
	const size, bps = 4 << 20, 4 << 20
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i * 13)
	}
	path := filepath.Join(t.TempDir(), "seg")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	store, err := objstore.NewS3(s3test.Start(t).Options("pace/"))
	if err != nil {
		t.Fatal(err)
	}
	tier := &coldTier{s: store, prefix: "ds/0/", slots: make(chan struct{}, 1), pace: newPace(bps)}
	r := &fileSection{SectionReader: io.NewSectionReader(f, 0, size), f: f}
	start := time.Now()
	if err := tier.Put(context.Background(), "seg", r); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	if r.reads > 0 {
		t.Errorf("the store read the segment %d times instead of sending its file", r.reads)
	}
	// The limiter starts with a full burst: a tenth of a second.
	floor := time.Duration(size-bps/10) * time.Second / bps
	if took < floor || took > 2*floor+time.Second {
		t.Errorf("paced at %d B/s: %d bytes took %v, want %v to %v", bps, size, took, floor, 2*floor+time.Second)
	}
	rc, err := store.Get(context.Background(), "ds/0/seg", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("stored %d bytes (%v), want the %d put", len(got), err, size)
	}
}

// TestColdStoreCompactsCold: a compacted dataset whose segments went to
// the store before any compaction (a small local retention). The hub's
// compaction rewrites them in the store: reading from offset 0 gives each
// key's latest value once, the store holds fewer bytes, and a new hub on
// the prefix with an empty data directory reads the same. On the
// directory store and on S3 (versitygw: conditional manifest writes with
// If-Match).
func TestColdStoreCompactsCold(t *testing.T) {
	stores := map[string]func(t *testing.T) objstore.Store{
		"dir": func(t *testing.T) objstore.Store {
			s, err := objstore.NewDir(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		"s3": func(t *testing.T) objstore.Store {
			s, err := objstore.NewS3(s3test.Start(t).Options("compact/"))
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
	}
	for name, newStore := range stores {
		t.Run(name, func(t *testing.T) {
			store := newStore(t)
			cfg := DatasetConfig{RemoteStorage: true, CleanupPolicy: "compact", SegmentBytes: 4096, LocalRetentionBytes: 1}
			h, p := openColdHub(t, store, "k", cfg)
			defer func() { h.Close() }()
			latest := map[string]string{}
			const n = 400
			for i := range n {
				k, v := fmt.Sprintf("key%02d", i%20), fmt.Sprintf("v%03d-%s", i, strings.Repeat("q", 100))
				latest[k] = v
				var b codecs.Builder
				b.Append(time.Now().UnixMilli(), []byte(k), []byte(v), nil)
				out, _ := b.Build()
				if _, err := p.Produce(out, true); err != nil {
					t.Fatal(err)
				}
			}
			p.Log().Roll()
			waitHub(t, "segments cold", func() bool {
				segs := p.Log().Stats().Rolls
				return p.Log().TierStats().ColdSegments >= segs-1
			})
			before := p.Log().TierStats().RemoteBytes
			if c := h.Compact(); c == 0 {
				t.Fatal("the compaction rewrote nothing")
			}
			read := func(p *Partition) (map[string]string, int) {
				t.Helper()
				got, count := map[string]string{}, 0
				it := p.Log().NewIterator(p.StartOffset())
				for it.Next() {
					got[string(it.Record().Key)] = string(it.Record().Value)
					count++
				}
				if it.Err() != nil {
					t.Fatal(it.Err())
				}
				return got, count
			}
			if got, count := read(p); !maps.Equal(got, latest) || count != len(latest) {
				t.Fatalf("after compacting the cold part: %d records, %d keys; want the %d latest values once", count, len(got), len(latest))
			}
			// Uploaded again: the last closed segment, compacted locally.
			waitHub(t, "the store settled", func() bool {
				st := p.Log().TierStats()
				return st.RemoteEnd == p.Log().HighWatermark() && st.RemoteBytes < before/4
			})
			h.Close()
			h2, p2 := openColdHub(t, store, "k", cfg)
			defer h2.Close()
			if got, count := read(p2); !maps.Equal(got, latest) || count != len(latest) {
				t.Fatalf("a new hub on the prefix: %d records, %d keys; want the %d latest values once", count, len(got), len(latest))
			}
		})
	}
}

// TestPacedReaderSteps: a paced upload read in small pieces (minio-go
// reads 64 KiB at a time) waits for the limiter once per paceStep, not
// once per read, and takes from it exactly the bytes it sends: a step
// is cut to what the reader has left, so small objects (indexes) and an
// object's tail take no more than their size.
func TestPacedReaderSteps(t *testing.T) {
	const size = 3*paceStep + 5
	// A full burst and a rate too slow to refill it in the test: the
	// tokens left tell what the reads took.
	lim := rate.NewLimiter(1, 16<<20)
	tokens := func() int { return int(lim.Tokens() + 0.5) }
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i * 7)
	}
	p := &pacedReader{ctx: context.Background(), r: bytes.NewReader(data), pace: lim}
	piece := make([]byte, 64<<10)
	if n, err := p.Read(piece); n != len(piece) || err != nil {
		t.Fatalf("Read = %d, %v", n, err)
	}
	if got, want := tokens(), 16<<20-paceStep; got != want {
		t.Fatalf("after one 64 KiB read the limiter holds %d tokens, want %d (a step taken)", got, want)
	}
	var out bytes.Buffer
	out.Write(piece)
	for {
		n, err := p.Read(piece)
		out.Write(piece[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(out.Bytes(), data) {
		t.Fatalf("read %d bytes, not the %d given", out.Len(), size)
	}
	if got, want := tokens(), 16<<20-size; got != want {
		t.Fatalf("after the whole object the limiter holds %d tokens, want %d (its size taken)", got, want)
	}
}

// countingGets is a store that counts its GET requests.
type countingGets struct {
	objstore.Store
	gets atomic.Int64
}

func (c *countingGets) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	c.gets.Add(1)
	return c.Store.Get(ctx, key, off, n)
}

// TestColdStoreMergesSmall: a dataset on the directory store and on S3
// (versitygw) whose segments roll early (every few produces, as
// segment.ms or idle rolls do) and all go to the store. The tier merges
// the small cold segments into segments of up to segment.bytes: a
// consumer reading from offset 0 while they merge under it reads every
// record exactly once, in order, and so does a new hub on the prefix,
// which makes far fewer GET requests for it than there were objects.
func TestColdStoreMergesSmall(t *testing.T) {
	stores := map[string]func(t *testing.T) objstore.Store{
		"dir": func(t *testing.T) objstore.Store {
			s, err := objstore.NewDir(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		"s3": func(t *testing.T) objstore.Store {
			s, err := objstore.NewS3(s3test.Start(t).Options("merge/"))
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
	}
	for name, newStore := range stores {
		t.Run(name, func(t *testing.T) {
			store := newStore(t)
			cfg := DatasetConfig{RemoteStorage: true, SegmentBytes: 64 << 10, LocalRetentionBytes: 1}
			h, p := openColdHub(t, store, "m", cfg)
			defer func() { h.Close() }()
			const n = 600
			// The consumer: from 0, a few hundred bytes at a time,
			// until it has every record.
			type got struct {
				vals []string
				err  error
			}
			done := make(chan got, 1)
			go func() {
				var g got
				var it codecs.RecordIter
				for next := int64(0); next < n; {
					secs, err := p.Log().Read(nil, next, 300)
					if err != nil {
						if errors.Is(err, wlog.ErrOutOfRange) && next >= p.Log().HighWatermark() {
							time.Sleep(time.Millisecond) // caught up with the producer
							continue
						}
						g.err = err
						break
					}
					for i := range secs {
						b, err := secs[i].AppendTo(nil)
						secs[i].Release()
						if err != nil {
							g.err = err
							break
						}
						for len(b) > 0 {
							hd, _ := codecs.ParseHeader(b)
							if err := it.Reset(b[:hd.Size()]); err != nil {
								g.err = err
								break
							}
							for it.Next() {
								if r := it.Record(); r.Offset >= next {
									if r.Offset != next {
										g.err = fmt.Errorf("offset %d after %d", r.Offset, next-1)
									}
									g.vals = append(g.vals, string(r.Value))
									next++
								}
							}
							b = b[hd.Size():]
						}
					}
					if g.err != nil {
						break
					}
					if len(secs) == 0 {
						time.Sleep(time.Millisecond)
					}
				}
				done <- g
			}()
			var want []string
			for i := range n {
				v := fmt.Sprintf("v%04d-%s", i, strings.Repeat("m", 200))
				want = append(want, v)
				var b codecs.Builder
				b.Append(time.Now().UnixMilli(), nil, []byte(v), nil)
				out, _ := b.Build()
				if _, err := p.Produce(out, true); err != nil {
					t.Fatal(err)
				}
				if i%4 == 3 {
					p.Log().Roll()
				}
			}
			p.Log().Roll()
			rolled := p.Log().Stats().Rolls
			waitHub(t, "small segments merged", func() bool {
				p.Log().EnforceRetention() // kicks the tier
				st := p.Log().TierStats()
				return st.RemoteEnd == p.Log().HighWatermark() && st.MergedSegments > 0 && st.RemoteSegments <= rolled/10
			})
			g := <-done
			if g.err != nil {
				t.Fatalf("the consumer: %v", g.err)
			}
			if !slices.Equal(g.vals, want) {
				t.Fatalf("the consumer read %d records, not the %d produced once each", len(g.vals), n)
			}
			st := p.Log().TierStats()
			t.Logf("%d segments rolled, %d in the store after merging (%d merged)", rolled, st.RemoteSegments, st.MergedSegments)
			h.Close()

			counted := &countingGets{Store: store}
			h2, p2 := openColdHub(t, counted, "m", cfg)
			defer h2.Close()
			g0 := counted.gets.Load()
			var vals []string
			it := p2.Log().NewIterator(0)
			for it.Next() {
				vals = append(vals, string(it.Record().Value))
			}
			if it.Err() != nil {
				t.Fatal(it.Err())
			}
			if !slices.Equal(vals, want) {
				t.Fatalf("a new hub on the prefix read %d records, not the %d produced once each", len(vals), n)
			}
			if gets := counted.gets.Load() - g0; gets >= rolled/4 {
				t.Fatalf("a catch-up read from 0 made %d GETs for %d rolled segments", gets, rolled)
			} else {
				t.Logf("a catch-up read from 0 on a new hub: %d GETs", gets)
			}
		})
	}
}
