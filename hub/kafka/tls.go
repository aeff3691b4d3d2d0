package kafka

import "github.com/weirhub/weir/internal/tlsfiles"

// TLSFiles name the PEM files of a TLS listener: certificate, key and,
// for mutual TLS, the client CA (see tlsfiles.Files).
type TLSFiles = tlsfiles.Files

// TLSReloader serves a TLS configuration built from files and rebuilds it
// when a file changes (see tlsfiles.Reloader).
type TLSReloader = tlsfiles.Reloader

// NewTLSReloader loads files; onError (may be nil) hears of reloads that
// failed, the previous configuration being kept then.
func NewTLSReloader(files TLSFiles, onError func(error)) (*TLSReloader, error) {
	return tlsfiles.New(files, onError)
}
