package log

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"

	"github.com/weirhub/weir/codecs"
)

// Section is a byte range of a segment file that holds whole batches: what
// a network fetch sends with sendfile. A Section holds its file open until
// Release; the bytes in the range never change.
type Section struct {
	// File is the segment file, for sendfile; nil when the log's FS has
	// no operating system files (AppendTo reads the section either way).
	File *os.File
	Pos  int64 // file position of the first batch
	Len  int64 // bytes, a whole number of batches
	f    File
	seg  *segment
}

// Release gives back the section's hold on its file. Calling it twice is
// harmless.
func (s *Section) Release() {
	if s.seg != nil {
		s.seg.fh.unpin()
		s.seg.release()
		s.seg = nil
	}
}

// AppendTo appends the section's bytes to dst, read with pread.
func (s *Section) AppendTo(dst []byte) ([]byte, error) {
	at := len(dst)
	dst = growLen(dst, int(s.Len))
	n, err := s.f.ReadAt(dst[at:], s.Pos)
	if n < int(s.Len) {
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return dst[:at], fmt.Errorf("log: reading %s at %d: %w", s.f.Name(), s.Pos, err)
	}
	return dst, nil
}

// WriteTo writes the section's bytes to w without reading them into a
// buffer of their own: a cold segment's from the cold cache's chunks,
// others through a pooled buffer. (A section with a File is better sent
// with sendfile.)
func (s *Section) WriteTo(w io.Writer) (int64, error) {
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	var n int64
	var err error
	if cf, ok := s.f.(*coldFile); ok {
		n, err = cf.writeTo(w, s.Pos, s.Len, *bp)
	} else {
		n, err = io.CopyBuffer(writerOnly{w}, io.NewSectionReader(s.f, s.Pos, s.Len), *bp)
		if err == nil && n < s.Len {
			err = io.ErrUnexpectedEOF
		}
	}
	if err != nil {
		return n, fmt.Errorf("log: sending %s at %d: %w", s.f.Name(), s.Pos+n, err)
	}
	return n, nil
}

// ReleaseSections releases every section in secs.
func ReleaseSections(secs []Section) {
	for i := range secs {
		secs[i].Release()
	}
}

// Read appends to dst the file sections holding whole batches from the one
// that contains offset onwards, at most maxBytes in all but always at least
// one batch when offset is below the high watermark. Reading at the high
// watermark returns no sections and no error; below the start offset or
// past the high watermark it returns a *RangeError. Batches are returned as
// stored: compressed, with their CRCs; the first may begin before offset.
// Each returned section must be released.
func (l *Log) Read(dst []Section, offset int64, maxBytes int) ([]Section, error) {
	if l.closed.Load() {
		return dst, ErrClosed
	}
	hw := l.hw.Load()
	if offset == hw {
		return dst, nil
	}
	n0 := len(dst)
	for attempt := 0; ; attempt++ {
		out, err := l.read(dst, offset, maxBytes, hw)
		// A segment of the list loaded was replaced under the read (a
		// compaction's swap, a move to the cold tier): what was read
		// stands; with nothing read, read again from the current list,
		// unless retention has moved the start past offset.
		var re *RangeError
		if err == nil || !errors.As(err, &re) || len(out) > n0 || offset < l.start.Load() || offset > hw || attempt >= 8 {
			if err != nil && len(out) > n0 && re != nil {
				return out, nil
			}
			return out, err
		}
	}
}

// read is one attempt of Read over the segment list as loaded now.
func (l *Log) read(dst []Section, offset int64, maxBytes int, hw int64) ([]Section, error) {
	segs := *l.segs.Load()
	start := l.start.Load()
	if offset < start || offset > hw || len(segs) == 0 {
		return dst, &RangeError{Offset: offset, Start: start, End: hw}
	}
	i := sort.Search(len(segs), func(i int) bool { return segs[i].base > offset }) - 1
	if i < 0 {
		// offset is at or past the start but before the first segment's
		// base (records there were compacted away): read from the first.
		i = 0
	}
	remaining := int64(max(maxBytes, 1))
	first := true
	hr := newHeaderReader(nil)
	defer hr.done()
	for ; i < len(segs) && remaining > 0; i++ {
		s, ok := l.acquireCurrent(segs[i])
		if !ok {
			// Deleted by retention since the list was loaded.
			return dst, &RangeError{Offset: offset, Start: l.start.Load(), End: hw}
		}
		limit := s.size.Load()
		if s.corrupt != nil {
			if offset >= s.corrupt.Offset {
				s.release()
				return dst, s.corrupt
			}
			limit = min(limit, s.corrupt.Position)
		}
		f, err := s.fh.pin()
		if err != nil && s.deleted.Load() {
			// Its local copy went to the cold tier under us: read that.
			if r, ok := l.acquireReplacement(s); ok {
				s.release()
				s = r
				f, err = s.fh.pin()
			}
		}
		if err != nil {
			s.release()
			if s.deleted.Load() {
				// Deleted by retention, and its file was closed while idle.
				return dst, &RangeError{Offset: offset, Start: l.start.Load(), End: hw}
			}
			return dst, err
		}
		unpin := func() { s.fh.unpin(); s.release() }
		if err := l.loadColdIndex(s); err != nil {
			unpin()
			return dst, err
		}
		hr.f, hr.at = f, -1
		pos, h, found, err := s.locate(&hr, offset, limit)
		if err != nil || !found {
			unpin()
			if err != nil {
				return dst, err
			}
			if s.corrupt != nil {
				return dst, s.corrupt
			}
			continue
		}
		if !first && int64(h.Size()) > remaining {
			unpin()
			break
		}
		end, err := s.extent(&hr, pos, h, remaining, limit)
		if err != nil {
			unpin()
			return dst, err
		}
		dst = append(dst, Section{File: osOf(f), Pos: pos, Len: end - pos, f: f, seg: s})
		remaining -= end - pos
		first = false
		if end < limit || (s.corrupt != nil && end >= s.corrupt.Position) {
			break
		}
		if i+1 < len(segs) {
			offset = segs[i+1].base
		}
	}
	return dst, nil
}

// ReadBatches appends to dst whole batches from the one that contains
// offset onwards, as Read selects them, after checking each one's CRC: a
// corrupt batch is never returned as data but as a *CorruptError.
func (l *Log) ReadBatches(dst []byte, offset int64, maxBytes int) ([]byte, error) {
	var arr [4]Section
	secs, err := l.Read(arr[:0], offset, maxBytes)
	defer ReleaseSections(secs)
	if err != nil {
		return dst, err
	}
	for i := range secs {
		at := len(dst)
		if dst, err = secs[i].AppendTo(dst); err != nil {
			return dst, err
		}
		for b := dst[at:]; len(b) > 0; {
			h, err := codecs.Validate(b, 0)
			if err != nil {
				pos := secs[i].Pos + int64(len(dst)-at-len(b))
				return dst[:len(dst)-len(b)], &CorruptError{Path: secs[i].seg.path, Position: pos, Offset: offset, Err: err}
			}
			offset = h.NextOffset()
			b = b[h.Size():]
		}
	}
	return dst, nil
}

// Wait blocks until the high watermark passes offset (a record at offset
// can be read), the context ends, or the log closes.
func (l *Log) Wait(ctx context.Context, offset int64) error {
	for {
		if l.hw.Load() > offset {
			return nil
		}
		if l.closed.Load() {
			return ErrClosed
		}
		l.waitMu.Lock()
		if l.waitCh == nil {
			l.waitCh = make(chan struct{})
		}
		ch := l.waitCh
		l.waitMu.Unlock()
		if l.hw.Load() > offset {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-l.done:
			return ErrClosed
		}
	}
}

// Iterator reads records in offset order for in-process consumers. It
// reads whole batches a chunk at a time with ReadBatches, skips records
// before its start offset and transaction control batches, and allocates
// nothing per record. When it reaches the high watermark Next returns false
// with a nil Err; after a Wait it can go on. An Iterator is not safe for
// concurrent use.
type Iterator struct {
	// ChunkBytes is how much ReadBatches reads at a time. Default 1 MiB.
	ChunkBytes int

	l       *Log
	next    int64
	store   []byte // buffer ReadBatches fills
	pending []byte // batches of store not yet iterated
	recs    codecs.RecordIter
	inBatch bool
	err     error
	later   error // met after the pending batches; reported once they are read
}

// NewIterator returns an iterator positioned at offset.
func (l *Log) NewIterator(offset int64) *Iterator {
	return &Iterator{l: l, next: offset}
}

// Offset is the offset of the next record Next will look for.
func (it *Iterator) Offset() int64 { return it.next }

// SeekTo moves the iterator to offset.
func (it *Iterator) SeekTo(offset int64) {
	it.next, it.pending, it.inBatch, it.err, it.later = offset, nil, false, nil, nil
}

// Err is the error that stopped the iterator, if any.
func (it *Iterator) Err() error { return it.err }

// Record is the current record; it and its bytes are valid until the next
// call to Next.
func (it *Iterator) Record() *codecs.Record { return it.recs.Record() }

// Next moves to the next record and reports whether there is one.
func (it *Iterator) Next() bool {
	if it.err != nil {
		return false
	}
	for {
		if it.inBatch {
			for it.recs.Next() {
				if r := it.recs.Record(); r.Offset >= it.next {
					it.next = r.Offset + 1
					return true
				}
			}
			if err := it.recs.Err(); err != nil {
				it.err = err
				return false
			}
			it.inBatch = false
			it.next = max(it.next, it.recs.Header().NextOffset())
		}
		if len(it.pending) == 0 {
			if it.later != nil {
				it.err, it.later = it.later, nil
				return false
			}
			if it.next >= it.l.HighWatermark() {
				return false
			}
			chunk := it.ChunkBytes
			if chunk <= 0 {
				chunk = 1 << 20
			}
			var err error
			it.store, err = it.l.ReadBatches(it.store[:0], it.next, chunk)
			if err != nil {
				if len(it.store) == 0 {
					it.err = err
					return false
				}
				it.later = err // read the good batches first
			}
			if len(it.store) == 0 {
				return false
			}
			it.pending = it.store
		}
		size := codecs.BatchSize(it.pending)
		batch := it.pending[:size]
		it.pending = it.pending[size:]
		h, _ := codecs.ParseHeader(batch)
		if h.IsControl() || h.NextOffset() <= it.next {
			it.next = max(it.next, h.NextOffset())
			continue
		}
		if err := it.recs.Reset(batch); err != nil {
			it.err = err
			return false
		}
		it.inBatch = true
	}
}

// OffsetForTime returns the offset of the first record whose timestamp is
// at or after ts (milliseconds since the epoch), or the high watermark when
// there is none.
func (l *Log) OffsetForTime(ts int64) (int64, error) {
	segs := *l.segs.Load()
	for _, s := range segs {
		if s.maxTS.Load() < ts {
			continue
		}
		// A segment swapped out meanwhile (moved to the tier, merged
		// there) is read through its replacement.
		s, ok := l.acquireCurrent(s)
		if !ok {
			continue
		}
		from := s.base
		if rel, ok := floorTime(s.tim.entries(), ts); ok {
			from = s.base + int64(rel)
		}
		s.release()
		from = max(from, l.start.Load())
		off, found, err := l.scanForTime(from, s.next.Load(), ts)
		if err != nil || found {
			return off, err
		}
	}
	return l.hw.Load(), nil
}

// scanForTime looks for the first record at or after ts between the
// offsets from and to, skipping batches whose newest record is older.
func (l *Log) scanForTime(from, to, ts int64) (int64, bool, error) {
	var buf []byte
	var it codecs.RecordIter
	for from < to {
		var err error
		buf, err = l.ReadBatches(buf[:0], from, 1<<20)
		if err != nil {
			if errors.Is(err, ErrOutOfRange) {
				return 0, false, nil
			}
			return 0, false, err
		}
		if len(buf) == 0 {
			return 0, false, nil
		}
		for b := buf; len(b) > 0; {
			h, _ := codecs.ParseHeader(b)
			batch := b[:h.Size()]
			b = b[h.Size():]
			if h.MaxTimestamp >= ts && !h.IsControl() {
				if err := it.Reset(batch); err != nil {
					return 0, false, err
				}
				for it.Next() {
					if r := it.Record(); r.Offset >= from && r.Timestamp >= ts {
						return r.Offset, true, nil
					}
				}
				if err := it.Err(); err != nil {
					return 0, false, err
				}
			}
			from = max(from, h.NextOffset())
		}
	}
	return 0, false, nil
}

// ScanHeaders calls fn with the header of every batch from the one that
// holds offset up to the high watermark, in order, reading only headers
// (no CRC check, no decompression). It stops early when fn returns false.
// It is how a hub rebuilds per-producer sequence state after a restart.
func (l *Log) ScanHeaders(offset int64, fn func(h *codecs.Header) bool) error {
	hw := l.hw.Load()
	segs := *l.segs.Load()
	offset = max(offset, l.start.Load())
	hr := newHeaderReader(nil)
	defer hr.done()
	for _, s := range segs {
		if s.next.Load() <= offset {
			continue
		}
		s, ok := l.acquireCurrent(s)
		if !ok {
			continue
		}
		limit := s.size.Load()
		if s.corrupt != nil {
			limit = min(limit, s.corrupt.Position)
		}
		stop := false
		if err := l.loadColdIndex(s); err != nil {
			s.release()
			return err
		}
		err := s.withFile(func(f File) error {
			hr.f, hr.at = f, -1
			pos, _, found, err := s.locate(&hr, offset, limit)
			for found && err == nil && pos < limit {
				var h codecs.Header
				if h, err = hr.header(pos, limit); err != nil {
					return s.corruptAt(pos, err)
				}
				if h.BaseOffset >= hw {
					break
				}
				if !fn(&h) {
					stop = true
					return nil
				}
				pos += int64(h.Size())
			}
			return err
		})
		// A replacement (see acquireReplacement) may hold the
		// segments after s too: scan on from its end.
		offset = max(offset, s.next.Load())
		s.release()
		if err != nil || stop {
			return err
		}
	}
	return nil
}

// growLen extends b by n bytes, reallocating if needed.
func growLen(b []byte, n int) []byte {
	if cap(b)-len(b) < n {
		nb := make([]byte, len(b), max(2*cap(b), len(b)+n))
		copy(nb, b)
		b = nb
	}
	return b[:len(b)+n]
}
