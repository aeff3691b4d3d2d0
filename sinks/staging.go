package sinks

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// stagingRun is one sink instance's own directory under a staging
// directory that every instance writing the same root shares (several
// members of a group, or runs one after another):
//
//	BASE/run-N.lock   flock held while the instance is open
//	BASE/run-N.d/     its temporary files
//
// An instance removes only what belongs to instances that are gone (their
// lock is free: a kill -9 releases it too), never the temporary file of a
// member that is still writing.
type stagingRun struct {
	dir  string
	lock *os.File
}

// claimStaging removes the leftovers of instances that are gone from base
// and claims a directory of its own there.
func claimStaging(base string) (*stagingRun, error) {
	if err := os.MkdirAll(base, 0o755); err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(base)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		p := filepath.Join(base, e.Name())
		switch name := e.Name(); {
		case strings.HasSuffix(name, ".lock"):
			if l, err := lockFile(p, false); err == nil { // its owner is gone
				err = os.RemoveAll(strings.TrimSuffix(p, ".lock") + ".d")
				if err == nil {
					err = os.Remove(p)
				}
				l.Close()
				if err != nil {
					return nil, err
				}
			}
		case strings.HasSuffix(name, ".d"):
			// A directory whose lock is gone: the lock is created before
			// the directory and removed after it, so its owner is gone.
			if _, err := os.Stat(strings.TrimSuffix(p, ".d") + ".lock"); errors.Is(err, fs.ErrNotExist) {
				if err := os.RemoveAll(p); err != nil {
					return nil, err
				}
			}
		case strings.HasSuffix(name, ".parquet.tmp"): // written straight into base by earlier versions
			if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return nil, err
			}
		}
	}
	for range 100 {
		f, err := os.CreateTemp(base, "run-*.lock")
		if err != nil {
			return nil, err
		}
		name := f.Name()
		f.Close()
		l, err := lockFile(name, true)
		if errors.Is(err, fs.ErrNotExist) {
			continue // another instance took it for a leftover between the two steps
		}
		if err != nil {
			return nil, err
		}
		run := &stagingRun{dir: strings.TrimSuffix(name, ".lock") + ".d", lock: l}
		if err := os.Mkdir(run.dir, 0o755); err != nil {
			run.release()
			return nil, err
		}
		return run, nil
	}
	return nil, fmt.Errorf("cannot claim a staging directory in %s", base)
}

// lockFile opens path (which must exist) and takes its flock without
// waiting. With mustStay it also checks that path still names the locked
// file, since another instance may have removed it before the lock was
// taken.
func lockFile(path string, mustStay bool) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, err
	}
	if mustStay {
		held, err1 := f.Stat()
		now, err2 := os.Stat(path)
		if err1 != nil || err2 != nil || !os.SameFile(held, now) {
			f.Close()
			return nil, fs.ErrNotExist
		}
	}
	return f, nil
}

// release removes the instance's directory and lock.
func (r *stagingRun) release() error {
	err := os.RemoveAll(r.dir)
	if err == nil {
		err = os.Remove(r.lock.Name())
	}
	r.lock.Close()
	return err
}
