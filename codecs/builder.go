package codecs

import (
	"encoding/binary"
	"errors"
	"math"
)

// RecordHeader is one key/value header of a record. A nil Value is null.
type RecordHeader struct {
	Key   []byte
	Value []byte
}

// Builder accumulates records into one RecordBatch v2 and seals it with
// Build. The zero value is ready to use and builds uncompressed batches
// without a producer id. A Builder reuses its buffers across Reset; it is
// not safe for concurrent use.
type Builder struct {
	// Compression is the codec Build compresses the records with.
	Compression Compression
	// Attributes are extra attribute bits (AttrTransactional, ...); the
	// codec bits come from Compression.
	Attributes int16

	buf         []byte // HeaderSize bytes reserved, then the records uncompressed
	out         []byte // header and compressed records, when compressing
	n           int32
	lastDelta   int32 // offset delta of the last record appended
	keepLast    int32 // a last offset delta to keep, if larger (SetLastOffsetDelta)
	firstTS     int64
	maxTS       int64
	hasProducer bool
	producerID  int64
	epoch       int16
	baseSeq     int32
}

// SetProducer makes the batch idempotent: it carries producer id, epoch and
// the sequence number of its first record. Reset keeps these settings.
func (b *Builder) SetProducer(id int64, epoch int16, baseSequence int32) {
	b.hasProducer, b.producerID, b.epoch, b.baseSeq = true, id, epoch, baseSequence
}

// Reset drops the records added so far; Compression, Attributes and the
// producer settings stay.
func (b *Builder) Reset() {
	b.buf = b.buf[:0]
	b.n, b.lastDelta, b.keepLast = 0, 0, 0
}

// NumRecords is the number of records added since the last Reset.
func (b *Builder) NumRecords() int { return int(b.n) }

// Size is the batch's size so far, uncompressed: the header and the records.
func (b *Builder) Size() int {
	if len(b.buf) == 0 {
		return HeaderSize
	}
	return len(b.buf)
}

// Append adds a record with a timestamp in milliseconds since the epoch. A
// nil key or value is stored as null. The bytes are copied.
func (b *Builder) Append(timestamp int64, key, value []byte, headers []RecordHeader) {
	b.AppendDelta(b.n, timestamp, key, value, headers)
}

// AppendDelta is Append with the record's offset delta (its offset minus
// the batch's base offset) given: larger than the previous record's, with
// gaps where records were removed, as keyed compaction leaves them.
func (b *Builder) AppendDelta(offsetDelta int32, timestamp int64, key, value []byte, headers []RecordHeader) {
	if len(b.buf) == 0 {
		b.buf = append(b.buf[:0], make([]byte, HeaderSize)...)
		b.firstTS, b.maxTS = timestamp, timestamp
	}
	if timestamp > b.maxTS {
		b.maxTS = timestamp
	}
	tsDelta := timestamp - b.firstTS
	body := recordBodyLen(tsDelta, int64(offsetDelta), key, value, headers)
	buf := AppendVarint(b.buf, int64(body))
	buf = append(buf, 0) // record attributes, unused
	buf = AppendVarint(buf, tsDelta)
	buf = AppendVarint(buf, int64(offsetDelta))
	buf = appendBytes(buf, key)
	buf = appendBytes(buf, value)
	buf = AppendVarint(buf, int64(len(headers)))
	for i := range headers {
		buf = appendBytes(buf, headers[i].Key)
		buf = appendBytes(buf, headers[i].Value)
	}
	b.buf = buf
	b.n++
	b.lastDelta = offsetDelta
}

// SetLastOffsetDelta makes the built batch claim offsets up to base offset
// plus delta, past its last record's: a compacted batch keeps the offset
// range of the batch it was cleaned from. Reset forgets it.
func (b *Builder) SetLastOffsetDelta(delta int32) { b.keepLast = delta }

// SizeWith is what Size would be after appending this record: callers that
// must keep a batch under a limit (max_message_bytes) check it first.
func (b *Builder) SizeWith(timestamp int64, key, value []byte, headers []RecordHeader) int {
	size, tsDelta := len(b.buf), int64(0)
	if size == 0 {
		size = HeaderSize
	} else {
		tsDelta = timestamp - b.firstTS
	}
	body := recordBodyLen(tsDelta, int64(b.n), key, value, headers)
	return size + VarintLen(int64(body)) + body
}

// recordBodyLen is the length of a record after its length varint.
func recordBodyLen(tsDelta, offsetDelta int64, key, value []byte, headers []RecordHeader) int {
	body := 1 + VarintLen(tsDelta) + VarintLen(offsetDelta) +
		bytesLen(key) + bytesLen(value) + VarintLen(int64(len(headers)))
	for i := range headers {
		body += bytesLen(headers[i].Key) + bytesLen(headers[i].Value)
	}
	return body
}

// AppendRecord adds a copy of r (its timestamp, key, value and headers); its
// offset is ignored. It is the way to re-batch records read by a RecordIter.
func (b *Builder) AppendRecord(r *Record) {
	b.Append(r.Timestamp, r.Key, r.Value, r.Headers)
}

// ErrEmptyBatch is returned by Build for a batch without records.
var ErrEmptyBatch = errors.New("codecs: batch has no records")

// Build seals the records added since the last Reset into a batch with base
// offset 0 and returns it. The returned bytes belong to the Builder and stay
// valid until its next Append, Reset or Build.
func (b *Builder) Build() ([]byte, error) {
	if b.n == 0 {
		return nil, ErrEmptyBatch
	}
	batch := b.buf
	if b.Compression != None {
		var err error
		b.out = append(b.out[:0], b.buf[:HeaderSize]...)
		if b.out, err = b.Compression.AppendCompressed(b.out, b.buf[HeaderSize:]); err != nil {
			return nil, err
		}
		batch = b.out
	}
	if len(batch)-LengthPrefix > math.MaxInt32 {
		return nil, batchErr(ErrTooLarge, 0, "%d bytes do not fit a batch", len(batch))
	}
	h := batch[:HeaderSize]
	binary.BigEndian.PutUint64(h[posBaseOffset:], 0)
	binary.BigEndian.PutUint32(h[posLength:], uint32(len(batch)-LengthPrefix))
	binary.BigEndian.PutUint32(h[posLeaderEpoch:], 0xffffffff)
	h[posMagic] = Magic
	attrs := b.Attributes&^attrCodecMask | int16(b.Compression)&attrCodecMask
	binary.BigEndian.PutUint16(h[posAttributes:], uint16(attrs))
	binary.BigEndian.PutUint32(h[posLastOffsetDelta:], uint32(max(b.lastDelta, b.keepLast)))
	binary.BigEndian.PutUint64(h[posFirstTimestamp:], uint64(b.firstTS))
	binary.BigEndian.PutUint64(h[posMaxTimestamp:], uint64(b.maxTS))
	id, epoch, seq := int64(-1), int16(-1), int32(-1)
	if b.hasProducer {
		id, epoch, seq = b.producerID, b.epoch, b.baseSeq
	}
	binary.BigEndian.PutUint64(h[posProducerID:], uint64(id))
	binary.BigEndian.PutUint16(h[posProducerEpoch:], uint16(epoch))
	binary.BigEndian.PutUint32(h[posBaseSequence:], uint32(seq))
	binary.BigEndian.PutUint32(h[posRecordCount:], uint32(b.n))
	binary.BigEndian.PutUint32(h[posCRC:], Checksum(batch))
	return batch, nil
}

func bytesLen(p []byte) int {
	if p == nil {
		return 1 // varint -1
	}
	return VarintLen(int64(len(p))) + len(p)
}

func appendBytes(dst, p []byte) []byte {
	if p == nil {
		return AppendVarint(dst, -1)
	}
	return append(AppendVarint(dst, int64(len(p))), p...)
}
