package log

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/weirhub/weir/codecs"
)

const (
	logSuffix       = ".log"
	indexSuffix     = ".index"
	timeIndexSuffix = ".timeindex"
	corruptSuffix   = ".corrupt"
	tmpSuffix       = ".tmp"
	deletedSuffix   = ".deleted" // a deleted segment's .log file, unlinked in the background
)

func segmentName(dir string, base int64, suffix string) string {
	return filepath.Join(dir, fmt.Sprintf("%020d%s", base, suffix))
}

// segment is one .log file and its indexes. Its published fields are read
// without locks; its writer fields belong to the Log's mutex.
type segment struct {
	base int64
	path string
	fs   FS
	fh   *fileHandle // the .log file, open while in use or cached
	off  index       // offset index
	tim  index       // time index

	// Published to readers.
	size  atomic.Int64 // bytes of whole batches readers may read
	next  atomic.Int64 // offset after the last published batch
	maxTS atomic.Int64 // largest timestamp of a published batch

	// cold is set for a segment read from the Tier (see tier.go).
	cold *coldSeg

	// corrupt, when set, is where a closed segment stops being servable.
	corrupt *CorruptError

	// Writer state, guarded by Log.mu while the segment is active.
	written      int64 // bytes written, >= size
	writtenNext  int64 // offset after the last written batch
	writtenMaxTS int64
	lastIndexed  int64 // position of the last offset index entry, -1 before any
	firstTS      int64 // max timestamp of the first batch, for roll by age
	reserved     int64 // file blocks reserved up to here, >= written
	zeroed       int64 // with SyncAlways, zeros fill the file from written to here (see prewrite.go)
	recycled     bool  // the file was a deleted segment's: stale bytes lie past written, up to zeroed (see recycle.go)
	staleLast    int64 // recycled: a whole stale batch starts here (the old segment's last index entry)
	staleEnd     int64 // recycled: stale bytes may lie up to here; past it, zeros (see padFor)

	// durable is closed once a rolled segment's data is on disk (or its
	// sync failed, with sealErr set); nil for the active segment.
	durable chan struct{}
	sealErr error

	// refs counts the Log's own reference plus readers holding sections.
	refs    atomic.Int32
	deleted atomic.Bool
	// unlinked is set once the file lost its name for good (deleted, or
	// replaced by compaction): the last release closes it in the
	// background.
	unlinked atomic.Bool
	// held is set when compaction replaced the segment: its file was
	// pinned open before the cleaned file took its name, so that readers
	// still holding it never reopen the new file by that name.
	held bool
	once sync.Once
	// freed is set once the last reference is released and the file
	// closed: a file kept for reuse may then be taken (see recycle.go).
	freed atomic.Bool
}

func newSegment(fsys FS, dir string, base int64, fh *fileHandle) *segment {
	s := &segment{fs: fsys, base: base, path: segmentName(dir, base, logSuffix), fh: fh, lastIndexed: -1,
		writtenNext: base, writtenMaxTS: math.MinInt64, firstTS: math.MinInt64}
	s.off.size, s.tim.size = offsetEntrySize, timeEntrySize
	s.next.Store(base)
	s.maxTS.Store(math.MinInt64)
	s.refs.Store(1)
	return s
}

// acquire takes a reference for a reader; it fails once the segment has
// been dropped by the log.
func (s *segment) acquire() bool {
	for {
		n := s.refs.Load()
		if n <= 0 {
			return false
		}
		if s.refs.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// release drops a reference; the last one closes the file: on the file
// cache's removal goroutine if the file lost its name (deleted, or
// replaced by compaction), since closing its last descriptor then frees
// its blocks (see FileCache.RemoveLater).
func (s *segment) release() {
	if s.refs.Add(-1) == 0 {
		s.once.Do(func() {
			if s.unlinked.Load() {
				s.fh.cache.RemoveLater(s.closeFiles)
				return
			}
			s.closeFiles()
		})
	}
}

// closeFiles closes the segment's file and drops its indexes. Called once,
// by the last release.
func (s *segment) closeFiles() {
	s.fh.close()
	if s.held {
		s.fh.unpin()
	}
	s.off.close()
	s.tim.close()
	s.freed.Store(true)
}

// withFile runs fn with the segment's file open.
func (s *segment) withFile(fn func(File) error) error {
	f, err := s.fh.pin()
	if err != nil {
		return err
	}
	defer s.fh.unpin()
	return fn(f)
}

// removeSegment deletes a segment's files; open readers keep reading
// until they release. Its .log file is renamed out of the segment names
// at once, which is all that Open looks at (it removes the .deleted files
// a crash left, and index files without a segment), and is unlinked with
// its index files on the file cache's removal goroutine, with no lock
// held (see FileCache.RemoveLater); Close waits for those unlinks. A
// failure to unlink is logged: the file is no longer the log's, and the
// next Open removes it.
func (l *Log) removeSegment(s *segment) error {
	s.deleted.Store(true)
	s.unlinked.Store(true)
	gone := s.path + deletedSuffix
	if err := l.fs.Rename(s.path, gone); err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("log: deleting segment %s: %w", s.path, err)
		}
		gone = ""
	}
	l.removing.Add(1)
	l.files.RemoveLater(func() {
		defer l.removing.Done()
		var errs []error
		for _, path := range []string{gone, s.base2path(indexSuffix), s.base2path(timeIndexSuffix)} {
			if path == "" {
				continue
			}
			if err := l.fs.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
		}
		if err := errors.Join(errs...); err != nil {
			l.opts.Logger.Warn("log: removing a deleted segment's files failed; the next Open removes them", "segment", s.path, "err", err)
		}
	})
	return nil
}

func (s *segment) base2path(suffix string) string {
	return s.path[:len(s.path)-len(logSuffix)] + suffix
}

// rel converts an offset to the 32-bit offset relative to the base.
func (s *segment) rel(offset int64) uint32 {
	d := offset - s.base
	if d < 0 {
		return 0
	}
	if d > math.MaxUint32 {
		return math.MaxUint32
	}
	return uint32(d)
}

// headerReader reads batch headers through a small buffer, so that a run of
// small batches costs one pread rather than one per batch.
type headerReader struct {
	f    io.ReaderAt
	bufp *[]byte
	buf  []byte
	at   int64 // file position of buf[0]
	have int   // valid bytes in buf
}

var headerBufs = sync.Pool{New: func() any { b := make([]byte, 16<<10); return &b }}

func newHeaderReader(f io.ReaderAt) headerReader {
	p := headerBufs.Get().(*[]byte)
	return headerReader{f: f, bufp: p, buf: *p, at: -1}
}

func (r *headerReader) done() {
	headerBufs.Put(r.bufp)
	r.bufp, r.buf = nil, nil
}

// header reads the batch header at pos; limit is the end of the readable
// bytes. It checks only the header: magic, sizes, codec, and that the batch
// ends within limit.
func (r *headerReader) header(pos, limit int64) (codecs.Header, error) {
	if pos+codecs.HeaderSize > limit {
		return codecs.Header{}, &codecs.BatchError{BaseOffset: -1, Reason: "header past the end of the segment", Err: codecs.ErrShort}
	}
	if r.at < 0 || pos < r.at || pos+codecs.HeaderSize > r.at+int64(r.have) {
		n := int(min(int64(len(r.buf)), limit-pos))
		got, err := r.f.ReadAt(r.buf[:n], pos)
		if got < codecs.HeaderSize {
			if err == nil || err == io.EOF {
				err = &codecs.BatchError{BaseOffset: -1, Reason: "segment ends inside a header", Err: codecs.ErrShort}
			}
			r.at = -1
			return codecs.Header{}, err
		}
		r.at, r.have = pos, got
	}
	h, err := codecs.ParseHeader(r.buf[pos-r.at:])
	if err != nil {
		return h, err
	}
	if pos+int64(h.Size()) > limit {
		return h, &codecs.BatchError{BaseOffset: h.BaseOffset, Reason: "batch runs past the end of the segment", Err: codecs.ErrShort}
	}
	return h, nil
}

// locate finds the batch holding offset, or the first batch after it, in
// the first limit bytes of the segment. It returns the batch's position and
// header; found is false when no batch at or after offset lies within
// limit.
func (s *segment) locate(hr *headerReader, offset, limit int64) (pos int64, h codecs.Header, found bool, err error) {
	if _, p, ok := floorOffset(s.off.entries(), s.rel(offset)); ok && int64(p) < limit {
		pos = int64(p)
	}
	for pos < limit {
		h, err = hr.header(pos, limit)
		if err != nil {
			return pos, h, false, s.corruptAt(pos, err)
		}
		if h.LastOffset() >= offset {
			return pos, h, true, nil
		}
		pos += int64(h.Size())
	}
	return pos, h, false, nil
}

// extent returns the end of the run of whole batches that starts at start
// (a batch boundary whose header is h) and fits in maxBytes, bounded by
// limit. The run holds at least the first batch.
func (s *segment) extent(hr *headerReader, start int64, h codecs.Header, maxBytes, limit int64) (int64, error) {
	end := start + int64(h.Size())
	if end >= limit || end-start >= maxBytes {
		return min(end, limit), nil
	}
	target := min(start+maxBytes, limit)
	// Jump to the last indexed batch that starts within the target.
	if _, p, ok := floorPosition(s.off.entries(), uint32(min(target, math.MaxUint32))); ok && int64(p) > end {
		end = int64(p)
	}
	for end < target {
		h, err := hr.header(end, limit)
		if err != nil {
			return end, s.corruptAt(end, err)
		}
		if end+int64(h.Size()) > target {
			break
		}
		end += int64(h.Size())
	}
	return end, nil
}

// corruptAt wraps a header error found while reading the segment.
func (s *segment) corruptAt(pos int64, err error) error {
	var be *codecs.BatchError
	if !errors.As(err, &be) {
		return fmt.Errorf("log: reading %s at position %d: %w", s.path, pos, err)
	}
	return &CorruptError{Path: s.path, Position: pos, Offset: s.next.Load(), Err: err}
}
