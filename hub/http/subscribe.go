package http

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	nethttp "net/http"
	"strings"
	"syscall"
	"time"

	"github.com/weirhub/weir/hub"
	"github.com/weirhub/weir/internal/httpauth"
)

// SubscribeHub is what the subscription handler needs of a hub; *hub.Hub
// has it.
type SubscribeHub interface {
	Dataset(name string) (*hub.Dataset, error)
	Subscribe(ctx context.Context, dataset string, opts hub.SubscribeOptions, emit func(*hub.Event) error) error
}

var _ SubscribeHub = (*hub.Hub)(nil)

// SubscribeOptions configure the subscription handler. Zero fields take
// the defaults their comments state.
type SubscribeOptions struct {
	// Heartbeat is how long a subscription may be idle before a comment
	// line (": heartbeat") or a WebSocket ping keeps proxies from closing
	// it. Default 15 seconds.
	Heartbeat time.Duration
	// WriteTimeout cuts a subscriber that has not taken an event for this
	// long (its connection stops draining): it holds no buffer beyond its
	// connection's, and resumes with its last token. Default 30 seconds.
	WriteTimeout time.Duration
	// AllowOrigins are the browser origins (scheme://host:port, "null"
	// for a page opened from a file, or "*") whose pages may subscribe
	// from another origin: their requests are answered with
	// Access-Control-Allow-Origin, and WebSocket upgrades from them are
	// accepted. Default none: same origin only.
	AllowOrigins []string
	// CoalesceBytes bounds what a subscriber that fell behind the
	// dataset's shared reader holds to catch up (the latest value of each
	// key it missed); past it, it gets a "resume" event and the stream
	// ends. Default 16 MiB (hub.SubscribeOptions.CoalesceBytes).
	CoalesceBytes int64
}

func (o *SubscribeOptions) setDefaults() {
	if o.Heartbeat <= 0 {
		o.Heartbeat = 15 * time.Second
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 30 * time.Second
	}
}

// SubscribePattern is the route of the subscriptions.
const SubscribePattern = "GET /v1/datasets/{name}/subscribe"

// MountSubscriptions adds the subscription route to s.
func MountSubscriptions(s *Server, h SubscribeHub, opts SubscribeOptions) {
	s.HandleScope(SubscribePattern, httpauth.ScopeSubscribe, Subscriptions(h, opts))
}

// Subscriptions returns the handler of GET /v1/datasets/{name}/subscribe
// ?from=snapshot|latest|earliest: Server-Sent Events (text/event-stream),
// or, when the request asks to upgrade, the same events over a WebSocket,
// one JSON message each. Each event's id (SSE) or "id" field (WebSocket)
// is a resume token: the Last-Event-ID header that EventSource sends on
// reconnecting, or the last_event_id query parameter, resumes after it.
//
//	event: record                      a key's value
//	id: 1a2b3c4d-120.57
//	data: {"key":"user:1","value":{"name":"Ann"},"partition":0,"offset":119,"time":1700000000000}
//
//	event: delete                      a tombstone: the key is gone
//	event: snapshot_end                every key's latest value has been sent
//	event: reset                       the resume point is gone: drop the state; a snapshot follows
//	event: resume                      too far behind: the stream ends; reconnect with its id
//	: heartbeat                        a comment while idle
//
// A JSON value is sent as JSON, other UTF-8 as a string, anything else as
// base64 with "value_encoding":"base64" (the same for keys and headers).
func Subscriptions(h SubscribeHub, opts SubscribeOptions) nethttp.Handler {
	opts.setDefaults()
	return nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		name := r.PathValue("name")
		if o := r.Header.Get("Origin"); o != "" && allowed(opts.AllowOrigins, o) {
			w.Header().Set("Access-Control-Allow-Origin", o)
			w.Header().Add("Vary", "Origin")
		}
		if _, err := h.Dataset(name); err != nil {
			status := nethttp.StatusInternalServerError
			if errors.Is(err, hub.ErrUnknownDataset) {
				status = nethttp.StatusNotFound
			}
			writeJSON(w, status, map[string]string{"error": err.Error()})
			return
		}
		so := hub.SubscribeOptions{From: r.URL.Query().Get("from"), Heartbeat: opts.Heartbeat, CoalesceBytes: opts.CoalesceBytes}
		switch so.From {
		case "", hub.FromSnapshot, hub.FromLatest, hub.FromEarliest:
		default:
			writeJSON(w, nethttp.StatusBadRequest, map[string]string{"error": fmt.Sprintf("from=%q: want snapshot, latest or earliest", so.From)})
			return
		}
		so.Token = r.Header.Get("Last-Event-ID")
		if so.Token == "" {
			so.Token = r.URL.Query().Get("last_event_id")
		}
		if isWebSocket(r) {
			serveWebSocket(w, r, h, name, so, opts)
			return
		}
		serveSSE(w, r, h, name, so, opts)
	})
}

func allowed(origins []string, o string) bool {
	for _, a := range origins {
		if a == "*" || a == o {
			return true
		}
	}
	return false
}

func isWebSocket(r *nethttp.Request) bool {
	return strings.EqualFold(r.Header.Get("Upgrade"), "websocket")
}

// serveSSE streams the subscription as Server-Sent Events.
func serveSSE(w nethttp.ResponseWriter, r *nethttp.Request, h SubscribeHub, name string, so hub.SubscribeOptions, opts SubscribeOptions) {
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	out := sseStream{writeDeadline: writeDeadline{timeout: opts.WriteTimeout}}
	defer out.close()
	started := false
	so.OnStart = func() error {
		started = true
		hd := w.Header()
		hd.Set("Content-Type", "text/event-stream")
		hd.Set("Cache-Control", "no-cache")
		hd.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
		if err := out.start(w, r, cancel); err != nil {
			return err
		}
		// retry: how long EventSource waits before reconnecting.
		if _, err := io.WriteString(out.bw, "retry: 1000\n\n"); err != nil {
			return err
		}
		return out.flush()
	}
	var buf []byte
	so.OnCaughtUp = func() error { out.deadline(); return out.flush() }
	so.OnIdle = func() error {
		out.deadline()
		if _, err := io.WriteString(out.bw, ": heartbeat\n\n"); err != nil {
			return err
		}
		return out.flush()
	}
	// The write deadline is looked at when caught up, when idle, and
	// every 256 events in between.
	n := 0
	// Live events come as the frames the dataset's fan-out encoded once
	// for every SSE subscriber, all that are there in one piece: written
	// as they are, in one write when nothing is buffered.
	so.Framing = sseFraming
	so.EmitFrames = func(frames []byte, k int) error {
		// k is 0 for what the shared writers left: the deadline may
		// not have moved while they wrote.
		if n += k; n >= 256 || k == 0 {
			n = 0
			out.deadline()
		}
		if out.bw.Buffered() > 0 {
			_, err := out.bw.Write(frames)
			return err
		}
		_, err := out.w.Write(frames)
		return err
	}
	// While caught up, the fan-out's writers write them for it, over the
	// socket of a plain HTTP/1 connection it takes over (sseStream).
	if canTryWrite && r.ProtoMajor == 1 && r.TLS == nil {
		so.TryWrite = func(bufs [][]byte) (int, error) {
			if out.sock == nil {
				return 0, nil // not a socket after all: the writers hand it back
			}
			return out.sock.tryWrite(bufs)
		}
	}
	err := h.Subscribe(ctx, name, so, func(e *hub.Event) error {
		buf = appendSSE(buf[:0], e)
		if n++; n >= 256 {
			n = 0
			out.deadline()
		}
		_, err := out.bw.Write(buf)
		if err == nil && e.Type != hub.EventRecord && e.Type != hub.EventDelete {
			err = out.flush()
		}
		return err
	})
	if !started && err != nil {
		status := nethttp.StatusInternalServerError
		if errors.Is(err, hub.ErrUnknownDataset) {
			status = nethttp.StatusNotFound
		}
		writeJSON(w, status, map[string]string{"error": err.Error()})
	}
}

// sseStream is where an SSE subscription writes once it has started.
// Over HTTP/1 it takes the connection over from the server (Hijack) and
// writes the response itself: the status line, the headers and
// "Connection: close", then the events as they are, the body ending when
// the connection does (RFC 9112, section 6.3: no chunked encoding, so
// that the shared frames go to the socket in one write, without the
// two or three writes and copies of the server's chunk writer); a read
// of the connection sees the client go. Over HTTP/2 (or a
// ResponseWriter that cannot be taken over) it writes through the
// ResponseWriter. TestSubscribeSSEOverHijackedConn reads it with Go's
// client and curl.
type sseStream struct {
	writeDeadline
	w    io.Writer // conn, or the ResponseWriter
	bw   *bufio.Writer
	conn net.Conn // taken over, or nil
	rc   *nethttp.ResponseController
	sock *sockWriter // conn's socket, when it has one (not TLS): TryWrite
}

// start sends the response's headers (w's).
func (s *sseStream) start(w nethttp.ResponseWriter, r *nethttp.Request, cancel context.CancelFunc) error {
	s.rc = nethttp.NewResponseController(w)
	if r.ProtoMajor == 1 {
		conn, brw, err := s.rc.Hijack()
		if err == nil {
			s.conn, s.w = conn, conn
			s.bw = bufio.NewWriterSize(conn, 32<<10)
			if sc, ok := conn.(syscall.Conn); ok && r.TLS == nil {
				if rc, err := sc.SyscallConn(); err == nil {
					s.sock = newSockWriter(rc)
				}
			}
			// The client sends nothing more: the read ends when it
			// closes the connection (or when the stream does).
			go func() {
				io.Copy(io.Discard, brw.Reader)
				cancel()
			}()
			s.deadline()
			s.bw.WriteString("HTTP/1.1 200 OK\r\n")
			w.Header().Write(s.bw)
			_, err := s.bw.WriteString("Connection: close\r\n\r\n")
			return err
		}
	}
	w.WriteHeader(nethttp.StatusOK)
	s.w = w
	s.bw = bufio.NewWriterSize(w, 32<<10)
	s.deadline()
	return nil
}

// writeDeadline moves a stream's write deadline to timeout from now
// when it has come closer by a sixteenth of the timeout: moving it costs
// more than a write.
type writeDeadline struct {
	timeout time.Duration
	moved   time.Time // when the write deadline was last moved
}

func (d *writeDeadline) move(c interface{ SetWriteDeadline(time.Time) error }) {
	if now := time.Now(); now.Sub(d.moved) >= d.timeout/16 {
		d.moved = now
		c.SetWriteDeadline(now.Add(d.timeout))
	}
}

// deadline moves the write deadline (writeDeadline).
func (s *sseStream) deadline() {
	if s.conn != nil {
		s.move(s.conn)
	} else if s.rc != nil {
		s.move(s.rc)
	}
}

// flush writes what is buffered (events are written in 32 KiB pieces:
// the response writer's own buffer is 2 KiB, a write system call each).
func (s *sseStream) flush() error {
	if err := s.bw.Flush(); err != nil {
		return err
	}
	if s.conn != nil {
		return nil
	}
	return s.rc.Flush()
}

// close ends a stream that took the connection over.
func (s *sseStream) close() {
	if s.conn != nil {
		s.bw.Flush()
		s.conn.Close()
	}
}

// sseFraming is the framing of Server-Sent Events, shared by every SSE
// subscription (hub.Framing).
var sseFraming = &hub.Framing{Append: appendSSE}

// appendSSE appends e as a Server-Sent Event: its type, its token as the
// id, its JSON as the data.
func appendSSE(dst []byte, e *hub.Event) []byte {
	dst = append(dst, "event: "...)
	dst = append(dst, e.Type...)
	dst = append(dst, "\nid: "...)
	dst = append(dst, e.Token...)
	dst = append(dst, "\ndata: "...)
	dst = hub.AppendEventJSON(dst, e, false)
	return append(dst, "\n\n"...)
}
