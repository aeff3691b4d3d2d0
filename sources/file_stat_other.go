//go:build !unix

package sources

import (
	"hash/fnv"
	"os"
)

// fileStatKey stands in for a device and inode where there are none: the
// hash of the path, so that a file is known by its path and fingerprint.
// A file renamed is then a new file.
func fileStatKey(_ os.FileInfo, path string) (fileKey, uint64) {
	h := fnv.New64a()
	h.Write([]byte(path))
	return fileKey{Ino: h.Sum64()}, 1
}

// fileBirthTime returns 0 (unknown).
func fileBirthTime(*os.File) int64 { return 0 }
