package http

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	nethttp "net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weirhub/weir/hub"
	"github.com/weirhub/weir/internal/httpauth"
	"github.com/weirhub/weir/internal/tlsfiles"
	"github.com/weirhub/weir/internal/tlstest"
)

const testTokens = "tok-metrics metrics\ntok-sub subscribe\ntok-admin *\n"

func guarded(t *testing.T, cfg httpauth.Config) (*hub.Hub, *Server) {
	t.Helper()
	h, err := hub.Open(hub.Options{DataDir: t.TempDir(), Defaults: hub.DatasetConfig{Fsync: "never"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	if _, err := h.CreateDataset("cache", hub.DatasetConfig{CleanupPolicy: "compact"}); err != nil {
		t.Fatal(err)
	}
	g, err := httpauth.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(Options{Guard: g, Metrics: nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		io.WriteString(w, "weir_up 1\n")
	})})
	MountSubscriptions(s, h, SubscribeOptions{Heartbeat: time.Second})
	s.Handle("POST /-/reload", nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) { io.WriteString(w, "reloaded\n") }))
	return h, s
}

// TestRoutesNeedTheirScope: /healthz and /readyz are open; /metrics, the
// subscriptions and a route mounted without a scope (admin) need a token
// with their scope: 401 with WWW-Authenticate: Bearer without a valid
// token, 403 with insufficient_scope for a token without the scope.
func TestRoutesNeedTheirScope(t *testing.T) {
	h, s := guarded(t, httpauth.Config{Tokens: testTokens})
	put(t, h, "k", []byte(`{"v":1}`))
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	for _, c := range []struct {
		method, path, token string
		status              int
		challenge           string
	}{
		{"GET", "/healthz", "", 200, ""},
		{"GET", "/readyz", "", 200, ""},
		{"GET", "/metrics", "", 401, `Bearer realm="weir"`},
		{"GET", "/metrics", "nope", 401, `Bearer realm="weir", error="invalid_token"`},
		{"GET", "/metrics", "tok-sub", 403, `Bearer realm="weir", error="insufficient_scope", scope="metrics"`},
		{"GET", "/metrics", "tok-metrics", 200, ""},
		{"GET", "/metrics", "tok-admin", 200, ""},
		{"GET", "/v1/datasets/cache/subscribe?from=latest", "tok-metrics", 403, `Bearer realm="weir", error="insufficient_scope", scope="subscribe"`},
		{"GET", "/v1/datasets/cache/subscribe?from=latest", "", 401, `Bearer realm="weir"`},
		{"POST", "/-/reload", "tok-sub", 403, `Bearer realm="weir", error="insufficient_scope", scope="admin"`},
		{"POST", "/-/reload", "tok-admin", 200, ""},
		// The query parameter is for GET only (EventSource).
		{"POST", "/-/reload?access_token=tok-admin", "", 401, `Bearer realm="weir"`},
	} {
		req, _ := nethttp.NewRequest(c.method, srv.URL+c.path, nil)
		if c.token != "" {
			req.Header.Set("Authorization", "Bearer "+c.token)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.status || resp.Header.Get("WWW-Authenticate") != c.challenge {
			t.Errorf("%s %s with %q = %d %q, want %d %q (%s)", c.method, c.path, c.token, resp.StatusCode,
				resp.Header.Get("WWW-Authenticate"), c.status, c.challenge, body)
		}
		if c.token != "" && strings.Contains(string(body), c.token) {
			t.Errorf("%s %s: the answer shows the token: %s", c.method, c.path, body)
		}
	}
	// The subscription with its token, in the header and as EventSource
	// sends it (access_token).
	for _, url := range []string{srv.URL + "/v1/datasets/cache/subscribe", srv.URL + "/v1/datasets/cache/subscribe?access_token=tok-sub"} {
		c := subscribeWith(t, url, "tok-sub", !strings.Contains(url, "access_token"))
		expect(t, c.next(t, false), "record", "k", `{"v":1}`)
		expect(t, c.next(t, false), "snapshot_end", "", "")
		c.close()
	}
}

// subscribeWith opens an SSE subscription with a bearer token in the
// Authorization header (header) or already in the URL, on client.
func subscribeWith(t *testing.T, url, token string, header bool, client ...*nethttp.Client) *sseClient {
	t.Helper()
	cl := nethttp.DefaultClient
	if len(client) > 0 {
		cl = client[0]
	}
	return openSSE(t, cl, url, func(req *nethttp.Request) {
		req.Header.Set("Accept", "text/event-stream")
		if header {
			req.Header.Set("Authorization", "Bearer "+token)
		}
	})
}

// TestMutualTLSAndRotation serves the front door over TLS with a client
// CA: a Go client with a client certificate subscribes with a token, one
// without a certificate cannot connect; the server certificate is
// replaced on disk while the subscription is open: new connections get
// the new certificate, the open subscription keeps its connection and
// still receives records.
func TestMutualTLSAndRotation(t *testing.T) {
	dir := t.TempDir()
	ca, clientCA, ca2 := tlstest.NewCA(t, "server-ca"), tlstest.NewCA(t, "client-ca"), tlstest.NewCA(t, "rotated-ca")
	cert, key, _ := ca.Files(t, dir)
	clientCAFile := filepath.Join(dir, "client-ca.crt")
	if err := os.WriteFile(clientCAFile, clientCA.PEM, 0o600); err != nil {
		t.Fatal(err)
	}
	h, s := guarded(t, httpauth.Config{Tokens: testTokens, TLS: &tlsfiles.Files{CertFile: cert, KeyFile: key, ClientCAFile: clientCAFile}})
	ln, err := s.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.Shutdown(ctx)
		if err := <-served; err != nil {
			t.Error(err)
		}
	}()
	base := "https://" + ln.Addr().String()

	cp, kp := clientCA.Issue(t, "dashboard", true)
	pair, err := tls.X509KeyPair(cp, kp)
	if err != nil {
		t.Fatal(err)
	}
	client := func(withCert bool) *nethttp.Client {
		cfg := tlstest.ClientConfig(ca, ca2)
		if withCert {
			cfg.Certificates = []tls.Certificate{pair}
		}
		return &nethttp.Client{Transport: &nethttp.Transport{TLSClientConfig: cfg, DisableKeepAlives: true}}
	}
	if resp, err := client(false).Get(base + "/healthz"); err == nil {
		resp.Body.Close()
		t.Fatalf("a client without a certificate was answered %s", resp.Status)
	}
	issuer := func() string {
		t.Helper()
		resp, err := client(true).Get(base + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.TLS.PeerCertificates[0].Issuer.CommonName
	}
	if got := issuer(); got != "server-ca" {
		t.Fatalf("served a certificate of %s, want server-ca", got)
	}

	put(t, h, "a", []byte("1"))
	sub := subscribeWith(t, base+"/v1/datasets/cache/subscribe", "tok-sub", true, client(true))
	expect(t, sub.next(t, false), "record", "a", "1")
	expect(t, sub.next(t, false), "snapshot_end", "", "")

	// Rotate: write the new key first, then the certificate, as a
	// renewal tool would (a half-written pair is retried).
	cp2, kp2 := ca2.Issue(t, "weir-test-server", false)
	if err := os.WriteFile(key+".new", kp2, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cert+".new", cp2, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(key+".new", key); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(cert+".new", cert); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for issuer() != "rotated-ca" {
		if time.Now().After(deadline) {
			t.Fatal("new connections still get the old certificate 30s after the rotation")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The subscription opened before the rotation still streams.
	put(t, h, "b", []byte("2"))
	expect(t, sub.next(t, false), "record", "b", "2")
}

// tokenPage opens two EventSources: one with a wrong token, which the
// browser closes for good on the 401, and one with a subscribe token in
// access_token, which gets the snapshot.
const tokenPage = `<!doctype html>
<html><body><script>
const state = {}, log = [];
function post() { fetch('/results', {method: 'POST', body: JSON.stringify({state, log})}); }
const denied = new EventSource('/v1/datasets/cache/subscribe?access_token=wrong-token');
denied.onerror = () => { if (denied.readyState === EventSource.CLOSED) { log.push('denied'); post(); } };
const es = new EventSource('/v1/datasets/cache/subscribe?access_token=tok-sub');
es.addEventListener('record', e => { const d = JSON.parse(e.data); state[d.key] = d.value; log.push('record ' + d.key); post(); });
es.addEventListener('snapshot_end', e => { log.push('snapshot_end'); post(); });
</script></body></html>`

// TestBrowserEventSourceWithToken: headless Chromium's EventSource
// subscribes through a token in access_token; with a wrong token the
// browser gets 401 and gives up.
func TestBrowserEventSourceWithToken(t *testing.T) {
	chromium := needTool(t, "chromium", "chromium")
	h, s := guarded(t, httpauth.Config{Tokens: testTokens})
	put(t, h, "alpha", []byte(`{"v":1}`))
	results := make(chan pageState, 100)
	mux := nethttp.NewServeMux()
	mux.HandleFunc("GET /page", func(w nethttp.ResponseWriter, r *nethttp.Request) {
		w.Header().Set("Content-Type", "text/html")
		io.WriteString(w, tokenPage)
	})
	mux.HandleFunc("POST /results", func(w nethttp.ResponseWriter, r *nethttp.Request) {
		var st pageState
		if err := json.NewDecoder(r.Body).Decode(&st); err == nil {
			results <- st
		}
	})
	mux.Handle("/", s.Handler())
	srv := httptest.NewServer(mux)
	defer func() { srv.CloseClientConnections(); srv.Close() }() // the page's stream is still open
	startChromium(t, chromium, srv.URL+"/page")
	has := func(log []string, entry string) bool {
		for _, e := range log {
			if e == entry {
				return true
			}
		}
		return false
	}
	timeout := time.After(60 * time.Second)
	for {
		select {
		case st := <-results:
			if has(st.Log, "snapshot_end") && has(st.Log, "denied") {
				if v, _ := st.State["alpha"].(map[string]any); v["v"] != 1.0 || len(st.State) != 1 {
					t.Fatalf("the page shows %v", st.State)
				}
				return
			}
		case <-timeout:
			t.Fatal("the page never showed the snapshot and the refused subscription")
		}
	}
}
