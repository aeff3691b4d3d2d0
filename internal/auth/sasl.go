package auth

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrAuthFailed is the one error a client is told of when its credentials
// are refused, whatever the reason (unknown user or wrong password), so
// that user names cannot be probed.
var ErrAuthFailed = errors.New("authentication failed: invalid credentials")

// ErrMalformed wraps errors of SASL messages that do not parse.
var ErrMalformed = errors.New("malformed SASL message")

// Exchange is the server side of one SASL authentication: Step takes each
// client message and returns the server's answer; done is true when the
// exchange is over, successfully if err is nil. User is the authenticated
// user then.
type Exchange interface {
	Step(msg []byte) (resp []byte, done bool, err error)
	User() string
}

// NewExchange starts an exchange of mech against store.
func NewExchange(mech string, store *Store) (Exchange, error) {
	switch mech {
	case Plain:
		return &plainExchange{store: store}, nil
	case ScramSHA256, ScramSHA512:
		return &scramExchange{mech: mech, store: store}, nil
	}
	return nil, fmt.Errorf("auth: unsupported SASL mechanism %q", mech)
}

// ParsePlain splits a PLAIN message (RFC 4616): authzid NUL authcid NUL
// passwd.
func ParsePlain(msg []byte) (authzid, user, password string, err error) {
	parts := bytes.Split(msg, []byte{0})
	if len(parts) != 3 {
		return "", "", "", fmt.Errorf("%w: PLAIN wants authzid NUL user NUL password", ErrMalformed)
	}
	if len(parts[1]) == 0 || len(parts[2]) == 0 {
		return "", "", "", fmt.Errorf("%w: PLAIN with an empty user or password", ErrMalformed)
	}
	return string(parts[0]), string(parts[1]), string(parts[2]), nil
}

type plainExchange struct {
	store *Store
	user  string
}

func (p *plainExchange) User() string { return p.user }

func (p *plainExchange) Step(msg []byte) ([]byte, bool, error) {
	authzid, user, password, err := ParsePlain(msg)
	if err != nil {
		return nil, true, err
	}
	if authzid != "" && authzid != user {
		return nil, true, fmt.Errorf("%w: authorization id %q differs from the user", ErrAuthFailed, authzid)
	}
	if !p.store.CheckPassword(user, password) {
		return nil, true, ErrAuthFailed
	}
	p.user = user
	return nil, true, nil
}

// ClientFirst is a parsed SCRAM client-first message.
type ClientFirst struct {
	GS2Header string // "n,," or "n,a=authzid,"
	Bare      string // client-first-message-bare
	User      string
	Nonce     string
	Extension string // e.g. Kafka's tokenauth=true
}

// ParseClientFirst parses a SCRAM client-first message (RFC 5802 §7).
func ParseClientFirst(msg []byte) (ClientFirst, error) {
	var cf ClientFirst
	s := string(msg)
	// gs2-header: cbind flag, then authzid, each followed by a comma.
	i := strings.IndexByte(s, ',')
	if i < 0 {
		return cf, fmt.Errorf("%w: SCRAM client-first without a GS2 header", ErrMalformed)
	}
	switch s[:i] {
	case "n", "y":
	default:
		return cf, fmt.Errorf("%w: SCRAM channel binding %q is not supported", ErrMalformed, s[:i])
	}
	j := strings.IndexByte(s[i+1:], ',')
	if j < 0 {
		return cf, fmt.Errorf("%w: SCRAM client-first without a GS2 header", ErrMalformed)
	}
	authz := s[i+1 : i+1+j]
	if authz != "" && !strings.HasPrefix(authz, "a=") {
		return cf, fmt.Errorf("%w: SCRAM authzid %q", ErrMalformed, authz)
	}
	cf.GS2Header = s[:i+1+j+1]
	cf.Bare = s[i+1+j+1:]
	attrs := strings.Split(cf.Bare, ",")
	if len(attrs) < 2 || !strings.HasPrefix(attrs[0], "n=") || !strings.HasPrefix(attrs[1], "r=") {
		return cf, fmt.Errorf("%w: SCRAM client-first wants n=user,r=nonce", ErrMalformed)
	}
	user, err := unescapeName(attrs[0][2:])
	if err != nil {
		return cf, err
	}
	cf.User, cf.Nonce = user, attrs[1][2:]
	if cf.User == "" || cf.Nonce == "" || strings.ContainsAny(cf.Nonce, ",") {
		return cf, fmt.Errorf("%w: SCRAM client-first with an empty user or nonce", ErrMalformed)
	}
	if len(attrs) > 2 {
		cf.Extension = strings.Join(attrs[2:], ",")
	}
	if authz != "" {
		if a, err := unescapeName(authz[2:]); err != nil || a != cf.User {
			return cf, fmt.Errorf("%w: SCRAM authorization id differs from the user", ErrMalformed)
		}
	}
	return cf, nil
}

// unescapeName decodes a saslname: "=2C" is ',' and "=3D" is '='.
func unescapeName(s string) (string, error) {
	if !strings.Contains(s, "=") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '=' {
			b.WriteByte(s[i])
			continue
		}
		switch {
		case strings.HasPrefix(s[i:], "=2C"):
			b.WriteByte(',')
		case strings.HasPrefix(s[i:], "=3D"):
			b.WriteByte('=')
		default:
			return "", fmt.Errorf("%w: bad escape in SCRAM user name", ErrMalformed)
		}
		i += 2
	}
	return b.String(), nil
}

// ClientFinal is a parsed SCRAM client-final message.
type ClientFinal struct {
	ChannelBinding string // base64 of the GS2 header
	Nonce          string
	WithoutProof   string
	Proof          []byte
}

// ParseClientFinal parses a SCRAM client-final message.
func ParseClientFinal(msg []byte) (ClientFinal, error) {
	var cf ClientFinal
	s := string(msg)
	i := strings.LastIndex(s, ",p=")
	if i < 0 {
		return cf, fmt.Errorf("%w: SCRAM client-final without a proof", ErrMalformed)
	}
	cf.WithoutProof = s[:i]
	proof, err := base64.StdEncoding.DecodeString(s[i+3:])
	if err != nil {
		return cf, fmt.Errorf("%w: SCRAM proof: %v", ErrMalformed, err)
	}
	cf.Proof = proof
	attrs := strings.Split(cf.WithoutProof, ",")
	if len(attrs) < 2 || !strings.HasPrefix(attrs[0], "c=") || !strings.HasPrefix(attrs[1], "r=") {
		return cf, fmt.Errorf("%w: SCRAM client-final wants the attributes c, r and p", ErrMalformed)
	}
	cf.ChannelBinding, cf.Nonce = attrs[0][2:], attrs[1][2:]
	return cf, nil
}

type scramExchange struct {
	mech        string
	store       *Store
	step        int
	first       ClientFirst
	serverFirst string
	nonce       string
	cred        Credential
	user        string
}

func (e *scramExchange) User() string { return e.user }

func (e *scramExchange) Step(msg []byte) ([]byte, bool, error) {
	switch e.step {
	case 0:
		e.step++
		cf, err := ParseClientFirst(msg)
		if err != nil {
			return nil, true, err
		}
		if cf.Extension != "" && strings.Contains(cf.Extension, "tokenauth") {
			return nil, true, fmt.Errorf("%w: delegation tokens are not supported", ErrAuthFailed)
		}
		cred, ok := e.store.Credential(cf.User, e.mech)
		if !ok {
			return nil, true, ErrAuthFailed
		}
		snonce := make([]byte, 18)
		rand.Read(snonce)
		e.first, e.cred = cf, cred
		e.nonce = cf.Nonce + base64.RawURLEncoding.EncodeToString(snonce)
		e.serverFirst = "r=" + e.nonce + ",s=" + base64.StdEncoding.EncodeToString(cred.Salt) + ",i=" + strconv.Itoa(cred.Iterations)
		return []byte(e.serverFirst), false, nil
	case 1:
		e.step++
		cf, err := ParseClientFinal(msg)
		if err != nil {
			return nil, true, err
		}
		// The nonce must end with the server's: librdkafka sends its own
		// nonce again in front, which Kafka accepts the same way.
		if !strings.HasSuffix(cf.Nonce, e.nonce) {
			return nil, true, fmt.Errorf("%w: SCRAM nonce mismatch", ErrAuthFailed)
		}
		if cb, err := base64.StdEncoding.DecodeString(cf.ChannelBinding); err != nil || string(cb) != e.first.GS2Header {
			return nil, true, fmt.Errorf("%w: SCRAM channel binding mismatch", ErrAuthFailed)
		}
		h, _ := hashFor(e.mech)
		authMsg := e.first.Bare + "," + e.serverFirst + "," + cf.WithoutProof
		sig := hmacSum(h, e.cred.StoredKey, authMsg)
		if len(cf.Proof) != len(sig) {
			return nil, true, ErrAuthFailed
		}
		clientKey := make([]byte, len(sig))
		for i := range sig {
			clientKey[i] = cf.Proof[i] ^ sig[i]
		}
		stored := h()
		stored.Write(clientKey)
		if !hmac.Equal(stored.Sum(nil), e.cred.StoredKey) {
			return nil, true, ErrAuthFailed
		}
		e.user = e.first.User
		return []byte("v=" + base64.StdEncoding.EncodeToString(hmacSum(h, e.cred.ServerKey, authMsg))), true, nil
	}
	return nil, true, fmt.Errorf("%w: SCRAM exchange is over", ErrMalformed)
}
