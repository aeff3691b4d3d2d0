package log

import (
	"errors"
	"fmt"
)

var (
	// ErrClosed is returned by operations on a closed Log.
	ErrClosed = errors.New("log: closed")
	// ErrFailed is returned once a write or sync has failed in a way that
	// leaves the on-disk state unknown (a failed fdatasync cannot be
	// retried). Reopen the log to recover it.
	ErrFailed = errors.New("log: failed after an I/O error; reopen to recover")
	// ErrOutOfRange classifies *RangeError.
	ErrOutOfRange = errors.New("log: offset out of range")
	// ErrCorrupt classifies *CorruptError.
	ErrCorrupt = errors.New("log: corrupt data")
	// ErrLocked is returned by Open when another process has the log open.
	ErrLocked = errors.New("log: directory is in use by another process")
)

// RangeError reports an offset outside [Start, End] of the log.
type RangeError struct {
	Offset, Start, End int64
}

func (e *RangeError) Error() string {
	return fmt.Sprintf("log: offset %d out of range [%d, %d]", e.Offset, e.Start, e.End)
}

func (e *RangeError) Unwrap() error { return ErrOutOfRange }

// CorruptError reports a batch that failed its checks in a segment file:
// the file, the byte position of the batch, and the first offset that cannot
// be served. Err wraps the codecs error that says why.
type CorruptError struct {
	Path     string
	Position int64
	Offset   int64
	Err      error
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("log: corrupt batch in %s at position %d (offset %d): %v", e.Path, e.Position, e.Offset, e.Err)
}

func (e *CorruptError) Unwrap() []error { return []error{ErrCorrupt, e.Err} }
