package log

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// FS is the file system a Log keeps its files in: the operating system's
// by default (Options.FS nil), or another implementation for tests, such as
// MemFS, which can simulate a power cut, or a wrapper that injects faults.
// Paths are the ones a Log builds from its directory with filepath.Join.
type FS interface {
	// OpenFile opens a file as os.OpenFile does.
	OpenFile(name string, flag int, perm fs.FileMode) (File, error)
	// MkdirAll creates a directory and its parents, as os.MkdirAll does.
	MkdirAll(dir string, perm fs.FileMode) error
	// ReadDir lists the names in a directory.
	ReadDir(dir string) ([]string, error)
	// Stat describes a file; a missing one is an error wrapping
	// fs.ErrNotExist.
	Stat(name string) (fs.FileInfo, error)
	// Remove deletes a file.
	Remove(name string) error
	// Rename replaces newname with oldname atomically.
	Rename(oldname, newname string) error
	// SyncDir makes the directory's entries (files created, renamed and
	// removed in it) durable.
	SyncDir(dir string) error
	// Lock takes an exclusive lock on dir for this process, failing with
	// an error wrapping ErrLocked if another holder has it; Close
	// releases it.
	Lock(dir string) (io.Closer, error)
}

// File is an open file of an FS.
type File interface {
	io.ReaderAt
	io.WriterAt
	io.Writer
	io.Closer
	// Name is the path the file was opened with.
	Name() string
	// Stat describes the file.
	Stat() (fs.FileInfo, error)
	// Truncate changes the file's size.
	Truncate(size int64) error
	// Sync makes the file's data durable (fdatasync on the operating
	// system).
	Sync() error
}

// OSFile is implemented by files backed by an operating system file: the
// log then reserves blocks with fallocate and hands the file to readers
// for sendfile (Section.File).
type OSFile interface {
	OS() *os.File
}

// osFS is the operating system's file system.
type osFS struct{}

type osFile struct{ *os.File }

func (f osFile) OS() *os.File { return f.File }

// Sync is fdatasync: the data and the size, not the times.
func (f osFile) Sync() error {
	for {
		err := syscall.Fdatasync(int(f.Fd()))
		if err != syscall.EINTR {
			if err != nil {
				return &os.PathError{Op: "fdatasync", Path: f.Name(), Err: err}
			}
			return nil
		}
	}
}

func (osFS) OpenFile(name string, flag int, perm fs.FileMode) (File, error) {
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return osFile{f}, nil
}

func (osFS) MkdirAll(dir string, perm fs.FileMode) error { return os.MkdirAll(dir, perm) }

func (osFS) ReadDir(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	names := make([]string, len(entries))
	for i, e := range entries {
		names[i] = e.Name()
	}
	return names, err
}

func (osFS) Stat(name string) (fs.FileInfo, error) { return os.Stat(name) }
func (osFS) Remove(name string) error              { return os.Remove(name) }
func (osFS) Rename(oldname, newname string) error  { return os.Rename(oldname, newname) }

func (osFS) SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Lock takes a flock on dir/.lock, which also keeps other processes out.
func (osFS) Lock(dir string) (io.Closer, error) {
	lock, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s", ErrLocked, dir)
		}
		return nil, fmt.Errorf("log: locking %s: %w", dir, err)
	}
	return lock, nil
}

// osOf returns the operating system file behind f, or nil.
func osOf(f File) *os.File {
	if o, ok := f.(OSFile); ok {
		return o.OS()
	}
	return nil
}

// writeFileSync writes data to path through a temporary file, synced (when
// sync is set) and renamed, so that path is either absent or complete.
func writeFileSync(fsys FS, path string, data []byte, sync bool) error {
	tmp := path + tmpSuffix
	f, err := fsys.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil && sync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = fsys.Rename(tmp, path)
	}
	if err != nil {
		fsys.Remove(tmp)
	}
	return err
}

// OSFS returns the operating system's file system, the default FS.
func OSFS() FS { return osFS{} }
