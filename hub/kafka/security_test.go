package kafka

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/weirhub/weir/internal/auth"
	"github.com/weirhub/weir/internal/tlstest"
)

func writeFile(t testing.TB, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// tlsFiles writes a server certificate of ca into dir.
func tlsFiles(t testing.TB, dir string, ca *testCA, clientCA *testCA) TLSFiles {
	cert, key := ca.Issue(t, "weir-test-server", false)
	f := TLSFiles{CertFile: filepath.Join(dir, "server.crt"), KeyFile: filepath.Join(dir, "server.key")}
	writeFile(t, f.CertFile, cert)
	writeFile(t, f.KeyFile, key)
	if clientCA != nil {
		f.ClientCAFile = filepath.Join(dir, "client-ca.crt")
		writeFile(t, f.ClientCAFile, clientCA.PEM)
	}
	return f
}

func clientTLS(cas ...*testCA) *tls.Config { return tlstest.ClientConfig(cas...) }

type testCA = tlstest.CA

func newCA(t testing.TB, name string) *testCA { return tlstest.NewCA(t, name) }

// roundTrip produces n records to topic and reads them back.
func roundTrip(t *testing.T, addr, topic string, n int, opts ...kgo.Opt) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	pcl := newClient(t, addr, append(opts, kgo.AllowAutoTopicCreation(), kgo.RequestRetries(1))...)
	for i := range n {
		if err := pcl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte{byte(i)}}).FirstErr(); err != nil {
			return err
		}
	}
	ccl := newClient(t, addr, append(opts, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
	got := 0
	for got < n {
		fs := ccl.PollFetches(ctx)
		if err := fs.Err(); err != nil {
			return err
		}
		fs.EachRecord(func(r *kgo.Record) {
			if r.Value[0] != byte(got) {
				t.Errorf("record %d has value %d", got, r.Value[0])
			}
			got++
		})
	}
	return nil
}

// tryProduce produces one record without retrying and returns the error.
func tryProduce(t *testing.T, addr, topic string, opts ...kgo.Opt) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl := newClient(t, addr, append(opts, kgo.AllowAutoTopicCreation(), kgo.RequestRetries(0), kgo.RecordRetries(1),
		kgo.RecordDeliveryTimeout(5*time.Second), kgo.DialTimeout(2*time.Second))...)
	// A metadata request first: a refused authentication fails it at once,
	// where a produce would retry until its delivery timeout.
	req := kmsg.NewPtrMetadataRequest()
	if _, err := req.RequestWith(ctx, cl); err != nil {
		return err
	}
	return cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte("x")}).FirstErr()
}

func TestTLSListenerFetchesWithoutSendfile(t *testing.T) {
	ca := newCA(t, "ca")
	r, err := NewTLSReloader(tlsFiles(t, t.TempDir(), ca, nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	b := startBroker(t, t.TempDir(), Options{Security: Security{TLS: r.Config()}})
	// Records large enough that fetches carry whole file sections.
	if err := roundTrip(t, b.addr, "tls", 50, kgo.DialTLSConfig(clientTLS(ca))); err != nil {
		t.Fatal(err)
	}
	// A plaintext client is not answered.
	cl := newClient(t, b.addr, kgo.RequestRetries(0), kgo.DialTimeout(2*time.Second), kgo.RequestTimeoutOverhead(2*time.Second))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := cl.Ping(ctx); err == nil {
		t.Fatal("a plaintext client reached a TLS listener")
	}
}

func TestMutualTLS(t *testing.T) {
	ca, clientCA := newCA(t, "ca"), newCA(t, "client-ca")
	r, err := NewTLSReloader(tlsFiles(t, t.TempDir(), ca, clientCA), nil)
	if err != nil {
		t.Fatal(err)
	}
	b := startBroker(t, t.TempDir(), Options{Security: Security{TLS: r.Config()}})
	certPEM, keyPEM := clientCA.Issue(t, "alice", true)
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	withCert := clientTLS(ca)
	withCert.Certificates = []tls.Certificate{cert}
	if err := roundTrip(t, b.addr, "mtls", 3, kgo.DialTLSConfig(withCert)); err != nil {
		t.Fatal(err)
	}
	// Without a client certificate the handshake fails.
	if err := tryProduce(t, b.addr, "mtls-refused", kgo.DialTLSConfig(clientTLS(ca))); err == nil {
		t.Fatal("a client without a certificate passed mutual TLS")
	}
}

func TestTLSCertificateRotatedWhileConnected(t *testing.T) {
	dir := t.TempDir()
	ca1, ca2 := newCA(t, "ca-one"), newCA(t, "ca-two")
	files := tlsFiles(t, dir, ca1, nil)
	r, err := NewTLSReloader(files, nil)
	if err != nil {
		t.Fatal(err)
	}
	b := startBroker(t, t.TempDir(), Options{Security: Security{TLS: r.Config()}})
	both := clientTLS(ca1, ca2)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cl := newClient(t, b.addr, kgo.DialTLSConfig(both), kgo.AllowAutoTopicCreation(), kgo.DefaultProduceTopic("rot"))
	if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("before")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	issuer := func() string {
		c, err := tls.Dial("tcp", b.addr, both)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].Issuer.CommonName
	}
	if got := issuer(); got != "ca-one" {
		t.Fatalf("issuer %q before rotation", got)
	}
	// Rotate: a certificate of another CA, written to the same files with
	// a later modification time.
	cert, key := ca2.Issue(t, "weir-test-server", false)
	writeFile(t, files.KeyFile, key)
	writeFile(t, files.CertFile, cert)
	later := time.Now().Add(2 * time.Second)
	os.Chtimes(files.CertFile, later, later)
	os.Chtimes(files.KeyFile, later, later)
	deadline := time.Now().Add(10 * time.Second)
	for issuer() != "ca-two" {
		if time.Now().After(deadline) {
			t.Fatal("the rotated certificate was not served within 10s")
		}
		time.Sleep(200 * time.Millisecond)
	}
	// The client connected before the rotation keeps working.
	if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("after")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	// New clients trusting only the new CA connect.
	if err := roundTrip(t, b.addr, "rot2", 2, kgo.DialTLSConfig(clientTLS(ca2))); err != nil {
		t.Fatal(err)
	}
}

// saslBroker serves with the given mechanisms and users alice (both SCRAM
// mechanisms) and bob (SCRAM-SHA-512 only).
func saslBroker(t *testing.T, sec Security) (*testBroker, *auth.Store) {
	t.Helper()
	dir := t.TempDir()
	users, err := auth.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{auth.ScramSHA256, auth.ScramSHA512} {
		if err := users.SetPassword("alice", m, "alice-secret", 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := users.SetPassword("bob", auth.ScramSHA512, "bob-secret", 4096); err != nil {
		t.Fatal(err)
	}
	if sec.SASLMechanisms == nil {
		sec.SASLMechanisms = []string{auth.Plain, auth.ScramSHA256, auth.ScramSHA512}
	}
	sec.Users = users
	return startBroker(t, dir, Options{Security: sec}), users
}

func mechanism(name, user, pass string) sasl.Mechanism {
	switch name {
	case auth.Plain:
		return plain.Auth{User: user, Pass: pass}.AsMechanism()
	case auth.ScramSHA256:
		return scram.Auth{User: user, Pass: pass}.AsSha256Mechanism()
	}
	return scram.Auth{User: user, Pass: pass}.AsSha512Mechanism()
}

func TestSASLMechanismsWithFranzGo(t *testing.T) {
	b, _ := saslBroker(t, Security{})
	for _, m := range []string{auth.Plain, auth.ScramSHA256, auth.ScramSHA512} {
		t.Run(m, func(t *testing.T) {
			if err := roundTrip(t, b.addr, "sasl-"+m, 3, kgo.SASL(mechanism(m, "alice", "alice-secret"))); err != nil {
				t.Fatal(err)
			}
		})
	}
	// PLAIN verifies against the SCRAM-SHA-512-only user too.
	if err := roundTrip(t, b.addr, "sasl-bob", 1, kgo.SASL(mechanism(auth.Plain, "bob", "bob-secret"))); err != nil {
		t.Fatal(err)
	}
}

func TestSASLRefusals(t *testing.T) {
	b, _ := saslBroker(t, Security{MaxAuthFailures: 1000})
	cases := []struct {
		name, mech, user, pass string
	}{
		{"wrong password plain", auth.Plain, "alice", "nope"},
		{"wrong password scram-256", auth.ScramSHA256, "alice", "nope"},
		{"wrong password scram-512", auth.ScramSHA512, "alice", "nope"},
		{"unknown user", auth.ScramSHA256, "mallory", "x"},
		{"mechanism the user lacks", auth.ScramSHA256, "bob", "bob-secret"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := tryProduce(t, b.addr, "refused", kgo.SASL(mechanism(c.mech, c.user, c.pass)))
			if !errors.Is(err, kerr.SaslAuthenticationFailed) {
				t.Fatalf("got %v, want SASL_AUTHENTICATION_FAILED", err)
			}
		})
	}
	t.Run("no credentials", func(t *testing.T) {
		err := tryProduce(t, b.addr, "refused")
		if err == nil {
			t.Fatal("a client without credentials produced")
		}
	})
	if _, err := b.hub.Dataset("refused"); err == nil {
		t.Error("a refused client created the dataset")
	}
}

func TestSASLFailuresRateLimited(t *testing.T) {
	b, _ := saslBroker(t, Security{MaxAuthFailures: 2})
	for range 2 {
		if err := tryProduce(t, b.addr, "rl", kgo.SASL(mechanism(auth.ScramSHA256, "alice", "nope"))); !errors.Is(err, kerr.SaslAuthenticationFailed) {
			t.Fatalf("got %v", err)
		}
	}
	// The right password is refused too while the address is blocked.
	if err := tryProduce(t, b.addr, "rl", kgo.SASL(mechanism(auth.ScramSHA256, "alice", "alice-secret"))); !errors.Is(err, kerr.SaslAuthenticationFailed) {
		t.Fatalf("got %v, want refusal while rate-limited", err)
	}
}

func TestSASLReauthentication(t *testing.T) {
	b, _ := saslBroker(t, Security{SessionLifetime: 1500 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cl := newClient(t, b.addr, kgo.SASL(mechanism(auth.ScramSHA512, "alice", "alice-secret")), kgo.AllowAutoTopicCreation(), kgo.DefaultProduceTopic("reauth"))
	// franz-go re-authenticates on the same connection before the session
	// ends; produce across several lifetimes.
	for i := range 8 {
		if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte{byte(i)}}).FirstErr(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// rawRequest writes req on nc with correlation id 1 and reads the
// response into resp.
func rawRequest(t *testing.T, nc net.Conn, req kmsg.Request, resp kmsg.Response) error {
	t.Helper()
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	body := binary.BigEndian.AppendUint16(nil, uint16(req.Key()))
	body = binary.BigEndian.AppendUint16(body, uint16(req.GetVersion()))
	body = binary.BigEndian.AppendUint32(body, 1)
	body = binary.BigEndian.AppendUint16(body, 4)
	body = append(body, "test"...)
	if req.IsFlexible() {
		body = append(body, 0)
	}
	body = req.AppendTo(body)
	frame := binary.BigEndian.AppendUint32(nil, uint32(len(body)))
	if _, err := nc.Write(append(frame, body...)); err != nil {
		return err
	}
	var size [4]byte
	if _, err := io.ReadFull(nc, size[:]); err != nil {
		return err
	}
	b := make([]byte, binary.BigEndian.Uint32(size[:]))
	if _, err := io.ReadFull(nc, b); err != nil {
		return err
	}
	b = b[4:] // correlation id
	if resp.IsFlexible() && req.Key() != 18 {
		b = b[1:]
	}
	resp.SetVersion(req.GetVersion())
	return resp.ReadFrom(b)
}

func TestSASLSessionEndsWithoutReauthentication(t *testing.T) {
	b, _ := saslBroker(t, Security{SessionLifetime: 300 * time.Millisecond})
	nc, err := net.Dial("tcp", b.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	hs := kmsg.NewPtrSASLHandshakeRequest()
	hs.Version, hs.Mechanism = 1, auth.Plain
	if err := rawRequest(t, nc, hs, hs.ResponseKind()); err != nil {
		t.Fatal(err)
	}
	// Before authenticating, Metadata closes the connection: tested below
	// on a second connection.
	au := kmsg.NewPtrSASLAuthenticateRequest()
	au.Version, au.SASLAuthBytes = 1, []byte("\x00alice\x00alice-secret")
	aresp := au.ResponseKind().(*kmsg.SASLAuthenticateResponse)
	if err := rawRequest(t, nc, au, aresp); err != nil || aresp.ErrorCode != 0 {
		t.Fatalf("authenticate: %v %d", err, aresp.ErrorCode)
	}
	if aresp.SessionLifetimeMillis != 300 {
		t.Fatalf("session lifetime %d ms, want 300", aresp.SessionLifetimeMillis)
	}
	md := kmsg.NewPtrMetadataRequest()
	md.Version = 4
	if err := rawRequest(t, nc, md, md.ResponseKind()); err != nil {
		t.Fatalf("metadata within the session: %v", err)
	}
	time.Sleep(400 * time.Millisecond)
	if err := rawRequest(t, nc, md, md.ResponseKind()); err == nil {
		t.Fatal("metadata answered after the session ended")
	}

	// Nor may it send a large request: it is closed before the body is
	// read (the body is never sent here).
	nc3, err := net.Dial("tcp", b.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc3.Close()
	nc3.SetDeadline(time.Now().Add(5 * time.Second))
	head := binary.BigEndian.AppendUint32(nil, 50<<20)
	head = binary.BigEndian.AppendUint16(head, 0) // Produce
	head = binary.BigEndian.AppendUint16(head, 9)
	if _, err := nc3.Write(head); err != nil {
		t.Fatal(err)
	}
	if _, err := nc3.Read(make([]byte, 1)); err == nil {
		t.Fatal("a 50 MiB produce before authentication got an answer")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("the broker waited for the body of a 50 MiB request before authentication")
	}

	// A connection that has not authenticated may send nothing else.
	nc2, err := net.Dial("tcp", b.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc2.Close()
	if err := rawRequest(t, nc2, md, md.ResponseKind()); err == nil {
		t.Fatal("metadata answered before authentication")
	}
}
