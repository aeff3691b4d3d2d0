package sources

import (
	"bytes"
	"crypto/tls"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weirhub/weir/connectors"
	"github.com/weirhub/weir/internal/tlstest"
)

func TestHTTPSourceTLSAndTokenFile(t *testing.T) {
	dir := t.TempDir()
	ca, clientCA := tlstest.NewCA(t, "server-ca"), tlstest.NewCA(t, "client-ca")
	cert, key, _ := ca.Files(t, dir)
	clientCAFile := filepath.Join(dir, "client-ca.crt")
	tokenFile := filepath.Join(dir, "token")
	for p, b := range map[string][]byte{clientCAFile: clientCA.PEM, tokenFile: []byte("tok-123\n")} {
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	src, url := newTestHTTP(t, "token_file: "+tokenFile+"\ntls: {cert_file: "+cert+", key_file: "+key+", client_ca_file: "+clientCAFile+"}\n")
	url = strings.Replace(url, "http://", "https://", 1)
	cp, kp := clientCA.Issue(t, "shipper", true)
	pair, err := tls.X509KeyPair(cp, kp)
	if err != nil {
		t.Fatal(err)
	}
	withCert := tlstest.ClientConfig(ca)
	withCert.Certificates = []tls.Certificate{pair}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: withCert}}
	do := func(c *http.Client, token string) (int, error) {
		req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader([]byte("a line\n")))
		req.Header.Set("Content-Type", "text/plain")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := c.Do(req)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	// Authorised: the batch reaches Read; acknowledge it.
	done := make(chan int, 1)
	go func() {
		code, err := do(client, "tok-123")
		if err != nil {
			t.Error(err)
		}
		done <- code
	}()
	msgs, ack, err := src.Read(t.Context())
	if err != nil || len(msgs) != 1 {
		t.Fatalf("read: %v %d", err, len(msgs))
	}
	ack(t.Context(), nil)
	if code := <-done; code/100 != 2 {
		t.Fatalf("authorised POST: %d", code)
	}
	// Wrong token: 401.
	if code, err := do(client, "nope"); err != nil || code != http.StatusUnauthorized {
		t.Fatalf("wrong token: %d %v", code, err)
	}
	// No client certificate: the handshake fails.
	noCert := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tlstest.ClientConfig(ca)}}
	if _, err := do(noCert, "tok-123"); err == nil {
		t.Fatal("a client without a certificate was served")
	}
	// Plain HTTP is not served.
	plain := &http.Client{Timeout: 10 * time.Second}
	if code, err := do(plain, "tok-123"); err == nil && code/100 == 2 {
		t.Fatal("plain HTTP was served")
	}
}

func TestHTTPSourceTokenAndTokenFileExclude(t *testing.T) {
	_, err := newHTTP(parseConfig(t, &httpSpec, "address: 127.0.0.1:0\ntoken: a\ntoken_file: /b\n"), connectors.Resources{})
	if err == nil || !strings.Contains(err.Error(), "exclude") {
		t.Fatalf("got %v", err)
	}
}

// TestHTTPSourceTokenScopes: a token file with several tokens; one
// without the produce scope is refused with 403, nothing read.
func TestHTTPSourceTokenScopes(t *testing.T) {
	tokenFile := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(tokenFile, []byte("writer-1 produce\nreader-2 subscribe,metrics\nops-3 *\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	src, url := newTestHTTP(t, "token_file: "+tokenFile+"\n")
	post := func(token string) (int, string) {
		req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader("a line\n"))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Error(err) // Error, not Fatal: also called from a goroutine
			return 0, ""
		}
		resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("WWW-Authenticate")
	}
	if code, ch := post("reader-2"); code != http.StatusForbidden || !strings.Contains(ch, `error="insufficient_scope", scope="produce"`) {
		t.Fatalf("a token without produce: %d %q", code, ch)
	}
	if code, ch := post("nobody"); code != http.StatusUnauthorized || !strings.Contains(ch, `error="invalid_token"`) {
		t.Fatalf("an unknown token: %d %q", code, ch)
	}
	for _, tok := range []string{"writer-1", "ops-3"} {
		done := make(chan int, 1)
		go func() { code, _ := post(tok); done <- code }()
		msgs, ack, err := src.Read(t.Context())
		if err != nil || len(msgs) != 1 {
			t.Fatalf("%s: read %v %d", tok, err, len(msgs))
		}
		ack(t.Context(), nil)
		if code := <-done; code != http.StatusNoContent {
			t.Fatalf("%s: %d", tok, code)
		}
	}
}

func TestHTTPSourceTokenIsOne(t *testing.T) {
	_, err := newHTTP(parseConfig(t, &httpSpec, "address: 127.0.0.1:0\ntoken: \"abc def\"\n"), connectors.Resources{})
	if err == nil || !strings.Contains(err.Error(), "one token only") || strings.Contains(err.Error(), "abc") {
		t.Fatalf("got %v", err)
	}
}
