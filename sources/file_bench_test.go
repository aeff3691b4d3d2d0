package sources

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// BenchmarkFileSourceRead reads a file of 200-byte lines through Read,
// acknowledging every batch: one op is the whole file (100,000 lines,
// 20MB) read by a new source with a fresh state directory.
func BenchmarkFileSourceRead(b *testing.B) {
	const lines, lineLen = 100_000, 200
	dir := b.TempDir()
	path := filepath.Join(dir, "big.log")
	var buf bytes.Buffer
	pad := bytes.Repeat([]byte("x"), lineLen)
	for i := range lines {
		n, _ := fmt.Fprintf(&buf, "%08d ", i)
		buf.Write(pad[:lineLen-1-n])
		buf.WriteByte('\n')
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.SetBytes(int64(buf.Len()))
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		s := openFileSource(b, filepath.Join(dir, "state", strconv.Itoa(i)), "batch_size: 1000\n", path)
		for n := 0; n < lines; {
			msgs, ack, err := s.Read(ctx)
			if err != nil {
				b.Fatal(err)
			}
			n += len(msgs)
			if err := ack(ctx, nil); err != nil {
				b.Fatal(err)
			}
		}
		if err := s.Close(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(lines)*float64(b.N)/b.Elapsed().Seconds(), "lines/s")
}
