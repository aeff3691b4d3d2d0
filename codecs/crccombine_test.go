package codecs

import (
	"hash/crc32"
	"math/rand/v2"
	"testing"
)

// TestCombineCRC32C: the combined CRC of two random byte strings, of
// lengths from 0 to a few MiB, is hash/crc32's CRC-32C of the two one
// after the other.
func TestCombineCRC32C(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 3<<20)
	for i := range buf {
		buf[i] = byte(rng.Uint32())
	}
	tab := crc32.MakeTable(crc32.Castagnoli)
	lens := []int{0, 1, 2, 7, 21, 61, 1000, 4096, 100 << 10, 1<<20 + 3}
	for _, la := range lens {
		for _, lb := range lens {
			a, b := buf[:la], buf[la:la+lb]
			want := crc32.Checksum(buf[:la+lb], tab)
			if got := CombineCRC32C(crc32.Checksum(a, tab), crc32.Checksum(b, tab), int64(lb)); got != want {
				t.Errorf("CombineCRC32C(crc of %d bytes, crc of %d bytes) = %08x, want %08x", la, lb, got, want)
			}
		}
	}
}

func BenchmarkCombineCRC32C(b *testing.B) {
	b.ReportAllocs()
	var c uint32
	for i := 0; b.Loop(); i++ {
		c = CombineCRC32C(c, uint32(i), 100<<10+int64(i&1023))
	}
	_ = c
}
