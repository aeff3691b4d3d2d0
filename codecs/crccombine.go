package codecs

// CombineCRC32C returns the CRC-32C (Castagnoli, as Checksum and
// hash/crc32 compute it) of the bytes A then B, given crcA of A, crcB of
// B and the length of B, without reading either: a log can give the CRC
// of a whole segment from the CRCs its batches carry. It costs one
// multiplication modulo the polynomial per set bit of lenB.
func CombineCRC32C(crcA, crcB uint32, lenB int64) uint32 {
	return multModP(xPow8N(lenB), crcA) ^ crcB
}

// castagnoliRev is the Castagnoli polynomial, bit-reversed as the CRC is
// computed (least significant bit first).
const castagnoliRev = 0x82f63b78

// multModP returns a*b modulo the polynomial, both reflected (bit 31 is
// x^0).
func multModP(a, b uint32) uint32 {
	var p uint32
	for m := uint32(1) << 31; m != 0; m >>= 1 {
		if a&m != 0 {
			p ^= b
			if a&(m-1) == 0 {
				break
			}
		}
		if b&1 != 0 {
			b = b>>1 ^ castagnoliRev
		} else {
			b >>= 1
		}
	}
	return p
}

// x2k[k] is x^(2^k) modulo the polynomial, reflected.
var x2k = func() (t [64]uint32) {
	t[0] = 1 << 30 // x^1
	for k := 1; k < len(t); k++ {
		t[k] = multModP(t[k-1], t[k-1])
	}
	return t
}()

// xPow8N returns x^(8n) modulo the polynomial: appending n zero bytes
// multiplies a CRC by it.
func xPow8N(n int64) uint32 {
	p := uint32(1) << 31 // x^0
	for k := 3; n != 0; k, n = k+1, n>>1 {
		if n&1 != 0 {
			p = multModP(x2k[k%len(x2k)], p)
		}
	}
	return p
}
