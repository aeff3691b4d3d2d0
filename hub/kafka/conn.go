package kafka

import (
	"container/list"
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
	prepare    func(c *conn)       // run by the writer once this response is next, before write (a fetch's long poll)
	done       func()              // runs after writing or abandoning
	closeAfter bool                // close the connection after this response
	start      time.Time           // when the request was read, for the Observer
}

// conn is one client connection.
type conn struct {
	s         *Server
	nc        net.Conn
	remote    string
	ip        string        // remote's host, for MaxConnectionsPerIP
	freshElem *list.Element // in s.fresh until the first request; guarded by s.mu
	ctx       context.Context
	cancel    context.CancelFunc
	readCtx   context.Context // ends with ctx or at stopReading: waits for budget
	stopRead  context.CancelFunc
	out       chan *pending

	stopping atomic.Bool
	wbuf     []byte // the writer's buffer
	// queued counts the responses handed to the writer and not yet
	// written or abandoned. At zero the writer is idle and nothing is
	// owed before the next response, which the reader then writes itself
	// (writeNow) from dbuf, its own buffer.
	queued atomic.Int64
	dbuf   []byte
	// rbuf buffers what the reader took from the socket: a request's
	// header, a small request whole, and the start of the next when a
	// client pipelines. rbuf[rr:rw] is not consumed yet.
	rbuf   []byte
	rr, rw int

	auth connAuth // touched by the reader only
}

func newConn(s *Server, nc net.Conn) *conn {
	ctx, cancel := context.WithCancel(context.Background())
	remote := nc.RemoteAddr().String()
	ip, _, err := net.SplitHostPort(remote)
	if err != nil {
		ip = remote
	}
	readCtx, stopRead := context.WithCancel(ctx)
	return &conn{s: s, nc: nc, remote: remote, ip: ip, ctx: ctx, cancel: cancel, readCtx: readCtx, stopRead: stopRead,
		out: make(chan *pending, s.opts.MaxInFlight), rbuf: make([]byte, readBufSize)}
}

// stopReading makes the reader finish after the request it is reading;
// the responses already queued are still written.
func (c *conn) stopReading() {
	c.stopping.Store(true)
	c.nc.SetReadDeadline(time.Now())
	c.stopRead()
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
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !c.stopping.Load() {
		c.s.refused(closedOnError, c.remote, "reason", err)
	}
	c.s.forget(c)
}

// readBufSize is the reader's buffer: a socket read takes up to this much,
// so that a request's size, header and (when small, as most fetches and
// metadata requests are) its body arrive with one read(2), not three.
// Bodies beyond it are read straight into their own buffer.
const readBufSize = 4 << 10

func (c *conn) readLoop() error {
	for first := true; ; first = false {
		if c.stopping.Load() {
			return nil
		}
		idle := c.s.opts.IdleTimeout
		if first {
			idle = c.s.opts.FirstRequestTimeout
		}
		if err := c.fill(4, idle); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && !c.stopping.Load() {
				if first {
					return fmt.Errorf("no request in the first %v", idle)
				}
				return fmt.Errorf("idle for %v", idle)
			}
			return err
		}
		if first {
			c.s.started(c)
		}
		size := int32(binary.BigEndian.Uint32(c.rbuf[c.rr:]))
		c.rr += 4
		if size < 8 || size > c.s.opts.MaxRequestBytes {
			return fmt.Errorf("request of %d bytes (at most %d accepted): not a Kafka client, or raise MaxRequestBytes", size, c.s.opts.MaxRequestBytes)
		}
		timeout := c.s.bodyTimeout(int(size))
		deadline := time.Now().Add(timeout)
		// Read the fixed header first: the API key decides the limit.
		if err := c.fill(4, timeout); err != nil {
			return err
		}
		key := int16(binary.BigEndian.Uint16(c.rbuf[c.rr:]))
		if limit := c.s.requestLimit(key); size > limit {
			return fmt.Errorf("request of %d bytes for API key %d (at most %d for it)", size, key, limit)
		}
		if err := c.admitFrame(key, size); err != nil {
			return err
		}
		body, pooled, charged, err := c.readBody(key, int(size), deadline)
		if err == nil {
			err = c.handle(body, deadline)
		}
		if pooled != nil {
			putBuf(pooled)
		}
		c.s.budget.release(charged) // no lock taken when nothing was charged
		if err != nil {
			return err
		}
	}
}

// fill reads until at least n bytes (n <= readBufSize) are buffered,
// taking whatever more the socket has that fits. A read waits at most
// timeout; none is made, and no deadline set, when the bytes are there.
// It fails with io.EOF when the client closed between requests, with
// io.ErrUnexpectedEOF when it closed within one.
func (c *conn) fill(n int, timeout time.Duration) error {
	if c.rw-c.rr >= n {
		return nil
	}
	if c.rr > 0 {
		c.rw = copy(c.rbuf, c.rbuf[c.rr:c.rw])
		c.rr = 0
	}
	c.nc.SetReadDeadline(time.Now().Add(timeout))
	for c.rw < n {
		k, err := c.nc.Read(c.rbuf[c.rw:])
		c.rw += k
		if err != nil && c.rw < n {
			if errors.Is(err, io.EOF) && c.rw > 0 {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

// readBody reads a request of size bytes (its size prefix consumed, at
// least its API key and version buffered) into a buffer that grows as the bytes arrive,
// charging the budget for what it holds. What the reader's buffer holds
// is taken first; the rest is read straight into the body, never past
// its end. Produce bodies come from a pool (returned in pooled): the
// records are copied into the log before the handler returns, so the body
// can be reused at once. Other requests keep theirs (decoded fields may
// alias it, as group metadata does).
func (c *conn) readBody(key int16, size int, deadline time.Time) (body []byte, pooled *[]byte, charged int64, err error) {
	room := 0 // bytes of body that may be filled: what is charged
	grow := func(n int) error {
		if n > freeRequestBytes {
			if err := c.s.budget.acquire(c.readCtx, deadline, int64(n-room)); err != nil {
				return fmt.Errorf("waiting for room to read a request of %d bytes: %w", size, err)
			}
			charged += int64(n - room)
		}
		room = n
		if cap(body) >= n {
			return nil
		}
		var nb []byte
		var np *[]byte
		if key == 0 {
			np = getBuf(n)
			nb = (*np)[:len(body)]
		} else {
			nb = make([]byte, len(body), n)
		}
		copy(nb, body)
		if pooled != nil {
			putBuf(pooled)
		}
		body, pooled = nb, np
		return nil
	}
	if err := grow(min(size, firstChunk)); err != nil {
		return nil, pooled, charged, err
	}
	have := min(size, c.rw-c.rr) // <= readBufSize <= firstChunk
	body = append(body, c.rbuf[c.rr:c.rr+have]...)
	c.rr += have
	if len(body) < size {
		c.nc.SetReadDeadline(deadline)
	}
	for len(body) < size {
		if len(body) == room {
			if err := grow(min(size, 2*room)); err != nil {
				return nil, pooled, charged, err
			}
		}
		n, err := c.nc.Read(body[len(body):room])
		body = body[:len(body)+n]
		if err != nil && len(body) < size {
			return nil, pooled, charged, fmt.Errorf("reading a request of %d bytes (%d arrived): %w", size, len(body), err)
		}
	}
	return body, pooled, charged, nil
}

// handle decodes one request and queues its response.
// The decode waits for room in the decoding budget until deadline.
func (c *conn) handle(body []byte, deadline time.Time) error {
	if c.auth.raw {
		return c.rawSASL(body) // after SaslHandshake v0
	}
	var start time.Time
	if c.s.opts.Observer != nil {
		start = time.Now()
	}
	h, req, rest, cost, err := parseRequest(body)
	if err != nil {
		return err
	}
	if req == nil {
		// ApiVersions a version ahead of ours: answer v0 with our list
		// and UNSUPPORTED_VERSION, as Kafka brokers do, so the client
		// retries with a version we list.
		resp := apiVersionsResponse(0)
		resp.ErrorCode = kerr.UnsupportedVersion.Code
		c.queue(&pending{hdr: h, resp: resp, start: start})
		return nil
	}
	if err := c.admit(h.key); err != nil {
		return err
	}
	if err := c.s.decoding.acquire(c.ctx, deadline, cost); err != nil {
		return fmt.Errorf("waiting for room to decode a request: %w", err)
	}
	defer c.s.decoding.release(cost)
	if err := req.ReadFrom(rest); err != nil {
		return fmt.Errorf("malformed API key %d v%d request from client %q: %w", h.key, h.version, h.clientID, err)
	}
	p := c.dispatch(apis[h.key], &h, req)
	if p == nil {
		c.observe(&h, start)
		return nil // nothing to answer (acks=0)
	}
	p.hdr, p.start = h, start
	p.flexHeader = req.IsFlexible() && h.key != 18 // ApiVersions always answers with header v0
	c.queue(p)
	if p.closeAfter {
		return errors.New("closing after an error the client must notice (acks=0)")
	}
	return nil
}

// parseRequest reads a request's header and checks what it may cost to
// decode: it returns the request to decode from rest (req.ReadFrom(rest))
// and what decoding may allocate, or a nil request for an ApiVersions of a
// version ahead of ours.
func parseRequest(body []byte) (h header, req kmsg.Request, rest []byte, cost int64, err error) {
	h.key = int16(binary.BigEndian.Uint16(body))
	h.version = int16(binary.BigEndian.Uint16(body[2:]))
	h.correlationID = int32(binary.BigEndian.Uint32(body[4:]))
	rest = body[8:]
	if len(rest) < 2 {
		return h, nil, nil, 0, errors.New("request header cut short")
	}
	if n := int16(binary.BigEndian.Uint16(rest)); n >= 0 {
		if int(n) > len(rest)-2 {
			return h, nil, nil, 0, errors.New("client id runs past the request")
		}
		h.clientID = string(rest[2 : 2+n])
		rest = rest[2+n:]
	} else {
		rest = rest[2:]
	}
	a, known := apis[h.key]
	if h.key == 18 && (!known || h.version > a.max || h.version < a.min) {
		return h, nil, rest, 0, nil
	}
	if !known {
		return h, nil, nil, 0, fmt.Errorf("unknown API key %d from client %q", h.key, h.clientID)
	}
	if h.version < a.min || h.version > a.max {
		return h, nil, nil, 0, fmt.Errorf("API key %d version %d is not supported (%d to %d) from client %q", h.key, h.version, a.min, a.max, h.clientID)
	}
	req = kmsg.RequestForKey(h.key)
	req.SetVersion(h.version)
	if req.IsFlexible() {
		if rest, err = skipTags(rest); err != nil {
			return h, nil, nil, 0, fmt.Errorf("API key %d v%d: request header tags: %w", h.key, h.version, err)
		}
	}
	if h.key == 0 {
		if cost, err = checkProduceShape(rest, h.version); err != nil {
			return h, nil, nil, 0, fmt.Errorf("malformed API key %d v%d request from client %q: %w", h.key, h.version, h.clientID, err)
		}
	}
	return h, req, rest, decodeCost(h.key, rest, cost), nil
}

// queue hands p to the writer, or writes it at once when it is computed,
// the writer has nothing before it and no further request is buffered:
// an answer to a produce then goes out from the goroutine that read the
// request, without waking the writer, which on a busy machine can wait
// for a CPU longer than the append took. Requests that arrived pipelined
// still go to the writer, which answers them with one write. Only the
// reader queues, so no response can slip in between the check of queued
// and the write.
func (c *conn) queue(p *pending) {
	if p.ready == nil && p.prepare == nil && !p.closeAfter && c.writerIdle() {
		c.writeNow(p)
		return
	}
	c.queued.Add(1)
	c.out <- p
}

// writerIdle reports, on the reader's goroutine, whether the writer owes
// no response and no further request is buffered: a response computed now
// may be written by the reader at once.
func (c *conn) writerIdle() bool { return c.rr == c.rw && c.queued.Load() == 0 }

// writeNow writes p, a computed response, from the reader while the writer
// is idle (its buffer wbuf too, for responses that write themselves). A
// failed write closes the connection as the writer's would; the reader
// then ends at its next read.
func (c *conn) writeNow(p *pending) {
	c.nc.SetWriteDeadline(time.Now().Add(c.s.opts.WriteTimeout))
	var err error
	if p.write != nil {
		err = p.write(c)
	} else {
		b := appendResponse(c.dbuf[:0], p)
		if cap(b) <= 64<<10 {
			c.dbuf = b // kept at a bounded size only
		}
		_, err = c.nc.Write(b)
	}
	if p.done != nil {
		defer p.done()
	}
	if err != nil {
		if !errors.Is(err, net.ErrClosed) { // else closed already, and counted, by the writer
			c.s.refused(closedOnError, c.remote, "reason", fmt.Errorf("writing a response: %w", err))
		}
		c.cancel()
		c.nc.Close()
		return
	}
	c.observeWritten(p)
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

// writeLoop writes responses in request order. Responses already computed
// that queue behind the one it writes go out with it in one write(2), up
// to coalesceBytes: a client with several requests in flight (an
// idempotent producer keeps up to five) gets their answers with one
// system call, not one each. Responses that write themselves (fetches)
// are written alone.
func (c *conn) writeLoop() {
	var failed error
	var held *pending // taken from c.out while gathering, to write next
	var batch []*pending
	for closed := false; !closed; {
		p := held
		held = nil
		if p == nil {
			var ok bool
			if p, ok = <-c.out; !ok {
				return
			}
		}
		if p.ready != nil {
			<-p.ready
		}
		if p.prepare != nil && failed == nil {
			p.prepare(c)
		}
		batch = append(batch[:0], p)
		if failed == nil {
			c.nc.SetWriteDeadline(time.Now().Add(c.s.opts.WriteTimeout))
			if p.write != nil {
				failed = p.write(c)
			} else {
				b := appendResponse(c.wbuf[:0], p)
				for len(b) < coalesceBytes && !batch[len(batch)-1].closeAfter {
					q, ok, more := nextReady(c.out)
					if !more {
						break
					}
					if !ok {
						closed = true // the reader is done: write what was gathered, then stop
						break
					}
					if q.ready != nil && !isClosed(q.ready) || q.write != nil || q.prepare != nil {
						held = q
						break
					}
					b = appendResponse(b, q)
					batch = append(batch, q)
				}
				c.wbuf = b
				if cap(c.wbuf) > 1<<20 {
					c.wbuf = nil // do not keep a huge buffer for an idle connection
				}
				_, failed = c.nc.Write(b)
			}
			if failed != nil {
				c.s.refused(closedOnError, c.remote, "reason", fmt.Errorf("writing a response: %w", failed))
				c.cancel()
				c.nc.Close()
			} else {
				for _, q := range batch {
					c.observeWritten(q)
				}
			}
		}
		for _, q := range batch {
			if q.done != nil {
				q.done()
			}
			if q.closeAfter {
				c.cancel()
			}
		}
		c.queued.Add(-int64(len(batch))) // last: the reader may write once it reaches zero
		clear(batch)                     // hold no answers while idle
	}
}

// coalesceBytes bounds the responses gathered into one write.
const coalesceBytes = 64 << 10

// nextReady takes the next pending from out if one is queued: more is
// false when none is, ok false when out is closed.
func nextReady(out chan *pending) (p *pending, ok, more bool) {
	select {
	case p, ok = <-out:
		return p, ok, true
	default:
		return nil, false, false
	}
}

// isClosed reports whether ch is closed, without waiting.
func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
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

// appendResponse appends p's response frame to b.
func appendResponse(b []byte, p *pending) []byte {
	start := len(b)
	b = appendResponseHeader(b, p)
	b = p.resp.AppendTo(b) // the response carries its version from ResponseKind
	binary.BigEndian.PutUint32(b[start:], uint32(len(b)-start-4))
	return b
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
