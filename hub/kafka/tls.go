package kafka

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// TLSFiles name the PEM files of a TLS listener.
type TLSFiles struct {
	// CertFile and KeyFile are the server's certificate chain and key.
	CertFile, KeyFile string
	// ClientCAFile, when set, turns on mutual TLS: clients must present a
	// certificate signed by one of these authorities, and the
	// certificate's subject becomes the connection's principal
	// ("User:CN=...") until SASL says otherwise.
	ClientCAFile string
}

// tlsReloadCheck is how often the files' modification times are looked
// at, at most: on handshakes, not on a timer.
const tlsReloadCheck = time.Second

// TLSReloader serves a TLS configuration built from files and rebuilds it
// when a file changes, so a certificate rotated on disk is used by the next
// handshake without a restart. Connections already open keep the
// certificate they were set up with.
type TLSReloader struct {
	files TLSFiles

	mu      sync.Mutex
	cfg     *tls.Config
	mtimes  [3]time.Time
	checked time.Time
	onError func(error)
}

// NewTLSReloader loads files; it fails when they do not make a valid
// configuration. onError (may be nil) hears of reloads that failed: the
// previous configuration is kept then.
func NewTLSReloader(files TLSFiles, onError func(error)) (*TLSReloader, error) {
	if files.CertFile == "" || files.KeyFile == "" {
		return nil, errors.New("kafka: TLS needs both a certificate file and a key file")
	}
	r := &TLSReloader{files: files, onError: onError}
	cfg, mtimes, err := r.load()
	if err != nil {
		return nil, err
	}
	r.cfg, r.mtimes, r.checked = cfg, mtimes, time.Now()
	return r, nil
}

// Config is the tls.Config to serve with: each handshake gets the current
// configuration.
func (r *TLSReloader) Config() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
		return r.current(), nil
	}}
}

func (r *TLSReloader) current() *tls.Config {
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

func (r *TLSReloader) paths() [3]string {
	return [3]string{r.files.CertFile, r.files.KeyFile, r.files.ClientCAFile}
}

func (r *TLSReloader) stat() ([3]time.Time, error) {
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

func (r *TLSReloader) load() (*tls.Config, [3]time.Time, error) {
	mtimes, err := r.stat()
	if err != nil {
		return nil, mtimes, fmt.Errorf("kafka: TLS: %w", err)
	}
	cert, err := tls.LoadX509KeyPair(r.files.CertFile, r.files.KeyFile)
	if err != nil {
		return nil, mtimes, fmt.Errorf("kafka: TLS: loading %s and %s: %w", r.files.CertFile, r.files.KeyFile, err)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	if r.files.ClientCAFile != "" {
		pem, err := os.ReadFile(r.files.ClientCAFile)
		if err != nil {
			return nil, mtimes, fmt.Errorf("kafka: TLS: reading the client CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, mtimes, fmt.Errorf("kafka: TLS: %s holds no PEM certificate", r.files.ClientCAFile)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, mtimes, nil
}
