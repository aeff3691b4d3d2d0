package log

import "syscall"

// fallocKeepSize is fallocate(2)'s FALLOC_FL_KEEP_SIZE.
const fallocKeepSize = 0x1

// reserve allocates the blocks of [from, from+n) of f without changing its
// size (the size is where the data ends, which recovery relies on). Best
// effort: a filesystem without fallocate works as before.
func reserve(f File, from, n int64) {
	if o := osOf(f); o != nil {
		syscall.Fallocate(int(o.Fd()), fallocKeepSize, from, n)
	}
}

// releaseReserve returns the blocks reserved past a segment's end
// (truncating to its own size frees them; punching a hole past the end
// does nothing on ext4).
func releaseReserve(f File, end int64) {
	f.Truncate(end)
}
