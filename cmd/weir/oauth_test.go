package main

import (
	"context"
	"crypto"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weirhub/weir/internal/brokertest"
	"github.com/weirhub/weir/pipelines"
)

// testJWT makes a JWT for sub, unsigned (key nil: alg none) or HS256.
func testJWT(t *testing.T, sub string, key []byte, life time.Duration) string {
	t.Helper()
	alg := "none"
	if key != nil {
		alg = "HS256"
	}
	enc := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return base64.RawURLEncoding.EncodeToString(b)
	}
	s := enc(map[string]string{"alg": alg}) + "." + enc(map[string]any{"sub": sub, "iat": time.Now().Unix(), "exp": time.Now().Add(life).Unix()})
	var sig []byte
	if key != nil {
		m := hmac.New(sha256.New, key)
		m.Write([]byte(s))
		sig = m.Sum(nil)
	}
	return s + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// TestServeOAuthBearerWithKcat: weir serve --sasl OAUTHBEARER
// --oauth-unsecured with ACLs; kcat (librdkafka's unsecured JWT) as the
// super user ops produces and consumes, as mallory is refused with
// TOPIC_AUTHORIZATION_FAILED and nothing is stored; weir topics reads
// its token from --sasl-token-file.
func TestServeOAuthBearerWithKcat(t *testing.T) {
	if _, err := exec.LookPath("kcat"); err != nil {
		t.Fatal("kcat is not installed: install Debian package kcat (make test-deps)")
	}
	p := startServe(t, t.TempDir(), "--sasl", "OAUTHBEARER", "--oauth-unsecured", "--acls", "--super-users", "User:ops")
	if !strings.Contains(p.output(), "OAUTHBEARER accepts unsigned tokens") {
		t.Errorf("no WARN for unsecured OAUTHBEARER:\n%s", p.output())
	}
	kc := func(principal string) []string {
		return []string{"-b", p.addr, "-X", "security.protocol=SASL_PLAINTEXT", "-X", "sasl.mechanisms=OAUTHBEARER",
			"-X", "enable.sasl.oauthbearer.unsecure.jwt=true", "-X", "sasl.oauthbearer.config=principal=" + principal,
			"-X", "message.timeout.ms=5000"}
	}
	if out, err := kcatRun(t, "one\ntwo\n", append(kc("ops"), "-P", "-t", "oauth-events")...); err != nil {
		t.Fatalf("kcat produce as ops: %v\n%s\n%s", err, out, p.output())
	}
	if out, err := kcatRun(t, "", append(kc("ops"), "-C", "-t", "oauth-events", "-o", "beginning", "-e", "-q")...); err != nil || out != "one\ntwo\n" {
		t.Fatalf("kcat consume as ops: %v\n%q", err, out)
	}
	out, err := kcatRun(t, "stolen\n", append(kc("mallory"), "-P", "-t", "oauth-stolen")...)
	if err == nil || !strings.Contains(strings.ToLower(out), "authorization failed") {
		t.Fatalf("kcat as mallory: %v\n%s", err, out)
	}

	// weir topics as ops, the token in a file; nothing of mallory's.
	tokFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokFile, []byte(testJWT(t, "ops", nil, time.Hour)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("WEIR_BROKERS", p.addr)
	t.Setenv("WEIR_SASL_MECHANISM", "OAUTHBEARER")
	t.Setenv("WEIR_SASL_TOKEN_FILE", tokFile)
	lst, errOut, err := runIn(t, "", "topics", "list")
	if err != nil || !strings.Contains(lst, "oauth-events") || strings.Contains(lst, "oauth-stolen") {
		t.Fatalf("weir topics list: %v\n%s%s", err, lst, errOut)
	}
	// An expired token is refused.
	expired := testJWT(t, "ops", nil, -time.Hour)
	if err := os.WriteFile(tokFile, []byte(expired), 0o600); err != nil {
		t.Fatal(err)
	}
	if lst, errOut, err := runIn(t, "", "topics", "list"); err == nil {
		t.Fatalf("weir topics list with an expired token: %s%s", lst, errOut)
	}
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(p.output(), "expired at"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the expired token's refusal is not logged:\n%s", p.output())
		}
	}
	if strings.Contains(p.output(), expired) {
		t.Errorf("the token appears in the log:\n%s", p.output())
	}
}

// TestServeOAuthBearerHMAC: with --oauth-hmac-key-file, a token signed
// with the key authenticates; an unsigned one, and one signed with
// another key, are refused with SASL_AUTHENTICATION_FAILED.
func TestServeOAuthBearerHMAC(t *testing.T) {
	dir := t.TempDir()
	key := []byte("a-32-byte-secret-for-hs256-tests")
	keyFile := filepath.Join(dir, "hmac.key")
	if err := os.WriteFile(keyFile, key, 0o600); err != nil {
		t.Fatal(err)
	}
	p := startServe(t, t.TempDir(), "--sasl", "OAUTHBEARER", "--oauth-hmac-key-file", keyFile)
	tokFile := filepath.Join(dir, "token")
	t.Setenv("WEIR_BROKERS", p.addr)
	t.Setenv("WEIR_SASL_MECHANISM", "OAUTHBEARER")
	t.Setenv("WEIR_SASL_TOKEN_FILE", tokFile)
	for _, c := range []struct {
		name  string
		token string
		ok    bool
	}{
		{"signed", testJWT(t, "svc", key, time.Hour), true},
		{"unsigned", testJWT(t, "svc", nil, time.Hour), false},
		{"another key", testJWT(t, "svc", []byte("another-32-byte-secret-for-tests"), time.Hour), false},
	} {
		if err := os.WriteFile(tokFile, []byte(c.token), 0o600); err != nil {
			t.Fatal(err)
		}
		out, errOut, err := runIn(t, "", "topics", "list")
		if (err == nil) != c.ok {
			t.Errorf("%s token: %v\n%s%s", c.name, err, out, errOut)
		}
		if !c.ok && err != nil && !strings.Contains(err.Error()+errOut, "SASL_AUTHENTICATION_FAILED") {
			t.Errorf("%s token: refused with %v %s, want SASL_AUTHENTICATION_FAILED", c.name, err, errOut)
		}
	}
}

// oauthPy produces one record with confluent-kafka (librdkafka), its
// OAUTHBEARER token given by oauth_cb, and reads it back: "ok", or the
// error.
const oauthPy = `
import sys, time, confluent_kafka as ck
addr, token, topic = sys.argv[1:4]
errs = []
def oauth_cb(_config):
    return token, time.time() + 3600
conf = {"bootstrap.servers": addr, "security.protocol": "SASL_PLAINTEXT", "sasl.mechanisms": "OAUTHBEARER",
        "oauth_cb": oauth_cb, "error_cb": lambda e: errs.append(str(e)), "message.timeout.ms": 5000}
p = ck.Producer(conf)
p.produce(topic, b"signed", on_delivery=lambda err, msg: errs.append(str(err)) if err else None)
p.flush(10)
if errs:
    print("error", errs[0]); sys.exit(1)
c = ck.Consumer(dict(conf, **{"group.id": "g", "auto.offset.reset": "earliest"}))
c.subscribe([topic])
deadline = time.time() + 30
while time.time() < deadline:
    m = c.poll(1)
    if m is not None and not m.error():
        print("ok", m.value().decode()); c.close(); sys.exit(0)
print("error nothing consumed", errs); sys.exit(1)
`

// TestServeOAuthBearerRS256WithConfluentKafka: weir serve validates RS256
// JWTs with --oauth-rsa-public-key-file; confluent-kafka (librdkafka),
// given a token signed by the identity provider's key, produces and
// consumes; a token signed by another key is refused.
func TestServeOAuthBearerRS256WithConfluentKafka(t *testing.T) {
	const py = "/usr/bin/python3"
	if out, err := exec.Command(py, "-c", "import confluent_kafka").CombinedOutput(); err != nil {
		t.Fatalf("confluent_kafka: %v %s: install Debian package python3-confluent-kafka (make test-deps)", err, out)
	}
	dir := t.TempDir()
	idpKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	otherKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&idpKey.PublicKey)
	pubFile := filepath.Join(dir, "idp.pem")
	if err := os.WriteFile(pubFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	rs256 := func(key *rsa.PrivateKey) string {
		enc := func(v any) string { b, _ := json.Marshal(v); return base64.RawURLEncoding.EncodeToString(b) }
		s := enc(map[string]string{"alg": "RS256", "typ": "JWT"}) + "." +
			enc(map[string]any{"sub": "pipeline", "iss": "test-idp", "iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix()})
		d := sha256.Sum256([]byte(s))
		sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, d[:])
		if err != nil {
			t.Fatal(err)
		}
		return s + "." + base64.RawURLEncoding.EncodeToString(sig)
	}
	p := startServe(t, t.TempDir(), "--sasl", "OAUTHBEARER", "--oauth-rsa-public-key-file", pubFile)
	run := func(token, topic string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, py, "-c", oauthPy, p.addr, token, topic).CombinedOutput()
		return string(out), err
	}
	if out, err := run(rs256(idpKey), "rs256-events"); err != nil || !strings.Contains(out, "ok signed") {
		t.Fatalf("confluent-kafka with an RS256 token: %v\n%s\n%s", err, out, p.output())
	}
	out, err := run(rs256(otherKey), "rs256-forged")
	if err == nil || !strings.Contains(out, "Authentication failed") {
		t.Fatalf("confluent-kafka with a token signed by another key: %v\n%s", err, out)
	}
	if !strings.Contains(p.output(), "bad signature") {
		t.Errorf("the forged token's refusal is not logged:\n%s", p.output())
	}
}

// TestKafkaRelayWithOAuthBearer runs testdata/kafka-relay-oauth.yaml
// against weir serve --sasl OAUTHBEARER --oauth-hmac-key-file: the kafka
// sink and source authenticate with an HS256 token from a file, and every
// record goes out and comes back once.
func TestKafkaRelayWithOAuthBearer(t *testing.T) {
	dir := t.TempDir()
	key := []byte("a-32-byte-secret-for-relay-tests")
	keyFile, tokFile := filepath.Join(dir, "hmac.key"), filepath.Join(dir, "token")
	if err := os.WriteFile(keyFile, key, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tokFile, []byte(testJWT(t, "relay", key, time.Hour)), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := startServe(t, filepath.Join(dir, "serve"), "--sasl", "OAUTHBEARER", "--oauth-hmac-key-file", keyFile)
	data := filepath.Join(dir, "data")
	const n = 3000
	prefill(t, data, "a", 3, n)
	var count int64
	runFile(t, "testdata/kafka-relay-oauth.yaml", map[string]string{"DATA_DIR": data, "BROKERS": srv.addr, "TOKEN_FILE": tokFile},
		30*time.Second, func(e *pipelines.Engine) bool {
			count = brokertest.Count(e.Hub(), "b")
			return count >= n
		})
	if count != n {
		t.Errorf("dataset b holds %d records, want %d", count, n)
	}
}
