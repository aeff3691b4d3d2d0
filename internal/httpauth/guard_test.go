package httpauth

import (
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

type lockedLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func authorize(g *Guard, scope Scope, header, query string) error {
	r := httptest.NewRequest(http.MethodGet, "/x"+query, nil)
	if header != "" {
		r.Header.Set("Authorization", header)
	}
	return g.Authorize(r, scope)
}

func TestAuthorize(t *testing.T) {
	g, err := New(Config{Tokens: "tok-m metrics;tok-s subscribe,produce"})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		scope         Scope
		header, query string
		want          error
	}{
		{ScopeMetrics, "Bearer tok-m", "", nil},
		{ScopeMetrics, "bearer tok-m", "", nil},
		{ScopeMetrics, "Bearer  tok-m ", "", nil},
		{ScopeMetrics, "", "", ErrNoToken},
		{ScopeMetrics, "Basic dG9rLW06", "", ErrNoToken},
		{ScopeMetrics, "Bearer", "", ErrNoToken},
		{ScopeMetrics, "Bearer tok-x", "", ErrBadToken},
		{ScopeMetrics, "Bearer tok-s", "", ErrScope},
		{ScopeProduce, "Bearer tok-s", "", nil},
		{ScopeAdmin, "Bearer tok-s", "", ErrScope},
		{ScopeSubscribe, "", "?access_token=tok-s", nil},
		{ScopeSubscribe, "", "?access_token=tok-m", ErrScope},
	} {
		if got := authorize(g, c.scope, c.header, c.query); got != c.want {
			t.Errorf("Authorize(%v, %q, %q) = %v, want %v", c.scope, c.header, c.query, got, c.want)
		}
	}
	// No token configured: everything is allowed; a nil guard too.
	open, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := authorize(open, ScopeAdmin, "", ""); err != nil {
		t.Errorf("an open guard refused: %v", err)
	}
	if err := authorize(nil, ScopeAdmin, "", ""); err != nil {
		t.Errorf("a nil guard refused: %v", err)
	}
}

// TestTokenFileReload: a token added to the file is accepted and a token
// removed is refused without a restart; a version that does not parse is
// refused with an error logged (without the token) and the previous
// tokens kept.
func TestTokenFileReload(t *testing.T) {
	file := filepath.Join(t.TempDir(), "tokens")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(file+".tmp", []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(file+".tmp", file); err != nil {
			t.Fatal(err)
		}
	}
	write("old-token-1 metrics\n")
	var log lockedLog
	g, err := New(Config{TokenFile: file, MaxFailures: 1 << 20, Logger: slog.New(slog.NewTextHandler(&log, nil))}) // polled below: no limit
	if err != nil {
		t.Fatal(err)
	}
	if err := authorize(g, ScopeMetrics, "Bearer old-token-1", ""); err != nil {
		t.Fatal(err)
	}
	// until polls: reloads are checked at most once a second.
	until := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); !ok(); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 30s", what)
			}
		}
	}
	write("new-token-22 metrics\n")
	until("the new token accepted", func() bool { return authorize(g, ScopeMetrics, "Bearer new-token-22", "") == nil })
	if err := authorize(g, ScopeMetrics, "Bearer old-token-1", ""); err != ErrBadToken {
		t.Errorf("the removed token: %v, want ErrBadToken", err)
	}
	write("new-token-22 metrics\nbroken-secret-333 metricz\n")
	until("the broken file reported", func() bool {
		authorize(g, ScopeMetrics, "Bearer new-token-22", "") // a request looks at the file
		return strings.Contains(log.String(), "reloading the bearer tokens failed")
	})
	if err := authorize(g, ScopeMetrics, "Bearer new-token-22", ""); err != nil {
		t.Errorf("after a broken file, the previous token: %v", err)
	}
	if strings.Contains(log.String(), "broken-secret-333") || strings.Contains(log.String(), "new-token-22") {
		t.Errorf("the log shows a token:\n%s", log.String())
	}
}

func TestNewErrors(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, []byte("# nothing\n"), 0o600)
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{TokenFile: filepath.Join(dir, "missing")}, "no such file"},
		{Config{TokenFile: empty}, "holds no token"},
		{Config{Tokens: "a b"}, "line 1: scope 1"},
		{Config{TLS: nil, Tokens: "x\"y"}, "line 1: the token holds"},
	} {
		if _, err := New(c.cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("New(%+v) = %v, want %q", c.cfg, err, c.want)
		}
	}
}

type fakeListener struct{ addr net.Addr }

func (fakeListener) Accept() (net.Conn, error) { return nil, net.ErrClosed }
func (fakeListener) Close() error              { return nil }
func (l fakeListener) Addr() net.Addr          { return l.addr }

// TestListenerWarnsWhenOpen: a listener beyond loopback that needs no
// token and no client certificate logs a WARN; on loopback, or with a
// token, it does not.
func TestListenerWarnsWhenOpen(t *testing.T) {
	for _, c := range []struct {
		ip     net.IP
		tokens string
		warn   bool
	}{
		{net.IPv4(10, 1, 2, 3), "", true},
		{net.IPv4zero, "", true},
		{net.IPv4(10, 1, 2, 3), "tok-1 metrics", false},
		{net.IPv4(127, 0, 0, 1), "", false},
	} {
		var log lockedLog
		g, err := New(Config{Tokens: c.tokens})
		if err != nil {
			t.Fatal(err)
		}
		g.Listener(fakeListener{addr: &net.TCPAddr{IP: c.ip, Port: 9644}}, slog.New(slog.NewTextHandler(&log, nil)))
		if got := strings.Contains(log.String(), "level=WARN"); got != c.warn {
			t.Errorf("%s with tokens %q: warned %v, want %v: %s", c.ip, c.tokens, got, c.warn, log.String())
		}
	}
}

// TestUnknownTokensLimited: after MaxFailures unknown tokens from one
// address, even a valid token from it is answered 429 without checking;
// another address is not affected.
func TestUnknownTokensLimited(t *testing.T) {
	g, err := New(Config{Tokens: "good-token", MaxFailures: 3})
	if err != nil {
		t.Fatal(err)
	}
	h := g.Require(ScopeMetrics, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	do := func(addr, token string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodGet, "/metrics", nil)
		r.RemoteAddr = addr
		r.Header.Set("Authorization", "Bearer "+token)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	for i := range 3 {
		if w := do("192.0.2.7:1000", "guess"); w.Code != http.StatusUnauthorized {
			t.Fatalf("guess %d: %d", i, w.Code)
		}
	}
	if w := do("192.0.2.7:1001", "good-token"); w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") == "" {
		t.Fatalf("after 3 guesses: %d %v, want 429 with Retry-After", w.Code, w.Header())
	}
	if w := do("192.0.2.8:1000", "good-token"); w.Code != http.StatusOK {
		t.Fatalf("another address: %d", w.Code)
	}
}
