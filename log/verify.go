package log

import (
	"errors"
	"fmt"
	"math"
	"os"

	"github.com/weirhub/weir/codecs"
)

// SegmentInfo describes one segment for operators.
type SegmentInfo struct {
	Path           string
	BaseOffset     int64
	NextOffset     int64 // offset after the last batch
	Bytes          int64 // of batches (zeros written ahead of them are not counted)
	Batches        int64
	Records        int64
	FirstTimestamp int64 // of the first batch; math.MinInt64 when empty
	MaxTimestamp   int64 // math.MinInt64 when empty
	IndexEntries   int   // -1 when the index file is missing
	Active         bool  // the last segment, the one written
	Problem        string
}

// Inspect describes the segments of the log in dir without opening it for
// writing: it reads batch headers (not CRCs; see Verify), so it works on a
// log that a running process has open.
func Inspect(dir string) ([]SegmentInfo, error) {
	bases, err := listSegments(osFS{}, dir, false)
	if err != nil {
		return nil, err
	}
	infos := make([]SegmentInfo, 0, len(bases))
	for i, base := range bases {
		info := SegmentInfo{Path: segmentName(dir, base, logSuffix), BaseOffset: base, NextOffset: base,
			FirstTimestamp: math.MinInt64, MaxTimestamp: math.MinInt64, IndexEntries: -1, Active: i == len(bases)-1}
		if st, err := os.Stat(segmentName(dir, base, indexSuffix)); err == nil {
			info.IndexEntries = int(st.Size() / offsetEntrySize)
		}
		f, err := os.Open(info.Path)
		if err != nil {
			return infos, fmt.Errorf("log: %w", err)
		}
		st, err := f.Stat()
		if err != nil {
			f.Close()
			return infos, fmt.Errorf("log: %w", err)
		}
		info.Bytes = st.Size()
		hr := newHeaderReader(f)
		for pos := int64(0); pos < info.Bytes; {
			h, err := hr.header(pos, info.Bytes)
			if err == nil && info.Batches > 0 && h.BaseOffset < info.NextOffset {
				err = fmt.Errorf("offsets go backwards: batch of offset %d after %d", h.BaseOffset, info.NextOffset-1)
			}
			if err != nil {
				if zeros, zerr := zerosFrom(f, pos, info.Bytes); zerr == nil && zeros || staleTail(f, pos, info.Bytes, base, info.NextOffset) {
					// The window written ahead (see prewrite.go), or a
					// recycled file's stale batches (see recycle.go).
					info.Bytes = pos
					break
				}
				info.Problem = fmt.Sprintf("position %d: %v", pos, err)
				break
			}
			if info.Batches == 0 {
				info.FirstTimestamp = h.FirstTimestamp
			}
			info.Batches++
			info.Records += int64(h.NumRecords)
			info.NextOffset = h.NextOffset()
			info.MaxTimestamp = max(info.MaxTimestamp, h.MaxTimestamp)
			pos += int64(h.Size())
		}
		hr.done()
		f.Close()
		infos = append(infos, info)
	}
	return infos, nil
}

// VerifyReport totals what Verify checked.
type VerifyReport struct {
	Segments int
	Batches  int64
	Records  int64
	Bytes    int64
}

// Verify reads every batch of every segment of the log in dir and checks
// it in full (magic, sizes, CRC-32C, offsets increasing, and every record
// decoded: codecs.CheckRecords, decompressing up to
// codecs.MaxDecompressedFor the batch's size, at least
// codecs.DefaultMaxDecompressed), and checks that
// every offset index entry points at the batch it names. It stops at the
// first problem and returns it as a *CorruptError with the file, position
// and offset. progress, if not nil, is called after each segment with the
// bytes checked so far and in all.
func Verify(dir string, progress func(done, total int64)) (VerifyReport, error) {
	var rep VerifyReport
	bases, err := listSegments(osFS{}, dir, false)
	if err != nil {
		return rep, err
	}
	var total int64
	for _, base := range bases {
		if st, err := os.Stat(segmentName(dir, base, logSuffix)); err == nil {
			total += st.Size()
		}
	}
	next := int64(-1)
	var buf []byte
	for _, base := range bases {
		path := segmentName(dir, base, logSuffix)
		if next > base {
			return rep, &CorruptError{Path: path, Position: 0, Offset: base,
				Err: fmt.Errorf("segment starts at offset %d, inside the previous segment (which runs to %d)", base, next-1)}
		}
		f, err := os.Open(path)
		if err != nil {
			return rep, fmt.Errorf("log: %w", err)
		}
		st, err := f.Stat()
		if err != nil {
			f.Close()
			return rep, fmt.Errorf("log: %w", err)
		}
		idx, idxErr := os.ReadFile(segmentName(dir, base, indexSuffix))
		if idxErr != nil && !errors.Is(idxErr, os.ErrNotExist) {
			f.Close()
			return rep, fmt.Errorf("log: %w", idxErr)
		}
		iv := indexVerifier{path: segmentName(dir, base, indexSuffix), base: base, entries: idx}
		res := scanSegment(f, base, st.Size(), false, iv.visit)
		if res.err != nil {
			if zeros, zerr := zerosFrom(f, res.end, st.Size()); zerr == nil && zeros || res.staleIn(f, base, st.Size()) {
				// Zeros written ahead of the data (see prewrite.go),
				// blocks a crash left unwritten, or a recycled file's
				// stale batches (see recycle.go): not damage.
				res.err = nil
			}
		}
		if res.err == nil {
			if pos, off, err := checkSegmentRecords(f, res.end, &buf); err != nil {
				res.err, res.end, res.next = err, pos, off
			}
		}
		f.Close()
		rep.Segments++
		rep.Batches += int64(res.batches)
		rep.Records += res.records
		rep.Bytes += res.end
		if res.err != nil {
			return rep, &CorruptError{Path: path, Position: res.end, Offset: res.next, Err: res.err}
		}
		if err := iv.finish(); err != nil {
			return rep, err
		}
		next = res.next
		if progress != nil {
			progress(rep.Bytes, total)
		}
	}
	return rep, nil
}

// indexVerifier checks offset index entries against the batches of a scan,
// both in position order: every entry must name a batch start and its
// offset.
type indexVerifier struct {
	path    string
	base    int64
	entries []byte
	i       int
	err     error
}

func (v *indexVerifier) visit(pos int64, h *codecs.Header) {
	if v.err != nil || len(v.entries)%offsetEntrySize != 0 {
		return
	}
	for v.i < len(v.entries)/offsetEntrySize {
		rel, epos := offsetEntry(v.entries, v.i)
		if int64(epos) > pos {
			return
		}
		if int64(epos) < pos || v.base+int64(rel) != h.BaseOffset {
			v.err = v.bad(rel, epos)
			return
		}
		v.i++
	}
}

func (v *indexVerifier) finish() error {
	if v.err != nil {
		return v.err
	}
	if len(v.entries)%offsetEntrySize != 0 {
		return &CorruptError{Path: v.path, Position: int64(len(v.entries) - len(v.entries)%offsetEntrySize), Offset: v.base,
			Err: fmt.Errorf("index of %d bytes is not a whole number of entries", len(v.entries))}
	}
	if v.i < len(v.entries)/offsetEntrySize {
		rel, pos := offsetEntry(v.entries, v.i)
		return v.bad(rel, pos)
	}
	return nil
}

func (v *indexVerifier) bad(rel, pos uint32) error {
	return &CorruptError{Path: v.path, Position: int64(v.i * offsetEntrySize), Offset: v.base + int64(rel),
		Err: fmt.Errorf("index entry %d says offset %d starts at position %d, where no such batch starts", v.i, v.base+int64(rel), pos)}
}

// checkSegmentRecords walks the records of every batch in the first size
// bytes of f, whose framing scanSegment has checked. On a bad batch it
// returns the error with the batch's position and base offset.
func checkSegmentRecords(f *os.File, size int64, buf *[]byte) (pos, offset int64, err error) {
	var hdr [codecs.HeaderSize]byte
	for pos < size {
		if _, err := f.ReadAt(hdr[:], pos); err != nil {
			return pos, -1, fmt.Errorf("log: %w", err)
		}
		h, err := codecs.ParseHeader(hdr[:])
		if err != nil {
			return pos, -1, err
		}
		n := h.Size()
		if cap(*buf) < n {
			*buf = make([]byte, n)
		}
		b := (*buf)[:n]
		if _, err := f.ReadAt(b, pos); err != nil {
			return pos, h.BaseOffset, fmt.Errorf("log: %w", err)
		}
		if _, err := codecs.CheckRecords(b, max(codecs.DefaultMaxDecompressed, codecs.MaxDecompressedFor(n))); err != nil {
			return pos, h.BaseOffset, err
		}
		pos += int64(n)
	}
	return pos, 0, nil
}
