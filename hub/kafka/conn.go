package kafka

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

var errTooManyFiles = syscall.EMFILE

// maxNonProduceBytes bounds requests other than Produce: decoding one
// expands it in memory, so only Produce, which carries records, may be
// large.
const maxNonProduceBytes = 8 << 20

// header is a decoded request header.
type header struct {
	key           int16
	version       int16
	correlationID int32
	clientID      string
}

// pending is one response on its way out, in request order.
type pending struct {
	hdr        header
	flexHeader bool          // response header v1 (tagged fields)
	ready      chan struct{} // closed once resp or write is set; nil if ready
	resp       kmsg.Response
	write      func(c *conn) error // writes the whole frame itself (fetch)
	done       func()              // runs after writing or abandoning
	closeAfter bool                // close the connection after this response
}

// conn is one client connection.
type conn struct {
	s      *Server
	nc     net.Conn
	remote string
	ctx    context.Context
	cancel context.CancelFunc
	out    chan *pending

	stopping atomic.Bool
	wbuf     []byte // the writer's buffer
	hbuf     []byte // the reader's small buffer

	auth connAuth // touched by the reader only
}

func newConn(s *Server, nc net.Conn) *conn {
	ctx, cancel := context.WithCancel(context.Background())
	return &conn{s: s, nc: nc, remote: nc.RemoteAddr().String(), ctx: ctx, cancel: cancel,
		out: make(chan *pending, s.opts.MaxInFlight), hbuf: make([]byte, 4)}
}

// stopReading makes the reader finish after the request it is reading;
// the responses already queued are still written.
func (c *conn) stopReading() {
	c.stopping.Store(true)
	c.nc.SetReadDeadline(time.Now())
}

func (c *conn) serve() {
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		c.writeLoop()
	}()
	err := c.readLoop()
	close(c.out)
	<-writerDone
	c.cancel()
	c.nc.Close()
	if err != nil && !errors.Is(err, io.EOF) && !c.stopping.Load() {
		c.s.opts.Logger.Info("kafka: closing connection", "remote", c.remote, "reason", err)
	}
	c.s.forget(c)
}

func (c *conn) readLoop() error {
	for {
		if c.stopping.Load() {
			return nil
		}
		c.nc.SetReadDeadline(time.Now().Add(c.s.opts.IdleTimeout))
		if _, err := io.ReadFull(c.nc, c.hbuf[:4]); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && !c.stopping.Load() {
				return fmt.Errorf("idle for %v", c.s.opts.IdleTimeout)
			}
			return err
		}
		size := int32(binary.BigEndian.Uint32(c.hbuf))
		if size < 8 || size > c.s.opts.MaxRequestBytes {
			return fmt.Errorf("request of %d bytes (at most %d accepted): not a Kafka client, or raise MaxRequestBytes", size, c.s.opts.MaxRequestBytes)
		}
		// Read the fixed header first: the API key decides the limit.
		if _, err := io.ReadFull(c.nc, c.hbuf[:4]); err != nil {
			return err
		}
		key := int16(binary.BigEndian.Uint16(c.hbuf))
		if key != 0 && size > maxNonProduceBytes {
			return fmt.Errorf("request of %d bytes for API key %d (at most %d for anything but Produce)", size, key, maxNonProduceBytes)
		}
		if err := c.admitFrame(key, size); err != nil {
			return err
		}
		c.nc.SetReadDeadline(time.Now().Add(c.s.opts.WriteTimeout))
		// Produce bodies come from a pool: the records are copied into
		// the log before the handler returns, so the body can be reused
		// at once. Other requests keep theirs (decoded fields may alias
		// it, as group metadata does).
		var body []byte
		var pooled *[]byte
		if key == 0 {
			pooled = getBuf(int(size))
			body = (*pooled)[:size]
		} else {
			body = make([]byte, size)
		}
		copy(body, c.hbuf[:4])
		if _, err := io.ReadFull(c.nc, body[4:]); err != nil {
			return fmt.Errorf("reading a request of %d bytes: %w", size, err)
		}
		err := c.handle(body)
		if pooled != nil {
			putBuf(pooled)
		}
		if err != nil {
			return err
		}
	}
}

// handle decodes one request and queues its response.
func (c *conn) handle(body []byte) error {
	if c.auth.raw {
		return c.rawSASL(body) // after SaslHandshake v0
	}
	var h header
	h.key = int16(binary.BigEndian.Uint16(body))
	h.version = int16(binary.BigEndian.Uint16(body[2:]))
	h.correlationID = int32(binary.BigEndian.Uint32(body[4:]))
	rest := body[8:]
	if len(rest) < 2 {
		return errors.New("request header cut short")
	}
	if n := int16(binary.BigEndian.Uint16(rest)); n >= 0 {
		if int(n) > len(rest)-2 {
			return errors.New("client id runs past the request")
		}
		h.clientID = string(rest[2 : 2+n])
		rest = rest[2+n:]
	} else {
		rest = rest[2:]
	}
	a, known := apis[h.key]
	if h.key == 18 && (!known || h.version > a.max || h.version < a.min) {
		// ApiVersions a version ahead of ours: answer v0 with our list
		// and UNSUPPORTED_VERSION, as Kafka brokers do, so the client
		// retries with a version we list.
		resp := apiVersionsResponse(0)
		resp.ErrorCode = kerr.UnsupportedVersion.Code
		c.queue(&pending{hdr: h, resp: resp})
		return nil
	}
	if !known {
		return fmt.Errorf("unknown API key %d from client %q", h.key, h.clientID)
	}
	if h.version < a.min || h.version > a.max {
		return fmt.Errorf("API key %d version %d is not supported (%d to %d) from client %q", h.key, h.version, a.min, a.max, h.clientID)
	}
	if err := c.admit(h.key); err != nil {
		return err
	}
	req := kmsg.RequestForKey(h.key)
	req.SetVersion(h.version)
	if req.IsFlexible() {
		var err error
		if rest, err = skipTags(rest); err != nil {
			return fmt.Errorf("API key %d v%d: request header tags: %w", h.key, h.version, err)
		}
	}
	if err := req.ReadFrom(rest); err != nil {
		return fmt.Errorf("malformed API key %d v%d request from client %q: %w", h.key, h.version, h.clientID, err)
	}
	p := c.dispatch(a, &h, req)
	if p == nil {
		return nil // nothing to answer (acks=0)
	}
	p.hdr = h
	p.flexHeader = req.IsFlexible() && h.key != 18 // ApiVersions always answers with header v0
	c.queue(p)
	if p.closeAfter {
		return errors.New("closing after an error the client must notice (acks=0)")
	}
	return nil
}

func (c *conn) queue(p *pending) {
	c.out <- p
}

// bufPools hold request buffers by size class: powers of two from 4 KiB
// to 16 MiB; larger requests get a buffer of their own.
var bufPools [13]sync.Pool

func sizeClass(n int) int {
	c := 0
	for size := 4 << 10; size < n; size <<= 1 {
		c++
	}
	return c
}

func getBuf(n int) *[]byte {
	c := sizeClass(n)
	if c >= len(bufPools) {
		b := make([]byte, n)
		return &b
	}
	if p, ok := bufPools[c].Get().(*[]byte); ok {
		return p
	}
	b := make([]byte, 4<<10<<c)
	return &b
}

func putBuf(p *[]byte) {
	if c := sizeClass(cap(*p)); c < len(bufPools) && cap(*p) == 4<<10<<c {
		*p = (*p)[:cap(*p)]
		bufPools[c].Put(p)
	}
}

// skipTags skips a tagged-field section.
func skipTags(b []byte) ([]byte, error) {
	n, k := binary.Uvarint(b)
	if k <= 0 {
		return nil, errors.New("bad tag count")
	}
	b = b[k:]
	for range n {
		if _, k = binary.Uvarint(b); k <= 0 {
			return nil, errors.New("bad tag")
		}
		b = b[k:]
		size, k := binary.Uvarint(b)
		if k <= 0 || size > uint64(len(b)-k) {
			return nil, errors.New("bad tag size")
		}
		b = b[k+int(size):]
	}
	return b, nil
}

// writeLoop writes responses in request order.
func (c *conn) writeLoop() {
	var failed error
	for p := range c.out {
		if p.ready != nil {
			<-p.ready
		}
		if failed == nil {
			c.nc.SetWriteDeadline(time.Now().Add(c.s.opts.WriteTimeout))
			if p.write != nil {
				failed = p.write(c)
			} else {
				failed = c.writeResponse(p)
			}
			if failed != nil {
				c.s.opts.Logger.Info("kafka: writing a response failed; closing the connection", "remote", c.remote, "err", failed)
				c.cancel()
				c.nc.Close()
			}
		}
		if p.done != nil {
			p.done()
		}
		if p.closeAfter {
			c.cancel()
		}
	}
}

// appendResponseHeader starts a response frame: the size (patched by
// finishFrame), the correlation id and, for flexible responses, an empty
// tag section.
func appendResponseHeader(b []byte, p *pending) []byte {
	b = append(b, 0, 0, 0, 0)
	b = binary.BigEndian.AppendUint32(b, uint32(p.hdr.correlationID))
	if p.flexHeader {
		b = append(b, 0)
	}
	return b
}

func (c *conn) writeResponse(p *pending) error {
	b := appendResponseHeader(c.wbuf[:0], p)
	b = p.resp.AppendTo(b) // the response carries its version from ResponseKind
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	c.wbuf = b
	if cap(c.wbuf) > 1<<20 {
		c.wbuf = nil // do not keep a huge buffer for an idle connection
	}
	_, err := c.nc.Write(b)
	return err
}

// later returns a pending whose response fn computes in its own goroutine,
// for requests that wait (long polls, joins, durable produces).
func (c *conn) later(fn func() kmsg.Response) *pending {
	p := &pending{ready: make(chan struct{})}
	go func() {
		defer close(p.ready)
		p.resp = fn()
	}()
	return p
}
