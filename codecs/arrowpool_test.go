package codecs

import (
	"bytes"
	"strings"
	"testing"
	"unsafe"
)

func TestArrowPool(t *testing.T) {
	p := NewArrowPool(8 << 20)
	for _, n := range []int{1, 63, 64, 65, 513, 1000, 4096, 100000, 1 << 20} {
		b := p.Allocate(n)
		if len(b) != n || cap(b) < n || cap(b)-n > max(64, n/8) {
			t.Errorf("Allocate(%d): len %d cap %d", n, len(b), cap(b))
		}
		if uintptr(unsafe.Pointer(&b[0]))%64 != 0 {
			t.Errorf("Allocate(%d) is not 64-byte aligned", n)
		}
		for i := range b {
			b[i] = 0xff
		}
		p.Free(b)
		c := p.Allocate(n)
		if &c[0] != &b[0] {
			t.Errorf("Allocate(%d) after Free did not reuse the buffer", n)
		}
		for i, x := range c[:cap(c)] {
			if x != 0 {
				t.Fatalf("Allocate(%d) reused a buffer without zeroing byte %d", n, i)
			}
		}
		g := p.Reallocate(2*n+1000, c)
		if len(g) != 2*n+1000 {
			t.Errorf("Reallocate: len %d", len(g))
		}
		p.Free(g)
	}
	if idle := p.Idle(); idle > 8<<20 {
		t.Errorf("Idle() = %d, more than maxIdle", idle)
	}
	p.Free(make([]byte, 0, 100)) // not one of its sizes: ignored
}

// TestArrowPoolEvictsSmall checks that a full pool makes room for a big
// buffer by dropping small ones, and never keeps more than maxIdle.
func TestArrowPoolEvictsSmall(t *testing.T) {
	p := NewArrowPool(1 << 20)
	var small [][]byte
	for range 16 {
		small = append(small, p.Allocate(64<<10))
	}
	for _, b := range small {
		p.Free(b)
	}
	big := p.Allocate(768 << 10)
	p.Free(big)
	if idle := p.Idle(); idle > 1<<20 || idle < 768<<10 {
		t.Errorf("Idle() = %d after freeing a 768 KiB buffer into a full 1 MiB pool", idle)
	}
	if c := p.Allocate(700 << 10); &c[:1][0] != &big[:1][0] {
		t.Errorf("a 700 KiB allocation did not reuse the free 768 KiB buffer")
	}
}

// TestAppendZstdFastest round-trips through Zstd's decoder, appending to
// a non-empty dst.
func TestAppendZstdFastest(t *testing.T) {
	src := []byte(strings.Repeat(`{"id":1,"page":"/search","ok":true}`, 5000))
	out := AppendZstdFastest([]byte("head"), src)
	if string(out[:4]) != "head" || len(out)-4 >= len(src)/4 {
		t.Fatalf("AppendZstdFastest: %d bytes for %d, prefix %q", len(out)-4, len(src), out[:4])
	}
	got, err := Zstd.AppendDecompressed(nil, out[4:], 0)
	if err != nil || !bytes.Equal(got, src) {
		t.Fatalf("decompressed: %v, equal %v", err, bytes.Equal(got, src))
	}
}
