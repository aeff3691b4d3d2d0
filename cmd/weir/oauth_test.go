package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
