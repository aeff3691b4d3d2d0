package kafka

import (
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
	// Produce are held to 8 MiB.
	MaxRequestBytes int32
	// MaxConnections caps open connections; more are closed at once.
	// Default 10000.
	MaxConnections int
	// IdleTimeout closes connections that send nothing for this long
	// (Kafka's connections.max.idle.ms). Default 10 minutes.
	IdleTimeout time.Duration
	// WriteTimeout bounds writing one response. Default 60s.
	WriteTimeout time.Duration
	// MaxInFlight is how many responses one connection may have pending
	// before its reader stops reading. Default 64.
	MaxInFlight int
	// Logger receives connection and protocol events. Default: discard.
	Logger *slog.Logger

	// Security (see security.go): TLS, SASL and ACLs. The zero value
	// serves plaintext without authentication, every principal
	// ANONYMOUS.
	Security Security
}

func (o *Options) setDefaults() {
	if o.MaxRequestBytes <= 0 {
		o.MaxRequestBytes = 100 << 20
	}
	if o.MaxConnections <= 0 {
		o.MaxConnections = 10000
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = 10 * time.Minute
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
	hub  *hub.Hub
	opts Options

	mu       sync.Mutex
	ln       net.Listener
	conns    map[*conn]struct{}
	closing  bool
	host     string // advertised
	port     int32
	wg       sync.WaitGroup
	nconns   atomic.Int64
	rejected atomic.Int64
	door     door // authentication failures by address
}

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("kafka: server closed")

// NewServer returns a server for h.
func NewServer(h *hub.Hub, opts Options) *Server {
	opts.setDefaults()
	return &Server{hub: h, opts: opts, conns: map[*conn]struct{}{}}
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
		if s.nconns.Load() >= int64(s.opts.MaxConnections) {
			s.rejected.Add(1)
			s.opts.Logger.Warn("kafka: too many connections; closing the new one", "remote", nc.RemoteAddr().String(), "max", s.opts.MaxConnections)
			nc.Close()
			continue
		}
		c := newConn(s, nc)
		s.mu.Lock()
		if s.closing {
			s.mu.Unlock()
			nc.Close()
			return ErrServerClosed
		}
		s.conns[c] = struct{}{}
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
