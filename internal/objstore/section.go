package objstore

import (
	"fmt"
	"io"
	"net"
	"os"
	"sync/atomic"
)

// sendHook, when set by a test, runs after a sectionConn sent a section's
// bytes from its file (sendfile).
var sendHook atomic.Pointer[func()]

// sectionBody is the body of a PUT of a file section: left bytes of the
// file from its offset (putSection seeks it to the section), at the pace
// of pacer if not nil. A sectionConn sends it with sendfile (send);
// another connection reads it (Read).
type sectionBody struct {
	f      *os.File
	left   int64
	pacer  Pacer
	credit int64 // bytes the pacer allowed and not sent yet
}

// allow returns how many of the left bytes may be sent now, waiting for
// the pacer.
func (b *sectionBody) allow(left int64) (int64, error) {
	if b.pacer == nil {
		return left, nil
	}
	if b.credit == 0 {
		n, err := b.pacer.Pace(left)
		if err != nil {
			return 0, err
		}
		if n <= 0 {
			return 0, fmt.Errorf("objstore: a pacer allowed %d bytes", n)
		}
		b.credit = n
	}
	return min(b.credit, left), nil
}

func (b *sectionBody) took(n int64) {
	b.left -= n
	if b.pacer != nil {
		b.credit = max(b.credit-n, 0)
	}
}

// Read reads the section at the pacer's pace: net/http reads a body past
// its ContentLength to check that it ends there, which costs no wait.
func (b *sectionBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	n, err := b.allow(b.left)
	if err != nil {
		return 0, err
	}
	k, err := b.f.Read(p[:min(int64(len(p)), n)])
	b.took(int64(k))
	if err == io.EOF && b.left > 0 {
		err = io.ErrUnexpectedEOF
	}
	return k, err
}

func (b *sectionBody) Close() error { return b.f.Close() }

// send sends n bytes of the file to c with sendfile (through its
// *net.TCPConn's ReadFrom), in the parts the pacer allows; it returns the
// bytes sent.
func (b *sectionBody) send(c net.Conn, n int64) (sent int64, err error) {
	n = min(n, b.left)
	for sent < n {
		var part, k int64
		if part, err = b.allow(n - sent); err != nil {
			return sent, err
		}
		lr := &io.LimitedReader{R: b.f, N: part}
		if rf, ok := c.(io.ReaderFrom); ok {
			k, err = rf.ReadFrom(lr)
		} else {
			k, err = io.Copy(c, lr)
		}
		sent += k
		b.took(k)
		if err == nil && k < part {
			err = io.ErrUnexpectedEOF
		}
		if err != nil {
			return sent, err
		}
	}
	if h := sendHook.Load(); h != nil {
		(*h)()
	}
	return sent, nil
}

// sectionConn is a connection of S3's transport for sections (S3.hc): a
// body it is given whole (net/http copies a body of known length to the
// connection through ReadFrom of an io.LimitedReader) that is a
// sectionBody goes by sectionBody.send; anything else by the connection's
// own ReadFrom (or Write).
type sectionConn struct{ net.Conn }

func (c sectionConn) ReadFrom(r io.Reader) (int64, error) {
	if lr, ok := r.(*io.LimitedReader); ok {
		if b, ok := lr.R.(*sectionBody); ok {
			n, err := b.send(c.Conn, lr.N)
			lr.N -= n
			return n, err
		}
	}
	return io.Copy(c.Conn, r)
}
