package codecs

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"testing/iotest"
)

var allCodecs = []Compression{None, Gzip, Snappy, LZ4, Zstd}

type testRecord struct {
	ts      int64
	key     []byte
	value   []byte
	headers []RecordHeader
}

func sampleRecords(n int) []testRecord {
	recs := make([]testRecord, n)
	for i := range recs {
		r := &recs[i]
		r.ts = 1_700_000_000_000 + int64(i*7%13) - 5 // deltas go negative too
		if i%3 != 0 {
			r.key = []byte(fmt.Sprintf("key-%d", i))
		}
		if i%5 != 4 {
			r.value = bytes.Repeat([]byte(fmt.Sprintf("value %d;", i)), i%40+1)
		}
		if i%4 == 1 {
			r.headers = []RecordHeader{{Key: []byte("h1"), Value: []byte("v1")}, {Key: []byte("null"), Value: nil}}
		}
		if i == 2 {
			r.key = []byte{} // empty, not null
			r.value = []byte{}
		}
	}
	return recs
}

func buildBatch(t testing.TB, c Compression, recs []testRecord) []byte {
	t.Helper()
	var b Builder
	b.Compression = c
	for _, r := range recs {
		b.Append(r.ts, r.key, r.value, r.headers)
	}
	batch, err := b.Build()
	if err != nil {
		t.Fatalf("Build(%v): %v", c, err)
	}
	return bytes.Clone(batch)
}

func checkRecords(t *testing.T, batch []byte, base int64, want []testRecord) {
	t.Helper()
	var it RecordIter
	if err := it.Reset(batch); err != nil {
		t.Fatalf("Reset: %v", err)
	}
	i := 0
	for ; it.Next(); i++ {
		r := it.Record()
		if i >= len(want) {
			t.Fatalf("more records than the %d built", len(want))
		}
		w := want[i]
		if r.Offset != base+int64(i) || r.Timestamp != w.ts {
			t.Errorf("record %d: offset %d ts %d, want %d %d", i, r.Offset, r.Timestamp, base+int64(i), w.ts)
		}
		if !bytes.Equal(r.Key, w.key) || (r.Key == nil) != (w.key == nil) {
			t.Errorf("record %d: key %q, want %q", i, r.Key, w.key)
		}
		if !bytes.Equal(r.Value, w.value) || (r.Value == nil) != (w.value == nil) {
			t.Errorf("record %d: value %q, want %q", i, r.Value, w.value)
		}
		if len(r.Headers) != len(w.headers) {
			t.Fatalf("record %d: %d headers, want %d", i, len(r.Headers), len(w.headers))
		}
		for j, h := range r.Headers {
			if !bytes.Equal(h.Key, w.headers[j].Key) || !bytes.Equal(h.Value, w.headers[j].Value) || (h.Value == nil) != (w.headers[j].Value == nil) {
				t.Errorf("record %d header %d: %q=%q, want %q=%q", i, j, h.Key, h.Value, w.headers[j].Key, w.headers[j].Value)
			}
		}
	}
	if err := it.Err(); err != nil {
		t.Fatalf("Err: %v", err)
	}
	if i != len(want) {
		t.Fatalf("read %d records, want %d", i, len(want))
	}
}

func TestBuildReadRoundTrip(t *testing.T) {
	for _, c := range allCodecs {
		for _, n := range []int{1, 2, 17, 300} {
			t.Run(fmt.Sprintf("%v/%d", c, n), func(t *testing.T) {
				recs := sampleRecords(n)
				batch := buildBatch(t, c, recs)
				h, err := ValidateProduced(batch, 0)
				if err != nil {
					t.Fatalf("ValidateProduced: %v", err)
				}
				if h.Compression() != c || h.NumRecords != int32(n) || h.LastOffsetDelta != int32(n-1) || h.ProducerID != -1 {
					t.Fatalf("header = %+v", h)
				}
				if h.Size() != len(batch) {
					t.Fatalf("Size() = %d, len = %d", h.Size(), len(batch))
				}
				minTS, maxTS := recs[0].ts, recs[0].ts
				for _, r := range recs {
					maxTS = max(maxTS, r.ts)
					minTS = min(minTS, r.ts)
				}
				if h.FirstTimestamp != recs[0].ts || h.MaxTimestamp != maxTS {
					t.Fatalf("timestamps first %d max %d, want %d %d", h.FirstTimestamp, h.MaxTimestamp, recs[0].ts, maxTS)
				}
				SetBaseOffset(batch, 1234)
				if _, err := Validate(batch, 0); err != nil {
					t.Fatalf("Validate after SetBaseOffset: %v", err)
				}
				checkRecords(t, batch, 1234, recs)
			})
		}
	}
}

func TestBuilderProducerAndReuse(t *testing.T) {
	var b Builder
	b.Compression = Zstd
	b.SetProducer(77, 3, 100)
	for round := range 3 {
		b.Reset()
		for i := range 10 + round {
			b.Append(int64(i), nil, []byte{byte(i)}, nil)
		}
		batch, err := b.Build()
		if err != nil {
			t.Fatal(err)
		}
		h, err := ValidateProduced(batch, 0)
		if err != nil {
			t.Fatal(err)
		}
		if h.ProducerID != 77 || h.ProducerEpoch != 3 || h.BaseSequence != 100 || h.NumRecords != int32(10+round) {
			t.Fatalf("round %d: header %+v", round, h)
		}
	}
	b.Reset()
	if _, err := b.Build(); !errors.Is(err, ErrEmptyBatch) {
		t.Fatalf("Build of empty batch: %v, want ErrEmptyBatch", err)
	}
}

func TestValidateRejects(t *testing.T) {
	good := buildBatch(t, None, sampleRecords(5))
	mutate := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	tests := []struct {
		name  string
		batch []byte
		max   int
		want  error
	}{
		{"short header", good[:40], 0, ErrShort},
		{"torn", good[:len(good)-1], 0, ErrShort},
		{"too large", good, len(good) - 1, ErrTooLarge},
		{"magic", mutate(func(b []byte) []byte { b[posMagic] = 1; return b }), 0, ErrCorrupt},
		{"crc", mutate(func(b []byte) []byte { b[len(b)-1] ^= 0x40; return b }), 0, ErrCorrupt},
		{"codec", mutate(func(b []byte) []byte { b[posAttributes+1] |= 7; return b }), 0, ErrCorrupt},
		{"length below header", mutate(func(b []byte) []byte { b[posLength+3] = 10; return b }), 0, ErrCorrupt},
		{"last offset delta", mutate(func(b []byte) []byte {
			b[posLastOffsetDelta+3] = 1
			b[posCRC], b[posCRC+1], b[posCRC+2], b[posCRC+3] = 0, 0, 0, 0
			crc := Checksum(b)
			b[posCRC], b[posCRC+1], b[posCRC+2], b[posCRC+3] = byte(crc>>24), byte(crc>>16), byte(crc>>8), byte(crc)
			return b
		}), 0, ErrCorrupt},
	}
	for _, tt := range tests {
		_, err := Validate(tt.batch, tt.max)
		if !errors.Is(err, tt.want) {
			t.Errorf("%s: Validate = %v, want %v", tt.name, err, tt.want)
		}
		var be *BatchError
		if !errors.As(err, &be) {
			t.Errorf("%s: error %T is not a *BatchError", tt.name, err)
		}
	}
	// ValidateProducedFraming finds every fault but the checksum.
	for _, tt := range tests {
		_, err := ValidateProducedFraming(tt.batch, tt.max)
		if tt.name == "crc" {
			if err != nil {
				t.Errorf("crc: ValidateProducedFraming = %v, want nil (the checksum is its caller's)", err)
			}
			if _, err := ValidateProduced(tt.batch, tt.max); !errors.Is(err, ErrCorrupt) {
				t.Errorf("crc: ValidateProduced = %v, want %v", err, ErrCorrupt)
			}
			continue
		}
		if !errors.Is(err, tt.want) {
			t.Errorf("%s: ValidateProducedFraming = %v, want %v", tt.name, err, tt.want)
		}
	}
	// The base offset and leader epoch lie outside the CRC.
	b := bytes.Clone(good)
	SetBaseOffset(b, 1<<40)
	SetLeaderEpoch(b, 9)
	if _, err := Validate(b, 0); err != nil {
		t.Errorf("Validate after rewriting base offset and epoch: %v", err)
	}
}

// resign recomputes the CRC so a test can build structurally bad batches
// that pass the checksum and reach the record parser.
func resign(b []byte) []byte {
	crc := Checksum(b)
	b[posCRC], b[posCRC+1], b[posCRC+2], b[posCRC+3] = byte(crc>>24), byte(crc>>16), byte(crc>>8), byte(crc)
	return b
}

func TestRecordIterRejectsMalformedRecords(t *testing.T) {
	good := buildBatch(t, None, sampleRecords(3))
	tests := []struct {
		name string
		f    func(b []byte) []byte
	}{
		{"record count too high", func(b []byte) []byte {
			b[posRecordCount+3] = 4
			b[posLastOffsetDelta+3] = 3
			return b
		}},
		{"record count too low", func(b []byte) []byte {
			b[posRecordCount+3] = 2
			b[posLastOffsetDelta+3] = 1
			return b
		}},
		{"record length past end", func(b []byte) []byte { b[HeaderSize] = 0x7e; return b }},
		{"trailing garbage", func(b []byte) []byte {
			b = append(b, 1, 2, 3)
			b[posLength+3] += 3
			return b
		}},
	}
	for _, tt := range tests {
		b := resign(tt.f(bytes.Clone(good)))
		var it RecordIter
		err := it.Reset(b)
		for err == nil && it.Next() {
		}
		if err == nil {
			err = it.Err()
		}
		if !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: got %v, want ErrCorrupt", tt.name, err)
		}
	}
}

func TestDecompressionBomb(t *testing.T) {
	recs := []testRecord{{ts: 1, value: make([]byte, 4<<20)}}
	for _, c := range allCodecs[1:] {
		batch := buildBatch(t, c, recs)
		it := RecordIter{MaxDecompressed: 1 << 20}
		if err := it.Reset(batch); !errors.Is(err, ErrTooLarge) {
			t.Errorf("%v: Reset with a 1 MiB limit on 4 MiB = %v, want ErrTooLarge", c, err)
		}
		it.MaxDecompressed = 0
		if err := it.Reset(batch); err != nil {
			t.Errorf("%v: Reset with the default limit: %v", c, err)
		}
	}
}

func TestCompressionRoundTrip(t *testing.T) {
	inputs := [][]byte{nil, []byte("x"), bytes.Repeat([]byte("weir "), 100_000)}
	for _, c := range allCodecs {
		for _, in := range inputs {
			comp, err := c.AppendCompressed([]byte("prefix"), in)
			if err != nil {
				t.Fatalf("%v: %v", c, err)
			}
			out, err := c.AppendDecompressed([]byte("p"), comp[len("prefix"):], 0)
			if err != nil {
				t.Fatalf("%v decompress: %v", c, err)
			}
			if !bytes.Equal(out[1:], in) || out[0] != 'p' {
				t.Fatalf("%v: round trip of %d bytes gave %d", c, len(in), len(out)-1)
			}
		}
	}
}

func TestSnappyBareBlock(t *testing.T) {
	// Some clients send a bare snappy block instead of the xerial framing.
	in := bytes.Repeat([]byte("bare snappy "), 1000)
	framed := appendXerial(nil, in)
	out, err := Snappy.AppendDecompressed(nil, framed, 0)
	if err != nil || !bytes.Equal(out, in) {
		t.Fatalf("xerial: %v", err)
	}
	bare := make([]byte, 0, len(in))
	block, err := iotestSnappyBlock(in)
	if err != nil {
		t.Fatal(err)
	}
	bare = append(bare, block...)
	out, err = Snappy.AppendDecompressed(nil, bare, 0)
	if err != nil || !bytes.Equal(out, in) {
		t.Fatalf("bare block: %v", err)
	}
	if _, err := Snappy.AppendDecompressed(nil, append(bytes.Clone(framed[:20]), 0xff), 0); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("cut xerial frame: %v, want ErrCorrupt", err)
	}
}

func TestParseCompression(t *testing.T) {
	for _, c := range allCodecs {
		got, err := ParseCompression(c.String())
		if err != nil || got != c {
			t.Errorf("ParseCompression(%q) = %v, %v", c.String(), got, err)
		}
	}
	if _, err := ParseCompression("brotli"); err == nil {
		t.Error("ParseCompression(brotli) succeeded")
	}
}

// TestStreamDecodersWithShortReads feeds the stream decoders through
// one-byte reads, the way a slow network delivers data.
func TestStreamDecodersWithShortReads(t *testing.T) {
	in := bytes.Repeat([]byte("short reads "), 5000)
	for _, c := range []Compression{Gzip, LZ4} {
		comp, err := c.AppendCompressed(nil, in)
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if _, err := buf.ReadFrom(iotest.OneByteReader(bytes.NewReader(comp))); err != nil {
			t.Fatal(err)
		}
		out, err := c.AppendDecompressed(nil, buf.Bytes(), 0)
		if err != nil || !bytes.Equal(out, in) {
			t.Fatalf("%v: %v", c, err)
		}
		half, err := c.AppendDecompressed(nil, comp[:len(comp)/2], 0)
		if err == nil {
			t.Fatalf("%v: half a stream decoded to %d bytes without an error", c, len(half))
		}
	}
}

func TestBuilderSizeWith(t *testing.T) {
	var b Builder
	hs := []RecordHeader{{Key: []byte("k"), Value: []byte("v")}}
	for i := range 300 {
		v := bytes.Repeat([]byte("x"), i*7)
		ts := int64(1_700_000_000_000 + i*1000)
		want := b.SizeWith(ts, []byte("key"), v, hs)
		b.Append(ts, []byte("key"), v, hs)
		if got := b.Size(); got != want {
			t.Fatalf("record %d: SizeWith said %d, Size is %d", i, want, got)
		}
	}
}
