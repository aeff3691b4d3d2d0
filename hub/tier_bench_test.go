package hub

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weirhub/weir/codecs"
	"github.com/weirhub/weir/internal/objstore"
	"github.com/weirhub/weir/internal/objstore/s3test"
	wlog "github.com/weirhub/weir/log"
)

// BenchmarkCatchUp reads a 64 MiB partition from offset 0 to its end in
// 1 MiB ReadBatches calls: hot (local segment files) and cold (only in the
// cold store, through an empty cold cache each run, as a new server or a
// consumer far behind sees it), with the directory store and with S3
// (versitygw over loopback). It reports the S3 requests per GiB read.
//
//	go test ./hub -run '^$' -bench CatchUp -benchtime 5x
func BenchmarkCatchUp(b *testing.B) {
	const total = 64 << 20
	write := func(b *testing.B, dir string, tier wlog.Tier) int64 {
		l, err := wlog.Open(dir, wlog.Options{SegmentBytes: 8 << 20, Sync: wlog.SyncNever, Tier: tier, LocalRetentionBytes: 1})
		if err != nil {
			b.Fatal(err)
		}
		defer l.Close()
		val := make([]byte, 1000)
		for i := range val {
			val[i] = byte(i * 7)
		}
		var n int64
		for n < total {
			var bb codecs.Builder
			for range 100 {
				bb.Append(0, nil, val, nil)
			}
			out, _ := bb.Build()
			if _, err := l.Append(out); err != nil {
				b.Fatal(err)
			}
			n += int64(len(out))
		}
		l.Roll()
		if tier != nil {
			for i := 0; l.TierStats().RemoteSegments < l.Stats().Rolls; i++ {
				if i > 6000 {
					b.Fatalf("not uploaded: %+v", l.TierStats())
				}
				l.EnforceRetention()
				time.Sleep(10 * time.Millisecond)
			}
		}
		return n
	}
	readAll := func(b *testing.B, l *wlog.Log) int64 {
		var buf []byte
		var n int64
		for off := l.StartOffset(); off < l.HighWatermark(); {
			var err error
			buf, err = l.ReadBatches(buf[:0], off, 1<<20)
			if err != nil {
				b.Fatal(err)
			}
			for p := buf; len(p) > 0; {
				h, _ := codecs.ParseHeader(p)
				off = h.NextOffset()
				p = p[h.Size():]
			}
			n += int64(len(buf))
		}
		return n
	}
	b.Run("hot", func(b *testing.B) {
		dir := b.TempDir()
		n := write(b, dir, nil)
		l, err := wlog.Open(dir, wlog.Options{Sync: wlog.SyncNever})
		if err != nil {
			b.Fatal(err)
		}
		defer l.Close()
		b.SetBytes(n)
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			readAll(b, l)
		}
	})
	cold := func(b *testing.B, s objstore.Store) {
		store := &countingStore{Store: s}
		var st objstore.Store = store
		if d, ok := s.(*objstore.Dir); ok {
			st = countingDir{store, d}
		}
		tier := (&coldTier{s: st, prefix: "bench/0/", slots: make(chan struct{}, 4)}).tier()
		n := write(b, b.TempDir(), tier)
		b.SetBytes(n)
		b.ReportAllocs()
		store.gets.Store(0)
		var misses int64
		b.ResetTimer()
		for b.Loop() {
			b.StopTimer()
			cache, err := wlog.NewColdCache(b.TempDir(), 1<<30)
			if err != nil {
				b.Fatal(err)
			}
			l, err := wlog.Open(b.TempDir(), wlog.Options{Sync: wlog.SyncNever, Tier: tier, ColdCache: cache})
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			if got := readAll(b, l); got < n {
				b.Fatalf("read %d bytes of %d", got, n)
			}
			b.StopTimer()
			misses += cache.Stats().Misses
			l.Close()
			b.StartTimer()
		}
		b.ReportMetric(float64(store.gets.Load())/float64(b.N)/(float64(n)/(1<<30)), "GETs/GiB")
		b.ReportMetric(float64(misses)/float64(b.N), "waits/op")
	}
	b.Run("cold-dir", func(b *testing.B) {
		store, err := objstore.NewDir(b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		cold(b, store)
	})
	b.Run("cold-s3", func(b *testing.B) {
		srv := s3test.Start(b)
		store, err := objstore.NewS3(srv.Options(fmt.Sprint("b", time.Now().UnixNano())))
		if err != nil {
			b.Fatal(err)
		}
		cold(b, store)
	})
}

// BenchmarkProduceWhileUploading appends 100 KiB batches to a log with 1
// MiB segments: without a tier, and with every closed segment uploaded to
// the directory store, or to S3 (versitygw over loopback), and its local
// copy deleted, in the background.
//
//	go test ./hub -run '^$' -bench ProduceWhileUploading
func BenchmarkProduceWhileUploading(b *testing.B) {
	val := make([]byte, 1000)
	var bb codecs.Builder
	for range 100 {
		bb.Append(0, nil, val, nil)
	}
	out, _ := bb.Build()
	stores := []struct {
		name string
		open func(b *testing.B) (objstore.Store, error)
	}{
		{"local", nil},
		{"tiered", func(b *testing.B) (objstore.Store, error) { return objstore.NewDir(b.TempDir()) }},
		{"tiered-s3", func(b *testing.B) (objstore.Store, error) {
			return objstore.NewS3(s3test.Start(b).Options(fmt.Sprint("p", time.Now().UnixNano())))
		}},
	}
	for _, st := range stores {
		tiered := st.open != nil
		b.Run(st.name, func(b *testing.B) {
			opts := wlog.Options{SegmentBytes: 1 << 20, Sync: wlog.SyncNever}
			if tiered {
				store, err := st.open(b)
				if err != nil {
					b.Fatal(err)
				}
				opts.Tier = &coldTier{s: store, prefix: "p/0/", slots: make(chan struct{}, 4)}
				opts.LocalRetentionBytes = 4 << 20
			}
			l, err := wlog.Open(b.TempDir(), opts)
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			batch := append([]byte(nil), out...)
			b.SetBytes(int64(len(batch)))
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				if _, err := l.Append(batch); err != nil {
					b.Fatal(err)
				}
				if i%64 == 0 {
					l.EnforceRetention()
				}
			}
			b.StopTimer()
			if tiered {
				b.ReportMetric(float64(l.TierStats().Uploaded), "uploaded-segments")
			}
		})
	}
}

// countingStore counts the requests that read a store: every GET, of
// chunks, indexes and manifests.
type countingStore struct {
	objstore.Store
	gets atomic.Int64
}

// countingDir is a countingStore over a directory, whose objects are
// read as files (not counted: they are not requests).
type countingDir struct {
	*countingStore
	d *objstore.Dir
}

func (s countingDir) Open(key string) (*os.File, error) { return s.d.Open(key) }

func (s *countingStore) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	s.gets.Add(1)
	return s.Store.Get(ctx, key, off, n)
}

// countingPuts counts the requests that write an S3 store: PUTs of
// segments, indexes and manifests.
type countingPuts struct {
	*objstore.S3
	puts atomic.Int64
}

func (s *countingPuts) Put(ctx context.Context, key string, r io.Reader) error {
	s.puts.Add(1)
	return s.S3.Put(ctx, key, r)
}

func (s *countingPuts) PutIfAbsent(ctx context.Context, key string, r io.Reader) error {
	s.puts.Add(1)
	return s.S3.PutIfAbsent(ctx, key, r)
}

func (s *countingPuts) PutIfMatch(ctx context.Context, key string, r io.Reader, version string) (string, error) {
	s.puts.Add(1)
	return s.S3.PutIfMatch(ctx, key, r, version)
}

// s3puts is the PUTs s has counted, 0 for a store that counts none.
func s3puts(s objstore.Store) int64 {
	if c, ok := s.(*countingPuts); ok {
		return c.puts.Load()
	}
	return 0
}

// BenchmarkProduceUploadRatio is BenchmarkProduceWhileUploading as a
// ratio that load on the machine does not swing: in each op, pairs of
// rounds append the same 256 MiB (100 KiB batches, 8 MiB segments) to a
// new log without a tier and to one whose closed segments go to S3
// (versitygw over loopback) while it appends, in alternating order; both
// keep 32 MiB of segments on local disk. It reports the tiered/local
// ratio of the pairs, median, lowest and highest, of two measures:
// wall-clock throughput of the appends (what a producer sees, at the
// mercy of other load on the machine), and this process's CPU time
// (user+system, getrusage) for the appends and, when tiered, until every
// closed segment is uploaded: the throughput ratio on a machine whose
// cores are busy, with the store on another machine. Of the tiered
// rounds (medians) it reports what the uploads achieved, so that no ratio
// is bought by not uploading: upload-MB/s, the segment bytes uploaded over
// the time from the first append until the last segment is in the store;
// backlog-MiB, the closed segments not yet uploaded when the last append
// returned (uploads keep up when it stays near the segments in flight,
// one per log); and the CPU time versitygw used per GiB uploaded
// (gw-cpu-s/GiB, /proc/PID/stat), beside this process's own for the
// uploads (upload-cpu-s/GiB: the tiered round's CPU less the local
// one's), and the PUTs per GiB uploaded (of segments, indexes and
// manifests; the segments here are 8 MiB). Of all rounds it reports why
// a producer slows down: the share of the appends' wall-clock time that
// their thread spent runnable but waiting for a CPU, taken by other
// threads (local-runq-wait/wall, tiered-runq-wait/wall, medians;
// /proc/thread-self/schedstat).
//
// Sub-benchmarks: unpaced (the default) and paced=64MBps
// (Options.ColdUploadBytesPerSecond of 64 MB/s) to S3 on versitygw at
// normal priority; unpaced-gw-idle, unpaced to versitygw under SCHED_IDLE
// (s3test.Idle): an approach to a store on another machine, where the
// store's CPU (about four times this process's for the uploads, mostly
// the MD5 of every body) does not compete with the producer; and file:
// unpaced to the directory store (a file:// cold store, such as a NAS
// mount), where the store's own CPU is this process's. Quote unpaced
// beside unpaced-gw-idle: the first is the worst case of a store on the
// broker's own cores.
//
//	go test ./hub -run '^$' -bench 'ProduceUploadRatio/unpaced$' -benchtime 2x
//	go test ./hub -run '^$' -bench ProduceUploadRatio/unpaced-gw-idle -benchtime 2x
//	go test ./hub -run '^$' -bench 'ProduceUploadRatio/^paced' -benchtime 2x
//	go test ./hub -run '^$' -bench ProduceUploadRatio/file -benchtime 2x
func BenchmarkProduceUploadRatio(b *testing.B) {
	const total, pairs, segment = 256 << 20, 7, 8 << 20
	val := make([]byte, 1000)
	var bb codecs.Builder
	for range 100 {
		bb.Append(0, nil, val, nil)
	}
	out, _ := bb.Build()
	// The gateway of a sub-benchmark, started when it runs.
	gateway := func(b *testing.B, opts ...s3test.Option) (*countingPuts, func() time.Duration) {
		srv := s3test.Start(b, opts...)
		s3, err := objstore.NewS3(srv.Options(fmt.Sprint("r", time.Now().UnixNano())))
		if err != nil {
			b.Fatal(err)
		}
		return &countingPuts{S3: s3}, func() time.Duration {
			d, err := srv.CPU()
			if err != nil {
				b.Fatal(err)
			}
			return d
		}
	}
	type result struct {
		wall, used, gw time.Duration
		drained        time.Duration // tiered: from the first append until all is uploaded
		backlog        int64         // tiered: bytes of closed segments not uploaded after the appends
		uploaded       int64         // tiered: bytes uploaded
		waited         time.Duration // the appending thread runnable, waiting for a CPU
	}
	round := func(b *testing.B, store objstore.Store, gwCPU func() time.Duration, tiered bool, n int, pace int64) (r result) {
		// Both keep 32 MiB on local disk: the local log deletes its
		// oldest segments as the tiered one deletes uploaded copies.
		opts := wlog.Options{SegmentBytes: segment, Sync: wlog.SyncNever, RetentionBytes: 4 * segment}
		if tiered {
			t := &coldTier{s: store, prefix: fmt.Sprintf("r%d/0/", n), slots: make(chan struct{}, 4)}
			if pace > 0 {
				t.pace = newPace(pace)
			}
			opts.Tier = t.tier()
			opts.RetentionBytes, opts.LocalRetentionBytes = 0, 4*segment
		}
		l, err := wlog.Open(b.TempDir(), opts)
		if err != nil {
			b.Fatal(err)
		}
		defer l.Close()
		batch := append([]byte(nil), out...)
		runtime.GC()
		// The appends on one thread, whose time waiting for a CPU
		// the kernel counts.
		runtime.LockOSThread()
		wait0 := runqWait(b)
		start, startCPU, startGW := time.Now(), s3test.ProcessCPU(b), gwCPU()
		for i, n := 0, 0; n < total; i, n = i+1, n+len(batch) {
			if _, err := l.Append(batch); err != nil {
				b.Fatal(err)
			}
			if i%64 == 0 {
				l.EnforceRetention()
			}
		}
		r.wall = time.Since(start)
		r.waited = runqWait(b) - wait0
		runtime.UnlockOSThread()
		if tiered {
			// Every segment but the active one is closed.
			r.backlog = (l.Stats().Rolls - l.TierStats().RemoteSegments) * segment
		}
		for i := 0; tiered && l.TierStats().RemoteSegments < l.Stats().Rolls; i++ {
			if i > 12000 {
				b.Fatalf("not uploaded: %+v", l.TierStats())
			}
			l.EnforceRetention()
			time.Sleep(5 * time.Millisecond)
		}
		r.drained = time.Since(start)
		r.used, r.gw = s3test.ProcessCPU(b)-startCPU, gwCPU()-startGW
		if tiered {
			r.uploaded = l.TierStats().RemoteBytes
		}
		return r
	}
	n := 0
	for _, sub := range []struct {
		name string
		gw   []s3test.Option // nil: the directory store
		pace int64
	}{
		{"unpaced", []s3test.Option{}, 0},
		{"unpaced-gw-idle", []s3test.Option{s3test.Idle()}, 0},
		{"paced=64MBps", []s3test.Option{}, 64e6},
		{"file", nil, 0},
	} {
		pace := sub.pace
		b.Run(sub.name, func(b *testing.B) {
			var store objstore.Store
			gwCPU := func() time.Duration { return 0 }
			if sub.gw != nil {
				store, gwCPU = gateway(b, sub.gw...)
			} else {
				dir, err := objstore.NewDir(b.TempDir())
				if err != nil {
					b.Fatal(err)
				}
				store = dir
			}
			var uploaded int64
			b.SetBytes(2 * pairs * total)
			var walls, cpus, rates, backlogs, gws, ups, lwaits, twaits []float64
			for b.Loop() {
				for p := range pairs {
					var lr, tr result
					if p%2 == 0 {
						lr = round(b, store, gwCPU, false, n, pace)
						tr = round(b, store, gwCPU, true, n+1, pace)
					} else {
						tr = round(b, store, gwCPU, true, n, pace)
						lr = round(b, store, gwCPU, false, n+1, pace)
					}
					n += 2
					gib := float64(tr.uploaded) / (1 << 30)
					uploaded += tr.uploaded
					walls = append(walls, float64(lr.wall)/float64(tr.wall))
					cpus = append(cpus, float64(lr.used)/float64(tr.used))
					rates = append(rates, float64(tr.uploaded)/1e6/tr.drained.Seconds())
					backlogs = append(backlogs, float64(tr.backlog)/(1<<20))
					gws = append(gws, tr.gw.Seconds()/gib)
					ups = append(ups, (tr.used-lr.used).Seconds()/gib)
					lwaits = append(lwaits, float64(lr.waited)/float64(lr.wall))
					twaits = append(twaits, float64(tr.waited)/float64(tr.wall))
				}
			}
			s3test.ReportRatios(b, "wall", walls)
			s3test.ReportRatios(b, "cpu", cpus)
			b.ReportMetric(s3test.Median(rates), "upload-MB/s")
			b.ReportMetric(s3test.Median(backlogs), "backlog-MiB")
			if sub.gw != nil {
				b.ReportMetric(s3test.Median(gws), "gw-cpu-s/GiB")
				b.ReportMetric(float64(s3puts(store))/(float64(uploaded)/(1<<30)), "PUTs/GiB")
			}
			b.ReportMetric(s3test.Median(ups), "upload-cpu-s/GiB")
			b.ReportMetric(s3test.Median(lwaits), "local-runq-wait/wall")
			b.ReportMetric(s3test.Median(twaits), "tiered-runq-wait/wall")
		})
	}
}

// runqWait is the time the calling thread has been runnable and waiting
// for a CPU, from /proc/thread-self/schedstat (its second field).
func runqWait(b *testing.B) time.Duration {
	buf, err := os.ReadFile("/proc/thread-self/schedstat")
	if err != nil {
		b.Fatal(err)
	}
	var run, wait int64
	if _, err := fmt.Sscan(string(buf), &run, &wait); err != nil {
		b.Fatalf("/proc/thread-self/schedstat %q: %v", buf, err)
	}
	return time.Duration(wait)
}
