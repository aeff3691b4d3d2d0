package log

import (
	"container/list"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
)

const (
	offsetEntrySize = 8  // relative offset uint32, position uint32
	timeEntrySize   = 12 // timestamp int64, relative offset uint32
)

// index is an append-only array of fixed-size big-endian entries. While
// its segment is active the entries live in memory and grow with the data
// (from 64 entries, doubling). Once the segment is sealed the entries are
// its index file: the memory holding them is a cache, dropped when the
// file cache evicts it and read back from the file on the next use, so
// that a log's closed segments hold no index memory while nobody reads
// them. Readers need no lock: they load the count, then the backing array
// (loading it if need be), and use that many entries.
type index struct {
	size int          // bytes per entry
	n    atomic.Int64 // entries published to readers
	w    int          // entries written, >= n; the writer's own
	mem  atomic.Pointer[[]byte]
	disk atomic.Pointer[indexFile] // set once the entries are in a file
}

// indexFile is where a sealed index's entries are read back from.
type indexFile struct {
	x     *index
	fs    FS
	path  string
	cache *FileCache
	// gone is the segment's deleted flag: once set, the file may be gone
	// or hold another segment's entries, and is not read again.
	gone *atomic.Bool

	mu     sync.Mutex // serialises loads
	held   bool       // loaded for good: the file by that name is no longer this one's
	failed bool       // a load failed: reads go without the index

	used atomic.Bool // read since the cache last looked (second chance)
	// guarded by cache.mu
	elem  *list.Element // in cache.idx while loaded and evictable
	bytes int64
}

// entries returns the published entries, reading them back from the index
// file when they were evicted. Nil when there are none, or when they
// cannot be read back (the segment was deleted under a reader, or the file
// is damaged): the index only speeds reads up, which then scan the
// segment's batch headers from its start.
func (x *index) entries() []byte {
	n := x.n.Load()
	if n == 0 {
		return nil
	}
	p := x.mem.Load()
	d := x.disk.Load()
	if p == nil {
		if d == nil {
			return nil
		}
		if p = d.load(); p == nil {
			return nil
		}
	} else if d != nil && !d.used.Load() {
		d.used.Store(true)
	}
	if len(*p) < int(n)*x.size {
		return nil
	}
	return (*p)[:int(n)*x.size]
}

// loaded reports whether the entries are in memory.
func (x *index) loaded() bool { return x.mem.Load() != nil }

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

// last returns the last written entry, or nil. Writer only, before the
// index is sealed.
func (x *index) last() []byte {
	if x.w == 0 {
		return nil
	}
	return (*x.mem.Load())[(x.w-1)*x.size : x.w*x.size]
}

// written returns the written entries, published or not. Writer only,
// before the index is sealed.
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

// readIndexFile reads a whole index file of entries of size bytes. A size
// that is not a whole number of entries is an error: the file is damaged.
func readIndexFile(fsys FS, path string, size int) ([]byte, error) {
	f, err := fsys.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	n := st.Size()
	if n%int64(size) != 0 {
		return nil, fmt.Errorf("%s: %d bytes is not a whole number of %d-byte entries", path, n, size)
	}
	b := make([]byte, n)
	if _, err := f.ReadAt(b, 0); err != nil && !(errors.Is(err, io.EOF) && n == 0) {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	return b, nil
}

// load reads an index file into memory, for the recovery of a closed
// segment to check it; seal then hands it to the file cache.
func (x *index) load(fsys FS, path string) error {
	b, err := readIndexFile(fsys, path, x.size)
	if err != nil {
		return err
	}
	x.mem.Store(&b)
	x.w = len(b) / x.size
	x.n.Store(int64(x.w))
	return nil
}

// seal marks the index as stored in the file at path: from now on its
// memory is a cache of the file, counted against the file cache's index
// memory and dropped when evicted. With keep the entries in memory stay
// cached (a segment just rolled, still read at its tail); otherwise they
// are dropped at once (a segment opened at recovery, idle until read).
func (x *index) seal(fsys FS, path string, cache *FileCache, gone *atomic.Bool, keep bool) {
	d := &indexFile{x: x, fs: fsys, path: path, cache: cache, gone: gone}
	p := x.mem.Load()
	if !keep || p == nil {
		x.mem.Store(nil)
		x.disk.Store(d)
		return
	}
	x.disk.Store(d)
	cache.addIndex(d, int64(cap(*p)))
}

// load reads the entries back from the file, one load at a time, and
// caches them. It returns nil when they cannot be read.
func (d *indexFile) load() *[]byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	p := d.loadLocked()
	if p != nil && !d.held {
		d.used.Store(true)
		d.cache.addIndex(d, int64(cap(*p)))
	}
	return p
}

// loadLocked returns the entries, reading them from the file when they
// are not in memory. Called with d.mu held.
func (d *indexFile) loadLocked() *[]byte {
	x := d.x
	if p := x.mem.Load(); p != nil {
		return p // loaded meanwhile, or never dropped
	}
	if d.failed || d.held || d.gone.Load() {
		return nil
	}
	b, err := readIndexFile(d.fs, d.path, x.size)
	if err != nil || len(b) != x.w*x.size {
		// Gone (a reader of a segment deleted under it) or damaged.
		d.failed = true
		return nil
	}
	x.mem.Store(&b)
	return &b
}

// hold loads the entries for good, before the file by that name is
// replaced (compaction), so that readers still holding the segment keep
// its own entries.
func (x *index) hold() {
	d := x.disk.Load()
	if d == nil {
		return
	}
	d.mu.Lock()
	d.cache.dropIndex(d) // first, so that no eviction drops them now
	d.loadLocked()
	d.held = true
	d.mu.Unlock()
}

// close releases the entries' memory and their place in the cache.
func (x *index) close() {
	if d := x.disk.Load(); d != nil {
		d.mu.Lock()
		d.held = true // nothing is loaded again
		d.cache.dropIndex(d)
		x.mem.Store(nil)
		d.mu.Unlock()
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
