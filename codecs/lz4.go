package codecs

import (
	"encoding/binary"
	"errors"
	"slices"
	"sync"

	"github.com/pierrec/lz4/v4"
)

// LZ4 batches hold one LZ4 frame (the format of
// github.com/lz4/lz4 doc/lz4_Frame_format.md, as Kafka's clients write it).
// Weir frames the blocks itself around github.com/pierrec/lz4/v4's block
// compressor and decompressor instead of going through its Writer and
// Reader: those copy every block through a buffer of their own and hash the
// whole content (xxh32) on the way in and out, which made lz4 batches cost
// three times the CPU of the block codec alone (BenchmarkLZ4). The frame
// around the blocks is small:
//
//	+----------+-----+----+----+--------------------------+-------+-------------+
//	| magic    | FLG | BD | HC | blocks                   | end   | content     |
//	| 04224D18 |     |    |    | size (LE, high bit: raw) | 0000  | checksum    |
//	|          |     |    |    | data [block checksum]    |       | (if in FLG) |
//	+----------+-----+----+----+--------------------------+-------+-------------+
//
// (with an 8-byte content size and a 4-byte dictionary id after BD when FLG
// says so). Weir writes version 01, independent blocks of at most 64 KiB
// (as the Java client does), no checksums and no content size: the
// batch's CRC-32C, which every reader checks before decompressing
// (Validate), already covers these bytes. For the same reason the reader
// skips the header, block and content checksums of frames written by
// others rather than hashing the records a second time, as Kafka's Java
// consumer skips the content checksum. It reads independent and linked
// blocks of every size; a frame it does not handle (a dictionary id, the
// legacy or a skippable frame) goes through pierrec's Reader.

const (
	lz4Magic         = 0x184D2204
	lz4BlockMax      = 64 << 10 // blocks Weir writes
	lz4RawBlock      = 1 << 31  // block size flag: stored uncompressed
	lz4FlagVersion   = 0x40     // FLG bits 7-6: version 01
	lz4FlagIndep     = 0x20
	lz4FlagBlockSum  = 0x10
	lz4FlagSize      = 0x08
	lz4FlagContSum   = 0x04
	lz4FlagDictID    = 0x01
	lz4FlagsReserved = 0x02
	lz4BDReserved    = 0x8f
	lz4Window        = 64 << 10 // how far back linked blocks may refer
)

// lz4Header is the frame header Weir writes: the magic, FLG (version 01,
// independent blocks), BD (64 KiB blocks) and HC, the second byte of the
// xxh32 of FLG and BD (TestLZ4FrameInterop reads it with pierrec's Reader,
// which checks it).
var lz4Header = [...]byte{0x04, 0x22, 0x4d, 0x18, lz4FlagVersion | lz4FlagIndep, 0x40, 0x82}

var lz4Compressors = sync.Pool{New: func() any { return new(lz4.Compressor) }}

// appendLZ4 appends src as one LZ4 frame to dst.
func appendLZ4(dst, src []byte) []byte {
	dst = append(dst, lz4Header[:]...)
	c := lz4Compressors.Get().(*lz4.Compressor)
	for len(src) > 0 {
		n := min(len(src), lz4BlockMax)
		at := len(dst)
		dst = slices.Grow(dst, 4+lz4.CompressBlockBound(n))
		dst = dst[:at+4+lz4.CompressBlockBound(n)]
		k, err := c.CompressBlock(src[:n], dst[at+4:])
		if err != nil || k <= 0 || k >= n {
			// Incompressible: the block is stored as it is.
			binary.LittleEndian.PutUint32(dst[at:], uint32(n)|lz4RawBlock)
			k = copy(dst[at+4:], src[:n])
		} else {
			binary.LittleEndian.PutUint32(dst[at:], uint32(k))
		}
		dst = dst[:at+4+k]
		src = src[n:]
	}
	lz4Compressors.Put(c)
	return append(dst, 0, 0, 0, 0) // end mark
}

// errLZ4Other marks a frame appendLZ4Decoded leaves to pierrec's Reader.
var errLZ4Other = errors.New("codecs: lz4 frame for the stream reader")

// appendLZ4Decoded appends the content of the LZ4 frames in src to dst,
// failing with ErrTooLarge once it would pass max bytes and with a reason
// (made ErrCorrupt by the caller) when src is not valid. It returns
// errLZ4Other, with dst as it was, for frames it leaves to pierrec's Reader.
func appendLZ4Decoded(dst, src []byte, max int) ([]byte, error) {
	start := len(dst)
	for p := 0; ; {
		var err error
		if dst, p, err = decodeLZ4Frame(dst, src, p, start, max); err != nil {
			if err == errLZ4Other {
				return dst[:start], err
			}
			return dst, err
		}
		if p == len(src) {
			return dst, nil
		}
	}
}

// decodeLZ4Frame decodes the frame at src[p:] onto dst, whose bytes from
// start on are the output so far, and returns the position after it.
func decodeLZ4Frame(dst, src []byte, p, start, max int) ([]byte, int, error) {
	if len(src)-p < 7 {
		return dst, p, errors.New("lz4: frame header cut short")
	}
	if binary.LittleEndian.Uint32(src[p:]) != lz4Magic {
		return dst, p, errLZ4Other // legacy or skippable frame, or not lz4: the Reader says which
	}
	flg, bd := src[p+4], src[p+5]
	if flg&0xc0 != lz4FlagVersion || flg&lz4FlagsReserved != 0 || bd&lz4BDReserved != 0 || bd>>4 < 4 {
		return dst, p, errors.New("lz4: bad frame descriptor")
	}
	if flg&lz4FlagDictID != 0 {
		return dst, p, errLZ4Other
	}
	blockMax := 1 << (8 + 2*int(bd>>4)) // 4: 64 KiB ... 7: 4 MiB
	p += 6
	frameStart := len(dst)
	contentSize := -1
	if flg&lz4FlagSize != 0 {
		if len(src)-p < 8 {
			return dst, p, errors.New("lz4: frame header cut short")
		}
		size := binary.LittleEndian.Uint64(src[p:])
		if size > uint64(max-(len(dst)-start)) {
			return dst, p, batchErr(ErrTooLarge, -1, "decompresses to more than %d bytes", max)
		}
		contentSize = int(size)
		dst = slices.Grow(dst, contentSize)
		p += 8
	}
	p++ // HC: covered by the batch's CRC-32C
	linked := flg&lz4FlagIndep == 0
	sumLen := 0
	if flg&lz4FlagBlockSum != 0 {
		sumLen = 4
	}
	for {
		if len(src)-p < 4 {
			return dst, p, errors.New("lz4: frame cut short")
		}
		size := binary.LittleEndian.Uint32(src[p:])
		p += 4
		if size == 0 {
			break // end mark
		}
		raw := size&lz4RawBlock != 0
		n := int(size &^ lz4RawBlock)
		if n > blockMax || n+sumLen > len(src)-p {
			return dst, p, errors.New("lz4: bad block size")
		}
		block := src[p : p+n]
		p += n + sumLen // block checksum: covered by the batch's CRC-32C
		left := max - (len(dst) - start)
		if raw {
			if n > left {
				return dst, p, batchErr(ErrTooLarge, -1, "decompresses to more than %d bytes", max)
			}
			dst = append(dst, block...)
			continue
		}
		var err error
		if dst, err = decodeLZ4Block(dst, block, blockMax, start, max, frameStart, linked); err != nil {
			return dst, p, err
		}
	}
	if flg&lz4FlagContSum != 0 {
		if len(src)-p < 4 {
			return dst, p, errors.New("lz4: content checksum cut short")
		}
		p += 4 // covered by the batch's CRC-32C
	}
	if contentSize >= 0 && len(dst)-frameStart != contentSize {
		return dst, p, errors.New("lz4: content size differs from the frame's")
	}
	return dst, p, nil
}

// decodeLZ4Block decodes one compressed block onto dst, whose bytes from
// start on are the output so far (from frameStart on, of this frame). Its
// size is known only once decoded: the block is decoded into the room dst
// has, and into more (growing as append does) while that is too short, up
// to the frame's block size or one byte past maxOut.
func decodeLZ4Block(dst, block []byte, blockMax, start, maxOut, frameStart int, linked bool) ([]byte, error) {
	at := len(dst)
	left := maxOut - (at - start)
	limit := min(blockMax, left+1)
	tooLarge := func() error { return batchErr(ErrTooLarge, -1, "decompresses to more than %d bytes", maxOut) }
	dict := func() []byte {
		if !linked {
			return nil
		}
		return dst[max(frameStart, at-lz4Window):at]
	}
	want := min(limit, max(4*len(block), lz4BlockMax)) // one try for blocks of 64 KiB
	for {
		if cap(dst)-at < want {
			dst = slices.Grow(dst, want)
		}
		room := dst[at:min(cap(dst), at+limit)]
		k, err := lz4.UncompressBlockWithDict(block, room, dict())
		if err == nil {
			if k > left {
				return dst, tooLarge()
			}
			return dst[:at+k], nil
		}
		if len(room) < limit {
			want = min(limit, 2*len(room)) // perhaps too short: try with more room
			continue
		}
		if limit == blockMax {
			return dst, errors.New("lz4: corrupt block")
		}
		// The room stopped one byte past maxOut: the block is corrupt, or
		// decodes to more than is left. Decoding it alone tells which.
		if _, err := lz4.UncompressBlockWithDict(block, make([]byte, blockMax), dict()); err != nil {
			return dst, errors.New("lz4: corrupt block")
		}
		return dst, tooLarge()
	}
}
