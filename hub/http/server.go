package http

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	nethttp "net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/weirhub/weir/internal/httpauth"
)

// Options configure a Server. Zero fields take the defaults their comments
// state.
type Options struct {
	// Metrics is mounted at /metrics when set. Default: no /metrics.
	Metrics nethttp.Handler
	// Logger receives the server's events. Default: discard.
	Logger *slog.Logger
	// ReadHeaderTimeout bounds reading a request's headers. Default 10s.
	ReadHeaderTimeout time.Duration
	// Guard serves HTTPS and checks bearer tokens: each route needs its
	// scope (/metrics ScopeMetrics, routes added with Handle ScopeAdmin
	// unless HandleScope says otherwise); /healthz and /readyz stay open.
	// Default nil: plain HTTP, no token.
	Guard *httpauth.Guard
}

// Check is a readiness check: nil when ready, else what is not.
type Check func() error

// Server is the HTTP front door. Routes and checks are added before Serve;
// Ready may be called at any time. It is safe for concurrent use.
type Server struct {
	opts Options
	mux  *nethttp.ServeMux
	srv  *nethttp.Server
	// base is every request's parent context, cancelled by Shutdown so
	// that streaming handlers end.
	base   context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	checks   map[string]Check
	stopping bool
}

// NewServer returns a server with /healthz, /readyz and, if opts.Metrics
// is set, /metrics.
func NewServer(opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.ReadHeaderTimeout <= 0 {
		opts.ReadHeaderTimeout = 10 * time.Second
	}
	s := &Server{opts: opts, mux: nethttp.NewServeMux(), checks: map[string]Check{}}
	s.mux.HandleFunc("GET /healthz", s.healthz)
	s.mux.HandleFunc("GET /readyz", s.readyz)
	if opts.Metrics != nil {
		s.mux.Handle("GET /metrics", opts.Guard.Require(httpauth.ScopeMetrics, opts.Metrics))
	}
	s.base, s.cancel = context.WithCancel(context.Background())
	s.srv = &nethttp.Server{Handler: s.mux, ReadHeaderTimeout: opts.ReadHeaderTimeout,
		ErrorLog:    slog.NewLogLogger(opts.Logger.Handler(), slog.LevelWarn),
		BaseContext: func(net.Listener) context.Context { return s.base }}
	return s
}

// Handle adds a route, with net/http.ServeMux patterns ("GET /v1/..."),
// that needs a token of the admin scope when the server has tokens. Call
// it before Serve.
func (s *Server) Handle(pattern string, h nethttp.Handler) {
	s.HandleScope(pattern, httpauth.ScopeAdmin, h)
}

// HandleScope adds a route that needs a token of scope when the server
// has tokens. Call it before Serve.
func (s *Server) HandleScope(pattern string, scope httpauth.Scope, h nethttp.Handler) {
	s.mux.Handle(pattern, s.opts.Guard.Require(scope, h))
}

// Handler is the server's whole route table, for tests and for embedding
// in another server.
func (s *Server) Handler() nethttp.Handler { return s.mux }

// AddCheck adds (or replaces) the named readiness check. /readyz answers
// 503 while any check fails, naming it with its error.
func (s *Server) AddCheck(name string, c Check) {
	s.mu.Lock()
	s.checks[name] = c
	s.mu.Unlock()
}

// Ready runs the checks and returns the failing ones by name; empty when
// ready. After Shutdown starts, "shutdown" is failing.
func (s *Server) Ready() map[string]string {
	s.mu.Lock()
	checks := make(map[string]Check, len(s.checks))
	for n, c := range s.checks {
		checks[n] = c
	}
	stopping := s.stopping
	s.mu.Unlock()
	failing := map[string]string{}
	for n, c := range checks {
		if err := c(); err != nil {
			failing[n] = err.Error()
		}
	}
	if stopping {
		failing["shutdown"] = "shutting down"
	}
	return failing
}

func (s *Server) healthz(w nethttp.ResponseWriter, r *nethttp.Request) {
	writeJSON(w, nethttp.StatusOK, map[string]string{"status": "ok"})
}

type readiness struct {
	Ready    bool              `json:"ready"`
	Checks   []string          `json:"checks"`
	NotReady map[string]string `json:"not_ready,omitempty"`
}

func (s *Server) readyz(w nethttp.ResponseWriter, r *nethttp.Request) {
	failing := s.Ready()
	s.mu.Lock()
	names := make([]string, 0, len(s.checks))
	for n := range s.checks {
		names = append(names, n)
	}
	s.mu.Unlock()
	sort.Strings(names)
	body := readiness{Ready: len(failing) == 0, Checks: names}
	status := nethttp.StatusOK
	if len(failing) > 0 {
		body.NotReady, status = failing, nethttp.StatusServiceUnavailable
	}
	writeJSON(w, status, body)
}

func writeJSON(w nethttp.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// ListenAddr completes an --http-listen value: a bare port ("9644" or
// ":9644") binds the loopback interface only, 127.0.0.1; host:port is kept.
func ListenAddr(addr string) (string, error) {
	if addr == "" {
		return "", errors.New("http: empty listen address")
	}
	if !strings.Contains(addr, ":") {
		addr = ":" + addr
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("http: listen address %q: %w (want PORT or HOST:PORT)", addr, err)
	}
	if port == "" {
		return "", fmt.Errorf("http: listen address %q has no port", addr)
	}
	if host == "" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port), nil
}

// Listen binds addr, completed by ListenAddr. A failure to bind is an
// error the caller must not ignore: the process should not start.
func (s *Server) Listen(addr string) (net.Listener, error) {
	full, err := ListenAddr(addr)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", full)
	if err != nil {
		return nil, fmt.Errorf("http: listening on %s: %w", full, err)
	}
	return ln, nil
}

// Serve answers requests on ln until Shutdown, then returns nil. With a
// Guard it serves TLS over ln when configured, and logs a WARN when ln is
// reachable beyond loopback and authenticates nobody.
func (s *Server) Serve(ln net.Listener) error {
	s.opts.Logger.Info("http: serving", "listen", ln.Addr().String(), "tls", s.opts.Guard.TLSConfig() != nil,
		"tokens", s.opts.Guard.HasTokens())
	ln = s.opts.Guard.Listener(ln, s.opts.Logger)
	if err := s.srv.Serve(ln); err != nil && !errors.Is(err, nethttp.ErrServerClosed) {
		return fmt.Errorf("http: %w", err)
	}
	return nil
}

// StartShutdown marks the server not ready (so load balancers stop sending
// traffic) while it still answers.
func (s *Server) StartShutdown() {
	s.mu.Lock()
	s.stopping = true
	s.mu.Unlock()
}

// Shutdown marks the server not ready, ends streaming handlers (their
// request contexts are cancelled), stops accepting and waits for the
// requests in flight until ctx ends, then closes what is left.
func (s *Server) Shutdown(ctx context.Context) error {
	s.StartShutdown()
	s.cancel()
	err := s.srv.Shutdown(ctx)
	if err != nil {
		s.srv.Close()
	}
	return err
}
