package auth

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
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/sasl/oauth"
)

// jwt makes a compact JWS of claims with alg, signed by sign (nil: an
// empty signature).
func jwt(t testing.TB, alg string, claims map[string]any, sign func(signed []byte) []byte) string {
	t.Helper()
	h, _ := json.Marshal(map[string]string{"alg": alg, "typ": "JWT"})
	c, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	s := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c)
	var sig []byte
	if sign != nil {
		sig = sign([]byte(s))
	}
	return s + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func TestParseOAuthBearer(t *testing.T) {
	for _, c := range []struct {
		msg           string
		authz, token  string
		ext           string
		wantMalformed bool
	}{
		{msg: "n,,\x01auth=Bearer abc.def.\x01\x01", token: "abc.def."},
		{msg: "n,a=alice,\x01auth=Bearer t\x01\x01", authz: "alice", token: "t"},
		{msg: "n,,\x01auth=bearer t\x01traceId=42\x01\x01", token: "t", ext: "traceId=42"},
		{msg: "n,,\x01host=b\x01auth=Bearer t\x01port=9\x01\x01", token: "t", ext: "host=b port=9"},
		{msg: "", wantMalformed: true},
		{msg: "n,,\x01auth=Bearer t\x01", wantMalformed: true},
		{msg: "p=x,,\x01auth=Bearer t\x01\x01", wantMalformed: true},
		{msg: "n,,\x01auth=Basic t\x01\x01", wantMalformed: true},
		{msg: "n,,\x01auth=Bearer \x01\x01", wantMalformed: true},
		{msg: "n,,\x01x=1\x01\x01", wantMalformed: true},
		{msg: "n,,\x01auth=Bearer a\x01auth=Bearer b\x01\x01", wantMalformed: true},
		{msg: "n,b=x,\x01auth=Bearer t\x01\x01", wantMalformed: true},
		{msg: "n,,\x01k-1=v\x01auth=Bearer t\x01\x01", wantMalformed: true},
	} {
		authz, token, ext, err := ParseOAuthBearer([]byte(c.msg))
		if c.wantMalformed {
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("ParseOAuthBearer(%q) = %v, want ErrMalformed", c.msg, err)
			}
			continue
		}
		var kv []string
		for _, k := range []string{"host", "port", "traceId"} {
			if v, ok := ext[k]; ok {
				kv = append(kv, k+"="+v)
			}
		}
		if err != nil || authz != c.authz || token != c.token || strings.Join(kv, " ") != c.ext {
			t.Errorf("ParseOAuthBearer(%q) = %q, %q, %v, %v; want %q, %q, %q", c.msg, authz, token, ext, err, c.authz, c.token, c.ext)
		}
	}
}

// TestParseOAuthBearerFranzGo: the message franz-go's OAUTHBEARER client
// sends parses to its token and extensions.
func TestParseOAuthBearerFranzGo(t *testing.T) {
	m := oauth.Auth{Zid: "ops", Token: "e30.e30.", Extensions: map[string]string{"logicalCluster": "lkc-1"}}.AsMechanism()
	_, first, err := m.Authenticate(context.Background(), "127.0.0.1:9092")
	if err != nil {
		t.Fatal(err)
	}
	authz, token, ext, err := ParseOAuthBearer(first)
	if err != nil || authz != "ops" || token != "e30.e30." || ext["logicalCluster"] != "lkc-1" {
		t.Fatalf("ParseOAuthBearer(%q) = %q, %q, %v, %v", first, authz, token, ext, err)
	}
}

func TestValidate(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	clock := func() time.Time { return now }
	hkey := []byte("0123456789abcdef0123456789abcdef")
	rkey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	hs := func(s []byte) []byte { m := hmac.New(sha256.New, hkey); m.Write(s); return m.Sum(nil) }
	rs := func(s []byte) []byte {
		d := sha256.Sum256(s)
		sig, err := rsa.SignPKCS1v15(rand.Reader, rkey, crypto.SHA256, d[:])
		if err != nil {
			t.Fatal(err)
		}
		return sig
	}
	// An attacker signs HS256 with the public key's bytes: refused
	// where only the RSA key is configured.
	pubDER, _ := x509.MarshalPKIXPublicKey(&rkey.PublicKey)
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	confused := func(s []byte) []byte { m := hmac.New(sha256.New, pubPEM); m.Write(s); return m.Sum(nil) }
	pub, err := ParseRSAPublicKey(pubPEM)
	if err != nil {
		t.Fatal(err)
	}
	claims := func(kv ...any) map[string]any {
		m := map[string]any{"sub": "alice", "exp": now.Add(time.Hour).Unix(), "iat": now.Unix()}
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == nil {
				delete(m, kv[i].(string))
			} else {
				m[kv[i].(string)] = kv[i+1]
			}
		}
		return m
	}
	unsecured := &OAuth{Unsecured: true, Now: clock}
	signed := &OAuth{HMACKey: hkey, RSAKey: pub, Now: clock, Issuer: "https://idp", Audience: "weir"}
	rsaOnly := &OAuth{RSAKey: pub, Now: clock}
	for _, c := range []struct {
		name  string
		o     *OAuth
		token string
		want  string // principal, or the error's text
	}{
		{"unsecured", unsecured, jwt(t, "none", claims(), nil), "alice"},
		{"unsecured fractional exp", unsecured, jwt(t, "none", claims("exp", float64(now.Unix())+0.5), nil), "alice"},
		{"within the skew", unsecured, jwt(t, "none", claims("exp", now.Add(-20*time.Second).Unix()), nil), "alice"},
		{"expired", unsecured, jwt(t, "none", claims("exp", now.Add(-time.Minute).Unix()), nil), "expired at"},
		{"no exp", unsecured, jwt(t, "none", claims("exp", nil), nil), "no exp claim"},
		{"exp a string", unsecured, jwt(t, "none", claims("exp", "tomorrow"), nil), "exp is not a number"},
		{"not yet", unsecured, jwt(t, "none", claims("nbf", now.Add(time.Hour).Unix()), nil), "not valid before"},
		{"no sub", unsecured, jwt(t, "none", claims("sub", nil), nil), `no usable "sub" claim`},
		{"sub not a string", unsecured, jwt(t, "none", claims("sub", 7), nil), `no usable "sub" claim`},
		{"sub with a newline", unsecured, jwt(t, "none", claims("sub", "a\nb"), nil), `no usable "sub" claim`},
		{"none with a signature", unsecured, jwt(t, "none", claims(), hs), "with a signature"},
		{"none refused", signed, jwt(t, "none", claims("iss", "https://idp", "aud", "weir"), nil), "alg none) are not accepted"},
		{"HS256", signed, jwt(t, "HS256", claims("iss", "https://idp", "aud", []string{"x", "weir"}), hs), "alice"},
		{"RS256", signed, jwt(t, "RS256", claims("iss", "https://idp", "aud", "weir"), rs), "alice"},
		{"HS256 tampered", signed, strings.Replace(jwt(t, "HS256", claims("iss", "https://idp", "aud", "weir"), hs), ".", ".e30", 1), "bad signature"},
		{"RS256 wrong key", rsaOnly, jwt(t, "RS256", claims(), hs), "bad signature"},
		{"alg confusion", rsaOnly, jwt(t, "HS256", claims(), confused), `algorithm "HS256" is not accepted`},
		{"unknown alg", signed, jwt(t, "ES256", claims(), rs), `algorithm "ES256" is not accepted`},
		{"wrong issuer", signed, jwt(t, "HS256", claims("iss", "https://evil", "aud", "weir"), hs), "issuer"},
		{"wrong audience", signed, jwt(t, "HS256", claims("iss", "https://idp", "aud", "other"), hs), "audience"},
		{"two parts", unsecured, "e30.e30", "not a compact JWS"},
		{"bad base64", unsecured, "e30!.e30.", "header: not base64url"},
		{"payload not JSON", unsecured, "eyJhbGciOiJub25lIn0.bm9wZQ.", "payload: not a JSON object"},
		{"principal claim", &OAuth{Unsecured: true, Now: clock, PrincipalClaim: "email"}, jwt(t, "none", claims("email", "a@b"), nil), "a@b"},
	} {
		cl, err := c.o.Validate(c.token)
		got := cl.Principal
		if err != nil {
			got = err.Error()
			if !errors.Is(err, ErrBadToken) {
				t.Errorf("%s: %v is not ErrBadToken", c.name, err)
			}
		}
		if !strings.Contains(got, c.want) || (err == nil) != (c.want == cl.Principal && cl.Principal != "") {
			t.Errorf("%s: Validate = %q, want %q", c.name, got, c.want)
		}
		if err == nil && !cl.Expires.After(now) {
			t.Errorf("%s: expires %v, not after now", c.name, cl.Expires)
		}
	}
}

// TestOAuthExchange: a valid token authenticates its principal with one
// step and an empty answer; an authzid other than the principal, or a
// bad token, is refused with ErrAuthFailed.
func TestOAuthExchange(t *testing.T) {
	o := &OAuth{Unsecured: true}
	tok := jwt(t, "none", map[string]any{"sub": "alice", "exp": time.Now().Add(time.Hour).Unix()}, nil)
	e := NewOAuthExchange(o)
	out, done, err := e.Step([]byte("n,,\x01auth=Bearer " + tok + "\x01\x01"))
	if err != nil || !done || len(out) != 0 || e.User() != "alice" {
		t.Fatalf("Step = %q, %v, %v; user %q", out, done, err, e.User())
	}
	for _, msg := range []string{"n,a=bob,\x01auth=Bearer " + tok + "\x01\x01", "n,,\x01auth=Bearer x.y.z\x01\x01"} {
		if _, _, err := NewOAuthExchange(o).Step([]byte(msg)); !errors.Is(err, ErrAuthFailed) {
			t.Errorf("Step(%q) = %v, want ErrAuthFailed", msg, err)
		}
	}
}

func FuzzParseOAuthBearer(f *testing.F) {
	for _, s := range []string{"n,,\x01auth=Bearer t\x01\x01", "n,a=u,\x01auth=Bearer a.b.c\x01k=v\x01\x01", "y,,\x01\x01", "n,,", "\x01\x01\x01"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		authz, token, ext, err := ParseOAuthBearer(msg)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v is not ErrMalformed", err)
			}
			return
		}
		if token == "" || strings.Contains(token, "\x01") {
			t.Fatalf("token %q from %q", token, msg)
		}
		// Written back, the message parses to the same.
		var b strings.Builder
		b.WriteString("n,")
		if authz != "" {
			b.WriteString("a=" + authz)
		}
		b.WriteString(",\x01auth=Bearer " + token + "\x01")
		for k, v := range ext {
			b.WriteString(k + "=" + v + "\x01")
		}
		b.WriteString("\x01")
		a2, t2, e2, err := ParseOAuthBearer([]byte(b.String()))
		if err != nil || a2 != authz || t2 != token || len(e2) != len(ext) {
			t.Fatalf("round trip of %q: %q %q %v %v", msg, a2, t2, e2, err)
		}
	})
}

func FuzzValidateJWT(f *testing.F) {
	exp := time.Now().Add(time.Hour).Unix()
	f.Add(jwt(f, "none", map[string]any{"sub": "alice", "exp": exp}, nil))
	f.Add(jwt(f, "HS256", map[string]any{"sub": "alice", "exp": exp}, func(s []byte) []byte { return []byte("sig") }))
	f.Add("e30.e30.")
	f.Add("..")
	o := &OAuth{Unsecured: true, HMACKey: []byte("0123456789abcdef0123456789abcdef")}
	f.Fuzz(func(t *testing.T, token string) {
		cl, err := o.Validate(token)
		if err != nil {
			if !errors.Is(err, ErrBadToken) {
				t.Fatalf("error %v is not ErrBadToken", err)
			}
			return
		}
		if cl.Principal == "" || cl.Expires.Before(time.Now()) {
			t.Fatalf("accepted %q: %+v", token, cl)
		}
	})
}
