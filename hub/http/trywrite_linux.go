package http

import (
	"errors"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// canTryWrite says that sockWriter writes.
const canTryWrite = true

// sockWriter writes to a socket with one writev(2) at a time, never
// waiting for it. Its methods are called by one goroutine at a time.
type sockWriter struct {
	rc    syscall.RawConn
	fn    func(fd uintptr) bool // s.writev, bound once: no allocation a write
	iov   []unix.Iovec
	n     uintptr
	errno syscall.Errno
}

func newSockWriter(rc syscall.RawConn) *sockWriter {
	s := &sockWriter{rc: rc}
	s.fn = s.writev
	return s
}

func (s *sockWriter) writev(fd uintptr) bool {
	for {
		s.n, _, s.errno = syscall.Syscall(unix.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&s.iov[0])), uintptr(len(s.iov)))
		if s.errno != syscall.EINTR {
			return true // done either way: never wait for the socket
		}
	}
}

// tryWrite writes bufs and returns how many bytes the socket took (0 when
// it is full, or when the connection's write deadline has passed: the
// caller's blocking write then sees that).
func (s *sockWriter) tryWrite(bufs [][]byte) (int, error) {
	s.iov = s.iov[:0]
	for _, b := range bufs {
		if len(b) > 0 {
			e := unix.Iovec{Base: &b[0]}
			e.SetLen(len(b))
			s.iov = append(s.iov, e)
		}
	}
	if len(s.iov) == 0 {
		return 0, nil
	}
	err := s.rc.Write(s.fn)
	clear(s.iov) // keep no pointer to the frames
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return 0, nil
	case err != nil:
		return 0, err
	case s.errno == syscall.EAGAIN:
		return 0, nil
	case s.errno != 0:
		return 0, &os.SyscallError{Syscall: "writev", Err: s.errno}
	}
	return int(s.n), nil
}
