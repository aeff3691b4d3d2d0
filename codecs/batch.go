package codecs

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// Byte positions of the RecordBatch v2 header fields.
const (
	posBaseOffset      = 0
	posLength          = 8
	posLeaderEpoch     = 12
	posMagic           = 16
	posCRC             = 17
	posAttributes      = 21
	posLastOffsetDelta = 23
	posFirstTimestamp  = 27
	posMaxTimestamp    = 35
	posProducerID      = 43
	posProducerEpoch   = 51
	posBaseSequence    = 53
	posRecordCount     = 57

	// HeaderSize is the size of a RecordBatch v2 header, up to and
	// including the record count.
	HeaderSize = 61

	// LengthPrefix is the number of bytes before and including the
	// batchLength field; a batch's total size is batchLength+LengthPrefix.
	LengthPrefix = 12

	// Magic is the only batch format version Weir reads and writes.
	Magic = 2
)

// Attribute bits of a RecordBatch.
const (
	attrCodecMask     = 0x07
	AttrLogAppendTime = 0x08
	AttrTransactional = 0x10
	AttrControl       = 0x20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Checksum returns the CRC-32C that a batch must carry: the checksum of
// everything from the attributes to the end. b must hold the whole batch.
func Checksum(b []byte) uint32 { return crc32.Checksum(b[posAttributes:], castagnoli) }

// ChecksumFrom is where the bytes a batch's CRC-32C covers begin (its
// attributes): Checksum(b) is the CRC-32C of b[ChecksumFrom:].
const ChecksumFrom = posAttributes

// UpdateCRC32C returns crc extended with b, for a CRC-32C (Castagnoli, as
// Checksum's) computed piece by piece.
func UpdateCRC32C(crc uint32, b []byte) uint32 { return crc32.Update(crc, castagnoli, b) }

// Errors are classified by these sentinels; test with errors.Is.
var (
	// ErrCorrupt marks bytes that are not a valid RecordBatch v2: bad
	// magic, checksum, sizes, counts, codec, or malformed records.
	ErrCorrupt = errors.New("codecs: corrupt record batch")
	// ErrTooLarge marks a batch, or a decompressed record set, over the
	// size limit it was checked against.
	ErrTooLarge = errors.New("codecs: record batch too large")
	// ErrShort marks a buffer that ends before the batch does. A log
	// recovering its tail treats it as a torn write.
	ErrShort = errors.New("codecs: record batch truncated")
)

// BatchError describes why a batch was rejected. Err is one of ErrCorrupt,
// ErrTooLarge or ErrShort.
//
// A reader that meets one (an old log, a disk error) can skip the batch:
// BaseOffset and LastOffset are the offsets it covers.
type BatchError struct {
	BaseOffset int64 // the base offset the batch claims, -1 if unreadable
	LastOffset int64 // the last offset the batch claims; below BaseOffset when not known
	Reason     string
	Err        error
}

func (e *BatchError) Error() string {
	if e.BaseOffset < 0 {
		return fmt.Sprintf("%v: %s", e.Err, e.Reason)
	}
	return fmt.Sprintf("%v at base offset %d: %s", e.Err, e.BaseOffset, e.Reason)
}

func (e *BatchError) Unwrap() error { return e.Err }

func batchErr(sentinel error, base int64, format string, args ...any) error {
	return &BatchError{BaseOffset: base, LastOffset: -1, Reason: fmt.Sprintf(format, args...), Err: sentinel}
}

// withRange sets the offsets of h on a *BatchError.
func withRange(err error, h *Header) error {
	if be, ok := err.(*BatchError); ok && h.Magic == Magic {
		be.BaseOffset, be.LastOffset = h.BaseOffset, h.LastOffset()
	}
	return err
}

// Header is the decoded fixed part of a RecordBatch v2.
type Header struct {
	BaseOffset      int64
	Length          int32 // batchLength: the batch's size minus LengthPrefix
	LeaderEpoch     int32
	Magic           int8
	CRC             uint32
	Attributes      int16
	LastOffsetDelta int32
	FirstTimestamp  int64
	MaxTimestamp    int64
	ProducerID      int64
	ProducerEpoch   int16
	BaseSequence    int32
	NumRecords      int32
}

// Size is the batch's total size in bytes.
func (h *Header) Size() int { return int(h.Length) + LengthPrefix }

// LastOffset is the offset of the batch's last record.
func (h *Header) LastOffset() int64 { return h.BaseOffset + int64(h.LastOffsetDelta) }

// NextOffset is the offset just past the batch.
func (h *Header) NextOffset() int64 { return h.LastOffset() + 1 }

// Compression is the codec the records are compressed with.
func (h *Header) Compression() Compression { return Compression(h.Attributes & attrCodecMask) }

// IsTransactional reports whether the batch belongs to a transaction.
func (h *Header) IsTransactional() bool { return h.Attributes&AttrTransactional != 0 }

// IsControl reports whether the batch holds transaction control markers.
func (h *Header) IsControl() bool { return h.Attributes&AttrControl != 0 }

// IsLogAppendTime reports whether the records' timestamps are the broker's
// append time (MaxTimestamp) rather than the producer's.
func (h *Header) IsLogAppendTime() bool { return h.Attributes&AttrLogAppendTime != 0 }

// ParseHeader decodes the 61-byte header at the start of b and checks what
// can be checked without the records: the magic byte, the length against
// the header size, and the codec. It does not check the CRC; see Validate.
func ParseHeader(b []byte) (Header, error) {
	var h Header
	if len(b) < HeaderSize {
		return h, batchErr(ErrShort, -1, "%d bytes, a batch header needs %d", len(b), HeaderSize)
	}
	h.BaseOffset = int64(binary.BigEndian.Uint64(b[posBaseOffset:]))
	h.Length = int32(binary.BigEndian.Uint32(b[posLength:]))
	h.LeaderEpoch = int32(binary.BigEndian.Uint32(b[posLeaderEpoch:]))
	h.Magic = int8(b[posMagic])
	h.CRC = binary.BigEndian.Uint32(b[posCRC:])
	h.Attributes = int16(binary.BigEndian.Uint16(b[posAttributes:]))
	h.LastOffsetDelta = int32(binary.BigEndian.Uint32(b[posLastOffsetDelta:]))
	h.FirstTimestamp = int64(binary.BigEndian.Uint64(b[posFirstTimestamp:]))
	h.MaxTimestamp = int64(binary.BigEndian.Uint64(b[posMaxTimestamp:]))
	h.ProducerID = int64(binary.BigEndian.Uint64(b[posProducerID:]))
	h.ProducerEpoch = int16(binary.BigEndian.Uint16(b[posProducerEpoch:]))
	h.BaseSequence = int32(binary.BigEndian.Uint32(b[posBaseSequence:]))
	h.NumRecords = int32(binary.BigEndian.Uint32(b[posRecordCount:]))
	if h.Magic != Magic {
		return h, batchErr(ErrCorrupt, h.BaseOffset, "magic %d, want %d", h.Magic, Magic)
	}
	if h.Length < HeaderSize-LengthPrefix {
		return h, batchErr(ErrCorrupt, h.BaseOffset, "batch length %d is shorter than the header", h.Length)
	}
	if c := h.Compression(); c > Zstd {
		return h, batchErr(ErrCorrupt, h.BaseOffset, "unknown compression codec %d", c)
	}
	if h.NumRecords < 0 || h.LastOffsetDelta < 0 {
		return h, batchErr(ErrCorrupt, h.BaseOffset, "negative record count %d or last offset delta %d", h.NumRecords, h.LastOffsetDelta)
	}
	return h, nil
}

// Validate checks that b begins with one whole, intact batch of at most
// maxSize bytes (no limit when maxSize <= 0): the header checks of
// ParseHeader, the CRC, and lastOffsetDelta == recordCount-1 for a batch
// that has records. It returns the header; the batch is b[:h.Size()].
//
// Validate does not decompress or parse the records; CheckProduced and
// CheckRecords walk them without keeping them, and RecordIter checks those
// as it reads them.
func Validate(b []byte, maxSize int) (Header, error) { return validate(b, maxSize, true) }

// validate is Validate; crc false leaves the CRC-32C out.
func validate(b []byte, maxSize int, crc bool) (Header, error) {
	h, err := ParseHeader(b)
	if err != nil {
		return h, err
	}
	size := h.Size()
	if maxSize > 0 && size > maxSize {
		return h, batchErr(ErrTooLarge, h.BaseOffset, "%d bytes, the limit is %d", size, maxSize)
	}
	if len(b) < size {
		return h, batchErr(ErrShort, h.BaseOffset, "batch of %d bytes, only %d present", size, len(b))
	}
	if crc {
		if got := Checksum(b[:size]); got != h.CRC {
			return h, batchErr(ErrCorrupt, h.BaseOffset, "CRC-32C is %08x, the batch says %08x", got, h.CRC)
		}
	}
	if h.NumRecords > 0 && h.LastOffsetDelta != h.NumRecords-1 {
		// Compaction leaves lastOffsetDelta pointing past the records it
		// removed, but never leaves more records than offsets.
		if h.NumRecords-1 > h.LastOffsetDelta {
			return h, batchErr(ErrCorrupt, h.BaseOffset, "%d records but last offset delta %d", h.NumRecords, h.LastOffsetDelta)
		}
	}
	minRecords := int(h.NumRecords) // each record is at least one byte of length
	if h.Compression() == None && size-HeaderSize < minRecords {
		return h, batchErr(ErrCorrupt, h.BaseOffset, "%d records in %d bytes", h.NumRecords, size-HeaderSize)
	}
	return h, nil
}

// ValidateProduced is Validate for a batch as a producer sends it, before
// compaction could have left gaps: lastOffsetDelta must be exactly
// recordCount-1 and the batch must hold at least one record.
func ValidateProduced(b []byte, maxSize int) (Header, error) {
	return validateProduced(b, maxSize, true)
}

// ValidateProducedFraming is ValidateProduced without the CRC-32C, for a
// batch whose caller has just run ValidateProduced or CheckProduced on the
// same bytes: the checksum, the costly part, is not computed twice.
func ValidateProducedFraming(b []byte, maxSize int) (Header, error) {
	return validateProduced(b, maxSize, false)
}

func validateProduced(b []byte, maxSize int, crc bool) (Header, error) {
	h, err := validate(b, maxSize, crc)
	if err != nil {
		return h, err
	}
	if h.NumRecords < 1 {
		return h, batchErr(ErrCorrupt, h.BaseOffset, "batch has no records")
	}
	if h.LastOffsetDelta != h.NumRecords-1 {
		return h, batchErr(ErrCorrupt, h.BaseOffset, "%d records but last offset delta %d, want %d", h.NumRecords, h.LastOffsetDelta, h.NumRecords-1)
	}
	return h, nil
}

// SetBaseOffset rewrites the base offset of the batch at the start of b in
// place. The CRC does not cover it, so the batch stays valid.
func SetBaseOffset(b []byte, offset int64) {
	binary.BigEndian.PutUint64(b[posBaseOffset:], uint64(offset))
}

// SetLeaderEpoch rewrites the partition leader epoch in place; like the base
// offset it is outside the CRC.
func SetLeaderEpoch(b []byte, epoch int32) {
	binary.BigEndian.PutUint32(b[posLeaderEpoch:], uint32(epoch))
}

// BaseOffset reads the base offset of the batch at the start of b, which
// must hold at least 8 bytes.
func BaseOffset(b []byte) int64 { return int64(binary.BigEndian.Uint64(b[posBaseOffset:])) }

// BatchSize reads the total size the batch at the start of b claims from its
// length field, or -1 when b is shorter than the length prefix. The claim is
// not checked.
func BatchSize(b []byte) int {
	if len(b) < LengthPrefix {
		return -1
	}
	return int(int32(binary.BigEndian.Uint32(b[posLength:]))) + LengthPrefix
}
