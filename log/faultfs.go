package log

import (
	"io/fs"
	"os"
)

// FaultFS wraps an FS and fails the operations Fail chooses, to test how
// the log and its users handle a full disk or a failing device. Fail is
// called with the operation ("open", "write", "sync") and the file's path;
// a non-nil error fails the operation: an open returns it, a write stores
// half its bytes first (as a full disk does), a sync returns it. Fail must
// be safe for concurrent use. Other operations pass through.
type FaultFS struct {
	FS
	Fail func(op, path string) error
}

// OpenFile opens the file unless Fail fails the open.
func (f *FaultFS) OpenFile(name string, flag int, perm fs.FileMode) (File, error) {
	if err := f.Fail("open", name); err != nil {
		return nil, &os.PathError{Op: "open", Path: name, Err: err}
	}
	file, err := f.FS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &faultFile{File: file, fail: f.Fail}, nil
}

type faultFile struct {
	File
	fail func(op, path string) error
}

func (f *faultFile) OS() *os.File { return osOf(f.File) }

func (f *faultFile) WriteAt(b []byte, off int64) (int, error) {
	if err := f.fail("write", f.Name()); err != nil {
		n, _ := f.File.WriteAt(b[:len(b)/2], off)
		return n, &os.PathError{Op: "write", Path: f.Name(), Err: err}
	}
	return f.File.WriteAt(b, off)
}

func (f *faultFile) Write(b []byte) (int, error) {
	if err := f.fail("write", f.Name()); err != nil {
		n, _ := f.File.Write(b[:len(b)/2])
		return n, &os.PathError{Op: "write", Path: f.Name(), Err: err}
	}
	return f.File.Write(b)
}

func (f *faultFile) Sync() error {
	if err := f.fail("sync", f.Name()); err != nil {
		return &os.PathError{Op: "fdatasync", Path: f.Name(), Err: err}
	}
	return f.File.Sync()
}
