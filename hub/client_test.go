package hub

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/weirhub/weir/codecs"
)

// compressions lists the codec of every batch stored in a partition.
func compressions(t *testing.T, p *Partition) []codecs.Compression {
	t.Helper()
	var out []codecs.Compression
	if err := p.Log().ScanHeaders(0, func(h *codecs.Header) bool {
		out = append(out, h.Compression())
		return true
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestLocalProduceResults checks one result per record: offsets in order
// per partition, and a record too large for a batch failing alone while
// the others are stored.
func TestLocalProduceResults(t *testing.T) {
	opts := testOptions(t.TempDir())
	opts.DisableAutoCreate = true
	h := openHub(t, opts)
	defer h.Close()
	if _, err := h.CreateDataset("r", DatasetConfig{Partitions: 3, MaxMessageBytes: 4 << 10}); err != nil {
		t.Fatal(err)
	}
	var recs []Record
	for i := range 30 {
		recs = append(recs, Record{Key: fmt.Appendf(nil, "k%d", i%5), Value: fmt.Appendf(nil, "v%d", i)})
	}
	recs[7].Value = bytes.Repeat([]byte("x"), 8<<10) // over max_message_bytes alone
	rs := NewLocalClient(h).Produce(context.Background(), "r", recs, ProduceOptions{})
	if len(rs) != len(recs) {
		t.Fatalf("%d results for %d records", len(rs), len(recs))
	}
	next := map[int32]int64{}
	for i, r := range rs {
		if i == 7 {
			if !errors.Is(r.Err, ErrBatchTooLarge) || !RecordAtFault(r.Err) {
				t.Errorf("result 7 = %v, want ErrBatchTooLarge", r.Err)
			}
			continue
		}
		if r.Err != nil {
			t.Fatalf("result %d: %v", i, r.Err)
		}
		if want := PartitionForKey(recs[i].Key, 3); r.Partition != want {
			t.Errorf("result %d partition %d, want %d", i, r.Partition, want)
		}
		if r.Offset != next[r.Partition] {
			t.Errorf("result %d offset %d, want %d", i, r.Offset, next[r.Partition])
		}
		next[r.Partition] = r.Offset + 1
	}
	ds, _ := h.Dataset("r")
	for p := range int32(3) {
		part, _ := ds.Partition(p)
		if hw := part.HighWatermark(); hw != next[p] {
			t.Errorf("partition %d high watermark %d, want %d", p, hw, next[p])
		}
	}
	if err := NewLocalClient(h).Produce(context.Background(), "missing", recs[:2], ProduceOptions{}).FirstErr(); !errors.Is(err, ErrUnknownDataset) {
		t.Errorf("Produce to a missing dataset = %v, want ErrUnknownDataset", err)
	}
}

// TestLocalProduceCompression checks that Weir's own writes are
// compressed by default: lz4 where the dataset keeps the producer's
// compression, the dataset's codec where it names one, the caller's when
// it asks.
func TestLocalProduceCompression(t *testing.T) {
	h := openHub(t, testOptions(t.TempDir()))
	defer h.Close()
	for _, tc := range []struct {
		dataset, compression, asked string
		want                        codecs.Compression
	}{
		{"default", "", "", codecs.LZ4},
		{"producer", "producer", "", codecs.LZ4},
		{"zstd", "zstd", "", codecs.Zstd},
		{"plain", "none", "", codecs.None},
		{"asked", "zstd", "snappy", codecs.Snappy},
	} {
		if _, err := h.CreateDataset(tc.dataset, DatasetConfig{Partitions: 1, Compression: tc.compression}); err != nil {
			t.Fatal(err)
		}
		recs := []Record{{Value: []byte("a line of text")}, {Value: []byte("another line of text")}}
		if err := NewLocalClient(h).Produce(context.Background(), tc.dataset, recs, ProduceOptions{Compression: tc.asked}).FirstErr(); err != nil {
			t.Fatal(err)
		}
		ds, _ := h.Dataset(tc.dataset)
		p, _ := ds.Partition(0)
		if got := compressions(t, p); len(got) != 1 || got[0] != tc.want {
			t.Errorf("dataset compression %q, asked %q: stored %v, want [%v]", tc.compression, tc.asked, got, tc.want)
		}
	}
	if _, err := h.CreateDataset("bad", DatasetConfig{Partitions: 1, Compression: "brotli"}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("compression brotli = %v, want ErrInvalidConfig", err)
	}
	var c DatasetConfig
	if err := c.ApplyKafkaConfig("compression.type", "zstd"); err != nil || c.WriterCompression() != codecs.Zstd {
		t.Errorf("compression.type=zstd: %v, writer %v", err, c.WriterCompression())
	}
	if got := c.KafkaConfigs()["compression.type"]; got != "zstd" {
		t.Errorf("KafkaConfigs compression.type = %q, want zstd", got)
	}
}

// benchRecords are n access-log-like JSON records of about 270 bytes, with
// keys: compressible as real logs are, unlike a repeated byte.
func benchRecords(n int) []Record {
	recs := make([]Record, n)
	for i := range recs {
		recs[i] = Record{Key: fmt.Appendf(nil, "key-%d", i), Value: fmt.Appendf(nil,
			`{"ts":"2026-11-21T00:00:%02d.%03dZ","level":"info","host":"web-%02d","method":"GET","path":"/api/v1/orders/%d","status":200,"latency_ms":%d.%d,"ua":"Mozilla/5.0 (X11; Linux x86_64)","trace":"%016x"}`,
			i/1000%60, i%1000, i%24, i*7919%100000, i%97, i%10, uint64(i)*0x9e3779b97f4a7c15)}
	}
	return recs
}

// benchDataset opens a hub with a 4-partition dataset "bench" of the
// given compression and returns a client of it, 1,000 records and their
// bytes.
func benchDataset(b *testing.B, compression string) (*LocalClient, []Record, int) {
	h := openHub(b, testOptions(b.TempDir()))
	b.Cleanup(func() { h.Close() })
	if _, err := h.CreateDataset("bench", DatasetConfig{Partitions: 4, Compression: compression, RetentionBytes: 256 << 20}); err != nil {
		b.Fatal(err)
	}
	recs := benchRecords(1000)
	size := 0
	for _, r := range recs {
		size += len(r.Key) + len(r.Value)
	}
	return NewLocalClient(h), recs, size
}

// BenchmarkLocalProduce measures Produce of 1,000 records of about 270
// bytes over 4 partitions, uncompressed and with the default lz4: the
// allocations are per call, not per record.
func BenchmarkLocalProduce(b *testing.B) {
	for _, comp := range []string{"none", "lz4"} {
		b.Run(comp, func(b *testing.B) {
			c, recs, size := benchDataset(b, comp)
			b.ReportAllocs()
			b.SetBytes(int64(size))
			for b.Loop() {
				if err := c.Produce(context.Background(), "bench", recs, ProduceOptions{}).FirstErr(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*len(recs))/b.Elapsed().Seconds(), "records/s")
		})
	}
}

// BenchmarkLocalPoll reads records through one LocalClient consumer,
// uncompressed and lz4: what a pipeline's poll costs once its buffers have
// grown, with allocations per poll, not per record. Each iteration
// produces 5,000 records (untimed), then polls until it has them.
func BenchmarkLocalPoll(b *testing.B) {
	for _, comp := range []string{"none", "lz4"} {
		b.Run(comp, func(b *testing.B) {
			c, recs, size := benchDataset(b, comp)
			ctx := context.Background()
			cons, err := c.Consume(ctx, ConsumeOptions{Datasets: []string{"bench"}, Broadcast: true, MaxWait: time.Millisecond})
			if err != nil {
				b.Fatal(err)
			}
			defer cons.Close(ctx)
			const batches = 5
			b.ReportAllocs()
			b.SetBytes(int64(batches * size))
			for b.Loop() {
				b.StopTimer()
				for range batches {
					if err := c.Produce(ctx, "bench", recs, ProduceOptions{}).FirstErr(); err != nil {
						b.Fatal(err)
					}
				}
				b.StartTimer()
				for n := 0; n < batches*len(recs); {
					fs, err := cons.Poll(ctx)
					if err != nil {
						b.Fatal(err)
					}
					for _, f := range fs {
						n += len(f.Records)
					}
				}
			}
			b.ReportMetric(float64(b.N*batches*len(recs))/b.Elapsed().Seconds(), "records/s")
		})
	}
}

// TestPollBoundsDecodedBytes checks that MaxPollBytes bounds the bytes of
// the records a Poll returns, not only the compressed bytes it reads: a
// poll of lz4 batches of repetitive text would otherwise hand over ten
// times what the reader asked for.
func TestPollBoundsDecodedBytes(t *testing.T) {
	h := openHub(t, testOptions(t.TempDir()))
	defer h.Close()
	if _, err := h.CreateDataset("text", DatasetConfig{Partitions: 1, Compression: "lz4"}); err != nil {
		t.Fatal(err)
	}
	c := NewLocalClient(h)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range 200 { // batches of 10 records of 1000 bytes
		var recs []Record
		for j := range 10 {
			recs = append(recs, Record{Value: bytes.Repeat(fmt.Appendf(nil, "line %03d.%d ", i, j), 100)[:1000]})
		}
		if err := c.Produce(ctx, "text", recs, ProduceOptions{}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	const limit = 64 << 10
	cons, err := c.Consume(ctx, ConsumeOptions{Datasets: []string{"text"}, Broadcast: true, MaxPollBytes: limit, MaxWait: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close(ctx)
	total, next := 0, int64(0)
	for total < 2000 && ctx.Err() == nil {
		fs, err := cons.Poll(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got := 0
		for _, f := range fs {
			for _, r := range f.Records {
				if r.Offset != next {
					t.Fatalf("offset %d, want %d", r.Offset, next)
				}
				next++
				got += len(r.Value)
			}
		}
		if got > limit+10*1000 {
			t.Fatalf("a Poll returned %d bytes of values, want at most MaxPollBytes (%d) and one batch", got, limit)
		}
		total += got / 1000
	}
	if total != 2000 {
		t.Fatalf("read %d records, want 2000", total)
	}
}
