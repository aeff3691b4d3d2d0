package codecs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/pierrec/lz4/v4"
)

// accessLog is n NDJSON web-access records like the pipeline benchmark's,
// as the records section of a batch holds them.
func accessLog(n int) []byte {
	rng := rand.New(rand.NewPCG(42, 270))
	levels := []string{"debug", "info", "info", "warn", "error"}
	paths := []string{"/api/v1/orders", "/api/v1/users", "/login", "/static/app.js", "/healthz"}
	var bl Builder
	var v []byte
	for i := range n {
		v = fmt.Appendf(v[:0], `{"ts":"2026-11-21T00:%02d:%02d.%03dZ","level":"%s","host":"web-%02d","method":"GET","path":"%s/%d","status":%d,"latency_ms":%.1f,"bytes":%d,"ua":"Mozilla/5.0 (X11; Linux x86_64)","ip":"10.%d.%d.%d","trace":"%016x"}`,
			i/60000%60, i/1000%60, i%1000, levels[rng.IntN(len(levels))], rng.IntN(24), paths[rng.IntN(len(paths))], rng.IntN(100000),
			[]int{200, 201, 304, 404, 500}[rng.IntN(5)], rng.ExpFloat64()*40, rng.IntN(20000), rng.IntN(256), rng.IntN(256), rng.IntN(256), rng.Uint64())
		bl.Append(int64(i), nil, v, nil)
	}
	b, _ := bl.Build()
	return append([]byte(nil), b[HeaderSize:]...)
}

// pierrecFrame is src compressed by pierrec's Writer with opts.
func pierrecFrame(t testing.TB, src []byte, opts ...lz4.Option) []byte {
	t.Helper()
	var out bytes.Buffer
	w := lz4.NewWriter(&out)
	if err := w.Apply(opts...); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(src); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func lz4Inputs() map[string][]byte {
	random := make([]byte, 200<<10)
	for i := range random {
		random[i] = byte(rand.Uint32())
	}
	text := accessLog(3000) // about 800 KiB
	return map[string][]byte{
		"empty": {}, "one byte": {'x'}, "64KiB-1": text[:64<<10-1], "64KiB": text[:64<<10], "64KiB+1": text[:64<<10+1],
		"access log": text, "random": random, "zeros": make([]byte, 5<<20),
		"mixed": append(append([]byte(nil), random[:70<<10]...), text[:100<<10]...),
	}
}

// TestLZ4FrameInterop checks Weir's LZ4 frames both ways against pierrec's
// Writer and Reader: the Reader reads what Weir writes (checking its header
// checksum), and Weir reads what the Writer writes with every option a
// producer may use, without falling back to the Reader.
func TestLZ4FrameInterop(t *testing.T) {
	writerOpts := map[string][]lz4.Option{
		"default (4MiB blocks, content checksum)": nil,
		"64KiB, no checksum":                      {lz4.BlockSizeOption(lz4.Block64Kb), lz4.ChecksumOption(false)},
		"256KiB, block checksums":                 {lz4.BlockSizeOption(lz4.Block256Kb), lz4.BlockChecksumOption(true)},
		"1MiB, high compression":                  {lz4.BlockSizeOption(lz4.Block1Mb), lz4.CompressionLevelOption(lz4.Level9)},
		"64KiB, concurrent":                       {lz4.BlockSizeOption(lz4.Block64Kb), lz4.ConcurrencyOption(2)},
	}
	for name, src := range lz4Inputs() {
		t.Run(name, func(t *testing.T) {
			ours, err := LZ4.AppendCompressed(nil, src)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(lz4.NewReader(bytes.NewReader(ours)))
			if err != nil || !bytes.Equal(got, src) {
				t.Fatalf("pierrec Reader of Weir's frame: %d bytes, %v; want %d bytes", len(got), err, len(src))
			}
			for oname, opts := range writerOpts {
				for _, size := range []bool{false, true} {
					if size {
						opts = append(opts[:len(opts):len(opts)], lz4.SizeOption(uint64(len(src))))
					}
					frame := pierrecFrame(t, src, opts...)
					got, err := appendLZ4Decoded([]byte("prefix"), frame, len(src))
					if err != nil || !bytes.Equal(got[6:], src) || string(got[:6]) != "prefix" {
						t.Errorf("%s (content size %v): %d bytes, %v; want %d bytes", oname, size, len(got)-6, err, len(src))
					}
				}
			}
		})
	}
}

// TestLZ4LinkedBlocks reads a frame whose second block copies from the
// first, as encoders writing linked blocks (the frame format's default) do.
func TestLZ4LinkedBlocks(t *testing.T) {
	first := []byte("hello, lz4 world")
	frame := []byte{0x04, 0x22, 0x4d, 0x18, 0x40, 0x40, 0} // FLG: version 01, linked blocks; HC below
	frame = append(frame, byte(len(first)), 0, 0, 0x80)    // stored uncompressed
	frame = append(frame, first...)
	// A match of 5 bytes 16 back ("hello"), then the literals "abcde".
	second := []byte{0x01, 16, 0, 0x50, 'a', 'b', 'c', 'd', 'e'}
	frame = append(frame, byte(len(second)), 0, 0, 0)
	frame = append(frame, second...)
	frame = append(frame, 0, 0, 0, 0)
	want := "hello, lz4 worldhelloabcde"
	// The header checksum that pierrec's Reader accepts, so that it
	// confirms what the frame holds.
	var ref []byte
	var err error
	for hc := range 256 {
		frame[6] = byte(hc)
		if ref, err = io.ReadAll(lz4.NewReader(bytes.NewReader(frame))); err == nil {
			break
		}
	}
	if err != nil || string(ref) != want {
		t.Fatalf("pierrec Reader of the linked frame = %q, %v; the test frame is wrong", ref, err)
	}
	got, err := LZ4.AppendDecompressed(nil, frame, 0)
	if err != nil || string(got) != want {
		t.Fatalf("linked frame = %q, %v; want %q", got, err, want)
	}
}

// TestLZ4Limits checks the decompression bound on every kind of block, the
// frames left to pierrec's Reader, and that every cut of a frame fails
// cleanly.
func TestLZ4Limits(t *testing.T) {
	zeros := make([]byte, 1<<20)
	for name, frame := range map[string][]byte{
		"weir":                   appendLZ4(nil, zeros),
		"4MiB blocks":            pierrecFrame(t, zeros),
		"content size":           pierrecFrame(t, zeros, lz4.SizeOption(uint64(len(zeros)))),
		"raw blocks":             appendLZ4(nil, lz4Inputs()["random"]),
		"linked, 4MiB blocks":    linkedOf(pierrecFrame(t, zeros)),
		"legacy (Reader's path)": pierrecFrame(t, zeros, lz4.LegacyOption(true)),
	} {
		for _, max := range []int{1, 1000, 64<<10 - 1, 100 << 10} {
			if _, err := LZ4.AppendDecompressed(nil, frame, max); !errors.Is(err, ErrTooLarge) {
				t.Errorf("%s decompressed under a limit of %d: %v, want ErrTooLarge", name, max, err)
			}
		}
	}
	legacy := pierrecFrame(t, zeros[:1000], lz4.LegacyOption(true))
	if got, err := LZ4.AppendDecompressed(nil, legacy, 0); err != nil || len(got) != 1000 {
		t.Errorf("legacy frame: %d bytes, %v", len(got), err)
	}
	frame := appendLZ4(nil, accessLog(500))
	for cut := range len(frame) - 1 {
		if _, err := LZ4.AppendDecompressed(nil, frame[:cut], 0); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("frame cut at %d of %d: %v, want ErrCorrupt", cut, len(frame), err)
		}
	}
}

// FuzzLZ4 decodes arbitrary frames under a limit (no panic, nothing past
// the limit) and round-trips arbitrary content.
func FuzzLZ4(f *testing.F) {
	f.Add(appendLZ4(nil, accessLog(20)), 4096)
	f.Add(pierrecFrame(f, accessLog(20), lz4.BlockChecksumOption(true), lz4.SizeOption(uint64(len(accessLog(20))))), 1<<20)
	f.Add(linkedOf(pierrecFrame(f, bytes.Repeat([]byte("abc"), 5000))), 1000)
	f.Fuzz(func(t *testing.T, data []byte, max int) {
		max = int(uint(max)%(1<<20)) + 1
		out, err := LZ4.AppendDecompressed(nil, data, max)
		if err == nil && len(out) > max {
			t.Fatalf("%d bytes out under a limit of %d", len(out), max)
		}
		back, err := LZ4.AppendDecompressed(nil, appendLZ4(nil, data), len(data))
		if err != nil || !bytes.Equal(back, data) {
			t.Fatalf("round trip of %d bytes: %d bytes, %v", len(data), len(back), err)
		}
	})
}

// linkedOf clears the block independence flag of a frame (leaving its
// header checksum stale, which Weir's reader does not check): its blocks
// decode the same either way.
func linkedOf(frame []byte) []byte {
	f := bytes.Clone(frame)
	f[4] &^= lz4FlagIndep
	return f
}

// BenchmarkLZ4 compares the block framing Weir does itself with pierrec's
// Writer and Reader (64 KiB blocks, as Weir wrote them before) on the
// records of a batch of 1,000 access-log lines.
func BenchmarkLZ4(b *testing.B) {
	src := accessLog(1000)
	b.Run("compress/weir", func(b *testing.B) {
		var out []byte
		b.SetBytes(int64(len(src)))
		b.ReportAllocs()
		for b.Loop() {
			out, _ = LZ4.AppendCompressed(out[:0], src)
		}
		b.ReportMetric(float64(len(out))/float64(len(src)), "ratio")
	})
	b.Run("compress/pierrec-writer", func(b *testing.B) {
		var out bytes.Buffer
		w := lz4.NewWriter(&out)
		_ = w.Apply(lz4.BlockSizeOption(lz4.Block64Kb))
		b.SetBytes(int64(len(src)))
		b.ReportAllocs()
		for b.Loop() {
			out.Reset()
			w.Reset(&out)
			w.Write(src)
			w.Close()
		}
		b.ReportMetric(float64(out.Len())/float64(len(src)), "ratio")
	})
	frame := appendLZ4(nil, src)
	b.Run("decompress/weir", func(b *testing.B) {
		var out []byte
		b.SetBytes(int64(len(src)))
		b.ReportAllocs()
		for b.Loop() {
			var err error
			if out, err = LZ4.AppendDecompressed(out[:0], frame, 0); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decompress/pierrec-reader", func(b *testing.B) {
		checked := pierrecFrame(b, src, lz4.BlockSizeOption(lz4.Block64Kb))
		r := lz4.NewReader(nil)
		var rd bytes.Reader
		out := make([]byte, 0, len(src))
		b.SetBytes(int64(len(src)))
		b.ReportAllocs()
		for b.Loop() {
			rd.Reset(checked)
			r.Reset(&rd)
			out = out[:0]
			for {
				n, err := r.Read(out[len(out):cap(out)])
				out = out[:len(out)+n]
				if err == io.EOF {
					break
				}
				if err != nil {
					b.Fatal(err)
				}
				if len(out) == cap(out) {
					out = append(out, 0)[:len(out)]
				}
			}
		}
	})
}
