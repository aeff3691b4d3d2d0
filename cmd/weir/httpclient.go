package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"
)

// httpClientFlags are how the HTTP client commands (subscribe, tap, top)
// reach a front door served with TLS or bearer tokens.
type httpClientFlags struct {
	ca        string // "": plain HTTP; "true": HTTPS with the system's CAs; else a CA file
	tokenFile string
}

func (f *httpClientFlags) add(fs *pflag.FlagSet) {
	fs.StringVar(&f.ca, "http-tls", os.Getenv("WEIR_HTTP_TLS"), "connect with HTTPS: true, or the CA file to trust (env WEIR_HTTP_TLS)")
	fs.StringVar(&f.tokenFile, "http-token-file", os.Getenv("WEIR_HTTP_TOKEN_FILE"),
		"file holding the bearer token to send (env WEIR_HTTP_TOKEN_FILE; or the token in WEIR_HTTP_TOKEN)")
}

// client returns an HTTP client that sends the token, and the URL scheme.
func (f *httpClientFlags) client(timeout time.Duration) (*http.Client, string, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	scheme := "http"
	switch f.ca {
	case "", "false":
	case "true":
		scheme, tr.TLSClientConfig = "https", &tls.Config{MinVersion: tls.VersionTLS12}
	default:
		pem, err := os.ReadFile(f.ca)
		if err != nil {
			return nil, "", fmt.Errorf("--http-tls: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, "", fmt.Errorf("--http-tls: %s holds no PEM certificate", f.ca)
		}
		scheme, tr.TLSClientConfig = "https", &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}
	}
	token := os.Getenv("WEIR_HTTP_TOKEN")
	if f.tokenFile != "" {
		b, err := os.ReadFile(f.tokenFile)
		if err != nil {
			return nil, "", fmt.Errorf("--http-token-file: %w", err)
		}
		if token = strings.TrimSpace(string(b)); token == "" {
			return nil, "", fmt.Errorf("--http-token-file %s is empty", f.tokenFile)
		}
	}
	var rt http.RoundTripper = tr
	if token != "" {
		rt = bearerTransport{base: tr, token: token}
	}
	return &http.Client{Transport: rt, Timeout: timeout}, scheme, nil
}

// bearerTransport adds Authorization: Bearer to every request.
type bearerTransport struct {
	base  http.RoundTripper
	token string
}

func (t bearerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+t.token)
	return t.base.RoundTrip(r)
}
