package kafka

import (
	"container/list"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weirhub/weir/hub"
	"github.com/weirhub/weir/internal/auth"
)

// Options configure a Server. Zero fields take the defaults their comments
// state.
type Options struct {
	// Advertise is the host:port clients are told to connect to in
	// Metadata responses. Default: the listener's address. Clients
	// connect to what is advertised, not to their bootstrap address, so
	// set it when the listener is behind NAT or bound to 0.0.0.0.
	Advertise string
	// NodeID is this broker's id. Default 0.
	NodeID int32
	// MaxRequestBytes is the largest request accepted (Kafka's
	// socket.request.max.bytes). Default 100 MiB. Requests other than
	// Produce are held to 1 MiB.
	MaxRequestBytes int32
	// QueuedMaxRequestBytes bounds the bytes of request bodies being read
	// and handled across all connections (Kafka's
	// queued.max.request.bytes), charged as they arrive; a reader waits
	// for room. Bodies up to 4 KiB are not charged. What decoding may
	// allocate is bounded by a second budget of the same size. Default
	// 256 MiB, and never less than MaxRequestBytes.
	QueuedMaxRequestBytes int64
	// MaxConnections caps open connections. When it is reached, the
	// oldest connection that has not sent a request yet is closed to make
	// room, so idle sockets cannot lock every client out; when every
	// connection has sent one, the new one is closed. Default 10000.
	MaxConnections int
	// MaxConnectionsPerIP caps the connections from one IP address
	// (Kafka's max.connections.per.ip); more are closed at once. Default
	// MaxConnections/10, so no one address can take every connection;
	// negative means no cap.
	MaxConnectionsPerIP int
	// FirstRequestTimeout closes a connection that sends no request for
	// this long after it is accepted; IdleTimeout applies after its first
	// request. Default 10s.
	FirstRequestTimeout time.Duration
	// IdleTimeout closes connections that send nothing for this long
	// (Kafka's connections.max.idle.ms). Default 10 minutes.
	IdleTimeout time.Duration
	// RequestBodyTimeout bounds reading a request once its size has
	// arrived, plus one second per 256 KiB of it, so a body cannot hold
	// its buffer and its share of QueuedMaxRequestBytes by trickling in.
	// Default 10s.
	RequestBodyTimeout time.Duration
	// WriteTimeout bounds writing one response. Default 60s.
	WriteTimeout time.Duration
	// MaxInFlight is how many responses one connection may have pending
	// before its reader stops reading. Default 64.
	MaxInFlight int
	// Logger receives connection and protocol events. Default: discard.
	Logger *slog.Logger
	// Observer, if set, is told of every request answered. Default none.
	Observer Observer

	// Security (see security.go): TLS, SASL and ACLs. The zero value
	// serves plaintext without authentication, every principal
	// ANONYMOUS.
	Security Security
}

func (o *Options) setDefaults() {
	if o.MaxRequestBytes <= 0 {
		o.MaxRequestBytes = 100 << 20
	}
	if o.QueuedMaxRequestBytes <= 0 {
		o.QueuedMaxRequestBytes = 256 << 20
	}
	o.QueuedMaxRequestBytes = max(o.QueuedMaxRequestBytes, int64(o.MaxRequestBytes))
	if o.MaxConnections <= 0 {
		o.MaxConnections = 10000
	}
	if o.MaxConnectionsPerIP == 0 {
		o.MaxConnectionsPerIP = max(1, o.MaxConnections/10)
	}
	if o.FirstRequestTimeout <= 0 {
		o.FirstRequestTimeout = 10 * time.Second
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = 10 * time.Minute
	}
	if o.RequestBodyTimeout <= 0 {
		o.RequestBodyTimeout = 10 * time.Second
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 60 * time.Second
	}
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = 64
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Server serves the Kafka protocol for a hub. It is safe for concurrent
// use.
type Server struct {
	hub      *hub.Hub
	opts     Options
	budget   *budget // bytes of request bodies being read and handled
	decoding *budget // what requests being decoded may allocate

	mu       sync.Mutex
	ln       net.Listener
	conns    map[*conn]struct{}
	perIP    map[string]int
	fresh    list.List // connections that have sent no request yet, oldest first
	closing  bool
	host     string // advertised
	port     int32
	wg       sync.WaitGroup
	nconns   atomic.Int64
	refusals refusals
	diskFull atomic.Bool          // a storage error was logged; cleared by a produce that succeeds
	door     *auth.FailureLimiter // authentication failures by address
}

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("kafka: server closed")

// NewServer returns a server for h.
func NewServer(h *hub.Hub, opts Options) *Server {
	opts.setDefaults()
	return &Server{hub: h, opts: opts, conns: map[*conn]struct{}{}, perIP: map[string]int{},
		budget: newBudget(opts.QueuedMaxRequestBytes), decoding: newBudget(opts.QueuedMaxRequestBytes),
		door: &auth.FailureLimiter{Max: opts.Security.MaxAuthFailures, Window: opts.Security.AuthFailureWindow}}
}

// Listen binds addr (host:port) and returns the listener; Serve it.
func (s *Server) Listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("kafka: listening on %s: %w (is another broker running there?)", addr, err)
	}
	if s.opts.Security.TLS != nil {
		ln = tls.NewListener(ln, s.opts.Security.TLS)
	}
	return ln, nil
}

// Addr is the address of the listener being served, or nil.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// Advertised is the host and port Metadata responses announce.
func (s *Server) Advertised() (string, int32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.host, s.port
}

// Serve accepts connections on ln until Shutdown; it returns
// ErrServerClosed then.
func (s *Server) Serve(ln net.Listener) error {
	adv := s.opts.Advertise
	if adv == "" {
		adv = ln.Addr().String()
	}
	host, portStr, err := net.SplitHostPort(adv)
	if err != nil {
		return fmt.Errorf("kafka: advertised address %q: %w (want host:port)", adv, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port <= 0 || port > 65535 {
		return fmt.Errorf("kafka: advertised port %q is not a port number", portStr)
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		return fmt.Errorf("kafka: advertised host %q cannot be reached by clients; set Advertise", host)
	}
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	s.ln, s.host, s.port = ln, host, int32(port)
	s.mu.Unlock()
	s.opts.Logger.Info("kafka: serving", "listen", ln.Addr().String(), "advertise", adv)
	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closing := s.closing
			s.mu.Unlock()
			if closing {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, errTooManyFiles) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.opts.Logger.Warn("kafka: accept failed; retrying", "err", err, "in", backoff)
				time.Sleep(backoff)
				continue
			}
			return fmt.Errorf("kafka: accept: %w", err)
		}
		backoff = 0
		c := newConn(s, nc)
		s.mu.Lock()
		if s.closing {
			s.mu.Unlock()
			nc.Close()
			return ErrServerClosed
		}
		if lim := s.opts.MaxConnectionsPerIP; lim > 0 && s.perIP[c.ip] >= lim {
			s.mu.Unlock()
			// Counted before the close, so a client that sees the
			// close also sees the count.
			s.refused(refusedPerIP, c.remote, "max_per_ip", lim)
			nc.Close()
			continue
		}
		if s.nconns.Load() >= int64(s.opts.MaxConnections) {
			e := s.fresh.Front()
			if e == nil {
				s.mu.Unlock()
				s.refused(refusedFull, c.remote, "max", s.opts.MaxConnections)
				nc.Close()
				continue
			}
			// Make room: close the oldest connection that has not
			// sent a request. It leaves the count when it ends.
			old := s.fresh.Remove(e).(*conn)
			old.freshElem = nil
			s.refused(evictedFresh, old.remote, "max", s.opts.MaxConnections)
			old.nc.Close()
		}
		s.conns[c] = struct{}{}
		s.perIP[c.ip]++
		c.freshElem = s.fresh.PushBack(c)
		s.nconns.Add(1)
		s.wg.Add(1)
		s.mu.Unlock()
		go c.serve()
	}
}

// ListenAndServe listens on addr and serves until Shutdown.
func (s *Server) ListenAndServe(addr string) error {
	ln, err := s.Listen(addr)
	if err != nil {
		return err
	}
	return s.Serve(ln)
}

// Connections is the number of open connections.
func (s *Server) Connections() int { return int(s.nconns.Load()) }

func (s *Server) forget(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	if s.perIP[c.ip]--; s.perIP[c.ip] <= 0 {
		delete(s.perIP, c.ip)
	}
	if c.freshElem != nil {
		s.fresh.Remove(c.freshElem)
		c.freshElem = nil
	}
	s.mu.Unlock()
	s.nconns.Add(-1)
	s.wg.Done()
}

// Shutdown stops accepting, lets every connection finish the requests it
// has read (their responses are written), then closes them. When ctx ends
// first the remaining connections are closed at once.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	if s.ln != nil {
		s.ln.Close()
	}
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.stopReading()
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.mu.Lock()
		for c := range s.conns {
			c.nc.Close()
			c.cancel()
		}
		s.mu.Unlock()
		<-done
		return ctx.Err()
	}
}
