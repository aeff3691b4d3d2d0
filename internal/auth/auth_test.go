package auth

import (
	"bytes"
	"crypto/hmac"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The parsers take what unauthenticated clients send: they must never
// panic, and what they accept must be well-formed.

func FuzzParseClientFirst(f *testing.F) {
	f.Fuzz(func(t *testing.T, msg []byte) {
		cf, err := ParseClientFirst(msg)
		if err != nil {
			return
		}
		if cf.User == "" || cf.Nonce == "" || strings.Contains(cf.Nonce, ",") {
			t.Fatalf("accepted %q as %+v", msg, cf)
		}
		if cf.GS2Header+cf.Bare != string(msg) {
			t.Fatalf("header %q + bare %q is not %q", cf.GS2Header, cf.Bare, msg)
		}
	})
}

func FuzzParseClientFinal(f *testing.F) {
	f.Fuzz(func(t *testing.T, msg []byte) {
		cf, err := ParseClientFinal(msg)
		if err != nil {
			return
		}
		if !strings.HasPrefix(cf.WithoutProof, "c=") {
			t.Fatalf("accepted %q as %+v", msg, cf)
		}
	})
}

func FuzzParsePlain(f *testing.F) {
	f.Fuzz(func(t *testing.T, msg []byte) {
		_, user, pass, err := ParsePlain(msg)
		if err == nil && (user == "" || pass == "") {
			t.Fatalf("accepted %q", msg)
		}
	})
}

// FuzzScramExchange drives a whole exchange with arbitrary messages: it
// never succeeds without the password.
func FuzzScramExchange(f *testing.F) {
	s := NewMemory()
	if err := s.SetPassword("alice", ScramSHA256, "secret", MinIterations); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, first, final []byte) {
		e, _ := NewExchange(ScramSHA256, s)
		if _, done, err := e.Step(first); done || err != nil {
			return
		}
		if _, _, err := e.Step(final); err == nil {
			t.Fatalf("authenticated with %q, %q", first, final)
		}
	})
}

// TestScramExchangeRFC7677 plays the client side by hand against the
// server and checks the server's signature.
func TestScramExchange(t *testing.T) {
	s := NewMemory()
	if err := s.SetPassword("user", ScramSHA256, "pencil", MinIterations); err != nil {
		t.Fatal(err)
	}
	e, _ := NewExchange(ScramSHA256, s)
	first := "n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
	sf, done, err := e.Step([]byte(first))
	if err != nil || done {
		t.Fatal(err)
	}
	parts := strings.Split(string(sf), ",")
	nonce := parts[0][2:]
	salt, _ := base64.StdEncoding.DecodeString(parts[1][2:])
	if !strings.HasPrefix(nonce, "rOprNGfwEbeRWgbNEkqO") || len(nonce) <= 20 {
		t.Fatalf("server nonce %q", nonce)
	}
	salted, _ := SaltPassword(ScramSHA256, "pencil", salt, MinIterations)
	cred, _ := NewCredential(ScramSHA256, salt, salted, MinIterations)
	h, _ := hashFor(ScramSHA256)
	without := "c=biws,r=" + nonce
	authMsg := first[3:] + "," + string(sf) + "," + without
	clientKey := hmacSum(h, salted, "Client Key")
	sig := hmacSum(h, cred.StoredKey, authMsg)
	proof := make([]byte, len(sig))
	for i := range sig {
		proof[i] = clientKey[i] ^ sig[i]
	}
	final, done, err := e.Step([]byte(without + ",p=" + base64.StdEncoding.EncodeToString(proof)))
	if err != nil || !done || e.User() != "user" {
		t.Fatalf("final: %v %v %q", err, done, e.User())
	}
	want := "v=" + base64.StdEncoding.EncodeToString(hmacSum(h, cred.ServerKey, authMsg))
	if !hmac.Equal(final, []byte(want)) {
		t.Fatalf("server signature %q, want %q", final, want)
	}
	// A wrong proof fails.
	e, _ = NewExchange(ScramSHA256, s)
	sf, _, _ = e.Step([]byte(first))
	nonce = strings.Split(string(sf), ",")[0][2:]
	if _, _, err := e.Step([]byte("c=biws,r=" + nonce + ",p=" + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32)))); err == nil {
		t.Fatal("a wrong proof authenticated")
	}
}

func TestStoreKeepsNoPassword(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetPassword("u", ScramSHA512, "very-secret-password", 0); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !s2.CheckPassword("u", "very-secret-password") || s2.CheckPassword("u", "other") {
		t.Fatal("password check after reopening")
	}
	if _, err := s2.Credential("u", ScramSHA512); !err {
		t.Fatal("credential lost")
	}
	raw, _ := readFile(dir)
	if bytes.Contains(raw, []byte("very-secret-password")) {
		t.Fatal("the password is stored")
	}
}

func readFile(dir string) ([]byte, error) { return os.ReadFile(filepath.Join(dir, FileName)) }
