//go:build linux

package sources

import (
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// fileStatKey returns the identity of the file fi describes (its device and
// inode) and its number of links (0 once deleted).
func fileStatKey(fi os.FileInfo, _ string) (fileKey, uint64) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileKey{}, 1
	}
	return fileKey{Dev: uint64(st.Dev), Ino: uint64(st.Ino)}, uint64(st.Nlink)
}

// fileBirthTime returns when the open file was created, in nanoseconds since
// the epoch, or 0 where the filesystem does not say (statx STATX_BTIME:
// ext4, xfs, btrfs, tmpfs on recent kernels do).
func fileBirthTime(f *os.File) int64 {
	rc, err := f.SyscallConn()
	if err != nil {
		return 0
	}
	var stx unix.Statx_t
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.Statx(int(fd), "", unix.AT_EMPTY_PATH|unix.AT_STATX_SYNC_AS_STAT, unix.STATX_BTIME, &stx)
	}); err != nil || serr != nil || stx.Mask&unix.STATX_BTIME == 0 {
		return 0
	}
	return stx.Btime.Sec*1e9 + int64(stx.Btime.Nsec)
}
