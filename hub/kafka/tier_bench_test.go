package kafka

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhub/weir/codecs"
	"github.com/weirhub/weir/hub"
	"github.com/weirhub/weir/internal/objstore"
	"github.com/weirhub/weir/internal/objstore/s3test"
)

// catchUp is a 64 MiB partition, hot (local segment files) and cold (only
// in S3, versitygw over loopback), for a franz-go client to read from
// offset 0 to its end.
type catchUp struct {
	srv     *s3test.Server
	store   *countingS3
	dirs    map[bool]string // hot or cold: the data directory written
	cfgs    map[bool]hub.DatasetConfig
	bytes   int64
	records int64
}

func catchUpName(cold bool) string { return map[bool]string{false: "hot", true: "cold-s3"}[cold] }

func (c *catchUp) open(b *testing.B, dir string) *testBroker {
	return startBrokerOn(b, hub.Options{DataDir: dir, ColdStore: c.store,
		RetentionCheckInterval: 20 * time.Millisecond, Defaults: hub.DatasetConfig{Fsync: "never"}}, Options{})
}

// newCatchUp writes both datasets: 64 MiB of 1000-byte records in 8 MiB
// segments, the cold one uploaded and its local copies deleted.
func newCatchUp(b *testing.B) *catchUp {
	const total = 64 << 20
	c := &catchUp{srv: s3test.Start(b), dirs: map[bool]string{}, cfgs: map[bool]hub.DatasetConfig{}}
	s3, err := objstore.NewS3(c.srv.Options(fmt.Sprint("c", time.Now().UnixNano())))
	if err != nil {
		b.Fatal(err)
	}
	c.store = &countingS3{S3: s3}
	val := make([]byte, 1000)
	for i := range val {
		val[i] = byte(i * 7)
	}
	for _, cold := range []bool{false, true} {
		name := catchUpName(cold)
		dir := b.TempDir()
		br := c.open(b, dir)
		cfg := hub.DatasetConfig{Partitions: 1, SegmentBytes: 8 << 20}
		if cold {
			cfg.RemoteStorage, cfg.LocalRetentionBytes = true, 1
		}
		ds, err := br.hub.CreateDataset(name, cfg)
		if err != nil {
			b.Fatal(err)
		}
		p, _ := ds.Partition(0)
		var n, records int64
		now := time.Now().UnixMilli()
		for n < total {
			var bb codecs.Builder
			for range 100 {
				bb.Append(now, nil, val, nil)
			}
			out, _ := bb.Build()
			n += int64(len(out))
			records += 100
			if _, err := p.Produce(out, false); err != nil {
				b.Fatal(err)
			}
		}
		if cold {
			p.Log().Roll()
			for i := 0; p.Log().TierStats().RemoteSegments < p.Log().Stats().Rolls; i++ {
				if i > 6000 {
					b.Fatalf("not uploaded: %+v", p.Log().TierStats())
				}
				p.Log().EnforceRetention()
				time.Sleep(10 * time.Millisecond)
			}
		}
		br.stop()
		c.dirs[cold], c.cfgs[cold] = dir, cfg
		c.bytes, c.records = n, records
	}
	return c
}

// countingS3 counts the GETs sent to an S3 store: of chunks, indexes and
// manifests.
type countingS3 struct {
	*objstore.S3
	gets atomic.Int64
}

func (s *countingS3) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	s.gets.Add(1)
	return s.S3.Get(ctx, key, off, n)
}

// read starts a server and has a new franz-go consumer read the partition
// from offset 0 to its end; it returns the time the read took (the
// server's start and stop not included).
func (c *catchUp) read(b *testing.B, cold bool) time.Duration {
	name := catchUpName(cold)
	var br *testBroker
	if cold {
		// A new server on the prefix with an empty data directory:
		// every segment is in S3 only, the cold cache empty.
		br = c.open(b, b.TempDir())
		if _, err := br.hub.CreateDataset(name, c.cfgs[cold]); err != nil {
			b.Fatal(err)
		}
	} else {
		br = c.open(b, c.dirs[cold])
	}
	defer br.stop()
	cl, err := kgo.NewClient(kgo.SeedBrokers(br.addr),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{name: {0: kgo.NewOffset().At(0)}}))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := time.Now()
	var got int64
	for got < c.records {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			b.Fatalf("consumed %d of %d records: %v", got, c.records, err)
		}
		fs.EachError(func(_ string, _ int32, err error) { b.Fatalf("fetch at record %d: %v", got, err) })
		got += int64(fs.NumRecords())
	}
	return time.Since(start)
}

// BenchmarkConsumeCatchUp is what a Kafka consumer sees of a cold
// partition: a franz-go client (default fetch sizes, records decoded)
// reads a 64 MiB partition from offset 0 to its end, hot (local segment
// files) and cold (only in S3, versitygw over loopback). Each op starts a
// server (untimed): on the data directory for hot, and for cold on an
// empty one pointed at the prefix, so that every segment is only in S3
// and the cold cache starts empty, as for a consumer far behind. hub's
// BenchmarkCatchUp is the same read without Kafka (raw batch bytes);
// BenchmarkConsumeCatchUpRatio alternates the two.
//
//	go test ./hub/kafka -run '^$' -bench ConsumeCatchUp -benchtime 4x
func BenchmarkConsumeCatchUp(b *testing.B) {
	c := newCatchUp(b)
	for _, cold := range []bool{false, true} {
		b.Run(catchUpName(cold), func(b *testing.B) {
			b.SetBytes(c.bytes)
			b.ReportAllocs()
			var d time.Duration
			for b.Loop() {
				d += c.read(b, cold)
			}
			b.ReportMetric(float64(c.bytes)*float64(b.N)/1e6/d.Seconds(), "read-MB/s")
		})
	}
}

// BenchmarkConsumeCatchUpRatio is BenchmarkConsumeCatchUp as a ratio
// that load on the machine does not swing: pairs of reads of the hot and
// the cold partition, in alternating order, and the cold/hot ratio of
// their throughput (median, lowest, highest), of wall-clock time (what
// the consumer sees) and of this process's CPU time (server and client,
// getrusage), and of each read's CPU per GiB (this process's, median),
// and for the cold reads in all versitygw's CPU per GiB (/proc counts in
// 10 ms ticks: a single read's would be off by a quarter) and the GETs
// per GiB.
//
//	go test ./hub/kafka -run '^$' -bench ConsumeCatchUpRatio -benchtime 1x
func BenchmarkConsumeCatchUpRatio(b *testing.B) {
	const pairs = 7
	c := newCatchUp(b)
	gwCPU := func() time.Duration {
		d, err := c.srv.CPU()
		if err != nil {
			b.Fatal(err)
		}
		return d
	}
	b.SetBytes(2 * pairs * c.bytes)
	var walls, cpus, hotMBs, coldMBs, hotCPUs, coldCPUs []float64
	var gw time.Duration
	var coldGiB float64
	c.store.gets.Store(0)
	for b.Loop() {
		for p := range pairs {
			var wall, used [2]time.Duration
			for _, cold := range []bool{p%2 == 1, p%2 == 0} {
				runtime.GC()
				startCPU, startGW := s3test.ProcessCPU(b), gwCPU()
				k := 0
				if cold {
					k = 1
				}
				wall[k] = c.read(b, cold)
				used[k] = s3test.ProcessCPU(b) - startCPU
				if cold {
					gw += gwCPU() - startGW
					coldGiB += float64(c.bytes) / (1 << 30)
				}
			}
			walls = append(walls, float64(wall[0])/float64(wall[1]))
			cpus = append(cpus, float64(used[0])/float64(used[1]))
			hotMBs = append(hotMBs, float64(c.bytes)/1e6/wall[0].Seconds())
			coldMBs = append(coldMBs, float64(c.bytes)/1e6/wall[1].Seconds())
			hotCPUs = append(hotCPUs, used[0].Seconds()/(float64(c.bytes)/(1<<30)))
			coldCPUs = append(coldCPUs, used[1].Seconds()/(float64(c.bytes)/(1<<30)))
		}
	}
	s3test.ReportRatios(b, "wall", walls)
	s3test.ReportRatios(b, "cpu", cpus)
	b.ReportMetric(s3test.Median(hotMBs), "hot-MB/s")
	b.ReportMetric(s3test.Median(coldMBs), "cold-MB/s")
	b.ReportMetric(s3test.Median(hotCPUs), "hot-cpu-s/GiB")
	b.ReportMetric(s3test.Median(coldCPUs), "cold-cpu-s/GiB")
	b.ReportMetric(gw.Seconds()/coldGiB, "gw-cpu-s/GiB")
	b.ReportMetric(float64(c.store.gets.Load())/coldGiB, "GETs/GiB")
}
