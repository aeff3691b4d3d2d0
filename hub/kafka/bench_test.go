package kafka

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhub/weir/hub"
)

// BenchmarkProduce measures produce throughput through the Kafka front
// door per codec: a franz-go producer (acks=1, 256 KiB batches) sending
// 1 KiB log-like values to a hub with fsync never, so the broker's CPU
// (request reading, record checks, appends) is what is measured.
func BenchmarkProduce(b *testing.B) {
	codecs := []struct {
		name  string
		codec kgo.CompressionCodec
	}{{"none", kgo.NoCompression()}, {"gzip", kgo.GzipCompression()}, {"snappy", kgo.SnappyCompression()},
		{"lz4", kgo.Lz4Compression()}, {"zstd", kgo.ZstdCompression()}}
	rng := rand.New(rand.NewPCG(1, 2))
	values := make([][]byte, 1024)
	for i := range values {
		v := make([]byte, 0, 1024)
		for len(v) < 1024 {
			v = fmt.Appendf(v, "GET /api/v1/items/%x 200 latency_ms=%d user=%x ", rng.Uint32(), rng.IntN(500), rng.Uint32())
		}
		values[i] = v[:1024]
	}
	for _, c := range codecs {
		b.Run(c.name, func(b *testing.B) {
			addr := benchBroker(b, "bench").addr
			cl := newClient(b, addr, kgo.ProducerBatchCompression(c.codec), kgo.DefaultProduceTopic("bench"),
				kgo.RequiredAcks(kgo.LeaderAck()), kgo.DisableIdempotentWrite(), kgo.ProducerBatchMaxBytes(256<<10), kgo.ProducerLinger(0))
			ctx := context.Background()
			if err := cl.ProduceSync(ctx, &kgo.Record{Value: values[0]}).FirstErr(); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(1024)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				cl.Produce(ctx, &kgo.Record{Value: values[i%len(values)]}, func(_ *kgo.Record, err error) {
					if err != nil {
						b.Error(err)
					}
				})
				i++
			}
			if err := cl.Flush(ctx); err != nil {
				b.Fatal(err)
			}
		})
	}
}

// BenchmarkFetchTail measures a tailing consumer's produce→consume round
// trip through the Kafka front door: each op produces one 1 KiB record
// (acks=1, linger 0) and waits until a consumer long-polling the partition
// (fetch.min.bytes 1) has it. The fetch answers carry a batch or two, sent
// with sendfile between two writes or read in and written at once
// (inlineFetchBytes); ns/op is the mean round trip.
func BenchmarkFetchTail(b *testing.B) {
	value := make([]byte, 1024)
	for _, m := range []struct {
		name   string
		inline int64
	}{{"sendfile", -1}, {"inline", 64 << 10}} {
		b.Run(m.name, func(b *testing.B) {
			defer func(v int64) { inlineFetchBytes = v }(inlineFetchBytes)
			inlineFetchBytes = m.inline
			addr := benchBroker(b, "tail").addr
			prod := newClient(b, addr, kgo.DefaultProduceTopic("tail"), kgo.RequiredAcks(kgo.LeaderAck()),
				kgo.DisableIdempotentWrite(), kgo.ProducerLinger(0))
			cons := newClient(b, addr, kgo.ConsumeTopics("tail"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
				kgo.FetchMinBytes(1), kgo.FetchMaxWait(5*time.Second))
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			got := 0
			await := func(n int) {
				for got < n {
					fs := cons.PollFetches(ctx)
					if err := fs.Err0(); err != nil {
						b.Fatal(err)
					}
					got += fs.NumRecords()
				}
			}
			prod.Produce(ctx, &kgo.Record{Value: value}, nil)
			await(1)
			b.SetBytes(int64(len(value)))
			b.ReportAllocs()
			n := 1
			for b.Loop() {
				prod.Produce(ctx, &kgo.Record{Value: value}, func(_ *kgo.Record, err error) {
					if err != nil {
						b.Error(err)
					}
				})
				n++
				await(n)
			}
			// The consumer may see a record before its producer hears the ack.
			if err := prod.Flush(ctx); err != nil {
				b.Fatal(err)
			}
		})
	}
}

// benchBroker is a broker for benchmarks (fsync never, 64 MiB segments)
// holding one dataset of one partition, stopped when the run ends.
func benchBroker(b *testing.B, dataset string) *testBroker {
	br := startBrokerOn(b, hub.Options{DataDir: b.TempDir(), Defaults: hub.DatasetConfig{Fsync: "never", SegmentBytes: 64 << 20}}, Options{})
	if _, err := br.hub.CreateDataset(dataset, hub.DatasetConfig{Partitions: 1}); err != nil {
		b.Fatal(err)
	}
	return br
}
