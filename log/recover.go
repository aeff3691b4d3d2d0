package log

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/weirhub/weir/codecs"
)

// maxScanBatch bounds the batch size a scan will read into memory; a
// header claiming more is treated as garbage.
const maxScanBatch = 256 << 20

// listSegments returns the base offsets of the .log files in dir, sorted,
// and removes leftovers: temporary files and indexes without a segment.
func listSegments(fsys FS, dir string, clean bool) ([]int64, error) {
	entries, err := fsys.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("log: %w", err)
	}
	var bases []int64
	logs := map[string]bool{}
	for _, name := range entries {
		if stem, ok := strings.CutSuffix(name, logSuffix); ok {
			if base, err := strconv.ParseInt(stem, 10, 64); err == nil && len(stem) == 20 && base >= 0 {
				bases = append(bases, base)
				logs[stem] = true
			}
		}
	}
	if clean {
		for _, name := range entries {
			stem, _, _ := strings.Cut(name, ".")
			switch {
			case strings.HasSuffix(name, tmpSuffix), strings.HasSuffix(name, recycleSuffix), strings.HasSuffix(name, deletedSuffix):
				// A recycle file is a reserve (see recycle.go): given back.
				// A deleted segment's file was to be unlinked in the
				// background (see Log.removeSegment).
				fsys.Remove(filepath.Join(dir, name))
			case (strings.HasSuffix(name, indexSuffix) || strings.HasSuffix(name, timeIndexSuffix)) && !logs[stem]:
				fsys.Remove(filepath.Join(dir, name))
			}
		}
	}
	slices.Sort(bases)
	return bases, nil
}

// recover opens every segment: closed ones through their indexes, the last
// one by a full scan that cuts a torn tail.
func (l *Log) recover() error {
	if err := l.recoverCompaction(); err != nil {
		return err
	}
	bases, err := listSegments(l.fs, l.dir, true)
	if err != nil {
		return err
	}
	var segs []*segment
	l.segs.Store(&segs) // so closeFiles can release what was opened
	if len(bases) == 0 {
		s, err := l.createSegment(l.tierNext())
		if err != nil {
			return err
		}
		segs = append(segs, s)
		if l.opts.Sync != SyncNever {
			if err := l.fs.SyncDir(l.dir); err != nil {
				return fmt.Errorf("log: %w", err)
			}
		}
	}
	for i, base := range bases {
		last := i == len(bases)-1
		// A closed segment without an index was never sealed: the crash
		// came before its background sync, so its tail may be torn and is
		// scanned and cut like the active segment's.
		_, ixErr := l.fs.Stat(segmentName(l.dir, base, indexSuffix))
		unsealed := !last && errors.Is(ixErr, os.ErrNotExist)
		flag := os.O_RDONLY
		if last || unsealed {
			flag = os.O_RDWR
		}
		path := segmentName(l.dir, base, logSuffix)
		fh := l.files.handle(l.fs, path, flag, nil)
		s := newSegment(l.fs, l.dir, base, fh)
		f, err := fh.pin()
		if err != nil {
			return err
		}
		segs = append(segs, s)
		l.segs.Store(&segs)
		switch {
		case last:
			err = l.recoverActive(s, f)
		case unsealed:
			err = l.recoverUnsealed(s, f, bases[i+1])
		default:
			err = l.openClosed(s, f, bases[i+1])
		}
		fh.unpin()
		if err != nil {
			return err
		}
	}
	for i := 1; i < len(segs); i++ {
		if prev := segs[i-1]; prev.corrupt == nil && prev.next.Load() > segs[i].base {
			return &CorruptError{Path: segs[i].path, Position: 0, Offset: segs[i].base,
				Err: fmt.Errorf("segment starts at offset %d but %s runs to %d", segs[i].base, prev.path, prev.next.Load()-1)}
		}
	}
	l.segs.Store(&segs)
	l.active = segs[len(segs)-1]
	l.hw.Store(l.active.next.Load())
	l.start.Store(segs[0].base)
	return nil
}

// recoverActive scans the last segment batch by batch, checking every CRC
// and that offsets follow on, rebuilds its indexes in memory, and cuts
// whatever follows the last good batch.
func (l *Log) recoverActive(s *segment, f File) error {
	res, size, err := l.scanWritten(s, f)
	if err != nil {
		return err
	}
	return l.cutAfterScan(s, f, res, size)
}

// scanWritten scans a segment that may have a torn tail, checking every
// batch, and rebuilds its indexes in memory.
func (l *Log) scanWritten(s *segment, f File) (scanResult, int64, error) {
	st, err := f.Stat()
	if err != nil {
		return scanResult{}, 0, fmt.Errorf("log: %w", err)
	}
	size := st.Size()
	var entry [timeEntrySize]byte
	res := scanSegment(f, s.base, size, true, func(pos int64, h *codecs.Header) {
		l.indexBatch(s, h.BaseOffset, pos, h.MaxTimestamp, entry[:0])
		if s.firstTS == math.MinInt64 {
			s.firstTS = min(h.MaxTimestamp, l.opts.Now().UnixMilli())
		}
	})
	return res, size, nil
}

// cutAfterScan cuts what follows the last good batch a scan found, and
// publishes the segment.
func (l *Log) cutAfterScan(s *segment, f File, res scanResult, size int64) error {
	if res.err != nil {
		stale := res.staleIn(f, s.base, size)
		ev, err := l.cutTail(s, f, res.end, size, res.err, stale)
		if err != nil {
			return err
		}
		l.recovered = append(l.recovered, ev)
		if stale {
			l.opts.Logger.Info("log: cut the stale batches of a recycled segment file after the last batch",
				"segment", s.path, "position", ev.Position, "bytes", ev.Dropped)
		} else if ev.SavedTo == "" {
			l.opts.Logger.Info("log: cut zeros after the last batch of a segment (written ahead of the data, or never written)",
				"segment", s.path, "position", ev.Position, "bytes", ev.Dropped)
		} else {
			l.opts.Logger.Warn("log: cut a torn or damaged tail from a segment",
				"segment", s.path, "position", ev.Position, "bytes", ev.Dropped, "saved_to", ev.SavedTo, "reason", ev.Reason)
		}
	}
	s.written, s.writtenNext = res.end, res.next
	// Free blocks a crash left reserved past the end.
	if reservedPast(f, s.written) {
		s.reserved = s.written + 1
		dropReserve(s)
	}
	l.publish(s, l.snapshot(s))
	return nil
}

// recoverUnsealed recovers a closed segment without an index: one whose
// seal a crash interrupted, so that its data may not have been synced. It
// is scanned like the active segment, and a torn tail is cut: damage after
// which no valid batch follows, or after which one does but with a page of
// zeros between (pages of an unsynced tail reach the disk in any order, so
// a page that never did can lie before one that did; the bytes cut are
// kept in a .corrupt file). Other damage with valid batches after it is
// not a torn write, and is kept and never served, as in any closed
// segment. Offsets cut from its end are not reused: the next segment
// starts where it did.
func (l *Log) recoverUnsealed(s *segment, f File, nextBase int64) error {
	res, size, err := l.scanWritten(s, f)
	if err != nil {
		return err
	}
	if res.err != nil {
		if at, ok := validBatchAfter(f, res.end+1, size, res.next, nextBase); ok && !zeroPageIn(f, res.end, at) {
			s.off = index{size: offsetEntrySize}
			s.tim = index{size: timeEntrySize}
			s.lastIndexed, s.writtenMaxTS, s.firstTS = -1, math.MinInt64, math.MinInt64
			return l.openClosed(s, f, nextBase)
		}
	}
	if err := l.cutAfterScan(s, f, res, size); err != nil {
		return err
	}
	if l.opts.Sync != SyncNever {
		if err := f.Sync(); err != nil {
			return fmt.Errorf("log: syncing %s: %w", s.path, err)
		}
	}
	if err := l.seal(s); err != nil {
		return err
	}
	l.stats.unsealed.Add(1)
	return nil
}

// validBatchAfter returns where the first whole valid batch with a base
// offset in [minOffset, maxOffset) starts in [from, size) of f, if one
// does.
func validBatchAfter(f io.ReaderAt, from, size, minOffset, maxOffset int64) (int64, bool) {
	const chunk = 1 << 20
	buf := make([]byte, chunk+codecs.HeaderSize)
	for at := from; at+codecs.HeaderSize <= size; at += chunk {
		n, _ := f.ReadAt(buf[:min(int64(len(buf)), size-at)], at)
		for i := 0; i+codecs.HeaderSize <= n && i < chunk; i++ {
			h, err := codecs.ParseHeader(buf[i:n])
			if err != nil || h.BaseOffset < minOffset || h.BaseOffset >= maxOffset {
				continue
			}
			pos := at + int64(i)
			if h.Size() > maxScanBatch || pos+int64(h.Size()) > size {
				continue
			}
			b := make([]byte, h.Size())
			if _, err := f.ReadAt(b, pos); err != nil {
				continue
			}
			if _, err := codecs.Validate(b, 0); err == nil {
				return pos, true
			}
		}
	}
	return 0, false
}

// zeroPageIn reports whether [from, to) of f holds a run of zeros that
// reaches the end of a 4 KiB page: from to the end of its page, or a whole
// page after it. A page that never reached the disk reads as zeros (or as
// the zeros written ahead of the data, see prewrite.go).
func zeroPageIn(f io.ReaderAt, from, to int64) bool {
	const page = 4096
	end := (from/page + 1) * page
	if end <= to {
		if zero, err := zerosFrom(f, from, end); err == nil && zero {
			return true
		}
	}
	for at := end; at+page <= to; at += page {
		if zero, err := zerosFrom(f, at, at+page); err == nil && zero {
			return true
		}
	}
	return false
}

// cutTail keeps the bytes of s from pos to size in a .corrupt file beside
// it, then truncates s to pos. Zeros after the last 4 KiB block holding
// anything else are not kept: they are the window written ahead of the
// data (see prewrite.go), or blocks whose data never reached the disk. A
// tail of zeros alone, or with stale set the stale tail of a recycled
// file (see recycle.go), is cut with no file kept: the event's SavedTo is
// empty.
func (l *Log) cutTail(s *segment, f File, pos, size int64, why error, stale bool) (RecoveryEvent, error) {
	ev := RecoveryEvent{Segment: s.path, Position: pos, Dropped: size - pos, Reason: why.Error()}
	if stale {
		ev.Reason = "stale batches of a recycled segment file: " + ev.Reason
		return ev, truncateSync(s, f, pos)
	}
	tail := make([]byte, size-pos)
	if _, err := f.ReadAt(tail, pos); err != nil && err != io.EOF {
		return ev, fmt.Errorf("log: reading the tail of %s: %w", s.path, err)
	}
	if n := len(trimZeros(tail)); n > 0 {
		const block = 4096
		kept := tail[:min(len(tail), (n+block-1)/block*block)]
		ev.SavedTo = fmt.Sprintf("%s.%d%s", s.path, pos, corruptSuffix)
		if err := writeFileSync(l.fs, ev.SavedTo, kept, true); err != nil {
			return ev, fmt.Errorf("log: saving the tail of %s: %w", s.path, err)
		}
	} else {
		ev.Reason = "zeros after the last batch: " + ev.Reason
	}
	return ev, truncateSync(s, f, pos)
}

// truncateSync cuts the file of s at pos, durably.
func truncateSync(s *segment, f File, pos int64) error {
	if err := f.Truncate(pos); err != nil {
		return fmt.Errorf("log: truncating %s: %w", s.path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("log: syncing %s: %w", s.path, err)
	}
	return nil
}

// trimZeros returns b without the zeros at its end.
func trimZeros(b []byte) []byte {
	n := len(b)
	for n >= 8 && binary.LittleEndian.Uint64(b[n-8:]) == 0 {
		n -= 8
	}
	for n > 0 && b[n-1] == 0 {
		n--
	}
	return b[:n]
}

// zerosFrom reports whether f holds only zeros from pos to size: the
// window written ahead of a segment's data (see prewrite.go).
func zerosFrom(f io.ReaderAt, pos, size int64) (bool, error) {
	buf := make([]byte, min(size-pos, 1<<20))
	for pos < size {
		n := min(int64(len(buf)), size-pos)
		if _, err := f.ReadAt(buf[:n], pos); err != nil && err != io.EOF {
			return false, err
		}
		if len(trimZeros(buf[:n])) > 0 {
			return false, nil
		}
		pos += n
	}
	return true, nil
}

// openClosed opens a closed segment through its index files when they pass
// a sanity check, and rebuilds them with a full scan otherwise.
func (l *Log) openClosed(s *segment, f File, nextBase int64) error {
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("log: %w", err)
	}
	size := st.Size()
	err = s.off.load(l.fs, s.base2path(indexSuffix))
	if err == nil {
		err = s.tim.load(l.fs, s.base2path(timeIndexSuffix))
	}
	if err == nil {
		err = l.checkIndex(s, f, size)
	}
	if err == nil {
		l.publish(s, l.snapshot(s))
		// Checked; read again from the files when a read needs them.
		s.off.seal(l.fs, s.base2path(indexSuffix), l.files, &s.deleted, false)
		s.tim.seal(l.fs, s.base2path(timeIndexSuffix), l.files, &s.deleted, false)
		return nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		l.opts.Logger.Warn("log: rebuilding a damaged segment index", "segment", s.path, "err", err)
	}
	s.off.close()
	s.tim.close()
	s.off = index{size: offsetEntrySize}
	s.tim = index{size: timeEntrySize}
	s.lastIndexed, s.writtenMaxTS = -1, math.MinInt64
	var entry [timeEntrySize]byte
	res := scanSegment(f, s.base, size, false, func(pos int64, h *codecs.Header) {
		l.indexBatch(s, h.BaseOffset, pos, h.MaxTimestamp, entry[:0])
	})
	s.written, s.writtenNext = res.end, res.next
	if res.err != nil {
		// Never served: reads stop at the bad batch. The index is not
		// written, so every open finds the damage again.
		s.corrupt = &CorruptError{Path: s.path, Position: res.end, Offset: res.next, Err: res.err}
		l.opts.Logger.Error("log: corrupt batch in a closed segment; offsets from here to the next segment cannot be read",
			"segment", s.path, "position", res.end, "offset", res.next, "next_segment", nextBase, "err", res.err)
		l.publish(s, l.snapshot(s))
		s.next.Store(nextBase)
		return nil
	}
	if err := l.seal(s); err != nil {
		return err
	}
	l.publish(s, l.snapshot(s))
	return nil
}

// checkIndex checks a loaded index against its segment: the first entry at
// position 0, the last entry on a batch with the offset it claims, and the
// batches after it ending exactly at the end of the file. On success it
// sets the segment's written state.
func (l *Log) checkIndex(s *segment, f File, size int64) error {
	offs := s.off.written()
	if len(offs) == 0 {
		if size != 0 {
			return fmt.Errorf("empty index for a segment of %d bytes", size)
		}
		return nil
	}
	if _, pos := offsetEntry(offs, 0); pos != 0 {
		return fmt.Errorf("first index entry points at %d, not at the start", pos)
	}
	rel, pos := offsetEntry(offs, len(offs)/offsetEntrySize-1)
	if int64(pos) >= size {
		return fmt.Errorf("last index entry points at %d, past the %d bytes of the segment", pos, size)
	}
	hr := newHeaderReader(f)
	defer hr.done()
	at := int64(pos)
	next := s.base + int64(rel)
	maxTS := int64(math.MinInt64)
	if e := s.tim.last(); e != nil {
		maxTS, _ = timeEntry(e, 0)
	}
	for at < size {
		h, err := hr.header(at, size)
		if err != nil {
			return fmt.Errorf("batch at %d: %w", at, err)
		}
		if at == int64(pos) && h.BaseOffset != s.base+int64(rel) {
			return fmt.Errorf("index says offset %d at position %d, the batch there has %d", s.base+int64(rel), pos, h.BaseOffset)
		}
		if h.BaseOffset < next {
			return fmt.Errorf("offsets go backwards at position %d", at)
		}
		next = h.NextOffset()
		maxTS = max(maxTS, h.MaxTimestamp)
		at += int64(h.Size())
	}
	s.written, s.writtenNext, s.writtenMaxTS = size, next, maxTS
	s.lastIndexed = int64(pos)
	return nil
}

// scanResult is the outcome of scanning a segment file from the start.
type scanResult struct {
	end     int64 // position after the last good batch
	next    int64 // offset after the last good batch
	maxTS   int64
	batches int
	records int64
	err     error // why the scan stopped before the end of the file
}

// scanSegment reads a segment file from the start, checking every batch in
// full (codecs.Validate: magic, sizes, CRC) and that offsets increase; with
// strict set they must follow on without gaps, as in a segment that was
// never compacted. visit sees each good batch. The scan stops at the first
// bad batch.
func scanSegment(f io.ReaderAt, base, size int64, strict bool, visit func(pos int64, h *codecs.Header)) scanResult {
	res := scanResult{next: base, maxTS: math.MinInt64}
	buf := make([]byte, min(1<<20, size)) // small for small segments: opening many logs
	var bufAt int64                       // file position of buf[0]
	have := 0
	ensure := func(pos int64, n int) ([]byte, error) {
		if pos >= bufAt && pos+int64(n) <= bufAt+int64(have) {
			return buf[pos-bufAt : pos-bufAt+int64(n)], nil
		}
		if n > len(buf) {
			buf = make([]byte, n)
		}
		want := int(min(int64(len(buf)), size-pos))
		got, err := f.ReadAt(buf[:want], pos)
		if got < want && err == nil {
			err = io.ErrUnexpectedEOF
		}
		if err != nil && err != io.EOF {
			return nil, err
		}
		bufAt, have = pos, got
		if got < n {
			return nil, io.ErrUnexpectedEOF
		}
		return buf[:n], nil
	}
	pos := int64(0)
	for pos < size {
		if size-pos < codecs.HeaderSize {
			res.err = &codecs.BatchError{BaseOffset: -1, Reason: fmt.Sprintf("%d bytes at the end, too few for a batch header", size-pos), Err: codecs.ErrShort}
			break
		}
		b, err := ensure(pos, codecs.HeaderSize)
		if err != nil {
			res.err = err
			break
		}
		h, err := codecs.ParseHeader(b)
		if err != nil {
			res.err = err
			break
		}
		n := h.Size()
		if n > maxScanBatch {
			res.err = &codecs.BatchError{BaseOffset: h.BaseOffset, Reason: fmt.Sprintf("batch claims %d bytes", n), Err: codecs.ErrCorrupt}
			break
		}
		if pos+int64(n) > size {
			res.err = &codecs.BatchError{BaseOffset: h.BaseOffset, Reason: fmt.Sprintf("batch of %d bytes, %d left in the file", n, size-pos), Err: codecs.ErrShort}
			break
		}
		if b, err = ensure(pos, n); err != nil {
			res.err = err
			break
		}
		if _, err := codecs.Validate(b, 0); err != nil {
			res.err = err
			break
		}
		if (strict && h.BaseOffset != res.next) || h.BaseOffset < res.next {
			res.err = &codecs.BatchError{BaseOffset: h.BaseOffset, Reason: fmt.Sprintf("batch has base offset %d, expected %d", h.BaseOffset, res.next), Err: codecs.ErrCorrupt}
			break
		}
		if visit != nil {
			visit(pos, &h)
		}
		res.next = h.NextOffset()
		res.maxTS = max(res.maxTS, h.MaxTimestamp)
		res.batches++
		res.records += int64(h.NumRecords)
		pos += int64(n)
	}
	res.end = pos
	return res
}
