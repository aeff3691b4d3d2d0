package sources

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc64"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/weirhub/weir/internal/atomicfile"
)

// Checkpoints of the file source
//
// One JSON document in the state directory, file-checkpoints.json,
// replaced atomically (written to file-checkpoints.json.tmp, fsynced,
// renamed over the old one, then the directory fsynced), so that a crash
// leaves either the old document or the new one:
//
//	{"version": 1, "files": [
//	  {"path": "/var/log/app.log",      // where the file was last found
//	   "dev": 2049, "ino": 393231,      // identity while the file exists
//	   "birth": 1767225600123456789,    // creation time, ns; 0: unknown
//	   "fp_bytes": 1024,                // the fingerprint covers this many first bytes
//	   "fp": "9ae3c2b1f00d2a17",        // CRC-64/ECMA of them, hex
//	   "offset": 52311,                 // next byte to read: every line before it is acknowledged
//	   "gzip": false, "size": 0,        // a .gz file read whole, its compressed size
//	   "done": false,                   // a .gz file read to its end and acknowledged
//	   "seen": 1767225600}              // unix seconds the globs last found it
//	]}
//
// Identity. A file is the same file as a checkpoint when it has the same
// device and inode, the same birth time where both are known, at least
// fp_bytes bytes, and the same CRC of its first fp_bytes bytes, and is
// not shorter than offset. fp_bytes is fingerprint_bytes, or the file's
// size when it was shorter: the fingerprint grows with the file up to
// fingerprint_bytes, as the source reads it, so a file that grows is
// still recognized (its old first bytes are still there), while a new
// file that reuses a deleted file's inode is not (its birth time, where
// known, or its first bytes differ). The source also drops the
// checkpoint of a file it saw deleted as soon as it closes it: while it
// holds the descriptor the inode cannot be reused, and afterwards there
// is no checkpoint to confuse. A file with the same device and inode that
// fails the check is read from its beginning, whatever read_from says.
const (
	fileCheckpointName    = "file-checkpoints.json"
	fileCheckpointVersion = 1
)

var fileCRCTable = crc64.MakeTable(crc64.ECMA)

// fileKey is a file's device and inode.
type fileKey struct{ Dev, Ino uint64 }

type fileCheckpoints struct {
	Version int              `json:"version"`
	Files   []fileCheckpoint `json:"files"`
}

type fileCheckpoint struct {
	Path    string `json:"path"`
	Dev     uint64 `json:"dev"`
	Ino     uint64 `json:"ino"`
	Birth   int64  `json:"birth,omitempty"`
	FPBytes int    `json:"fp_bytes"`
	FP      string `json:"fp"`
	Offset  int64  `json:"offset"`
	Gzip    bool   `json:"gzip,omitempty"`
	Size    int64  `json:"size,omitempty"`
	Done    bool   `json:"done,omitempty"`
	Seen    int64  `json:"seen"`
}

// loadCheckpoints creates the state directory if need be and reads the
// checkpoints into known, as closed files.
func (s *fileSource) loadCheckpoints() error {
	if s.stateDir == "" {
		return nil
	}
	if err := os.MkdirAll(s.stateDir, 0o755); err != nil {
		return fmt.Errorf("sources: file: state directory: %w", err)
	}
	path := filepath.Join(s.stateDir, fileCheckpointName)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("sources: file: checkpoints: %w", err)
	}
	var doc fileCheckpoints
	if err := json.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("sources: file: checkpoints %s are corrupt (move the file away to read every file again): %w", path, err)
	}
	if doc.Version != fileCheckpointVersion {
		return fmt.Errorf("sources: file: checkpoints %s have version %d; this Weir reads version %d", path, doc.Version, fileCheckpointVersion)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range doc.Files {
		sum, err := strconv.ParseUint(e.FP, 16, 64)
		if err != nil || e.FPBytes < 0 || e.Offset < 0 {
			return fmt.Errorf("sources: file: checkpoints %s are corrupt (move the file away to read every file again): bad entry for %s", path, e.Path)
		}
		f := &fileState{
			key: fileKey{Dev: e.Dev, Ino: e.Ino}, btime: e.Birth, gz: e.Gzip, gzSize: e.Size,
			path: e.Path, committed: e.Offset, fpLen: e.FPBytes, fpSum: sum, done: e.Done,
			lastSeen: time.Unix(e.Seen, 0),
		}
		f.rewind(e.Offset)
		f.registered = e.Offset
		s.known[f.key] = f
	}
	return nil
}

// save writes the checkpoints if they changed. Writes are serialized, so
// a later snapshot is never overwritten by an earlier one.
func (s *fileSource) save() error {
	if s.stateDir == "" {
		return nil
	}
	s.saveMu.Lock()
	defer s.saveMu.Unlock()
	s.mu.Lock()
	if !s.dirty {
		s.mu.Unlock()
		return nil
	}
	doc := fileCheckpoints{Version: fileCheckpointVersion, Files: make([]fileCheckpoint, 0, len(s.known))}
	for _, f := range s.known {
		doc.Files = append(doc.Files, fileCheckpoint{
			Path: f.path, Dev: f.key.Dev, Ino: f.key.Ino, Birth: f.btime,
			FPBytes: f.fpLen, FP: strconv.FormatUint(f.fpSum, 16), Offset: f.committed,
			Gzip: f.gz, Size: f.gzSize, Done: f.done, Seen: f.lastSeen.Unix(),
		})
	}
	s.dirty = false
	s.mu.Unlock()
	slices.SortFunc(doc.Files, func(a, b fileCheckpoint) int {
		return cmp.Or(cmp.Compare(a.Path, b.Path), cmp.Compare(a.Dev, b.Dev), cmp.Compare(a.Ino, b.Ino))
	})
	data, err := json.MarshalIndent(&doc, "", " ")
	if err == nil {
		err = atomicfile.Write(filepath.Join(s.stateDir, fileCheckpointName), append(data, '\n'))
	}
	if err != nil {
		s.mu.Lock()
		s.dirty = true
		s.mu.Unlock()
		return fmt.Errorf("sources: file: writing checkpoints: %w", err)
	}
	return nil
}

// fileReadPrefix reads the first n bytes of f into buf (grown if need be).
func fileReadPrefix(f *os.File, n int, buf []byte) ([]byte, error) {
	buf = slices.Grow(buf[:0], n)[:n]
	m, err := f.ReadAt(buf, 0)
	if m == n {
		return buf, nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return buf[:m], err
}

// sameFile reports whether the open file fd (size bytes, born btime) is
// the file f describes; see Identity above.
func (s *fileSource) sameFile(f *fileState, fd *os.File, size, btime int64) bool {
	s.mu.Lock()
	deleted, fpLen, fpSum := f.deleted, f.fpLen, f.fpSum
	s.mu.Unlock()
	if deleted {
		return false
	}
	if f.btime != 0 && btime != 0 && f.btime != btime {
		return false
	}
	if int64(fpLen) > size || (!f.gz && f.consumed > size) {
		return false
	}
	if f.gz && f.gzSize != 0 && f.gzSize != size {
		return false
	}
	if f.fpData != nil && len(f.fpData) == fpLen {
		p, err := fileReadPrefix(fd, fpLen, s.scratch)
		s.scratch = p
		return err == nil && bytes.Equal(p, f.fpData)
	}
	p, err := fileReadPrefix(fd, fpLen, nil)
	if err != nil || crc64.Checksum(p, fileCRCTable) != fpSum {
		return false
	}
	f.fpData = p
	return true
}

// fingerprint sets f's fingerprint to its first min(fingerprint_bytes,
// size) bytes, when that is more than it has.
func (s *fileSource) fingerprint(f *fileState, size int64) error {
	n := int(min(int64(s.cfg.fingerprintBytes), size))
	if n <= f.fpLen && len(f.fpData) == f.fpLen { // fpLen is written by Read only
		return nil
	}
	p, err := fileReadPrefix(f.fd, n, f.fpData)
	if err != nil {
		return err
	}
	f.fpData = p
	sum := crc64.Checksum(p, fileCRCTable)
	s.mu.Lock()
	f.fpLen, f.fpSum = n, sum
	s.dirty = true
	s.mu.Unlock()
	return nil
}

// File ids
//
// Every record carries the header weir.file.id: 16 hex digits, the first
// 64 bits of the SHA-256 of the file's device, inode and birth time (0
// where unknown) and of its first line (from the start of the file to the
// first line break after a byte other than \r and \n, at most
// fingerprint_bytes; for a .gz file, its first fingerprint_bytes). With
// weir.offset it names a line for good, whichever process read it and
// however often: a sink derives document ids from the two (the
// elasticsearch sink does), so that lines read again after a crash, which
// land in the dataset a second time at new offsets, overwrite their
// documents instead of duplicating them.
//
// The id covers what the checkpoint's identity covers, except that the
// fingerprint stops at the first line: every byte of it is known before
// the first record of the file is handed on, so the id never changes
// while the file grows. A file renamed by rotation keeps its device,
// inode, birth time and content, so its id; a new file that reuses an
// inode has another birth time (where the filesystem records one) or,
// almost always, another first line; a file truncated and written again
// (copytruncate) gets a new id from its new first line, since its offsets
// start again. Only a first line still without its line break when it is
// handed on (a partial or cut line) gets an id from the bytes there are;
// the id is then computed again for each record until the line is
// complete.

// fileIDLen is the length of a weir.file.id.
const fileIDLen = 16

// setID sets f.id from f's first bytes (fpData), unless it is fixed
// already; see File ids. maxBytes is fingerprint_bytes.
func (f *fileState) setID(maxBytes int) {
	if f.idFixed {
		return
	}
	p, fixed := fileIDPrefix(f.fpData, maxBytes, f.gz)
	var b [24]byte
	binary.BigEndian.PutUint64(b[0:], f.key.Dev)
	binary.BigEndian.PutUint64(b[8:], f.key.Ino)
	binary.BigEndian.PutUint64(b[16:], uint64(f.btime))
	h := sha256.New()
	h.Write(b[:])
	h.Write(p)
	var sum [sha256.Size]byte
	hex.Encode(f.id[:], h.Sum(sum[:0])[:fileIDLen/2])
	f.idFixed = fixed
}

// fileIDPrefix returns the first bytes of a file that its id covers, out
// of first (its first bytes as far as they were read), and whether they
// are complete: up to the first line break after a byte other than \r and
// \n (empty lines are skipped, so this is the end of the first record's
// line), at most maxBytes. For a compressed file (whole), all of first.
func fileIDPrefix(first []byte, maxBytes int, whole bool) ([]byte, bool) {
	if whole {
		return first, true
	}
	if len(first) > maxBytes {
		first = first[:maxBytes]
	}
	i := 0
	for i < len(first) && (first[i] == '\n' || first[i] == '\r') {
		i++
	}
	if j := bytes.IndexByte(first[i:], '\n'); j >= 0 {
		return first[:i+j+1], true
	}
	return first, len(first) >= maxBytes
}
