package codecs

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
)

// DecompressedRatio is the stated multiple behind MaxDecompressedFor: a
// batch accepted under a max.message.bytes of n may decompress to at most
// DecompressedRatio*n bytes.
const DecompressedRatio = 16

// MaxDecompressedFor is what a batch stored under a batch size limit of
// maxBatch bytes (a dataset's max.message.bytes) may decompress to:
// DecompressedRatio times maxBatch. Readers of such batches allow at least
// this much (see RecordIter.MaxDecompressed).
func MaxDecompressedFor(maxBatch int) int { return DecompressedRatio * maxBatch }

// CheckProduced is ValidateProduced followed by a walk over every record of
// the batch at the start of b: it decompresses the records as a stream
// through a small pooled buffer, keeping no decompressed copy, and checks
// each record's framing, that the offset deltas run 0, 1, 2, ... as a
// producer writes them, that the batch holds exactly the records its count
// claims, and that the records decompress to at most maxDecompressed bytes
// (no limit when it is <= 0; ErrTooLarge beyond it). It is what a broker
// runs on every produced batch, the way Kafka answers CORRUPT_MESSAGE; the
// batch's bytes are not modified. It is safe for concurrent use.
func CheckProduced(b []byte, maxSize, maxDecompressed int) (Header, error) {
	h, err := ValidateProduced(b, maxSize)
	if err != nil {
		return h, err
	}
	return h, withRange(walkRecords(b, &h, maxDecompressed, true), &h)
}

// CheckRecords is Validate followed by the record walk of CheckProduced,
// for stored batches: offset deltas must grow and stay within the batch's
// last offset delta, with gaps allowed (compaction leaves them).
func CheckRecords(b []byte, maxDecompressed int) (Header, error) {
	h, err := Validate(b, 0)
	if err != nil {
		return h, err
	}
	return h, withRange(walkRecords(b, &h, maxDecompressed, false), &h)
}

// capReader passes at most left bytes through and then reports whether the
// stream had more.
type capReader struct {
	r    io.Reader
	left int
	over bool
	err  error // the first error of r other than io.EOF
}

func (c *capReader) Read(p []byte) (int, error) {
	if c.left <= 0 {
		var one [1]byte
		for {
			n, err := c.r.Read(one[:])
			if n > 0 {
				c.over = true
				return 0, io.EOF
			}
			if err != nil {
				return 0, c.note(err)
			}
		}
	}
	if len(p) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= n
	return n, c.note(err)
}

func (c *capReader) note(err error) error {
	if err != nil && err != io.EOF && c.err == nil {
		c.err = err
	}
	return err
}

// checkState is the pooled state of one compressed walk.
type checkState struct {
	src  bytes.Reader
	cap  capReader
	buf  *bufio.Reader
	gz   *gzip.Reader
	lz   *lz4.Reader
	zs   *zstd.Decoder
	sn   snappyStream
	walk recordWalk
}

var checkStates = sync.Pool{New: func() any {
	return &checkState{buf: bufio.NewReaderSize(nil, 16<<10)}
}}

func walkRecords(b []byte, h *Header, maxDecompressed int, strict bool) error {
	body := b[HeaderSize:h.Size()]
	c := h.Compression()
	if c == None {
		return walkSlice(body, h, strict)
	}
	if maxDecompressed <= 0 {
		maxDecompressed = int(^uint(0) >> 1)
	}
	st := checkStates.Get().(*checkState)
	defer func() {
		st.buf.Reset(nil)
		st.cap = capReader{}
		st.src.Reset(nil) // keep no reference to the batch
		if cap(st.sn.buf) > 1<<20 {
			st.sn.buf = nil // keep no large block for the next batch
		}
		st.sn.src, st.sn.out = nil, nil
		checkStates.Put(st)
	}()
	st.src.Reset(body)
	var r io.Reader
	switch c {
	case Gzip:
		if st.gz == nil {
			st.gz = new(gzip.Reader)
		}
		if err := st.gz.Reset(&st.src); err != nil {
			return batchErr(ErrCorrupt, h.BaseOffset, "gzip: %v", err)
		}
		r = st.gz
	case LZ4:
		if st.lz == nil {
			st.lz = lz4.NewReader(nil)
		}
		st.lz.Reset(&st.src)
		r = st.lz
	case Zstd:
		var zh zstd.Header
		if err := zh.Decode(body); err != nil {
			return batchErr(ErrCorrupt, h.BaseOffset, "zstd: %v", err)
		}
		if zh.HasFCS && zh.FrameContentSize > uint64(maxDecompressed) {
			return batchErr(ErrTooLarge, h.BaseOffset, "records decompress to %d bytes, the limit is %d", zh.FrameContentSize, maxDecompressed)
		}
		if zh.WindowSize > uint64(max(maxDecompressed, 8<<20)) {
			return batchErr(ErrTooLarge, h.BaseOffset, "zstd window of %d bytes, the records may decompress to %d", zh.WindowSize, maxDecompressed)
		}
		if st.zs == nil {
			var err error
			st.zs, err = zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
				zstd.WithDecoderMaxWindow(64<<20))
			if err != nil {
				return batchErr(ErrCorrupt, h.BaseOffset, "zstd: %v", err)
			}
		}
		if err := st.zs.Reset(&st.src); err != nil {
			return batchErr(ErrCorrupt, h.BaseOffset, "zstd: %v", err)
		}
		r = st.zs
	case Snappy:
		st.sn.reset(body, maxDecompressed)
		r = &st.sn
	default:
		return batchErr(ErrCorrupt, h.BaseOffset, "unknown compression codec %d", c)
	}
	st.cap = capReader{r: r, left: maxDecompressed}
	st.buf.Reset(&st.cap)
	st.walk = recordWalk{h: *h, strict: strict}
	err := st.walk.run(st.buf, maxDecompressed)
	switch {
	case err == nil:
	case st.cap.over || errors.Is(st.cap.err, ErrTooLarge):
		err = batchErr(ErrTooLarge, h.BaseOffset, "records decompress to more than %d bytes", maxDecompressed)
	case st.cap.err != nil:
		err = batchErr(ErrCorrupt, h.BaseOffset, "%v: %v", c, st.cap.err)
	}
	return err
}

// walkSlice checks uncompressed records in place with a RecordIter.
func walkSlice(body []byte, h *Header, strict bool) error {
	it := RecordIter{h: *h, data: body, left: h.NumRecords}
	prev := int64(-1)
	for i := int64(0); it.Next(); i++ {
		d := it.rec.Offset - h.BaseOffset
		if d <= prev || (strict && d != i) {
			return batchErr(ErrCorrupt, h.BaseOffset, "record %d: offset delta %d after %d", i, d, prev)
		}
		prev = d
	}
	return it.err
}

// recordWalk reads records framing by framing without keeping them.
type recordWalk struct {
	h      Header
	strict bool
	i      int32 // the record being read
	used   int   // bytes of the current record read
	total  int   // bytes of records read
	prev   int32 // the previous record's offset delta
	err    error
}

func (w *recordWalk) fail(format string, args ...any) error {
	if w.err == nil {
		w.err = batchErr(ErrCorrupt, w.h.BaseOffset, "record %d: "+format, append([]any{w.i}, args...)...)
	}
	return w.err
}

// varint reads a zig-zag varint of at most 64 bits.
func (w *recordWalk) varint(s *bufio.Reader) (int64, bool) {
	var u uint64
	var shift uint
	for i := 0; ; i++ {
		c, err := s.ReadByte()
		if err != nil {
			return 0, false
		}
		if i == 10 || (i == 9 && c > 1) {
			return 0, false
		}
		w.used++
		u |= uint64(c&0x7f) << shift
		if c < 0x80 {
			return int64(u>>1) ^ -int64(u&1), true
		}
		shift += 7
	}
}

// skip discards a varint-length-prefixed byte string of the record of
// length recLen, returning its length (-1 for null).
func (w *recordWalk) skip(s *bufio.Reader, recLen int, what string, nullOK bool) (int64, error) {
	l, ok := w.varint(s)
	if !ok {
		return 0, w.fail("bad %s length", what)
	}
	if l == -1 && nullOK {
		return -1, nil
	}
	if l < 0 || l > int64(recLen-w.used) {
		return 0, w.fail("%s of %d bytes in a record with %d left", what, l, recLen-w.used)
	}
	if n, err := s.Discard(int(l)); err != nil || n != int(l) {
		return 0, w.fail("%s cut short", what)
	}
	w.used += int(l)
	return l, nil
}

// run walks the batch's records from s; limit bounds their total size.
func (w *recordWalk) run(s *bufio.Reader, limit int) error {
	w.prev = -1
	for w.i = 0; w.i < w.h.NumRecords; w.i++ {
		w.used = 0
		l, ok := w.varint(s)
		if !ok {
			return w.fail("bad length (the batch claims %d records)", w.h.NumRecords)
		}
		// The smallest record is 6 bytes: attributes, timestamp delta,
		// offset delta, key and value lengths, header count.
		if l < 6 || l > int64(limit-w.total-w.used) {
			if l > int64(limit-w.total-w.used) && l <= 1<<31 {
				return batchErr(ErrTooLarge, w.h.BaseOffset, "record %d of %d bytes passes the limit of %d", w.i, l, limit)
			}
			return w.fail("bad length %d", l)
		}
		recLen := int(l) + w.used
		if _, err := s.ReadByte(); err != nil { // attributes
			return w.fail("cut short")
		}
		w.used++
		if _, ok := w.varint(s); !ok {
			return w.fail("bad timestamp delta")
		}
		od, ok := w.varint(s)
		if !ok || od < 0 || od > int64(w.h.LastOffsetDelta) || od <= int64(w.prev) {
			return w.fail("bad offset delta %d after %d", od, w.prev)
		}
		if w.strict && od != int64(w.i) {
			return w.fail("offset delta %d, want %d", od, w.i)
		}
		w.prev = int32(od)
		if _, err := w.skip(s, recLen, "key", true); err != nil {
			return err
		}
		if _, err := w.skip(s, recLen, "value", true); err != nil {
			return err
		}
		n, ok := w.varint(s)
		if !ok || n < 0 || n > int64(recLen-w.used)/2 {
			return w.fail("bad header count")
		}
		for range n {
			if _, err := w.skip(s, recLen, "header key", false); err != nil {
				return err
			}
			if _, err := w.skip(s, recLen, "header value", true); err != nil {
				return err
			}
		}
		if w.used > recLen {
			return w.fail("runs %d bytes past its length", w.used-recLen)
		}
		if w.used < recLen {
			return w.fail("%d bytes left over", recLen-w.used)
		}
		w.total += w.used
	}
	if _, err := s.ReadByte(); err != io.EOF {
		if err == nil {
			return batchErr(ErrCorrupt, w.h.BaseOffset, "bytes after the last of %d records", w.h.NumRecords)
		}
		return batchErr(ErrCorrupt, w.h.BaseOffset, "after the last record: %v", err)
	}
	return nil
}

// snappyStream decodes snappy records, raw or in xerial framing, one block
// at a time into a reused buffer.
type snappyStream struct {
	src    []byte
	xerial bool
	limit  int
	buf    []byte
	out    []byte
	err    error
}

func (s *snappyStream) reset(src []byte, limit int) {
	s.out, s.err, s.limit = nil, nil, limit
	s.xerial = len(src) >= xerialHeaderSize && bytes.Equal(src[:len(xerialMagic)], xerialMagic)
	if s.xerial {
		src = src[xerialHeaderSize:]
	}
	s.src = src
}

func (s *snappyStream) Read(p []byte) (int, error) {
	for len(s.out) == 0 {
		if s.err != nil {
			return 0, s.err
		}
		if len(s.src) == 0 {
			return 0, io.EOF
		}
		block := s.src
		if s.xerial {
			if len(s.src) < 4 {
				s.err = errors.New("snappy: xerial block length cut short")
				return 0, s.err
			}
			n := binary.BigEndian.Uint32(s.src)
			if uint64(n) > uint64(len(s.src)-4) {
				s.err = errors.New("snappy: xerial block runs past the records")
				return 0, s.err
			}
			block, s.src = s.src[4:4+n], s.src[4+n:]
		} else {
			s.src = nil
		}
		n, err := s2.DecodedLen(block)
		if err != nil {
			s.err = err
			return 0, err
		}
		if n > s.limit {
			s.err = batchErr(ErrTooLarge, -1, "a snappy block of %d bytes passes the limit of %d", n, s.limit)
			return 0, s.err
		}
		if cap(s.buf) < n {
			s.buf = make([]byte, n)
		}
		out, err := s2.Decode(s.buf[:n], block)
		if err != nil {
			s.err = err
			return 0, err
		}
		s.limit -= len(out)
		s.out = out
	}
	n := copy(p, s.out)
	s.out = s.out[n:]
	return n, nil
}
