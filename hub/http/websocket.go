package http

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"net"
	nethttp "net/http"
	"os"
	"sync"
	"syscall"

	"github.com/coder/websocket"

	"github.com/weirhub/weir/hub"
)

// serveWebSocket streams the subscription over a WebSocket: one text
// message per event, the JSON of hub.AppendEventJSON with its "type" and "id".
// The client sends nothing; a ping while idle keeps the connection alive.
// A client that does not take a message within WriteTimeout is cut: its
// socket is full, so the close (status 1008, a reason saying to resume)
// rarely reaches it, and it resumes with the id of the last message it got.
//
// github.com/coder/websocket answers the upgrade, reads what the client
// sends (its close, its pings and pongs) and writes the pings and the
// close; the messages are written by wsStream, framed once by the
// dataset's fan-out for every WebSocket subscriber (wsFraming).
func serveWebSocket(w nethttp.ResponseWriter, r *nethttp.Request, h SubscribeHub, name string, so hub.SubscribeOptions, opts SubscribeOptions) {
	out := &wsStream{writeDeadline: writeDeadline{timeout: opts.WriteTimeout}}
	ao := &websocket.AcceptOptions{CompressionMode: websocket.CompressionDisabled, OnPingReceived: out.onPing}
	if o := r.Header.Get("Origin"); o != "" && allowed(opts.AllowOrigins, o) {
		ao.InsecureSkipVerify = true // the origin is allowed above
	}
	var c *websocket.Conn
	sctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	ctx := sctx
	accepted := false
	// The upgrade is answered once the start positions are fixed: a
	// client that is connected misses nothing written since.
	so.OnStart = func() error {
		accepted = true // answered, by Accept either way
		if _, ok := hijacker(w); !ok {
			_, err := websocket.Accept(w, r, ao) // answers that it cannot (HTTP/1.1 only)
			return err
		}
		hj := &hijackRecorder{ResponseWriter: w}
		var err error
		if c, err = websocket.Accept(hj, r, ao); err != nil {
			return err
		}
		out.start(hj.conn, r.TLS == nil)
		ctx = c.CloseRead(sctx)
		go func() { <-ctx.Done(); cancel() }() // the client closed: end the subscription
		return nil
	}
	so.OnCaughtUp = func() error { return out.flush() }
	so.OnIdle = func() error {
		if err := out.flush(); err != nil {
			return err
		}
		pctx, cancel := context.WithTimeout(ctx, opts.WriteTimeout)
		defer cancel()
		return c.Ping(pctx)
	}
	// Live events come as the frames the fan-out encoded once for every
	// WebSocket subscriber; while caught up, its writers write them.
	so.Framing = wsFraming
	so.EmitFrames = out.writeFrames
	if canTryWrite && r.TLS == nil {
		so.TryWrite = out.tryWrite
	}
	var buf []byte
	err := h.Subscribe(sctx, name, so, func(e *hub.Event) error {
		buf = appendWSMessage(buf[:0], e)
		return out.write(buf, e.Type != hub.EventRecord && e.Type != hub.EventDelete)
	})
	if errors.Is(err, hub.ErrSlowSubscriber) || errors.Is(err, os.ErrDeadlineExceeded) {
		out.slow = true // after a "resume" message, or a write that timed out
	}
	if err == nil || !out.slow {
		out.flush()
	}
	switch {
	case !accepted:
		if err != nil {
			writeJSON(w, nethttp.StatusInternalServerError, map[string]string{"error": err.Error()})
		}
	case c == nil:
	case out.slow:
		c.Close(websocket.StatusPolicyViolation, "too slow: reconnect with last_event_id to resume")
	case ctx.Err() != nil:
		c.Close(websocket.StatusGoingAway, "shutting down")
	default:
		c.Close(websocket.StatusInternalError, truncateReason(err))
	}
}

// wsFraming is the framing of WebSocket messages, shared by every
// WebSocket subscription (hub.Framing): a server's frames are not masked
// (RFC 6455, section 5.1), so one frame serves every subscriber.
var wsFraming = &hub.Framing{Append: appendWSMessage}

// appendWSMessage appends e as one unfragmented, uncompressed WebSocket
// text frame whose payload is hub.AppendEventJSON with its type and id.
// TestWebSocketFrames checks it byte for byte against coder/websocket's
// own frames.
func appendWSMessage(dst []byte, e *hub.Event) []byte {
	start := len(dst)
	dst = append(dst, make([]byte, wsMaxHeader)...)
	dst = hub.AppendEventJSON(dst, e, true)
	return finishWSFrame(dst, start, wsOpText)
}

// WebSocket frame opcodes (RFC 6455, section 5.2).
const (
	wsOpText = 0x1
	wsOpPong = 0xA
)

// wsMaxHeader is the longest header of a server's frame: 2 bytes and a
// 64-bit length.
const wsMaxHeader = 10

// finishWSFrame makes dst[start:] a final frame of opcode op, whose
// payload was appended after wsMaxHeader bytes at start: it writes the
// header and moves the payload up to it.
//
//	 0               1               2 .. 9
//	+-+-+-+-+-------+-+-------------+-------------------+-----------
//	|F|0|0|0| opcode|0| len (7 bits)| len 16 or 64 bits | payload
//	+-+-+-+-+-------+-+-------------+-------------------+-----------
//	len: < 126 as it is; 126: 16 bits follow; 127: 64 bits follow
//	(network order). Server frames have no mask (the 0 after len's
//	byte's first bit).
func finishWSFrame(dst []byte, start int, op byte) []byte {
	n := len(dst) - start - wsMaxHeader
	var h [wsMaxHeader]byte
	h[0] = 0x80 | op
	hn := 2
	switch {
	case n < 126:
		h[1] = byte(n)
	case n <= 0xFFFF:
		h[1] = 126
		binary.BigEndian.PutUint16(h[2:], uint16(n))
		hn = 4
	default:
		h[1] = 127
		binary.BigEndian.PutUint64(h[2:], uint64(n))
		hn = 10
	}
	copy(dst[start+hn:], dst[start+wsMaxHeader:])
	copy(dst[start:], h[:hn])
	return dst[:start+hn+n]
}

// wsStream writes the messages of a WebSocket subscription to the
// connection that coder/websocket took over, and the pongs that answer
// the client's pings. Its mutex keeps a pong from landing inside a
// message: the shared writers' TryWrite may leave part of a frame
// unwritten (owed), which the subscription's goroutine writes next
// (EmitFrames, n 0), and a pong asked for meanwhile waits for it.
type wsStream struct {
	writeDeadline
	conn net.Conn
	bw   *bufio.Writer // the events that are not shared frames, up to a flush
	sock *sockWriter   // conn's socket, when it has one (not TLS): TryWrite
	slow bool

	mu   sync.Mutex
	owed int    // bytes of frames a TryWrite did not write
	pong []byte // a pong that waits for owed to be 0, or nil
}

// start takes over conn.
func (s *wsStream) start(conn net.Conn, plain bool) {
	s.conn = conn
	s.bw = bufio.NewWriterSize(writerFunc(s.writeConn), 32<<10)
	if sc, ok := conn.(syscall.Conn); ok && plain {
		if rc, err := sc.SyscallConn(); err == nil {
			s.sock = newSockWriter(rc)
		}
	}
}

// writerFunc is an io.Writer.
type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }

// writeConn writes b to the connection, under s.mu, with the write
// deadline moved.
func (s *wsStream) writeConn(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deadline()
	return s.conn.Write(b)
}

// write writes the frames b of events that are not shared, buffered
// until flush, or until now when flush is true.
func (s *wsStream) write(b []byte, flush bool) error {
	if _, err := s.bw.Write(b); err != nil {
		return err
	}
	if flush {
		return s.bw.Flush()
	}
	return nil
}

// flush writes what is buffered.
func (s *wsStream) flush() error {
	if s.bw == nil {
		return nil
	}
	return s.bw.Flush()
}

// writeFrames is the subscription's EmitFrames: frames of n events, or
// (n 0) what the shared writers left of theirs.
func (s *wsStream) writeFrames(frames []byte, n int) error {
	if s.bw.Buffered() > 0 {
		if n > 0 {
			_, err := s.bw.Write(frames)
			return err
		}
		if err := s.bw.Flush(); err != nil {
			return err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deadline()
	_, err := s.conn.Write(frames)
	if err != nil {
		return err
	}
	if n == 0 {
		if s.owed -= len(frames); s.owed < 0 {
			s.owed = 0
		}
	}
	if s.owed == 0 && s.pong != nil {
		p := s.pong
		s.pong = nil
		_, err = s.conn.Write(p)
	}
	return err
}

// tryWrite is the subscription's TryWrite, called by a shared writer
// while the subscription's goroutine is parked: never blocking, it
// writes nothing while a pong is being written.
func (s *wsStream) tryWrite(bufs [][]byte) (int, error) {
	if s.sock == nil || !s.mu.TryLock() {
		return 0, nil // the subscription's goroutine writes them
	}
	defer s.mu.Unlock()
	n, err := s.sock.tryWrite(bufs)
	if err == nil {
		for _, b := range bufs {
			s.owed += len(b)
		}
		s.owed -= n
	}
	return n, err
}

// onPing answers a ping of the client (coder/websocket's reader calls
// it): at once, or after the rest of a frame that is being written.
func (s *wsStream) onPing(_ context.Context, payload []byte) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	pong := finishWSFrame(append(make([]byte, wsMaxHeader, wsMaxHeader+len(payload)), payload...), 0, wsOpPong)
	if s.owed > 0 {
		s.pong = pong // the latest ping is the one to answer (RFC 6455, section 5.5.3)
		return false
	}
	s.deadline()
	s.conn.Write(pong) // an error is the stream's too: its next write sees it
	return false
}

// deadline moves the write deadline (writeDeadline), under s.mu.
func (s *wsStream) deadline() { s.move(s.conn) }

// hijackRecorder keeps the connection that coder/websocket takes over
// from the server.
type hijackRecorder struct {
	nethttp.ResponseWriter
	conn net.Conn
}

func (h *hijackRecorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := hijacker(h.ResponseWriter)
	if !ok {
		return nil, nil, nethttp.ErrNotSupported
	}
	conn, brw, err := hj.Hijack()
	h.conn = conn
	return conn, brw, err
}

// hijacker finds the http.Hijacker of w, following Unwrap as
// http.ResponseController does.
func hijacker(w nethttp.ResponseWriter) (nethttp.Hijacker, bool) {
	for {
		switch t := w.(type) {
		case nethttp.Hijacker:
			return t, true
		case interface{ Unwrap() nethttp.ResponseWriter }:
			w = t.Unwrap()
		default:
			return nil, false
		}
	}
}

// truncateReason fits an error in a close frame's 123 bytes.
func truncateReason(err error) string {
	if err == nil {
		return ""
	}
	s := err.Error()
	if len(s) > 120 {
		s = s[:120]
	}
	return s
}
