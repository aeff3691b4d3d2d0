package codecs

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

var updateSeeds = flag.Bool("update-seeds", false, "rewrite the fuzz seed corpus in testdata/fuzz")

// FuzzRecordIter feeds arbitrary bytes to the batch reader. It must never
// panic, and whatever it accepts must survive a rebuild: the records read
// back from a batch built out of them are the same.
func FuzzRecordIter(f *testing.F) {
	for _, s := range seedBatches(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		it := RecordIter{MaxDecompressed: 1 << 20}
		if err := it.Reset(data); err != nil {
			return
		}
		var b Builder
		b.Compression = it.Header().Compression()
		var n int
		for it.Next() {
			b.AppendRecord(it.Record())
			n++
		}
		if it.Err() != nil || n == 0 {
			return
		}
		rebuilt, err := b.Build()
		if err != nil {
			t.Fatalf("Build of %d accepted records: %v", n, err)
		}
		var first, second RecordIter
		first.Reset(data)
		if err := second.Reset(rebuilt); err != nil {
			t.Fatalf("rebuilt batch rejected: %v", err)
		}
		for i := 0; first.Next(); i++ {
			if !second.Next() {
				t.Fatalf("rebuilt batch ends at record %d: %v", i, second.Err())
			}
			a, c := first.Record(), second.Record()
			if a.Timestamp != c.Timestamp || !bytes.Equal(a.Key, c.Key) || !bytes.Equal(a.Value, c.Value) ||
				(a.Key == nil) != (c.Key == nil) || (a.Value == nil) != (c.Value == nil) || len(a.Headers) != len(c.Headers) {
				t.Fatalf("record %d differs after rebuild", i)
			}
		}
	})
}

// seedBatches are valid batches of every codec plus damaged ones; with
// -update-seeds they are also written to testdata/fuzz/FuzzRecordIter.
func seedBatches(tb testing.TB) [][]byte {
	var seeds [][]byte
	for _, c := range allCodecs {
		good := buildBatch(tb, c, sampleRecords(6))
		seeds = append(seeds, good, good[:len(good)/2])
		flipped := bytes.Clone(good)
		flipped[len(flipped)-3] ^= 1
		seeds = append(seeds, flipped, resign(flipped))
	}
	empty := buildBatch(tb, None, []testRecord{{ts: 0}})
	seeds = append(seeds, empty, empty[:HeaderSize])
	if *updateSeeds {
		dir := filepath.Join("testdata", "fuzz", "FuzzRecordIter")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			tb.Fatal(err)
		}
		for i, s := range seeds {
			content := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", s)
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%02d", i)), []byte(content), 0o644); err != nil {
				tb.Fatal(err)
			}
		}
	}
	return seeds
}

// FuzzRecordBodies wraps arbitrary bytes in a header with a correct CRC, so
// the fuzzer reaches the decompressors and the record parser rather than
// stopping at the checksum.
func FuzzRecordBodies(f *testing.F) {
	for _, c := range allCodecs {
		good := buildBatch(f, c, sampleRecords(4))
		f.Add(uint8(c), uint16(4), good[HeaderSize:])
	}
	f.Add(uint8(0), uint16(1), []byte{0x02, 0, 0, 0, 1, 1, 0})
	f.Fuzz(func(t *testing.T, codec uint8, count uint16, body []byte) {
		var b Builder
		b.Append(0, nil, nil, nil)
		built, _ := b.Build()
		batch := append(bytes.Clone(built[:HeaderSize]), body...)
		putHeader(batch, Compression(codec%8), int32(count))
		it := RecordIter{MaxDecompressed: 1 << 20}
		if it.Reset(batch) != nil {
			return
		}
		for it.Next() {
			r := it.Record()
			if r.Offset < 0 || r.Offset > int64(count) {
				t.Fatalf("offset %d outside a batch of %d", r.Offset, count)
			}
		}
	})
}

func putHeader(batch []byte, c Compression, count int32) {
	n := uint32(len(batch) - LengthPrefix)
	batch[posLength], batch[posLength+1], batch[posLength+2], batch[posLength+3] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
	batch[posAttributes], batch[posAttributes+1] = 0, byte(c)
	d := uint32(max(count-1, 0))
	batch[posLastOffsetDelta], batch[posLastOffsetDelta+1], batch[posLastOffsetDelta+2], batch[posLastOffsetDelta+3] = byte(d>>24), byte(d>>16), byte(d>>8), byte(d)
	batch[posRecordCount], batch[posRecordCount+1], batch[posRecordCount+2], batch[posRecordCount+3] = byte(count>>24), byte(count>>16), byte(count>>8), byte(count)
	resign(batch)
}
