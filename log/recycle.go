package log

import (
	"io"
	"math"
	"os"
	"slices"
	"sync/atomic"

	"github.com/weirhub/weir/codecs"
)

// With SyncAlways, a log whose retention deletes segments keeps the file
// of a deleted segment and reuses it for a later segment, as PostgreSQL
// recycles its WAL segments and RocksDB its logs (recycle_log_file_num):
// appends into a recycled file overwrite blocks written and synced before,
// inside the file, whose fdatasync carries the data alone, with no journal
// commit for a new size or new extents (see prewrite.go, whose window of
// zeros does the same for a few MiB ahead of a new file's data; a recycled
// file needs no window until its data passes the old file's end).
//
//	retention deletes 00..00100.log          roll to offset 900
//	  rename -> 00..00100.recycle              rename -> 00..00900.log
//	  (pinned open while readers hold it;      appends overwrite the old
//	   the directory synced in the back-       blocks; the old batches
//	   ground)                                 after the data are stale
//
//	  data (batches, from 900)   stale batches (offsets 100..) (file ends)
//	|==========================|~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~|
//	0                       written
//
// A reader holding the deleted segment keeps reading its own records: the
// file is pinned open (as compaction's replaced segments are), renamed
// out of the segment names, and is taken for a new segment only once the
// last reader released it and the rename is durable. Until then a roll
// creates a new file as before.
//
// A log with a Tier does not recycle: its uploads and local retention
// manage its local files (see tier.go).
//
// The log keeps at most Options.RecycleSegments such files (default 1):
// a deletion beyond that unlinks the file. Its disk is thus its data plus
// the recycled files and the active segment's stale tail, each at most a
// segment, and both are given back when the log stops growing (the idle
// check of the window of zeros, on the shared Syncer when the log has
// one: the files are removed and the active segment truncated to its
// data), when the segment is sealed (truncated to its data, as the window
// is), on Close and at Open (recycle files left by a crash are removed).
//
// Nothing reads the stale bytes as data. Readers stop at the published
// size. Recovery scans the active segment (or a rolled one whose seal a
// crash interrupted) and stops at the first batch that is not valid or
// does not continue the offsets: stale batches carry offsets below the
// segment's base (the file was an older segment of the same log), so the
// scan stops where the data ends. Recovery then cuts the tail; it keeps
// no .corrupt file when the tail is a recycled file's (staleTail): within
// recycleSearch bytes after the cut it finds a whole valid batch with an
// offset below the segment's base, no valid batch that could continue the
// data lies before it, and from it on the file holds batch headers with
// such offsets, then zeros, up to its end. A tail with anything else
// (real damage, or a torn write followed by more data) is kept in a
// .corrupt file as before. No durable marker is needed: the offsets say
// which batches are stale, and the rename at a roll is made durable by
// the sealer's directory sync, which every acknowledgement of the new
// segment's data waits for (see roll).
//
// A partial-page write into a page that is not cached makes the kernel
// read the old block first, and a recycled file's pages need not be
// cached. Appends are sequential and each write's first page is cached
// (the previous write ended in it), so only the last page of a write
// would be read: a write into a recycled file that ends inside a page of
// stale bytes writes zeros after the data up to the end of that page, in
// the same pwritev (writePadded), and the next write overwrites them.
//
// What it gives (logbench -always, steady state: -segment 64MiB -retention
// 128MiB -size 768MiB, 16 KiB appends; on against off alternated in each
// of 6 rounds, against dd conv=fdatasync of the same round; the
// development machine, 2 cores, ext4 on a virtio disk, shared, load 3-6):
// 8 appenders 0.58-0.70x dd (median 0.69x) against 0.27-0.64x (0.56x)
// with the recycled pages dropped from the cache (-drop-recycled), 0.73-
// 0.86x (0.81x) against 0.45-0.64x (0.55x) with them cached; 64 appenders
// 0.46-1.48x (1.04x) against 0.36-0.92x (0.64x) dropped, 0.67-1.13x
// (0.95x) against 0.49-1.18x (0.68x) cached. The fdatasyncs are shorter
// (8 appenders 0.27-0.38 ms against 0.35-1.00; 64: 0.53-1.63 against
// 0.75-1.86). The dd of a round ran at 339-1442 MB/s (the disk is
// shared): ratios above 1 mean a slow dd, not a log faster than the
// disk; a dd of 256 MiB runs at 700-1900 MB/s on the same disk, and
// against it (-size 256MiB -segment 16MiB -retention 32MiB, dropped, 6
// rounds, load 3.8-4.6) recycling gave 0.21x (0.16-0.26) against 0.17x
// (0.06-0.35) at 8 appenders, 0.45x (0.20-0.64) against 0.28x
// (0.21-0.56) at 64, winning 5 of 6 rounds each; in 4 rounds at load
// 6-7, 0.09x against 0.09x and 0.28x against 0.16x, and a log without
// retention in the same hold 0.10x and 0.29x. Without the page padding the dropped pages cost each write a
// read: 0.49-0.93 ms between syncs at 8 appenders against 0.19-0.22 ms
// with the pages cached (16 MiB segments); with it, 0.14-0.22 ms dropped,
// 0.11-0.13 cached.

// recycleSuffix names a segment file kept for reuse.
const recycleSuffix = ".recycle"

// recycleSearch bounds how far past the end of the data recovery looks for
// the first stale batch of a recycled file: past any torn write, which is
// at most what the appenders had written since the last sync.
const recycleSearch = 64 << 20

// recycledFile is a deleted segment's file kept for reuse.
type recycledFile struct {
	path  string      // its recycle name
	seg   *segment    // the deleted segment: the file is free once it is released
	ready atomic.Bool // the rename is durable
}

// keepForRecycle renames the file of s, a closed segment being deleted,
// to a recycle name instead of unlinking it, and reports whether it did;
// its index files are removed in the background. Called with l.mu held.
func (l *Log) keepForRecycle(s *segment) bool {
	if l.opts.Sync != SyncAlways || len(l.recycle) >= l.opts.RecycleSegments || s.cold != nil || s.held ||
		s.corrupt != nil || l.tier != nil || l.closed.Load() || s.lastIndexed < 0 {
		// A segment recovered at Open does not know where its batches
		// start (lastIndexed), which padFor needs.
		return false
	}
	if _, err := s.fh.pin(); err != nil {
		return false
	}
	path := segmentName(l.dir, s.base, recycleSuffix)
	if err := l.fs.Rename(s.path, path); err != nil {
		s.fh.unpin()
		return false
	}
	// Readers holding s keep the pinned file; release unpins it.
	s.held = true
	s.deleted.Store(true)
	l.removing.Add(1)
	l.files.RemoveLater(func() { // with no lock held (see FileCache.RemoveLater)
		defer l.removing.Done()
		for _, suffix := range []string{indexSuffix, timeIndexSuffix} {
			l.fs.Remove(s.base2path(suffix))
		}
	})
	r := &recycledFile{path: path, seg: s}
	l.recycle = append(l.recycle, r)
	l.sealWG.Add(1)
	go func() {
		defer l.sealWG.Done()
		if err := l.fs.SyncDir(l.dir); err != nil {
			l.opts.Logger.Warn("log: syncing the directory after keeping a segment file for reuse failed", "dir", l.dir, "err", err)
			return
		}
		r.ready.Store(true)
	}()
	l.armPrewriteIdle()
	return true
}

// takeRecycled gives the next segment, at base, a recycled file if one is
// free, or returns nil. Called with l.mu held, by roll.
func (l *Log) takeRecycled(base int64) *segment {
	i := slices.IndexFunc(l.recycle, func(r *recycledFile) bool { return r.ready.Load() && r.seg.freed.Load() })
	if i < 0 {
		return nil
	}
	r := l.recycle[i]
	l.recycle = slices.Delete(l.recycle, i, i+1)
	path := segmentName(l.dir, base, logSuffix)
	fail := func(err error) *segment {
		l.opts.Logger.Warn("log: reusing a segment file failed; creating one", "file", r.path, "err", err)
		l.fs.Remove(r.path)
		return nil
	}
	if err := l.fs.Rename(r.path, path); err != nil {
		return fail(err)
	}
	r.path = path
	f, err := l.fs.OpenFile(path, os.O_RDWR, 0o644)
	if err != nil {
		return fail(err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fail(err)
	}
	s := newSegment(l.fs, l.dir, base, l.files.handle(l.fs, path, os.O_RDWR, f))
	// Written and synced up to its size: no window of zeros, no
	// reservation needed below it.
	s.reserved, s.zeroed, s.recycled = st.Size(), st.Size(), true
	// The old segment's last index entry: a whole batch starts there, and
	// whole batches follow it to the end (see padFor).
	s.staleLast, s.staleEnd = r.seg.lastIndexed, st.Size()
	l.stats.recycled.Add(1)
	return s
}

// dropRecycled removes the files kept for reuse. Readers still holding
// their segments keep them open. Called with l.mu held.
func (l *Log) dropRecycled() {
	for _, r := range l.recycle {
		if err := l.fs.Remove(r.path); err != nil && !os.IsNotExist(err) {
			l.opts.Logger.Warn("log: removing a segment file kept for reuse failed", "file", r.path, "err", err)
		}
	}
	l.recycle = nil
}

// staleTail reports whether [pos, size) of a segment file, where a scan
// found the end of the data (next is the offset after it, base the
// segment's base), is the stale tail of a recycled file: a whole valid
// batch with an offset below base starts within recycleSearch bytes, no
// valid batch with an offset of next or more starts before it, and from it
// on batch headers with offsets below base, never decreasing, run to the
// end of the file or to zeros up to it.
func staleTail(f io.ReaderAt, pos, size, base, next int64) bool {
	if base <= 0 || pos >= size {
		return false
	}
	q := int64(-1)
	const chunk = 1 << 20
	buf := make([]byte, min(chunk+codecs.HeaderSize, size-pos))
	limit := min(size, pos+recycleSearch)
search:
	for at := pos; at+codecs.HeaderSize <= limit; at += chunk {
		n, _ := f.ReadAt(buf[:min(int64(len(buf)), size-at)], at)
		for i := 0; i+codecs.HeaderSize <= n && i < chunk; i++ {
			h, err := codecs.ParseHeader(buf[i:n])
			if err != nil || (h.BaseOffset >= base && h.BaseOffset < next) || h.Size() > maxScanBatch {
				continue
			}
			p := at + int64(i)
			if p+int64(h.Size()) > size {
				continue
			}
			b := make([]byte, h.Size())
			if _, err := f.ReadAt(b, p); err != nil {
				continue
			}
			if _, err := codecs.Validate(b, 0); err != nil {
				continue
			}
			if h.BaseOffset >= next {
				return false // data after the damage
			}
			q = p
			break search
		}
	}
	if q < 0 {
		return false
	}
	hr := newHeaderReader(f)
	defer hr.done()
	last := int64(math.MinInt64)
	for q < size {
		h, err := hr.header(q, size)
		if err != nil || h.BaseOffset >= base || h.BaseOffset < last {
			zero, zerr := zerosFrom(f, q, size)
			return zerr == nil && zero
		}
		last = h.BaseOffset
		q += int64(h.Size())
	}
	return true
}

// staleIn reports whether the tail of the segment at base, of size bytes,
// after a scan that stopped at res is a recycled file's (see staleTail).
func (res scanResult) staleIn(f io.ReaderAt, base, size int64) bool {
	return res.err != nil && staleTail(f, res.end, size, base, res.next)
}

// padFor is how many zeros a write of n bytes at pos into s takes after
// its data: up to the end of the page it ends in, if that page holds
// stale bytes of a recycled file; up to the end of the stale bytes if the
// page reaches the stale batch at staleLast or past it. Recovery tells a
// stale tail from damage by a whole stale batch after the data
// (staleTail): a piece of the last stale batch alone, left by a write
// ending inside it, would look like damage. Once the zeros run to the
// end of the stale bytes, later writes need none. Called with l.mu held.
func (s *segment) padFor(pos int64, n int) int64 {
	const page = 4096
	end := pos + int64(n)
	if !s.recycled || end >= s.staleEnd {
		return 0
	}
	pageEnd := (end + page - 1) / page * page
	if pageEnd <= s.staleLast {
		return pageEnd - end
	}
	pad := s.staleEnd - end
	// Zeros from end on: a write that fails truncates the file to its
	// start (see flushStage), which leaves no stale bytes either.
	s.staleEnd = end
	return pad
}

// writeThenZeros writes b at pos, then pad zeros after it.
func writeThenZeros(f File, b []byte, pos int64, pad int64) error {
	if _, err := f.WriteAt(b, pos); err != nil {
		return err
	}
	for at := pos + int64(len(b)); pad > 0; {
		n := min(pad, int64(len(zeroBlock)))
		if _, err := f.WriteAt(zeroBlock[:n], at); err != nil {
			return err
		}
		at, pad = at+n, pad-n
	}
	return nil
}

// writePadded writes b at pos followed by pad zeros (see writeVec).
func writePadded(f File, b []byte, pos int64, pad int64) error {
	iov := [2][]byte{b} // room for the zeros: nothing allocated
	return writeVec(f, iov[:1], int64(len(b)), pos, pad)
}

// joinBuffers returns the size bytes of bufs in one buffer (new, unless
// there is only one): for a file that takes no list of buffers in one
// write.
func joinBuffers(bufs [][]byte, size int64) []byte {
	if len(bufs) == 1 {
		return bufs[0]
	}
	b := make([]byte, 0, size)
	for _, p := range bufs {
		b = append(b, p...)
	}
	return b
}
