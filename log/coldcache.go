package log

import (
	"container/list"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ColdCache keeps chunks of cold segments (segments only in the Tier) on
// local disk, so that reads of cold offsets cost one ranged GET per chunk
// rather than one per read. Chunks are aligned to ChunkBytes within their
// object; the least recently used go once the cache holds more than its
// limit. A read fetches its chunks if missing and starts fetching the
// next few chunks in the background (read-ahead), so a consumer catching
// up sequentially mostly finds its chunk already there. A chunk a read
// waited for is streamed from the store into its file (copy_file_range
// from a directory store, no user-space copy), never synced (the cache is
// emptied at start), and kept open while cached, so that a read is one
// pread. A chunk fetched ahead is staged in memory instead (at most
// stagedChunks of them, in reused buffers, the least recently used
// dropped first): a consumer catching up through the whole history
// neither writes it to disk nor evicts what other readers cached. A
// staged chunk a read went through to its end is dropped first, and its
// buffer is the next one staged when there is no spare (drop-behind: a
// catch-up cycles through a few buffers whose pages stay mapped). Logs
// that share a cache share its limits; a log's chunks go when it
// closes. Safe for concurrent use.
//
//	dir/
//	  <sequence number>   one chunk, DefaultChunkBytes or the object's tail
type ColdCache struct {
	dir   string // "" keeps chunks in memory
	limit int64
	chunk int64

	mu     sync.Mutex
	lru    list.List // *chunkEntry, least recently used first
	byKey  map[chunkKey]*list.Element
	size   int64 // of the chunks on disk (in memory with dir "")
	staged int64 // of the chunks staged in memory with a dir
	flight map[chunkKey]*fill

	seq                          atomic.Int64 // names chunk files
	hits, misses, gets, getBytes atomic.Int64
}

type chunkKey struct {
	obj string // log dir + object name
	n   int64
}

type chunkEntry struct {
	key    chunkKey
	f      *os.File // on disk (open while cached), or nil with data
	path   string   // f's name
	data   []byte
	pooled bool // data is from chunkBufs
	staged bool // in memory in a cache with a dir
	// read through: a read reached the end of this staged chunk, which
	// went to the front of the LRU (a sequential reader does not come
	// back); its buffer is the first a new staged chunk takes
	through bool
	size    int64
	refs    int  // reads under way, under ColdCache.mu
	gone    bool // evicted: freed when refs drops to 0
}

type fill struct {
	done chan struct{}
	err  error
}

// ColdCacheStats are a cache's counters.
type ColdCacheStats struct {
	Bytes    int64 // cached now (on disk with a dir), at most the limit
	Staged   int64 // fetched ahead into memory, with a dir
	Hits     int64 // chunk reads served from the cache
	Misses   int64 // chunk reads that waited for a GET
	Gets     int64 // ranged GETs
	GetBytes int64 // bytes they fetched
}

// DefaultChunkBytes is the chunk size of a ColdCache: one ranged GET.
// Large enough that a GiB costs a few hundred requests and each request's
// latency is small against its transfer.
const DefaultChunkBytes = 4 << 20

// readAhead is how many chunks after the one read are fetched ahead, in
// parallel, so that a sequential reader overlaps its GETs; a reader near
// the end of a segment also reads ahead into the next one.
const readAhead = 4

// stagedChunks bounds the chunks a cache with a dir keeps in memory after
// fetching them ahead: enough for several partitions read sequentially at
// once.
const stagedChunks = 16

// chunkBufs keeps buffers of whole chunks freed by the cache for the next
// chunks staged in memory: a catch-up read stages a chunk every 4 MiB,
// and a sync.Pool, emptied by each garbage collection, let it allocate
// (and zero) nearly every one. At most spareChunks stay when no read
// needs them.
var chunkBufs = make(chan []byte, spareChunks)

// spareChunks is how many freed chunk buffers are kept: the read-ahead
// of two readers.
const spareChunks = 2 * readAhead

func getChunkBuf() []byte {
	select {
	case b := <-chunkBufs:
		return b
	default:
		return make([]byte, DefaultChunkBytes)
	}
}

func putChunkBuf(b []byte) {
	select {
	case chunkBufs <- b:
	default:
	}
}

// copyBufs are the buffers chunks are streamed through when the store's
// reader cannot be copied to a file by the kernel.
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}

// NewColdCache returns a cache of at most limit bytes (at least two
// chunks) in dir, which it empties first; dir "" keeps the chunks in
// memory.
func NewColdCache(dir string, limit int64) (*ColdCache, error) {
	c := &ColdCache{dir: dir, limit: max(limit, 2*DefaultChunkBytes), chunk: DefaultChunkBytes,
		byKey: map[chunkKey]*list.Element{}, flight: map[chunkKey]*fill{}}
	if dir != "" {
		if err := os.RemoveAll(dir); err != nil {
			return nil, fmt.Errorf("log: cold cache: %w", err)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("log: cold cache: %w", err)
		}
	}
	return c, nil
}

// Stats returns the cache's counters.
func (c *ColdCache) Stats() ColdCacheStats {
	c.mu.Lock()
	size, staged := c.size, c.staged
	c.mu.Unlock()
	return ColdCacheStats{Bytes: size, Staged: staged, Hits: c.hits.Load(), Misses: c.misses.Load(), Gets: c.gets.Load(), GetBytes: c.getBytes.Load()}
}

// readAt reads p from off of object key (size bytes) of tier t.
func (c *ColdCache) readAt(t Tier, logID, key string, size int64, p []byte, off int64, timeout time.Duration) (int, error) {
	obj := logID + "\x00" + key
	if off >= size {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), size-off)]
	n := 0
	for n < len(p) {
		at := off + int64(n)
		k := chunkKey{obj, at / c.chunk}
		got, err := c.readChunk(t, key, size, k, p[n:], at-k.n*c.chunk, timeout)
		n += got
		if err != nil {
			return n, err
		}
		if got == 0 {
			return n, io.ErrUnexpectedEOF
		}
		c.prefetchAfter(t, key, size, k, timeout)
	}
	return n, nil
}

// prefetchAfter starts fetching the readAhead chunks of the object after
// chunk k: a sequential reader finds them there.
func (c *ColdCache) prefetchAfter(t Tier, key string, size int64, k chunkKey, timeout time.Duration) {
	for a := int64(1); a <= readAhead && (k.n+a)*c.chunk < size; a++ {
		c.prefetch(t, key, size, chunkKey{k.obj, k.n + a}, timeout)
	}
}

// readChunk copies into p what chunk k holds from within.
func (c *ColdCache) readChunk(t Tier, key string, size int64, k chunkKey, p []byte, within int64, timeout time.Duration) (int, error) {
	for tries := 0; ; tries++ {
		ce, err := c.acquireChunk(t, key, size, k, tries == 0, timeout)
		if err != nil {
			return 0, err
		}
		n, err := ce.read(p, within)
		c.unref(ce, within+int64(n) >= ce.size)
		if err == nil || tries > 2 {
			return n, err
		}
		c.drop(k) // a failed read: fetch again
	}
}

// acquireChunk returns chunk k, fetching it if it is not cached, with a
// read under way (c.unref ends it); count counts a hit or a miss.
func (c *ColdCache) acquireChunk(t Tier, key string, size int64, k chunkKey, count bool, timeout time.Duration) (*chunkEntry, error) {
	for waited := false; ; waited = true {
		c.mu.Lock()
		if e, ok := c.byKey[k]; ok {
			c.lru.MoveToBack(e)
			ce := e.Value.(*chunkEntry)
			ce.refs++
			ce.through = false
			c.mu.Unlock()
			if count && !waited {
				c.hits.Add(1)
			}
			return ce, nil
		}
		f, ok := c.flight[k]
		if !ok {
			f = &fill{done: make(chan struct{})}
			c.flight[k] = f
			go c.fetch(t, key, size, k, f, false, timeout)
		}
		c.mu.Unlock()
		if count && !waited {
			c.misses.Add(1)
		}
		<-f.done
		if f.err != nil {
			return nil, f.err
		}
	}
}

// writeTo writes n bytes of object key (size bytes) of tier t from off to
// w: the bytes of chunks staged in memory straight from their buffers,
// the others through buf. It reads ahead as readAt does.
func (c *ColdCache) writeTo(w io.Writer, t Tier, logID, key string, size, off, n int64, buf []byte, timeout time.Duration) (int64, error) {
	obj := logID + "\x00" + key
	n = min(n, size-off)
	var done int64
	for done < n {
		at := off + done
		k := chunkKey{obj, at / c.chunk}
		within := at - k.n*c.chunk
		ce, err := c.acquireChunk(t, key, size, k, true, timeout)
		if err != nil {
			return done, err
		}
		c.prefetchAfter(t, key, size, k, timeout)
		want := min(n-done, ce.size-within)
		end := within+want == ce.size
		var wrote int
		if ce.f == nil {
			wrote, err = w.Write(ce.data[within : within+want])
			done += int64(wrote)
		} else {
			for err == nil && want > 0 {
				var got int
				got, err = ce.read(buf[:min(int64(len(buf)), want)], within)
				if got > 0 {
					wrote, err = w.Write(buf[:got])
					done, within, want = done+int64(wrote), within+int64(wrote), want-int64(wrote)
				}
			}
		}
		c.unref(ce, end && err == nil)
		if err != nil {
			return done, err
		}
	}
	return done, nil
}

func (ce *chunkEntry) read(p []byte, within int64) (int, error) {
	if within >= ce.size {
		return 0, io.EOF
	}
	if ce.f == nil {
		return copy(p, ce.data[within:]), nil
	}
	want := min(int64(len(p)), ce.size-within)
	n, err := ce.f.ReadAt(p[:want], within)
	if int64(n) == want {
		err = nil
	}
	return n, err
}

// prefetchStart starts fetching the first n chunks of object key (size
// bytes): read-ahead across the end of the object before it.
func (c *ColdCache) prefetchStart(t Tier, logID, key string, size int64, n int64, timeout time.Duration) {
	obj := logID + "\x00" + key
	for i := int64(0); i < n && i*c.chunk < size; i++ {
		c.prefetch(t, key, size, chunkKey{obj, i}, timeout)
	}
}

func (c *ColdCache) prefetch(t Tier, key string, size int64, k chunkKey, timeout time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.byKey[k]; ok {
		return
	}
	if _, ok := c.flight[k]; ok {
		return
	}
	f := &fill{done: make(chan struct{})}
	c.flight[k] = f
	go c.fetch(t, key, size, k, f, true, timeout)
}

// fetch GETs chunk k and adds it to the cache: staged in memory when
// fetched ahead of reads into a cache with a dir.
func (c *ColdCache) fetch(t Tier, key string, size int64, k chunkKey, f *fill, ahead bool, timeout time.Duration) {
	ce, err := c.get(t, key, size, k, ahead && c.dir != "", timeout)
	c.mu.Lock()
	delete(c.flight, k)
	if err == nil {
		c.byKey[k] = c.lru.PushBack(ce)
		if ce.staged {
			c.staged += ce.size
		} else {
			c.size += ce.size
		}
		c.evictLocked()
	}
	c.mu.Unlock()
	f.err = err
	close(f.done)
}

func (c *ColdCache) get(t Tier, key string, size int64, k chunkKey, stage bool, timeout time.Duration) (*chunkEntry, error) {
	from := k.n * c.chunk
	n := min(c.chunk, size-from)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c.gets.Add(1)
	rc, err := t.Get(ctx, key, from, n)
	if err != nil {
		return nil, fmt.Errorf("%w: reading %s at %d: %v", ErrTierUnavailable, key, from, err)
	}
	defer rc.Close()
	ce := &chunkEntry{key: k, size: n, staged: stage}
	if c.dir == "" || stage {
		if c.chunk == DefaultChunkBytes {
			// A segment's last chunk is shorter: a pooled buffer too.
			var b []byte
			if stage {
				b = c.stageBuf()
			} else {
				b = getChunkBuf()
			}
			ce.data, ce.pooled = b[:n], true
		} else {
			ce.data = make([]byte, n)
		}
		if _, err := io.ReadFull(rc, ce.data); err != nil {
			ce.free()
			return nil, fmt.Errorf("%w: reading %s at %d: %v", ErrTierUnavailable, key, from, err)
		}
		c.getBytes.Add(n)
		return ce, nil
	}
	path := filepath.Join(c.dir, fmt.Sprint(c.seq.Add(1)))
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("log: cold cache: %w", err)
	}
	got, err := copyChunk(f, io.LimitReader(rc, n))
	if err == nil && got != n {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("%w: reading %s at %d: %v", ErrTierUnavailable, key, from, err)
	}
	c.getBytes.Add(n)
	ce.f, ce.path = f, path
	return ce, nil
}

// copyChunk copies r to f: by the kernel when r can say how
// (io.WriterTo, as a directory store's reader does), else through a
// pooled buffer.
func copyChunk(f *os.File, r io.Reader) (int64, error) {
	if lr, ok := r.(*io.LimitedReader); ok {
		if wt, ok := lr.R.(io.WriterTo); ok {
			return wt.WriteTo(f)
		}
	}
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	return io.CopyBuffer(writerOnly{f}, r, *bp)
}

// writerOnly hides os.File's ReadFrom, which would copy through a buffer
// of its own.
type writerOnly struct{ io.Writer }

func (c *ColdCache) drop(k chunkKey) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.byKey[k]; ok {
		c.removeLocked(e)
	}
}

func (c *ColdCache) removeLocked(e *list.Element) {
	ce := e.Value.(*chunkEntry)
	c.lru.Remove(e)
	delete(c.byKey, ce.key)
	if ce.staged {
		c.staged -= ce.size
	} else {
		c.size -= ce.size
	}
	ce.gone = true
	if ce.refs == 0 {
		ce.free()
	}
}

// unref ends a read of ce, freeing it if it was evicted meanwhile;
// through says the read reached the chunk's end: a staged chunk then goes
// to the front of the LRU, its buffer the next a staged chunk takes
// (stageBuf).
func (c *ColdCache) unref(ce *chunkEntry, through bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ce.refs--; ce.refs == 0 && ce.gone {
		ce.free()
		return
	}
	if through && ce.staged && !ce.gone {
		if e, ok := c.byKey[ce.key]; ok && e.Value == ce {
			ce.through = true
			c.lru.MoveToFront(e)
		}
	}
}

// stageBuf returns a buffer for a chunk staged in memory: a spare one,
// else that of a staged chunk a read went through and no read uses, else
// a new one. A catch-up read so cycles through a few buffers whose pages
// stay mapped, instead of allocating (and the kernel zeroing) 4 MiB for
// every chunk until stagedChunks are staged.
func (c *ColdCache) stageBuf() []byte {
	select {
	case b := <-chunkBufs:
		return b
	default:
	}
	c.mu.Lock()
	for e := c.lru.Front(); e != nil; e = e.Next() {
		ce := e.Value.(*chunkEntry)
		if !ce.through {
			break // read-through chunks are at the front
		}
		if ce.refs == 0 && ce.pooled {
			b := ce.data[:cap(ce.data)]
			ce.pooled = false
			c.removeLocked(e)
			c.mu.Unlock()
			return b
		}
	}
	c.mu.Unlock()
	return make([]byte, DefaultChunkBytes)
}

// forget drops the chunks of the log whose cache ID is logID: closed, so
// that no read asks for them again. Their buffers go back to the spares.
func (c *ColdCache) forget(logID string) {
	prefix := logID + "\x00"
	c.mu.Lock()
	defer c.mu.Unlock()
	for e := c.lru.Front(); e != nil; {
		next := e.Next()
		if strings.HasPrefix(e.Value.(*chunkEntry).key.obj, prefix) {
			c.removeLocked(e)
		}
		e = next
	}
}

// free releases an entry no read uses: its file, or its buffer.
func (ce *chunkEntry) free() {
	if ce.f != nil {
		ce.f.Close()
		os.Remove(ce.path)
		ce.f = nil
	}
	if ce.pooled {
		putChunkBuf(ce.data[:cap(ce.data)])
		ce.pooled = false
	}
	ce.data = nil
}

// evictLocked drops the least recently used chunks while the cache is
// over its limit, or has more than stagedChunks staged.
func (c *ColdCache) evictLocked() {
	for e := c.lru.Front(); e != nil && (c.size > c.limit || c.staged > stagedChunks*c.chunk); {
		next := e.Next()
		ce := e.Value.(*chunkEntry)
		if ce.staged && c.staged > stagedChunks*c.chunk || !ce.staged && c.size > c.limit {
			c.removeLocked(e)
		}
		e = next
	}
}
