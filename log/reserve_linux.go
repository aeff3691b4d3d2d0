package log

import (
	"io"
	"syscall"

	"golang.org/x/sys/unix"
)

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

// reservedPast reports whether f has blocks allocated past end, the end of
// its data (rounded up to a block).
func reservedPast(f File, end int64) bool {
	st, err := f.Stat()
	if err != nil {
		return false
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return false
	}
	blk := max(int64(sys.Blksize), 4096)
	return sys.Blocks*512 > (end+blk-1)/blk*blk
}

// releaseReserve returns the blocks reserved past a segment's end
// (truncating to its own size frees them; punching a hole past the end
// does nothing on ext4).
func releaseReserve(f File, end int64) {
	f.Truncate(end)
}

// startWriteback starts writing [from, from+n) of f back to the disk
// without waiting (sync_file_range SYNC_FILE_RANGE_WRITE), so that a later
// fdatasync finds it written or on its way. Best effort.
func startWriteback(f File, from, n int64) {
	if o := osOf(f); o != nil {
		syscall.SyncFileRange(int(o.Fd()), from, n, 0x2) // SYNC_FILE_RANGE_WRITE
	}
}

// iovMax is the most buffers one pwritev takes (Linux's UIO_MAXIOV).
const iovMax = 1024

// writeVec writes the buffers of iov, size bytes in all, at pos, followed
// by pad zeros, with one pwritev (more only past iovMax buffers, or after
// a short write): a stage of many appenders' batches reaches the page
// cache without being copied into one buffer first, and the zeros after
// the data overwrite the page it ends in whole, so that the kernel need
// not read it from the disk first (see recycle.go). It may change iov's
// elements. A file not of the operating system gets them joined into one
// write.
func writeVec(f File, iov [][]byte, size, pos, pad int64) error {
	o := osOf(f)
	if o == nil || pad > int64(len(zeroBlock)) || pad == 0 && len(iov) == 1 {
		return writeThenZeros(f, joinBuffers(iov, size), pos, pad)
	}
	if pad > 0 {
		iov = append(iov, zeroBlock[:pad])
	}
	fd := int(o.Fd())
	for len(iov) > 0 {
		n, err := unix.Pwritev(fd, iov[:min(len(iov), iovMax)], pos)
		if err != nil {
			return err
		}
		if n == 0 {
			return io.ErrShortWrite
		}
		pos += int64(n)
		for n > 0 {
			if n < len(iov[0]) {
				iov[0] = iov[0][n:]
				break
			}
			n -= len(iov[0])
			iov = iov[1:]
		}
	}
	return nil
}
