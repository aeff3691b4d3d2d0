// Package atomicfile replaces small files (configs, checkpoints,
// snapshots) so that a crash leaves either the old content or the new,
// never a mix: write a temporary file beside it, fsync it, rename it over
// the old one, fsync the directory. It is the one such writer of the hub
// and the connectors; the log writes its own files through its FS, where
// crash tests can drop what was not synced.
package atomicfile

import (
	"fmt"
	"os"
	"path/filepath"
)

// TmpSuffix is appended to the name of the temporary file; one left by a
// crash can be removed.
const TmpSuffix = ".tmp"

// Write replaces path with data, durably: when it returns nil the new
// content survives a crash. The temporary file is removed on failure.
func Write(path string, data []byte) error {
	tmp := path + TmpSuffix
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("atomicfile: %w", err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("atomicfile: writing %s: %w", path, err)
	}
	if err := SyncDir(filepath.Dir(path)); err != nil {
		return fmt.Errorf("atomicfile: writing %s: %w", path, err)
	}
	return nil
}

// SyncDir fsyncs a directory, making the creation, renaming or removal
// of its entries durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
