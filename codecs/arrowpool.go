package codecs

import (
	"math/bits"
	"sync"
	"unsafe"

	"github.com/apache/arrow-go/v18/arrow/memory"
)

// ArrowPool is a memory.Allocator that keeps the buffers freed to it and
// hands them out again, so that the builders of one row group after
// another reuse the same memory instead of leaving it to the garbage
// collector (which lets the heap grow to twice what is live before it
// collects). Sizes are rounded up to one of eight steps per power of two
// (at most an eighth wasted), buffers are 64-byte aligned and zeroed when
// handed out. At most maxIdle bytes are kept free; beyond that a freed
// buffer is left to the garbage collector. It is safe for concurrent use.
type ArrowPool struct {
	mu      sync.Mutex
	free    map[int][][]byte // by capacity
	idle    int64
	maxIdle int64
}

const poolAlign = 64

var _ memory.Allocator = (*ArrowPool)(nil)

// NewArrowPool returns a pool that keeps at most maxIdle bytes of free
// buffers.
func NewArrowPool(maxIdle int64) *ArrowPool {
	return &ArrowPool{maxIdle: maxIdle, free: map[int][][]byte{}}
}

// poolSize rounds n up to its size class: a multiple of 64 up to 512,
// then of an eighth of the power of two below n.
func poolSize(n int) int {
	if n <= 512 {
		return max(64, (n+63)&^63)
	}
	step := 1 << (bits.Len(uint(n-1)) - 4)
	return (n + step - 1) &^ (step - 1)
}

// Allocate returns a zeroed buffer of size bytes: the smallest free one
// that holds it, if that is at most a quarter larger, or a new one.
func (p *ArrowPool) Allocate(size int) []byte {
	n := poolSize(size)
	p.mu.Lock()
	best := 0
	for c, l := range p.free {
		if len(l) > 0 && c >= n && c <= n+n/4 && (best == 0 || c < best) {
			best = c
		}
	}
	if best > 0 {
		l := p.free[best]
		b := l[len(l)-1]
		l[len(l)-1] = nil
		p.free[best] = l[:len(l)-1]
		p.idle -= int64(best)
		p.mu.Unlock()
		b = b[:best]
		clear(b) // Reallocate may grow into it in place
		return b[:size]
	}
	p.mu.Unlock()
	buf := make([]byte, n+poolAlign)
	shift := 0
	if r := int(uintptr(unsafe.Pointer(&buf[0])) % poolAlign); r != 0 {
		shift = poolAlign - r
	}
	return buf[shift : shift+size : shift+n]
}

// Reallocate returns a buffer of size bytes holding b's bytes: b itself
// when it has room.
func (p *ArrowPool) Reallocate(size int, b []byte) []byte {
	if cap(b) >= size {
		return b[:size]
	}
	nb := p.Allocate(size)
	copy(nb, b)
	p.Free(b)
	return nb
}

// Free takes back a buffer from Allocate or Reallocate. To keep it
// within maxIdle, smaller free buffers are dropped first (those a
// builder's growth left behind).
func (p *ArrowPool) Free(b []byte) {
	n := cap(b)
	if n == 0 || poolSize(n) != n || int64(n) > p.maxIdle {
		return // not one of ours, or too big to keep
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.idle+int64(n) > p.maxIdle {
		small := 0
		for c, l := range p.free {
			if len(l) > 0 && c < n && (small == 0 || c < small) {
				small = c
			}
		}
		if small == 0 {
			return // only bigger ones are kept: drop this one
		}
		l := p.free[small]
		l[len(l)-1] = nil
		p.free[small] = l[:len(l)-1]
		p.idle -= int64(small)
	}
	p.free[n] = append(p.free[n], b[:0])
	p.idle += int64(n)
}

// Idle is the bytes of free buffers the pool keeps.
func (p *ArrowPool) Idle() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.idle
}
