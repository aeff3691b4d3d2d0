package kafka

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhub/weir/codecs"
	"github.com/weirhub/weir/hub"
	"github.com/weirhub/weir/internal/objstore"
	"github.com/weirhub/weir/internal/objstore/s3test"
)

// BenchmarkConsumeCatchUp is what a Kafka consumer sees of a cold
// partition: a franz-go client (default fetch sizes, records decoded)
// reads a 64 MiB partition from offset 0 to its end, hot (local segment
// files) and cold (only in S3, versitygw over loopback). Each op starts a
// server (untimed): on the data directory for hot, and for cold on an
// empty one pointed at the prefix, so that every segment is only in S3
// and the cold cache starts empty, as for a consumer far behind. hub's
// BenchmarkCatchUp is the same read without Kafka (raw batch bytes).
//
//	go test ./hub/kafka -run '^$' -bench ConsumeCatchUp -benchtime 4x
func BenchmarkConsumeCatchUp(b *testing.B) {
	const total = 64 << 20
	srv := s3test.Start(b)
	store, err := objstore.NewS3(srv.Options(fmt.Sprint("c", time.Now().UnixNano())))
	if err != nil {
		b.Fatal(err)
	}
	open := func(dir string) *testBroker {
		return startBrokerOn(b, hub.Options{DataDir: dir, ColdStore: store,
			RetentionCheckInterval: 20 * time.Millisecond, Defaults: hub.DatasetConfig{Fsync: "never"}}, Options{})
	}
	for _, cold := range []bool{false, true} {
		name := map[bool]string{false: "hot", true: "cold-s3"}[cold]
		b.Run(name, func(b *testing.B) {
			dir := b.TempDir()
			br := open(dir)
			cfg := hub.DatasetConfig{Partitions: 1, SegmentBytes: 8 << 20}
			if cold {
				cfg.RemoteStorage, cfg.LocalRetentionBytes = true, 1
			}
			ds, err := br.hub.CreateDataset(name, cfg)
			if err != nil {
				b.Fatal(err)
			}
			p, _ := ds.Partition(0)
			val := make([]byte, 1000)
			for i := range val {
				val[i] = byte(i * 7)
			}
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
			b.SetBytes(n)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				b.StopTimer()
				var br *testBroker
				if cold {
					// A new server on the prefix with an empty data
					// directory: every segment is in S3 only.
					br = open(b.TempDir())
					if _, err := br.hub.CreateDataset(name, cfg); err != nil {
						b.Fatal(err)
					}
				} else {
					br = open(dir)
				}
				cl, err := kgo.NewClient(kgo.SeedBrokers(br.addr),
					kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{name: {0: kgo.NewOffset().At(0)}}))
				if err != nil {
					b.Fatal(err)
				}
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				b.StartTimer()
				var got int64
				for got < records {
					fs := cl.PollFetches(ctx)
					if err := ctx.Err(); err != nil {
						b.Fatalf("consumed %d of %d records: %v", got, records, err)
					}
					fs.EachError(func(_ string, _ int32, err error) { b.Fatalf("fetch at record %d: %v", got, err) })
					got += int64(fs.NumRecords())
				}
				b.StopTimer()
				cancel()
				cl.Close()
				br.stop()
				b.StartTimer()
			}
		})
	}
}
