package log

import (
	"container/list"
	"fmt"
	"sync"
)

// FileCache bounds the segment files open at once across every log that
// shares it: a log opens a segment's file when it reads or writes it, and
// the cache closes the least recently used files not in use once more than
// its limit are open. A hub shares one among all its partitions, so that
// open files do not grow with the partition count. Files in use (a reader
// holding a Section, an append, an fsync) are never closed under it: when
// all are in use the limit is exceeded for as long as they are. Safe for
// concurrent use.
type FileCache struct {
	limit int

	mu   sync.Mutex
	lru  list.List // open, unpinned handles, least recently used first
	open int
	// stats
	opens, evictions int64

	// idx holds the loaded indexes of closed segments, least recently
	// used first; their memory is kept within idxLimit bytes.
	idx                 list.List
	idxBytes, idxLimit  int64
	idxLoads, idxEvicts int64

	// seals bounds the background sealers of the logs sharing the cache:
	// each holds its segment's file (and its index files) open while it
	// syncs, so that many logs rolling at once stay within the file limit.
	seals chan struct{}

	// The removal queue (see RemoveLater): guarded by rmMu.
	rmMu      sync.Mutex
	rmQueue   []func()
	rmRunning bool
}

// Deleting a segment frees its blocks, and on a filesystem that discards
// freed blocks at once (ext4 mounted with discard) or under a busy
// journal that took 114-678 ms for one segment file on the development
// machine, against a few microseconds for a rename. The blocks are freed
// by whichever call drops the file's last name and last descriptor: an
// unlink of a file no one has open, or the close of the last descriptor
// of a file already unlinked. So no lock an appender, a reader or the
// cache's users need is held across either, and no request waits for
// them: a deleted segment's .log file is renamed out of the segment names
// at once (which is what makes it deleted for Open; see Log.removeSegment),
// and its unlinks and the close of its last descriptor run later, one at
// a time, on a goroutine of the cache's own, which exists while there is
// such work and exits when there is none:
//
//	retention, DeleteBefore        removal goroutine (one per FileCache)
//	  under Log.mu:                  unlink 00..00100.log.deleted  <- frees the blocks
//	    rename 00..00100.log           unlink 00..00100.index, .timeindex
//	      -> 00..00100.log.deleted     close the last descriptor of a
//	    queue the unlinks              deleted file a reader released
//	  returns at once
//
// A log waits for the removals it queued on Close, so that its directory
// holds only its files once closed; Open removes the .deleted files a
// crash left. One goroutine, not one per log: a hub deleting many
// partitions at once frees their blocks one file at a time instead of
// making the disk's journal serve them all together. A hub queues the
// removal of a deleted dataset's directory here too, for the same reason.

// RemoveLater runs fn, which unlinks or closes files, on the cache's
// removal goroutine, after the work queued before it. fn must not wait for
// other work of the cache's; whoever needs to know it ran waits for it
// (a log's Close waits for the removals it queued).
func (c *FileCache) RemoveLater(fn func()) {
	c.rmMu.Lock()
	c.rmQueue = append(c.rmQueue, fn)
	start := !c.rmRunning
	c.rmRunning = true
	c.rmMu.Unlock()
	if start {
		go c.runRemovals()
	}
}

// runRemovals runs the queued removals until none is left.
func (c *FileCache) runRemovals() {
	for {
		c.rmMu.Lock()
		if len(c.rmQueue) == 0 {
			c.rmQueue = nil
			c.rmRunning = false
			c.rmMu.Unlock()
			return
		}
		fn := c.rmQueue[0]
		c.rmQueue[0] = nil
		c.rmQueue = c.rmQueue[1:]
		c.rmMu.Unlock()
		fn()
	}
}

// DefaultIndexMemory is the memory a FileCache lets the indexes of closed
// segments hold at once (see SetIndexMemory).
const DefaultIndexMemory = 32 << 20

// NewFileCache returns a cache that keeps at most limit files open when
// they are not in use, and the indexes of closed segments in at most
// DefaultIndexMemory bytes. A limit below 1 means 1.
func NewFileCache(limit int) *FileCache {
	limit = max(limit, 1)
	return &FileCache{limit: limit, idxLimit: DefaultIndexMemory, seals: make(chan struct{}, min(8, max(1, limit/8)))}
}

// SetIndexMemory bounds the memory of the closed segments' indexes that the
// logs sharing the cache keep loaded: an index is read from its file when a
// read needs it, and the least recently used are dropped beyond bytes. An
// index in use by a reader stays valid for it. Default DefaultIndexMemory.
func (c *FileCache) SetIndexMemory(bytes int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.idxLimit = max(bytes, 0)
	c.evictIndexesLocked()
}

// FileCacheStats are a cache's counters.
type FileCacheStats struct {
	Open      int   // files open now
	Opens     int64 // files opened since the cache was made
	Evictions int64 // files closed to stay within the limit

	IndexesLoaded  int   // closed segments' indexes in memory now
	IndexBytes     int64 // the memory they hold
	IndexLoads     int64 // indexes cached since the cache was made (read back, or kept at a roll)
	IndexEvictions int64 // indexes dropped to stay within the memory bound
}

// Stats returns the cache's counters.
func (c *FileCache) Stats() FileCacheStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return FileCacheStats{Open: c.open, Opens: c.opens, Evictions: c.evictions,
		IndexesLoaded: c.idx.Len(), IndexBytes: c.idxBytes, IndexLoads: c.idxLoads, IndexEvictions: c.idxEvicts}
}

// addIndex caches a loaded index of bytes, evicting others beyond the
// bound (the new one too, if it alone is larger: its reader still has it).
func (c *FileCache) addIndex(d *indexFile, bytes int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if d.elem != nil {
		return
	}
	d.bytes = bytes
	d.elem = c.idx.PushBack(d)
	c.idxBytes += bytes
	c.idxLoads++
	c.evictIndexesLocked()
}

// dropIndex takes an index out of the cache, leaving its memory to the
// caller.
func (c *FileCache) dropIndex(d *indexFile) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if d.elem != nil {
		c.idx.Remove(d.elem)
		d.elem = nil
		c.idxBytes -= d.bytes
	}
}

// evictIndexesLocked drops loaded indexes, least recently used first,
// while they hold more than the bound. An index read since the last look
// gets a second chance (moved to the back, its mark cleared): readers
// mark without taking the lock.
func (c *FileCache) evictIndexesLocked() {
	for chances := c.idx.Len(); c.idxBytes > c.idxLimit; {
		e := c.idx.Front()
		if e == nil {
			return
		}
		d := e.Value.(*indexFile)
		if chances > 0 && d.used.Load() {
			chances--
			d.used.Store(false)
			c.idx.MoveToBack(e)
			continue
		}
		c.idx.Remove(e)
		d.elem = nil
		c.idxBytes -= d.bytes
		c.idxEvicts++
		d.x.mem.Store(nil)
	}
}

// fileHandle is a segment file that is open only while in use or cached.
//
// An evicted file may still have dirty pages; the next fsync goes through
// a new descriptor. Linux (4.16 and later) reports a writeback error to a
// descriptor opened after it as long as no one has seen it yet, and no one
// fsyncs these files but the log, so the error still reaches the log.
type fileHandle struct {
	cache *FileCache
	fs    FS
	path  string
	flag  int

	// guarded by cache.mu
	f      File
	pins   int
	elem   *list.Element // in cache.lru while open and unpinned
	closed bool          // for good: the segment is gone
}

func (c *FileCache) handle(fsys FS, path string, flag int, f File) *fileHandle {
	h := &fileHandle{cache: c, fs: fsys, path: path, flag: flag}
	if f != nil {
		c.mu.Lock()
		h.f = f
		c.open++
		c.opens++
		h.elem = c.lru.PushBack(h)
		c.evictLocked()
		c.mu.Unlock()
	}
	return h
}

// pin returns the open file, opening it if needed; it stays open until the
// matching unpin.
func (h *fileHandle) pin() (File, error) {
	c := h.cache
	c.mu.Lock()
	defer c.mu.Unlock()
	if h.closed {
		return nil, fmt.Errorf("log: %s: %w", h.path, ErrClosed)
	}
	if h.f == nil {
		f, err := h.fs.OpenFile(h.path, h.flag, 0o644)
		if err != nil {
			return nil, fmt.Errorf("log: reopening %s: %w", h.path, err)
		}
		h.f = f
		c.open++
		c.opens++
	}
	if h.elem != nil {
		c.lru.Remove(h.elem)
		h.elem = nil
	}
	h.pins++
	c.evictLocked()
	return h.f, nil
}

// unpin ends a use of the file begun by pin. The last unpin of a handle
// closed for good closes the file on the cache's removal goroutine: it
// may be the last descriptor of a deleted segment's file, whose close
// frees its blocks (see RemoveLater).
func (h *fileHandle) unpin() {
	c := h.cache
	c.mu.Lock()
	h.pins--
	if h.pins == 0 && h.f != nil {
		if h.closed {
			f := h.f
			h.f = nil
			c.open--
			c.mu.Unlock()
			c.RemoveLater(func() { f.Close() })
			return
		}
		h.elem = c.lru.PushBack(h)
		c.evictLocked()
	}
	c.mu.Unlock()
}

// close closes the file for good, once it is no longer in use: now if it
// is not, else at the last unpin. The file is closed with the cache's lock
// released.
func (h *fileHandle) close() {
	c := h.cache
	c.mu.Lock()
	h.closed = true
	var f File
	if h.pins == 0 && h.f != nil {
		if h.elem != nil {
			c.lru.Remove(h.elem)
			h.elem = nil
		}
		f = h.f
		h.f = nil
		c.open--
	}
	c.mu.Unlock()
	if f != nil {
		f.Close()
	}
}

// evictLocked closes unpinned files, least recently used first, while more
// than the limit are open.
func (c *FileCache) evictLocked() {
	for c.open > c.limit {
		e := c.lru.Front()
		if e == nil {
			return
		}
		h := e.Value.(*fileHandle)
		c.lru.Remove(e)
		h.elem = nil
		h.f.Close()
		h.f = nil
		c.open--
		c.evictions++
	}
}
