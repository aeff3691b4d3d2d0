package sources

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weirhub/weir/connectors"
)

// writeCerts writes an authority and a certificate it signed for
// 127.0.0.1 as PEM files into dir: ca.pem, cert.pem, key.pem.
func writeCerts(t *testing.T, dir string) {
	t.Helper()
	now := time.Now()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, IsCA: true,
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	for name, block := range map[string]*pem.Block{"ca.pem": {Type: "CERTIFICATE", Bytes: caDER},
		"cert.pem": {Type: "CERTIFICATE", Bytes: der}, "key.pem": {Type: "EC PRIVATE KEY", Bytes: keyDER}} {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func TestSyslogTLS(t *testing.T) {
	dir := t.TempDir()
	writeCerts(t, dir)
	s, addr := newTestSyslog(t, fmt.Sprintf("protocols: [tcp]\nbatch_period: 20ms\ntls: {cert_file: %s, key_file: %s, client_ca_file: %s}",
		filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), filepath.Join(dir, "ca.pem")))
	caPEM, _ := os.ReadFile(filepath.Join(dir, "ca.pem"))
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"))
	if err != nil {
		t.Fatal(err)
	}

	// A sender without a client certificate is refused.
	bad, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool})
	if err == nil {
		bad.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(bad, "<13>1 - h a - - - refused\n")
		_, err = bad.Read(make([]byte, 1)) // TLS 1.3 reports the refusal here
		bad.Close()
	}
	if err == nil {
		t.Fatal("a sender without a certificate was let in")
	}

	c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msg := "<13>1 - h a - - - octet counted"
	fmt.Fprintf(c, "<14>1 - h a - - - over tls\n%d %s", len(msg), msg)
	got := readN(t, s, 2)
	if f := fields(t, got[0]); f["message"] != "over tls" {
		t.Errorf("first: %v", f)
	}
	if f := fields(t, got[1]); f["message"] != "octet counted" {
		t.Errorf("second: %v", f)
	}
}

func TestSyslogTLSConfigErrors(t *testing.T) {
	dir := t.TempDir()
	writeCerts(t, dir)
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	for conf, want := range map[string]string{
		fmt.Sprintf("tls: {cert_file: %s, key_file: %s}", cert, key):                                            "TLS is for TCP only",
		fmt.Sprintf("protocols: [tcp]\ntls: {cert_file: %s, key_file: %s}", cert, cert):                         "loading the certificate",
		fmt.Sprintf("protocols: [tcp]\ntls: {cert_file: %s, key_file: %s, client_ca_file: %s}", cert, key, key): "holds no PEM certificate",
	} {
		_, err := newSyslog(parseConfig(t, &syslogSpec, conf), connectors.Resources{})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err %v, want %q", conf, err, want)
		}
	}
}
