package log

import (
	"encoding/binary"
	"fmt"
	"os"
	"sync/atomic"
	"syscall"
)

const (
	offsetEntrySize = 8  // relative offset uint32, position uint32
	timeEntrySize   = 12 // timestamp int64, relative offset uint32
)

// index is an append-only array of fixed-size big-endian entries. While
// its segment is active the entries live in memory and grow; once sealed
// they are the read-only mapping of the index file. Readers need no lock:
// they load the count, then the backing array, and use that many entries.
type index struct {
	size int          // bytes per entry
	n    atomic.Int64 // entries published to readers
	w    int          // entries written, >= n; the writer's own
	mem  atomic.Pointer[[]byte]
	mm   []byte // the mapping to unmap, when sealed
}

// entries returns the published entries.
func (x *index) entries() []byte {
	n := x.n.Load()
	if n == 0 {
		return nil
	}
	return (*x.mem.Load())[:int(n)*x.size]
}

// add appends an entry that readers see after the next publish. Only the
// segment's writer calls it. Slots past the published count are never
// read, so the writer may fill and refill them freely.
func (x *index) add(entry []byte) {
	var b []byte
	if p := x.mem.Load(); p != nil {
		b = *p
	}
	if (x.w+1)*x.size > len(b) {
		grown := make([]byte, max(2*len(b), 64*x.size))
		copy(grown, b[:x.w*x.size])
		x.mem.Store(&grown)
		b = grown
	}
	copy(b[x.w*x.size:], entry)
	x.w++
}

// last returns the last written entry, or nil.
func (x *index) last() []byte {
	if x.w == 0 {
		return nil
	}
	return (*x.mem.Load())[(x.w-1)*x.size : x.w*x.size]
}

// written returns the written entries, published or not. Writer only.
func (x *index) written() []byte {
	if x.w == 0 {
		return nil
	}
	return (*x.mem.Load())[:x.w*x.size]
}

// publish makes the first n written entries visible to readers.
func (x *index) publish(n int) {
	if int64(n) > x.n.Load() {
		x.n.Store(int64(n))
	}
}

// load maps an index file read-only (or reads it into memory when the file
// system has no operating system files). A size that is not a whole number
// of entries is an error: the file is damaged.
func (x *index) load(fsys FS, path string) error {
	f, err := fsys.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	size := st.Size()
	if size%int64(x.size) != 0 {
		return fmt.Errorf("%s: %d bytes is not a whole number of %d-byte entries", path, size, x.size)
	}
	if size == 0 {
		return nil
	}
	o := osOf(f)
	if o == nil {
		b := make([]byte, size)
		if _, err := f.ReadAt(b, 0); err != nil {
			return fmt.Errorf("reading %s: %w", path, err)
		}
		x.mem.Store(&b)
		x.w = int(size / int64(x.size))
		x.n.Store(int64(x.w))
		return nil
	}
	mm, err := syscall.Mmap(int(o.Fd()), 0, int(size), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("mmap %s: %w", path, err)
	}
	x.mm = mm
	x.mem.Store(&mm)
	x.w = int(size / int64(x.size))
	x.n.Store(int64(x.w))
	return nil
}

// close releases the mapping.
func (x *index) close() {
	if x.mm != nil {
		syscall.Munmap(x.mm)
		x.mm = nil
	}
}

func offsetEntry(b []byte, i int) (rel, pos uint32) {
	e := b[i*offsetEntrySize:]
	return binary.BigEndian.Uint32(e), binary.BigEndian.Uint32(e[4:])
}

func timeEntry(b []byte, i int) (ts int64, rel uint32) {
	e := b[i*timeEntrySize:]
	return int64(binary.BigEndian.Uint64(e)), binary.BigEndian.Uint32(e[8:])
}

// floorOffset returns the last entry whose relative offset is <= rel, or
// ok == false when rel is before the first entry.
func floorOffset(b []byte, rel uint32) (erel, pos uint32, ok bool) {
	lo, hi := 0, len(b)/offsetEntrySize // search [lo, hi)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if r, _ := offsetEntry(b, mid); r <= rel {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	if lo == 0 {
		return 0, 0, false
	}
	erel, pos = offsetEntry(b, lo-1)
	return erel, pos, true
}

// floorPosition returns the last entry whose position is <= pos.
func floorPosition(b []byte, pos uint32) (erel, epos uint32, ok bool) {
	lo, hi := 0, len(b)/offsetEntrySize
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if _, p := offsetEntry(b, mid); p <= pos {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	if lo == 0 {
		return 0, 0, false
	}
	erel, epos = offsetEntry(b, lo-1)
	return erel, epos, true
}

// floorTime returns the relative offset of the last time entry whose
// timestamp is below ts: no record before that offset is as new as ts.
func floorTime(b []byte, ts int64) (rel uint32, ok bool) {
	lo, hi := 0, len(b)/timeEntrySize
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if t, _ := timeEntry(b, mid); t < ts {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	if lo == 0 {
		return 0, false
	}
	_, rel = timeEntry(b, lo-1)
	return rel, true
}

func appendOffsetEntry(dst []byte, rel, pos uint32) []byte {
	dst = binary.BigEndian.AppendUint32(dst, rel)
	return binary.BigEndian.AppendUint32(dst, pos)
}

func appendTimeEntry(dst []byte, ts int64, rel uint32) []byte {
	dst = binary.BigEndian.AppendUint64(dst, uint64(ts))
	return binary.BigEndian.AppendUint32(dst, rel)
}
