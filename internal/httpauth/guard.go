package httpauth

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weirhub/weir/internal/auth"
	"github.com/weirhub/weir/internal/tlsfiles"
)

// Config is the security of one HTTP listener. The zero value serves
// plain HTTP to anyone.
type Config struct {
	// TLS, when set, serves HTTPS with these files, reloaded when they
	// change; with ClientCAFile, clients must present a certificate
	// signed by it (mutual TLS).
	TLS *tlsfiles.Files
	// Tokens are bearer tokens given inline, in the token file format
	// (ParseTokens): a connector's token field, the WEIR_HTTP_TOKENS
	// environment variable. Default none.
	Tokens string
	// TokenFile names a file of bearer tokens (ParseTokens). It is read
	// again when it changes, so tokens are added and revoked without a
	// restart; a version that does not parse is refused, with an error
	// logged, and the previous tokens kept. Default none.
	TokenFile string
	// Name says which listener this is in logs ("http", "http source").
	Name string
	// MaxFailures is how many unknown tokens one address may present in a
	// minute; beyond that its requests are answered 429 without checking
	// until the minute has passed. Default 10.
	MaxFailures int
	// Logger receives reload failures, refusals and the warning of a
	// listener open to the network. Default: discard.
	Logger *slog.Logger
}

// tokenReloadCheck is how often, at most, the token file's modification
// time is looked at: on requests, not on a timer.
const tokenReloadCheck = time.Second

// Guard enforces a Config: it wraps the listener in TLS and each handler
// in a bearer-token check. With no token configured, every request is let
// through (mutual TLS, when on, has authenticated the client already);
// with tokens, a request needs one with the route's scope. It is safe for
// concurrent use. A nil *Guard lets everything through.
type Guard struct {
	cfg  Config
	tls  *tlsfiles.Reloader
	door *auth.FailureLimiter

	inline *Tokens
	tokens atomic.Pointer[Tokens] // inline merged with the file's

	mu      sync.Mutex // guards the file's state below
	mtime   time.Time
	size    int64
	checked time.Time

	refused     atomic.Int64 // refusals not logged yet
	lastRefusal atomic.Int64 // unix nanoseconds of the last logged refusal
}

// New checks cfg and reads its files. Errors name the file and line of a
// bad token, never the token.
func New(cfg Config) (*Guard, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Name == "" {
		cfg.Name = "http"
	}
	g := &Guard{cfg: cfg, door: &auth.FailureLimiter{Max: cfg.MaxFailures}}
	var err error
	if g.inline, err = ParseTokens(cfg.Tokens); err != nil {
		return nil, fmt.Errorf("%s: tokens: %w", cfg.Name, err)
	}
	g.tokens.Store(g.inline)
	if cfg.TokenFile != "" {
		if err := g.loadFile(); err != nil {
			return nil, err
		}
		if g.tokens.Load().Len() == 0 {
			return nil, fmt.Errorf("%s: token_file %s holds no token", cfg.Name, cfg.TokenFile)
		}
	}
	if cfg.TLS != nil {
		g.tls, err = tlsfiles.New(*cfg.TLS, func(err error) {
			cfg.Logger.Warn("weir: reloading the TLS certificate failed; keeping the previous one", "listener", cfg.Name, "err", err)
		})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", cfg.Name, err)
		}
	}
	return g, nil
}

// loadFile reads the token file; on success its tokens replace the file's
// previous ones.
func (g *Guard) loadFile() error {
	fi, err := os.Stat(g.cfg.TokenFile)
	if err != nil {
		return fmt.Errorf("%s: token_file: %w", g.cfg.Name, err)
	}
	b, err := os.ReadFile(g.cfg.TokenFile)
	if err != nil {
		return fmt.Errorf("%s: token_file: %w", g.cfg.Name, err)
	}
	file, err := ParseTokens(string(b))
	if err != nil {
		return fmt.Errorf("%s: token_file %s: %w", g.cfg.Name, g.cfg.TokenFile, err)
	}
	g.tokens.Store(g.inline.merge(file))
	g.mtime, g.size, g.checked = fi.ModTime(), fi.Size(), time.Now()
	return nil
}

// current returns the tokens, reading the token file again when it
// changed since it was last read.
func (g *Guard) current() *Tokens {
	if g.cfg.TokenFile == "" {
		return g.tokens.Load()
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if time.Since(g.checked) < tokenReloadCheck {
		return g.tokens.Load()
	}
	g.checked = time.Now()
	fi, err := os.Stat(g.cfg.TokenFile)
	if err != nil || (fi.ModTime().Equal(g.mtime) && fi.Size() == g.size) {
		return g.tokens.Load()
	}
	if err := g.loadFile(); err != nil {
		g.cfg.Logger.Error("weir: reloading the bearer tokens failed; keeping the previous ones", "listener", g.cfg.Name, "err", err)
		// Do not try again until the file changes once more.
		g.mtime, g.size = fi.ModTime(), fi.Size()
	} else {
		g.cfg.Logger.Info("weir: bearer tokens reloaded", "listener", g.cfg.Name, "tokens", g.tokens.Load().Len())
	}
	return g.tokens.Load()
}

// TLSConfig is the TLS configuration to serve with, or nil for plain
// HTTP.
func (g *Guard) TLSConfig() *tls.Config {
	if g == nil || g.tls == nil {
		return nil
	}
	return g.tls.Config()
}

// HasTokens reports whether requests need a bearer token.
func (g *Guard) HasTokens() bool {
	return g != nil && g.current().Len() > 0
}

// Listener wraps ln in TLS when configured, and logs a WARN when ln is
// reachable beyond loopback and nothing authenticates clients (no token,
// no client certificate): TLS alone keeps the traffic private, not the
// listener.
func (g *Guard) Listener(ln net.Listener, logger *slog.Logger) net.Listener {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	mtls := g != nil && g.cfg.TLS != nil && g.cfg.TLS.ClientCAFile != ""
	if !IsLoopback(ln.Addr()) && !g.HasTokens() && !mtls {
		name := "http"
		if g != nil {
			name = g.cfg.Name
		}
		logger.Warn("weir: HTTP listener reachable beyond loopback without bearer tokens or client certificates: anyone who reaches it may use it",
			"listener", name, "listen", ln.Addr().String(), "tls", g.TLSConfig() != nil)
	}
	if cfg := g.TLSConfig(); cfg != nil {
		return tls.NewListener(ln, cfg)
	}
	return ln
}

// IsLoopback reports whether a is a loopback address.
func IsLoopback(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}

// Errors of Authorize.
var (
	// ErrNoToken: the request carries no bearer token (401).
	ErrNoToken = errors.New("httpauth: a bearer token is needed (Authorization: Bearer TOKEN)")
	// ErrBadToken: the token is not one of the listener's (401).
	ErrBadToken = errors.New("httpauth: the bearer token is not valid")
	// ErrScope: the token is valid but lacks the route's scope (403).
	ErrScope = errors.New("httpauth: the bearer token does not allow this")
	// ErrTooManyFailures: the address presented too many unknown tokens
	// lately; the token was not checked (429).
	ErrTooManyFailures = errors.New("httpauth: too many invalid tokens from this address; try again later")
)

// Authorize checks r's bearer token for scope: nil when allowed (always,
// when no token is configured), else ErrNoToken, ErrBadToken, ErrScope or
// ErrTooManyFailures (unknown tokens are counted per address, see
// Config.MaxFailures).
// The token is read from the Authorization header or, for GET requests,
// the access_token query parameter (RFC 6750 section 2.3), which is what
// a browser's EventSource can send.
func (g *Guard) Authorize(r *http.Request, scope Scope) error {
	if g == nil {
		return nil
	}
	tokens := g.current()
	if tokens.Len() == 0 {
		return nil
	}
	presented, ok := bearer(r)
	if !ok {
		return ErrNoToken
	}
	host := auth.Host(r.RemoteAddr)
	if !g.door.Allowed(host) {
		return ErrTooManyFailures
	}
	scopes, ok := tokens.Lookup(presented)
	if !ok {
		g.door.Failed(host)
		return ErrBadToken
	}
	if scopes&scope != scope {
		return ErrScope
	}
	return nil
}

// bearer returns the request's bearer token.
func bearer(r *http.Request) (string, bool) {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, tok, _ := strings.Cut(h, " ")
		if !strings.EqualFold(scheme, "Bearer") {
			return "", false
		}
		tok = strings.TrimSpace(tok)
		return tok, tok != ""
	}
	if r.Method == http.MethodGet {
		if tok := r.URL.Query().Get("access_token"); tok != "" {
			return tok, true
		}
	}
	return "", false
}

// Require returns h guarded by Authorize for scope: a request refused is
// answered 401 with WWW-Authenticate: Bearer (no or a bad token) or 403
// (a token without the scope), as RFC 6750 says.
func (g *Guard) Require(scope Scope, h http.Handler) http.Handler {
	if g == nil {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		err := g.Authorize(r, scope)
		if err == nil {
			h.ServeHTTP(w, r)
			return
		}
		g.Refuse(w, r, scope, err)
	})
}

// Refuse answers a request Authorize refused with err.
func (g *Guard) Refuse(w http.ResponseWriter, r *http.Request, scope Scope, err error) {
	challenge := `Bearer realm="weir"`
	status := http.StatusUnauthorized
	switch {
	case errors.Is(err, ErrTooManyFailures):
		g.logRefusal(r, err)
		w.Header().Set("Retry-After", "60")
		http.Error(w, strings.TrimPrefix(err.Error(), "httpauth: "), http.StatusTooManyRequests)
		return
	case errors.Is(err, ErrBadToken):
		challenge += `, error="invalid_token"`
		g.logRefusal(r, err)
	case errors.Is(err, ErrScope):
		challenge += fmt.Sprintf(`, error="insufficient_scope", scope="%s"`, scope)
		status = http.StatusForbidden
		g.logRefusal(r, err)
	}
	w.Header().Set("WWW-Authenticate", challenge)
	http.Error(w, strings.TrimPrefix(err.Error(), "httpauth: "), status)
}

// logRefusal logs a refused token, at most once a second with the count
// of refusals since, so that guessing cannot flood the log.
func (g *Guard) logRefusal(r *http.Request, err error) {
	n := g.refused.Add(1)
	now := time.Now().UnixNano()
	last := g.lastRefusal.Load()
	if now-last < int64(time.Second) || !g.lastRefusal.CompareAndSwap(last, now) {
		return
	}
	g.refused.Add(-n)
	g.cfg.Logger.Warn("weir: HTTP request refused", "listener", g.cfg.Name, "remote", r.RemoteAddr,
		"method", r.Method, "path", r.URL.Path, "reason", strings.TrimPrefix(err.Error(), "httpauth: "), "refused", n)
}
