package codecs

import "math/bits"

// Kafka's varints are the zig-zag varints of Protocol Buffers: a signed
// value v is stored as the unsigned (v << 1) ^ (v >> 63), seven bits a byte,
// least significant group first, the high bit set on every byte but the last.

// AppendVarint appends v as a zig-zag varint (Kafka "varint"/"varlong").
func AppendVarint(dst []byte, v int64) []byte {
	u := uint64(v<<1) ^ uint64(v>>63)
	for u >= 0x80 {
		dst = append(dst, byte(u)|0x80)
		u >>= 7
	}
	return append(dst, byte(u))
}

// VarintLen is the number of bytes AppendVarint writes for v.
func VarintLen(v int64) int {
	u := uint64(v<<1) ^ uint64(v>>63)
	return (bits.Len64(u|1) + 6) / 7
}

// Varint decodes a zig-zag varint at the start of b. It returns the value
// and the number of bytes read; n == 0 means b ended first, n < 0 that the
// value overflows 64 bits (after -n bytes).
func Varint(b []byte) (v int64, n int) {
	var u uint64
	var shift uint
	for i, c := range b {
		if i == 10 || (i == 9 && c > 1) {
			return 0, -(i + 1)
		}
		u |= uint64(c&0x7f) << shift
		if c < 0x80 {
			return int64(u>>1) ^ -int64(u&1), i + 1
		}
		shift += 7
	}
	return 0, 0
}

// Varint32 is Varint for a value that must fit in an int32, as Kafka's
// "varint" (not "varlong") fields do; a larger value reads as an overflow.
func Varint32(b []byte) (v int32, n int) {
	v64, n := Varint(b)
	if n > 0 && int64(int32(v64)) != v64 {
		return 0, -n
	}
	return int32(v64), n
}
