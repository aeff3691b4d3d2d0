// Package tlsfiles serves TLS from PEM files and reloads them when they
// change, so a certificate rotated on disk is used without a restart: the
// one such loader of the Kafka listeners (hub/kafka) and the HTTP
// listeners (the http source).
package tlsfiles

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// Files name the PEM files of a TLS listener.
type Files struct {
	// CertFile and KeyFile are the server's certificate chain and key.
	CertFile, KeyFile string
	// ClientCAFile, when set, turns on mutual TLS: clients must present a
	// certificate signed by one of these authorities (on a Kafka listener
	// the certificate's subject becomes the principal, "User:CN=...").
	ClientCAFile string
}

// tlsReloadCheck is how often the files' modification times are looked
// at, at most: on handshakes, not on a timer.
const tlsReloadCheck = time.Second

// Reloader serves a TLS configuration built from files and rebuilds it
// when a file changes, so a certificate rotated on disk is used by the next
// handshake without a restart. Connections already open keep the
// certificate they were set up with.
type Reloader struct {
	files Files

	mu      sync.Mutex
	cfg     *tls.Config
	mtimes  [3]time.Time
	checked time.Time
	onError func(error)
}

// New loads files; it fails when they do not make a valid
// configuration. onError (may be nil) hears of reloads that failed: the
// previous configuration is kept then.
func New(files Files, onError func(error)) (*Reloader, error) {
	if files.CertFile == "" || files.KeyFile == "" {
		return nil, errors.New("tls needs both a certificate file and a key file")
	}
	r := &Reloader{files: files, onError: onError}
	cfg, mtimes, err := r.load()
	if err != nil {
		return nil, err
	}
	r.cfg, r.mtimes, r.checked = cfg, mtimes, time.Now()
	return r, nil
}

// Config is the tls.Config to serve with: each handshake gets the current
// configuration.
func (r *Reloader) Config() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
		return r.current(), nil
	}}
}

func (r *Reloader) current() *tls.Config {
	r.mu.Lock()
	defer r.mu.Unlock()
	if time.Since(r.checked) < tlsReloadCheck {
		return r.cfg
	}
	r.checked = time.Now()
	mtimes, err := r.stat()
	if err != nil || mtimes == r.mtimes {
		return r.cfg
	}
	cfg, mtimes, err := r.load()
	if err != nil {
		// A rotation caught half-written (the key not yet replaced) fails
		// here; it is tried again on a later handshake.
		if r.onError != nil {
			r.onError(err)
		}
		return r.cfg
	}
	r.cfg, r.mtimes = cfg, mtimes
	return cfg
}

func (r *Reloader) paths() [3]string {
	return [3]string{r.files.CertFile, r.files.KeyFile, r.files.ClientCAFile}
}

func (r *Reloader) stat() ([3]time.Time, error) {
	var m [3]time.Time
	for i, p := range r.paths() {
		if p == "" {
			continue
		}
		fi, err := os.Stat(p)
		if err != nil {
			return m, err
		}
		m[i] = fi.ModTime()
	}
	return m, nil
}

func (r *Reloader) load() (*tls.Config, [3]time.Time, error) {
	mtimes, err := r.stat()
	if err != nil {
		return nil, mtimes, fmt.Errorf("tls: %w", err)
	}
	cert, err := tls.LoadX509KeyPair(r.files.CertFile, r.files.KeyFile)
	if err != nil {
		return nil, mtimes, fmt.Errorf("tls: loading %s and %s: %w", r.files.CertFile, r.files.KeyFile, err)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	if r.files.ClientCAFile != "" {
		pem, err := os.ReadFile(r.files.ClientCAFile)
		if err != nil {
			return nil, mtimes, fmt.Errorf("tls: reading the client CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, mtimes, fmt.Errorf("tls: %s holds no PEM certificate", r.files.ClientCAFile)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, mtimes, nil
}
