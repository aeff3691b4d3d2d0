//go:build !linux

package log

func reserve(File, int64, int64) {}

func reservedPast(File, int64) bool { return false }

func startWriteback(File, int64, int64) {}

func releaseReserve(f File, end int64) { f.Truncate(end) }

func writePadded(f File, b []byte, pos int64, pad int64) error { return writeThenZeros(f, b, pos, pad) }

func writeVec(f File, iov [][]byte, size, pos, pad int64) error {
	if len(iov) == 1 {
		return writeThenZeros(f, iov[0], pos, pad)
	}
	return writeThenZeros(f, joinBuffers(iov, size), pos, pad)
}
