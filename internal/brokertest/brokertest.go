// Package brokertest starts Kafka-protocol servers for the tests of the
// kafka and dataset connectors: Weir's own (a hub behind hub/kafka, as
// `weir serve` runs it) and franz-go's kfake (for SASL and TLS, which the
// hub does not serve), on 127.0.0.1 ports chosen by the system. It also
// makes throwaway TLS certificates and reads datasets back.
//
// Every server stops when its test ends.
package brokertest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/weirhub/weir/codecs"
	"github.com/weirhub/weir/hub"
	"github.com/weirhub/weir/hub/kafka"
)

// Weir is a hub served over the Kafka protocol.
type Weir struct {
	Addr string   // host:port of the listener
	Hub  *hub.Hub // the hub behind it

	opts hub.Options
	srv  *kafka.Server
	done chan error
	once sync.Once
}

// StartWeir opens a hub in a temporary directory (opts.DataDir is set;
// fsync defaults to never, for speed) and serves it on 127.0.0.1:0.
func StartWeir(t testing.TB, opts hub.Options) *Weir {
	t.Helper()
	if opts.DataDir == "" {
		opts.DataDir = t.TempDir()
	}
	if opts.Defaults.Fsync == "" {
		opts.Defaults.Fsync = "never"
	}
	w := &Weir{opts: opts}
	w.start(t, "127.0.0.1:0")
	t.Cleanup(w.Stop)
	return w
}

func (w *Weir) start(t testing.TB, addr string) {
	t.Helper()
	h, err := hub.Open(w.opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := kafka.NewServer(h, kafka.Options{})
	var ln net.Listener
	for i := 0; ; i++ { // a port just closed may take a moment to free
		if ln, err = srv.Listen(addr); err == nil || i == 50 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		h.Close()
		t.Fatal(err)
	}
	w.Addr, w.Hub, w.srv, w.done, w.once = ln.Addr().String(), h, srv, make(chan error, 1), sync.Once{}
	go func() { w.done <- srv.Serve(ln) }()
}

// Restart starts the server again after Stop, on the same address and
// data directory. It is not safe to call concurrently with Stop.
func (w *Weir) Restart(t testing.TB) {
	t.Helper()
	w.Stop()
	w.start(t, w.Addr)
}

// Stop shuts the server down and closes the hub; clients then find the
// address refusing connections. It is safe to call more than once.
func (w *Weir) Stop() {
	w.once.Do(func() {
		// Long polls of clients already gone would hold a graceful
		// shutdown for their whole wait: give it a moment only.
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		w.srv.Shutdown(ctx)
		<-w.done
		w.Hub.Close()
	})
}

// StartKfake starts a one-broker kfake cluster with opts and returns its
// address.
func StartKfake(t testing.TB, opts ...kfake.Opt) string {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()[0]
}

// TLS makes a certificate authority and a certificate it signed for
// 127.0.0.1 and localhost. It returns the server's config and the path of
// the authority's PEM file, in a temporary directory.
func TLS(t testing.TB) (*tls.Config, string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "weir test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"}}
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, caFile
}

// ClientTLS returns a client config trusting the authority in caFile (from
// TLS).
func ClientTLS(t testing.TB, caFile string) *tls.Config {
	t.Helper()
	b, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		t.Fatalf("%s holds no certificate", caFile)
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
}

// Record is a record read back, with where it was stored.
type Record struct {
	Partition int32
	Offset    int64
	Key       []byte
	Value     []byte
	Headers   []codecs.RecordHeader
	Time      time.Time
}

// ReadAll reads dataset from its start until it has n records, or fails
// the test after timeout. It returns copies, in partition then offset
// order within what each poll returned.
func ReadAll(t testing.TB, h *hub.Hub, dataset string, n int, timeout time.Duration) []Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := hub.NewLocalClient(h).Consume(ctx, hub.ConsumeOptions{Datasets: []string{dataset}, Broadcast: true, MaxWait: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	var out []Record
	for len(out) < n {
		fs, err := c.Poll(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d of %d records of %s in %v", len(out), n, dataset, timeout)
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range fs {
			for _, r := range f.Records {
				rec := Record{Partition: f.Partition, Offset: r.Offset, Key: clone(r.Key), Value: clone(r.Value),
					Time: time.UnixMilli(r.Timestamp)}
				for _, h := range r.Headers {
					rec.Headers = append(rec.Headers, codecs.RecordHeader{Key: clone(h.Key), Value: clone(h.Value)})
				}
				out = append(out, rec)
			}
		}
	}
	return out
}

// Count returns the records stored in a dataset (the sum of its
// partitions' high watermarks), or -1 when it does not exist.
func Count(h *hub.Hub, dataset string) int64 {
	ds, err := h.Dataset(dataset)
	if err != nil {
		return -1
	}
	var n int64
	for i := range ds.NumPartitions() {
		if p, err := ds.Partition(i); err == nil {
			n += p.HighWatermark() - p.StartOffset()
		}
	}
	return n
}

func clone(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte{}, b...)
}
