package log

import (
	"sync"
)

// faultFS is a FaultFS whose writes fail while failWrites set an error.
type faultFS struct {
	FaultFS
	mu       sync.Mutex
	writeErr error
}

func newFaultFS() *faultFS {
	f := &faultFS{}
	f.FaultFS = FaultFS{FS: OSFS(), Fail: func(op, _ string) error {
		f.mu.Lock()
		defer f.mu.Unlock()
		if op == "write" {
			return f.writeErr
		}
		return nil
	}}
	return f
}

func (f *faultFS) failWrites(err error) {
	f.mu.Lock()
	f.writeErr = err
	f.mu.Unlock()
}
