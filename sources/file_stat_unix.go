//go:build unix && !linux

package sources

import (
	"os"
	"syscall"
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

// fileBirthTime returns 0 (unknown): only Linux's statx is used for it.
func fileBirthTime(*os.File) int64 { return 0 }
