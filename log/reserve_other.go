//go:build !linux

package log

func reserve(File, int64, int64) {}

func reservedPast(File, int64) bool { return false }

func startWriteback(File, int64, int64) {}

func releaseReserve(f File, end int64) { f.Truncate(end) }

func writeVec(f File, iov [][]byte, size, pos, pad int64) error {
	return writeThenZeros(f, joinBuffers(iov, size), pos, pad)
}
