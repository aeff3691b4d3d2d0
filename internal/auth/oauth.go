package auth

import (
	"bytes"
	"crypto"
	"crypto/hmac"
	"crypto/rsa"
	_ "crypto/sha256" // crypto.SHA256 for HS256 and RS256
	_ "crypto/sha512" // crypto.SHA384 and SHA512
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
	"unicode/utf8"
)

// OAuthBearer is the SASL mechanism of RFC 7628 as Kafka uses it (KIP-255):
// the client sends a JWT, the server validates it.
const OAuthBearer = "OAUTHBEARER"

// OAuth validates OAUTHBEARER tokens: compact JWS tokens (JWT) either
// unsigned (alg "none", accepted only with Unsecured, as Kafka's
// OAuthBearerUnsecuredValidatorCallbackHandler does) or signed with the
// configured HMAC secret (HS256/384/512) or RSA public key
// (RS256/384/512). The zero value accepts nothing. It is immutable once
// in use, safe for concurrent use.
type OAuth struct {
	// Unsecured accepts tokens with alg "none" and an empty signature:
	// anyone can make one for any principal, so this is for development
	// and tests only.
	Unsecured bool
	// HMACKey, when set, verifies HS256, HS384 and HS512 signatures.
	HMACKey []byte
	// RSAKey, when set, verifies RS256, RS384 and RS512 signatures.
	RSAKey *rsa.PublicKey
	// PrincipalClaim is the claim naming the user: the principal is
	// User:<its value>. Default "sub".
	PrincipalClaim string
	// Issuer and Audience, when set, must be the token's iss and one of
	// its aud.
	Issuer, Audience string
	// ClockSkew is allowed on exp and nbf. Default 30s.
	ClockSkew time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// ParseRSAPublicKey reads a PEM RSA public key (PKIX "PUBLIC KEY" or
// PKCS#1 "RSA PUBLIC KEY") or the key of a PEM certificate.
func ParseRSAPublicKey(pemBytes []byte) (*rsa.PublicKey, error) {
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		return nil, errors.New("auth: no PEM block in the RSA public key")
	}
	var key any
	var err error
	switch block.Type {
	case "RSA PUBLIC KEY":
		key, err = x509.ParsePKCS1PublicKey(block.Bytes)
	case "CERTIFICATE":
		var c *x509.Certificate
		if c, err = x509.ParseCertificate(block.Bytes); err == nil {
			key = c.PublicKey
		}
	default:
		key, err = x509.ParsePKIXPublicKey(block.Bytes)
	}
	if err != nil {
		return nil, fmt.Errorf("auth: RSA public key: %w", err)
	}
	rk, ok := key.(*rsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("auth: the public key is a %T, not RSA", key)
	}
	return rk, nil
}

// ParseOAuthBearer splits an OAUTHBEARER client initial response (RFC 7628
// section 3.1): a GS2 header ("n,," or "n,a=authzid,"), then key=value
// pairs each ended by 0x01, one of them auth=Bearer TOKEN, and a final
// 0x01. The other pairs are SASL extensions (KIP-342).
func ParseOAuthBearer(msg []byte) (authzid, token string, ext map[string]string, err error) {
	bad := func(what string) (string, string, map[string]string, error) {
		return "", "", nil, fmt.Errorf("%w: OAUTHBEARER %s", ErrMalformed, what)
	}
	s := string(msg)
	gs2, rest, ok := strings.Cut(s, "\x01")
	if !ok {
		return bad("message without 0x01 separators")
	}
	// gs2-header: "n" or "y", ",", optional "a=authzid", ",".
	flag, after, ok := strings.Cut(gs2, ",")
	if !ok || (flag != "n" && flag != "y") {
		return bad("message without a GS2 header (n,,)")
	}
	authz, tail, ok := strings.Cut(after, ",")
	if !ok || tail != "" {
		return bad("GS2 header")
	}
	if authz != "" {
		a, ok := strings.CutPrefix(authz, "a=")
		if !ok || a == "" {
			return bad("authorization identity")
		}
		authzid = a
	}
	// rest: each pair ended by 0x01, then one more 0x01.
	kvs, ok := strings.CutSuffix(rest, "\x01\x01")
	if !ok {
		return bad("message not ended by 0x01 0x01")
	}
	ext = map[string]string{}
	found := false
	for _, kv := range strings.Split(kvs, "\x01") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return bad("key=value pair")
		}
		for i := 0; i < len(k); i++ {
			if c := k[i]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
				return bad("key with a character other than a letter")
			}
		}
		if k == "auth" {
			if found {
				return bad("message with two auth pairs")
			}
			scheme, tok, ok := strings.Cut(v, " ")
			if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
				return bad("auth value (want Bearer TOKEN)")
			}
			token, found = tok, true
			continue
		}
		if _, dup := ext[k]; dup {
			return bad("extension given twice")
		}
		ext[k] = v
	}
	if !found {
		return bad("message without auth=Bearer TOKEN")
	}
	return authzid, token, ext, nil
}

// Claims are what Validate takes from a token.
type Claims struct {
	// Principal is the value of the principal claim (sub by default).
	Principal string
	// Expires is when the token stops being accepted: its exp plus the
	// clock skew allowed.
	Expires time.Time
}

// ErrBadToken wraps the reasons a token is refused.
var ErrBadToken = errors.New("auth: invalid OAUTHBEARER token")

// Validate checks a compact JWS token: its algorithm is one the
// configuration accepts, its signature, exp (required), nbf, iss and aud,
// and that the principal claim is a non-empty string.
func (o *OAuth) Validate(token string) (Claims, error) {
	var cl Claims
	bad := func(format string, args ...any) (Claims, error) {
		return Claims{}, fmt.Errorf("%w: %s", ErrBadToken, fmt.Sprintf(format, args...))
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return bad("not a compact JWS (header.payload.signature)")
	}
	var head struct {
		Alg  string `json:"alg"`
		Crit []any  `json:"crit"`
	}
	if err := decodeSegment(parts[0], &head); err != nil {
		return bad("header: %v", err)
	}
	if len(head.Crit) > 0 {
		return bad("critical header parameters are not supported")
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return bad("signature is not base64url")
	}
	signed := token[:len(parts[0])+1+len(parts[1])]
	switch alg := head.Alg; {
	case alg == "none":
		if !o.Unsecured {
			return bad("unsigned tokens (alg none) are not accepted here")
		}
		if len(sig) != 0 {
			return bad("an unsigned token (alg none) with a signature")
		}
	case strings.HasPrefix(alg, "HS"):
		h := hashOf(alg[2:])
		if h == 0 || len(o.HMACKey) == 0 {
			return bad("algorithm %q is not accepted here", trunc(alg))
		}
		mac := hmac.New(h.New, o.HMACKey)
		mac.Write([]byte(signed))
		if !hmac.Equal(mac.Sum(nil), sig) {
			return bad("bad signature")
		}
	case strings.HasPrefix(alg, "RS"):
		h := hashOf(alg[2:])
		if h == 0 || o.RSAKey == nil {
			return bad("algorithm %q is not accepted here", trunc(alg))
		}
		d := h.New()
		d.Write([]byte(signed))
		if err := rsa.VerifyPKCS1v15(o.RSAKey, h, d.Sum(nil), sig); err != nil {
			return bad("bad signature")
		}
	default:
		return bad("algorithm %q is not accepted here", trunc(alg))
	}
	var claims map[string]any
	if err := decodeSegment(parts[1], &claims); err != nil {
		return bad("payload: %v", err)
	}
	now := time.Now()
	if o.Now != nil {
		now = o.Now()
	}
	skew := o.ClockSkew
	if skew <= 0 {
		skew = 30 * time.Second
	}
	exp, ok, err := numericDate(claims, "exp")
	switch {
	case err != nil:
		return bad("%v", err)
	case !ok:
		return bad("no exp claim")
	case now.After(exp.Add(skew)):
		return bad("expired at %s", exp.UTC().Format(time.RFC3339))
	}
	cl.Expires = exp.Add(skew)
	if nbf, ok, err := numericDate(claims, "nbf"); err != nil {
		return bad("%v", err)
	} else if ok && now.Add(skew).Before(nbf) {
		return bad("not valid before %s", nbf.UTC().Format(time.RFC3339))
	}
	if o.Issuer != "" {
		if iss, _ := claims["iss"].(string); iss != o.Issuer {
			return bad("issuer is not the one expected")
		}
	}
	if o.Audience != "" && !hasAudience(claims["aud"], o.Audience) {
		return bad("audience is not the one expected")
	}
	pc := o.PrincipalClaim
	if pc == "" {
		pc = "sub"
	}
	p, _ := claims[pc].(string)
	if p == "" || len(p) > 256 || !utf8.ValidString(p) || strings.ContainsFunc(p, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return bad("no usable %q claim (a string of 1 to 256 printable characters)", trunc(pc))
	}
	cl.Principal = p
	return cl, nil
}

// trunc shortens what a token chose before it goes into a message.
func trunc(s string) string {
	if len(s) > 32 {
		return s[:32] + "..."
	}
	return s
}

func hashOf(bits string) crypto.Hash {
	switch bits {
	case "256":
		return crypto.SHA256
	case "384":
		return crypto.SHA384
	case "512":
		return crypto.SHA512
	}
	return 0
}

func decodeSegment(seg string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return errors.New("not base64url")
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	if err := d.Decode(v); err != nil {
		return errors.New("not a JSON object")
	}
	if d.More() {
		return errors.New("trailing data after the JSON object")
	}
	return nil
}

// numericDate reads a NumericDate claim (seconds since the epoch, maybe
// fractional).
func numericDate(claims map[string]any, name string) (time.Time, bool, error) {
	v, ok := claims[name]
	if !ok {
		return time.Time{}, false, nil
	}
	n, isNum := v.(json.Number)
	if !isNum {
		return time.Time{}, false, fmt.Errorf("%s is not a number", name)
	}
	f, err := n.Float64()
	if err != nil || math.IsNaN(f) || f < 0 || f > 1e11 {
		return time.Time{}, false, fmt.Errorf("%s is not a date", name)
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), true, nil
}

func hasAudience(aud any, want string) bool {
	switch a := aud.(type) {
	case string:
		return a == want
	case []any:
		for _, x := range a {
			if s, _ := x.(string); s == want {
				return true
			}
		}
	}
	return false
}

// NewOAuthExchange starts an OAUTHBEARER exchange validated by o.
func NewOAuthExchange(o *OAuth) Exchange { return &oauthExchange{o: o} }

type oauthExchange struct {
	o       *OAuth
	user    string
	expires time.Time
}

func (e *oauthExchange) User() string { return e.user }

// Expires is when the token that authenticated the exchange ends: the
// session may not outlive it (KIP-368).
func (e *oauthExchange) Expires() time.Time { return e.expires }

func (e *oauthExchange) Step(msg []byte) ([]byte, bool, error) {
	authzid, token, _, err := ParseOAuthBearer(msg)
	if err != nil {
		return nil, true, err
	}
	cl, err := e.o.Validate(token)
	if err != nil {
		return nil, true, fmt.Errorf("%w: %w", ErrAuthFailed, err)
	}
	if authzid != "" && authzid != cl.Principal {
		return nil, true, fmt.Errorf("%w: authorization id differs from the token's principal", ErrAuthFailed)
	}
	e.user, e.expires = cl.Principal, cl.Expires
	return nil, true, nil
}
