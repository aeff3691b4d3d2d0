package codecs

// Record is one record read from a batch. Its byte slices point into the
// buffers of the RecordIter that produced it and are valid until the
// iterator's next call to Reset; copy what must outlive that.
type Record struct {
	Offset     int64
	Timestamp  int64 // milliseconds since the epoch
	Attributes int8
	Key        []byte // nil when null
	Value      []byte // nil when null
	Headers    []RecordHeader
}

// RecordIter reads the records of a batch, one after another. It checks the
// batch (Validate) and every record's framing, decompresses into a buffer it
// keeps for the next batch, and allocates nothing per record once its
// buffers have grown. The zero value is ready; a RecordIter is not safe for
// concurrent use.
//
//	var it codecs.RecordIter
//	if err := it.Reset(batch); err != nil { ... }
//	for it.Next() {
//		r := it.Record()
//		...
//	}
//	if err := it.Err(); err != nil { ... }
type RecordIter struct {
	// MaxDecompressed bounds what one batch may decompress to; zero means
	// DefaultMaxDecompressed.
	MaxDecompressed int

	h    Header
	data []byte // records not yet read
	left int32  // records not yet read
	buf  []byte // decompression buffer
	hdrs []RecordHeader
	rec  Record
	err  error
}

// Reset validates batch (which must start with one whole batch; bytes past
// it are ignored), decompresses its records and positions the iterator
// before the first. On error Next returns false and Err returns the error.
func (it *RecordIter) Reset(batch []byte) error {
	it.data, it.left, it.err = nil, 0, nil
	h, err := Validate(batch, 0)
	it.h = h
	if err != nil {
		it.err = withRange(err, &h)
		return err
	}
	body := batch[HeaderSize:h.Size()]
	if c := h.Compression(); c != None {
		it.buf, err = c.AppendDecompressed(it.buf[:0], body, it.MaxDecompressed)
		if err != nil {
			it.err = withRange(err, &h)
			return err
		}
		body = it.buf
	}
	it.data, it.left = body, h.NumRecords
	return nil
}

// Header is the header of the current batch.
func (it *RecordIter) Header() *Header { return &it.h }

// Err is the error that stopped the iteration, nil at a clean end.
func (it *RecordIter) Err() error { return it.err }

// Record is the record Next moved to. The pointer and what it points to are
// reused by the next call to Next.
func (it *RecordIter) Record() *Record { return &it.rec }

// Next moves to the next record and reports whether there is one. At the
// end of the batch, or on malformed records, it returns false; Err tells the
// two apart.
func (it *RecordIter) Next() bool {
	if it.err != nil {
		return false
	}
	if it.left == 0 {
		if len(it.data) != 0 {
			it.fail("%d bytes after the last record", len(it.data))
		}
		return false
	}
	d := it.data
	length, n := Varint32(d)
	if n <= 0 || length < 1 || int(length) > len(d)-n {
		return it.fail("record %d: bad length", it.h.NumRecords-it.left)
	}
	rec := d[n : n+int(length)]
	it.data = d[n+int(length):]
	it.left--

	r := &it.rec
	r.Attributes = int8(rec[0])
	p := 1
	tsDelta, n := Varint(rec[p:])
	if n <= 0 {
		return it.fail("record %d: bad timestamp delta", it.h.NumRecords-it.left-1)
	}
	p += n
	offDelta, n := Varint32(rec[p:])
	if n <= 0 || offDelta < 0 || offDelta > it.h.LastOffsetDelta {
		return it.fail("record %d: bad offset delta", it.h.NumRecords-it.left-1)
	}
	p += n
	r.Offset = it.h.BaseOffset + int64(offDelta)
	if it.h.IsLogAppendTime() {
		r.Timestamp = it.h.MaxTimestamp
	} else {
		r.Timestamp = it.h.FirstTimestamp + tsDelta
	}
	var ok bool
	if r.Key, p, ok = readBytes(rec, p); !ok {
		return it.fail("record %d: bad key", it.h.NumRecords-it.left-1)
	}
	if r.Value, p, ok = readBytes(rec, p); !ok {
		return it.fail("record %d: bad value", it.h.NumRecords-it.left-1)
	}
	count, n := Varint32(rec[p:])
	if n <= 0 || count < 0 || int(count) > (len(rec)-p-n)/2 {
		return it.fail("record %d: bad header count", it.h.NumRecords-it.left-1)
	}
	p += n
	it.hdrs = it.hdrs[:0]
	for range count {
		var k, v []byte
		if k, p, ok = readBytes(rec, p); !ok || k == nil {
			return it.fail("record %d: bad header key", it.h.NumRecords-it.left-1)
		}
		if v, p, ok = readBytes(rec, p); !ok {
			return it.fail("record %d: bad header value", it.h.NumRecords-it.left-1)
		}
		it.hdrs = append(it.hdrs, RecordHeader{Key: k, Value: v})
	}
	r.Headers = it.hdrs
	if p != len(rec) {
		return it.fail("record %d: %d bytes left over", it.h.NumRecords-it.left-1, len(rec)-p)
	}
	return true
}

func (it *RecordIter) fail(format string, args ...any) bool {
	it.err = withRange(batchErr(ErrCorrupt, it.h.BaseOffset, format, args...), &it.h)
	it.data, it.left = nil, 0
	return false
}

// readBytes reads a varint length and that many bytes at b[p:]; length -1
// is null.
func readBytes(b []byte, p int) ([]byte, int, bool) {
	l, n := Varint32(b[p:])
	if n <= 0 || l < -1 {
		return nil, p, false
	}
	p += n
	if l == -1 {
		return nil, p, true
	}
	if int(l) > len(b)-p {
		return nil, p, false
	}
	return b[p : p+int(l) : p+int(l)], p + int(l), true
}
