package codecs

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// rawBatch frames body (records, compressed with c or not) as a batch that
// claims count records and carries a valid CRC.
func rawBatch(c Compression, count int32, body []byte) []byte {
	b := make([]byte, HeaderSize, HeaderSize+len(body))
	b[posMagic] = Magic
	for i := posProducerID; i < posProducerID+8; i++ {
		b[i] = 0xff // producer id -1
	}
	b = append(b, body...)
	putHeader(b, c, count)
	return b
}

// recordsOf is the uncompressed records of a batch the Builder makes.
func recordsOf(t testing.TB, recs []testRecord) []byte {
	return bytes.Clone(buildBatch(t, None, recs)[HeaderSize:])
}

func zstdStream(t testing.TB, src []byte) []byte {
	var out bytes.Buffer
	w, err := zstd.NewWriter(&out)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(src)
	w.Close()
	return out.Bytes()
}

func gzipped(src []byte) []byte {
	var out bytes.Buffer
	w := gzip.NewWriter(&out)
	w.Write(src)
	w.Close()
	return out.Bytes()
}

func TestCheckProducedAcceptsBuiltBatches(t *testing.T) {
	for _, c := range allCodecs {
		for _, n := range []int{1, 5, 300} {
			batch := buildBatch(t, c, sampleRecords(n))
			if _, err := CheckProduced(batch, 0, 1<<20); err != nil {
				t.Errorf("CheckProduced(%v, %d records) = %v, want nil", c, n, err)
			}
			if _, err := CheckRecords(batch, 1<<20); err != nil {
				t.Errorf("CheckRecords(%v, %d records) = %v, want nil", c, n, err)
			}
		}
	}
}

func TestCheckProducedRejectsPoison(t *testing.T) {
	five := recordsOf(t, sampleRecords(5))
	ff := bytes.Repeat([]byte{0xff}, 200)
	gappy := buildBatch(t, None, sampleRecords(3))
	// Give the second record offset delta 2: fine for a compacted batch,
	// not for a produced one.
	var gapRecs []byte
	{
		var it RecordIter
		it.Reset(gappy)
		for i := 0; it.Next(); i++ {
			r := it.Record()
			rec := []byte{0}
			rec = AppendVarint(rec, 0)
			rec = AppendVarint(rec, int64(2*i))
			rec = AppendVarint(rec, int64(len(r.Key)))
			rec = append(rec, r.Key...)
			rec = AppendVarint(rec, int64(len(r.Value)))
			rec = append(rec, r.Value...)
			rec = AppendVarint(rec, 0)
			gapRecs = AppendVarint(gapRecs, int64(len(rec)))
			gapRecs = append(gapRecs, rec...)
		}
	}
	tests := []struct {
		name  string
		batch []byte
		want  error
	}{
		{"a million records claimed over 5", rawBatch(None, 1_000_000, five), ErrCorrupt},
		{"a million records claimed over 5, zstd", rawBatch(Zstd, 1_000_000, zstdStream(t, five)), ErrCorrupt},
		{"fewer records claimed", rawBatch(None, 4, five), ErrCorrupt},
		{"fewer records claimed, gzip", rawBatch(Gzip, 4, gzipped(five)), ErrCorrupt},
		{"records of 0xff", rawBatch(None, 5, ff), ErrCorrupt},
		{"records of 0xff, gzip", rawBatch(Gzip, 5, gzipped(ff)), ErrCorrupt},
		{"records of 0xff, zstd", rawBatch(Zstd, 5, zstdStream(t, ff)), ErrCorrupt},
		{"corrupt gzip payload", rawBatch(Gzip, 5, append([]byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff}, ff...)), ErrCorrupt},
		{"corrupt zstd payload", rawBatch(Zstd, 5, append([]byte{0x28, 0xb5, 0x2f, 0xfd, 0, 0x58}, ff...)), ErrCorrupt},
		{"corrupt lz4 payload", rawBatch(LZ4, 5, append([]byte{0x04, 0x22, 0x4d, 0x18, 0x64, 0x40, 0xa7}, ff...)), ErrCorrupt},
		{"corrupt snappy payload", rawBatch(Snappy, 5, ff), ErrCorrupt},
		{"truncated zstd payload", rawBatch(Zstd, 5, zstdStream(t, five)[:20]), ErrCorrupt},
		{"offset deltas with gaps", rawBatch(None, 3, gapRecs), ErrCorrupt},
		{"bytes after the records, zstd", rawBatch(Zstd, 5, zstdStream(t, append(bytes.Clone(five), 1, 2, 3))), ErrCorrupt},
	}
	for _, tt := range tests {
		_, err := CheckProduced(tt.batch, 0, 1<<20)
		if !errors.Is(err, tt.want) {
			t.Errorf("%s: CheckProduced = %v, want %v", tt.name, err, tt.want)
		}
		var be *BatchError
		if err != nil && !errors.As(err, &be) {
			t.Errorf("%s: %v is not a *BatchError", tt.name, err)
		}
	}
	// The gappy batch is fine once stored (compaction leaves gaps).
	b := rawBatch(None, 3, gapRecs)
	putHeader(b, None, 5) // last offset delta 4 covers the gaps...
	b[posRecordCount+3] = 3
	resign(b)
	if _, err := CheckRecords(b, 0); err != nil {
		t.Errorf("CheckRecords of a batch with offset gaps = %v, want nil", err)
	}
}

// TestCheckProducedBombs checks that records decompressing past the limit
// are refused, for every codec, without the walk allocating anywhere near
// what they expand to.
func TestCheckProducedBombs(t *testing.T) {
	// One record whose 64 MiB value is zeros: under 100 KiB compressed.
	big := make([]byte, 64<<20)
	var rec []byte
	rec = append(rec, 0)
	rec = AppendVarint(rec, 0)
	rec = AppendVarint(rec, 0)
	rec = AppendVarint(rec, -1)
	rec = AppendVarint(rec, int64(len(big)))
	recs := AppendVarint(nil, int64(len(rec)+len(big)+1))
	recs = append(recs, rec...)
	recs = append(recs, big...)
	recs = append(recs, 0)
	bombs := map[string][]byte{
		"zstd without content size": rawBatch(Zstd, 1, zstdStream(t, recs)),
		"gzip":                      rawBatch(Gzip, 1, gzipped(recs)),
	}
	for _, c := range []Compression{Snappy, LZ4, Zstd} {
		body, err := c.AppendCompressed(nil, recs)
		if err != nil {
			t.Fatal(err)
		}
		bombs[c.String()] = rawBatch(c, 1, body)
	}
	// Zeros past the one small record: the walk must stop at the limit.
	small := recordsOf(t, sampleRecords(1))
	bombs["zstd, zeros after the records"] = rawBatch(Zstd, 1, zstdStream(t, append(small, big...)))
	for name, batch := range bombs {
		CheckProduced(batch, 0, 1<<20) // warm the pools
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err := CheckProduced(batch, 0, 1<<20)
		runtime.ReadMemStats(&after)
		want := ErrTooLarge
		if name == "zstd, zeros after the records" {
			want = ErrCorrupt
		}
		if !errors.Is(err, want) {
			t.Errorf("%s (%d bytes): CheckProduced = %v, want %v", name, len(batch), err, want)
		}
		// A decoder made afresh (the pool may have been emptied by a GC)
		// allocates its 8 MiB window; the bombs expand to 64 MiB.
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 16<<20 {
			t.Errorf("%s: checking allocated %d bytes, want at most 16 MiB", name, alloc)
		}
		// The read path is capped as well.
		if _, err := Zstd.AppendDecompressed(nil, batch[HeaderSize:], 1<<20); name == "zstd without content size" && !errors.Is(err, ErrTooLarge) {
			t.Errorf("%s: AppendDecompressed = %v, want ErrTooLarge", name, err)
		}
	}
}

// BenchmarkProduceCheck measures what validating a produced batch costs,
// per codec, in the same run: "before" is what the produce path did before
// records were checked (the log's ValidateProduced: header and CRC),
// "after" what it does now (the hub's CheckProduced, then the log's
// ValidateProduced). Throughput is in uncompressed record bytes: 256
// records of 1 KiB log-like values.
func BenchmarkProduceCheck(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, c := range allCodecs {
		var bl Builder
		bl.Compression = c
		const n = 256
		size := 0
		for i := range n {
			v := benchValue(rng)
			size += len(v)
			bl.Append(int64(i), []byte("key"), v, []RecordHeader{{Key: []byte("h"), Value: []byte("v")}})
		}
		batch, err := bl.Build()
		if err != nil {
			b.Fatal(err)
		}
		batch = bytes.Clone(batch)
		for _, mode := range []string{"before", "after"} {
			b.Run(fmt.Sprintf("%v/%s", c, mode), func(b *testing.B) {
				b.SetBytes(int64(size))
				b.ReportAllocs()
				for b.Loop() {
					var err error
					if mode == "after" {
						_, err = CheckProduced(batch, 1<<20, 16<<20)
					}
					if err == nil {
						_, err = ValidateProduced(batch, 1<<20)
					}
					if err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
