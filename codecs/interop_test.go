package codecs

import (
	"bytes"
	"context"
	"fmt"
	"hash/crc32"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

var kgoCodecs = map[Compression]kgo.CompressionCodec{
	None:   kgo.NoCompression(),
	Gzip:   kgo.GzipCompression(),
	Snappy: kgo.SnappyCompression(),
	LZ4:    kgo.Lz4Compression(),
	Zstd:   kgo.ZstdCompression(),
}

// TestFranzGoReadsOurBatches decodes the batches our Builder writes with
// franz-go's kmsg, checks the CRC the way a client does, and decompresses
// and parses the records with franz-go's own decompressor.
func TestFranzGoReadsOurBatches(t *testing.T) {
	decomp := kgo.DefaultDecompressor()
	for _, c := range allCodecs {
		t.Run(c.String(), func(t *testing.T) {
			recs := sampleRecords(50)
			batch := buildBatch(t, c, recs)
			SetBaseOffset(batch, 500)

			var kb kmsg.RecordBatch
			if err := kb.ReadFrom(batch); err != nil {
				t.Fatalf("kmsg.RecordBatch.ReadFrom: %v", err)
			}
			raw := kb.AppendTo(nil)
			if !bytes.Equal(raw, batch) {
				t.Fatalf("kmsg re-encodes our batch differently")
			}
			if got := crc32.Checksum(raw[21:], crc32.MakeTable(crc32.Castagnoli)); int32(got) != kb.CRC {
				t.Fatalf("CRC as franz-go checks it: %08x, batch says %08x", got, uint32(kb.CRC))
			}
			if kb.FirstOffset != 500 || kb.NumRecords != 50 || kb.LastOffsetDelta != 49 || kb.Magic != 2 {
				t.Fatalf("kmsg header: %+v", kb)
			}
			body, err := decomp.Decompress(kb.Records, kgo.CompressionCodecType(kb.Attributes&7))
			if err != nil {
				t.Fatalf("franz-go decompress %v: %v", c, err)
			}
			for i, w := range recs {
				var kr kmsg.Record
				if err := kr.ReadFrom(body); err != nil {
					t.Fatalf("record %d: kmsg.Record.ReadFrom: %v", i, err)
				}
				body = body[int(kr.Length)+VarintLen(int64(kr.Length)):]
				if kb.FirstTimestamp+kr.TimestampDelta64 != w.ts || int(kr.OffsetDelta) != i {
					t.Errorf("record %d: ts %d offset delta %d", i, kb.FirstTimestamp+kr.TimestampDelta64, kr.OffsetDelta)
				}
				if !bytes.Equal(kr.Key, w.key) || (kr.Key == nil) != (w.key == nil) || !bytes.Equal(kr.Value, w.value) || (kr.Value == nil) != (w.value == nil) {
					t.Errorf("record %d: key %q value %q", i, kr.Key, kr.Value)
				}
				if len(kr.Headers) != len(w.headers) {
					t.Errorf("record %d: %d headers, want %d", i, len(kr.Headers), len(w.headers))
				}
			}
			if len(body) != 0 {
				t.Fatalf("%d bytes after the last record", len(body))
			}
		})
	}
}

// TestWeReadFranzGoBatches lets a real franz-go producer build batches with
// each codec, captures the Produce requests at an in-process kfake cluster,
// and reads the captured batches with our RecordIter.
func TestWeReadFranzGoBatches(t *testing.T) {
	for _, c := range allCodecs {
		t.Run(c.String(), func(t *testing.T) {
			cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "t"))
			if err != nil {
				t.Fatal(err)
			}
			defer cluster.Close()
			var mu sync.Mutex
			var captured [][]byte
			cluster.ControlKey(0, func(req kmsg.Request) (kmsg.Response, error, bool) {
				cluster.KeepControl()
				for _, topic := range req.(*kmsg.ProduceRequest).Topics {
					for _, p := range topic.Partitions {
						mu.Lock()
						captured = append(captured, bytes.Clone(p.Records))
						mu.Unlock()
					}
				}
				return nil, nil, false
			})
			cl, err := kgo.NewClient(
				kgo.SeedBrokers(cluster.ListenAddrs()...),
				kgo.ProducerBatchCompression(kgoCodecs[c]),
				kgo.DefaultProduceTopic("t"),
			)
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			const n = 200
			var want [][]byte
			for i := range n {
				v := bytes.Repeat([]byte(fmt.Sprintf("franz-go record %d ", i)), 10)
				want = append(want, v)
				cl.Produce(ctx, &kgo.Record{
					Key:       []byte(fmt.Sprintf("k%d", i%7)),
					Value:     v,
					Headers:   []kgo.RecordHeader{{Key: "n", Value: []byte(fmt.Sprint(i))}},
					Timestamp: time.UnixMilli(1_700_000_000_000 + int64(i)),
				}, nil)
			}
			if err := cl.Flush(ctx); err != nil {
				t.Fatalf("flush: %v", err)
			}
			mu.Lock()
			defer mu.Unlock()
			var got [][]byte
			var it RecordIter
			for _, blob := range captured {
				for len(blob) > 0 {
					h, err := ValidateProduced(blob, 0)
					if err != nil {
						t.Fatalf("ValidateProduced of a franz-go batch: %v", err)
					}
					if h.Compression() != c {
						t.Fatalf("franz-go batch has codec %v, want %v", h.Compression(), c)
					}
					if err := it.Reset(blob); err != nil {
						t.Fatal(err)
					}
					for it.Next() {
						r := it.Record()
						if len(r.Headers) != 1 || string(r.Headers[0].Key) != "n" || string(r.Headers[0].Value) != fmt.Sprint(len(got)) {
							t.Fatalf("record %d headers %q", len(got), r.Headers)
						}
						if r.Timestamp != 1_700_000_000_000+int64(len(got)) {
							t.Fatalf("record %d timestamp %d", len(got), r.Timestamp)
						}
						got = append(got, bytes.Clone(r.Value))
					}
					if err := it.Err(); err != nil {
						t.Fatal(err)
					}
					blob = blob[h.Size():]
				}
			}
			if len(got) != n {
				t.Fatalf("read %d records from franz-go's batches, want %d", len(got), n)
			}
			for i := range want {
				if !bytes.Equal(got[i], want[i]) {
					t.Fatalf("record %d: %q, want %q", i, got[i], want[i])
				}
			}
		})
	}
}
