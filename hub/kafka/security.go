package kafka

import (
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/weirhub/weir/internal/auth"
)

// Security is a listener's TLS, SASL and authorisation.
type Security struct {
	// TLS, when set, serves TLS (see TLSReloader for files rotated on
	// disk). Fetch responses then go through a buffered copy instead of
	// sendfile.
	TLS *tls.Config
	// SASLMechanisms are the SASL mechanisms accepted: PLAIN,
	// SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER. When any is set, a connection may send
	// nothing but ApiVersions, SaslHandshake and SaslAuthenticate until it
	// has authenticated; anything else closes it, as Kafka does.
	SASLMechanisms []string
	// Users verifies SASL credentials and backs Describe- and
	// AlterUserScramCredentials. Required with SASLMechanisms.
	Users *auth.Store
	// OAuth validates OAUTHBEARER tokens; the principal is User:<the
	// token's principal claim>, and a session ends when its token expires
	// (clients re-authenticate with a new one, KIP-368). Required with
	// OAUTHBEARER.
	OAuth *auth.OAuth
	// SessionLifetime, when positive, is how long an authentication
	// lasts (Kafka's connections.max.reauth.ms, KIP-368): clients that
	// support it re-authenticate on the same connection before it ends,
	// and a connection whose session ended is closed at its next request.
	// Default 0: sessions last as long as the connection.
	SessionLifetime time.Duration
	// MaxAuthFailures is how many failed authentications one address may
	// make in AuthFailureWindow; further attempts are refused without
	// checking until the window has passed. Default 10 in a minute.
	MaxAuthFailures   int
	AuthFailureWindow time.Duration

	// ACLs, when set, authorise every request (see acl.go); nil lets
	// every principal do everything.
	ACLs *auth.ACLs
	// SuperUsers (User:name) may do anything whatever the ACLs say.
	SuperUsers []string
	// AllowIfNoACL allows an operation on a resource that no ACL names at
	// all (Kafka's allow.everyone.if.no.acl.found). Default false: such
	// resources are for super users only.
	AllowIfNoACL bool
}

// Validate checks the security settings.
func (s *Security) Validate() error {
	for _, m := range s.SASLMechanisms {
		switch m {
		case auth.Plain, auth.ScramSHA256, auth.ScramSHA512:
		case auth.OAuthBearer:
			if s.OAuth == nil {
				return errors.New("kafka: OAUTHBEARER needs a token validator (unsecured, an HMAC key or an RSA public key)")
			}
		default:
			return fmt.Errorf("kafka: unsupported SASL mechanism %q (want %s, %s, %s or %s)", m, auth.Plain, auth.ScramSHA256, auth.ScramSHA512, auth.OAuthBearer)
		}
	}
	if len(s.SASLMechanisms) > 0 && s.Users == nil {
		return errors.New("kafka: SASL needs a user store")
	}
	return nil
}

// Anonymous is the principal of a connection that has not authenticated.
const Anonymous = "User:ANONYMOUS"

// connAuth is a connection's authentication state.
type connAuth struct {
	user    string        // authenticated SASL user, or ""
	mech    string        // mechanism chosen by the last SaslHandshake
	exch    auth.Exchange // the exchange in progress
	expires time.Time     // end of the SASL session, zero for none
	raw     bool          // SaslHandshake v0: the next frames are bare SASL tokens
}

// principal is who the connection acts as: the SASL user, else the
// subject of a verified client certificate, else ANONYMOUS.
func (c *conn) principal() string {
	if c.auth.user != "" {
		return "User:" + c.auth.user
	}
	if tc, ok := c.nc.(*tls.Conn); ok {
		if st := tc.ConnectionState(); len(st.VerifiedChains) > 0 {
			return "User:" + st.PeerCertificates[0].Subject.String()
		}
	}
	return Anonymous
}

// admit decides whether a request of key may be handled on this
// connection; an error closes the connection.
func (c *conn) admit(key int16) error {
	sec := &c.s.opts.Security
	if len(sec.SASLMechanisms) == 0 {
		return nil
	}
	switch key {
	case 18, 17, 36: // ApiVersions, SaslHandshake, SaslAuthenticate
		return nil
	}
	if c.auth.user == "" {
		c.s.opts.Logger.Warn("kafka: request before SASL authentication; closing", "remote", c.remote, "api_key", key)
		return fmt.Errorf("API key %d before SASL authentication", key)
	}
	if !c.auth.expires.IsZero() && time.Now().After(c.auth.expires) {
		return fmt.Errorf("SASL session of %s ended without re-authentication", c.auth.user)
	}
	return nil
}

// maxUnauthenticatedBytes bounds each request a connection sends before it
// has authenticated on a SASL listener: ApiVersions and SASL messages are
// small, so nobody can make the broker read a large body without
// credentials.
const maxUnauthenticatedBytes = 64 << 10

// admitFrame refuses a request frame too large for a connection that has
// not authenticated yet, before its body is read.
func (c *conn) admitFrame(key int16, size int32) error {
	if len(c.s.opts.Security.SASLMechanisms) == 0 || c.auth.user != "" && !c.auth.raw {
		return nil
	}
	if size > maxUnauthenticatedBytes {
		c.s.opts.Logger.Warn("kafka: large request before SASL authentication; closing", "remote", c.remote, "api_key", key, "bytes", size)
		return fmt.Errorf("request of %d bytes for API key %d before SASL authentication (at most %d)", size, key, maxUnauthenticatedBytes)
	}
	return nil
}

func handleSaslHandshake(c *conn, h *header, kreq kmsg.Request) *pending {
	req := kreq.(*kmsg.SASLHandshakeRequest)
	resp := req.ResponseKind().(*kmsg.SASLHandshakeResponse)
	mechs := c.s.opts.Security.SASLMechanisms
	resp.SupportedMechanisms = slices.Clone(mechs)
	if !slices.Contains(mechs, req.Mechanism) {
		resp.ErrorCode = kerr.UnsupportedSaslMechanism.Code
		return ready(resp)
	}
	var exch auth.Exchange
	var err error
	if req.Mechanism == auth.OAuthBearer {
		exch = auth.NewOAuthExchange(c.s.opts.Security.OAuth)
	} else {
		exch, err = auth.NewExchange(req.Mechanism, c.s.opts.Security.Users)
	}
	if err != nil {
		resp.ErrorCode = kerr.UnsupportedSaslMechanism.Code
		return ready(resp)
	}
	c.auth.mech, c.auth.exch = req.Mechanism, exch
	c.auth.raw = req.Version == 0
	return ready(resp)
}

// rawSASL takes one bare SASL token, as clients send after a SaslHandshake
// v0, and answers with a bare token; a failure closes the connection
// without an answer, as Kafka does.
func (c *conn) rawSASL(token []byte) error {
	req := kmsg.NewPtrSASLAuthenticateRequest()
	req.SASLAuthBytes = append([]byte(nil), token...)
	p := handleSaslAuthenticate(c, nil, req)
	resp := p.resp.(*kmsg.SASLAuthenticateResponse)
	if resp.ErrorCode != 0 {
		return fmt.Errorf("SASL authentication failed: %s", *resp.ErrorMessage)
	}
	if c.auth.exch == nil {
		c.auth.raw = false // done: Kafka requests follow
	}
	out := resp.SASLAuthBytes
	c.queue(&pending{write: func(c *conn) error {
		b := binary.BigEndian.AppendUint32(c.wbuf[:0], uint32(len(out)))
		b = append(b, out...)
		_, err := c.nc.Write(b)
		return err
	}})
	return nil
}

func handleSaslAuthenticate(c *conn, h *header, kreq kmsg.Request) *pending {
	req := kreq.(*kmsg.SASLAuthenticateRequest)
	resp := req.ResponseKind().(*kmsg.SASLAuthenticateResponse)
	fail := func(code *kerr.Error, msg string) *pending {
		resp.ErrorCode = code.Code
		resp.ErrorMessage = &msg
		c.auth.exch = nil
		return &pending{resp: resp, closeAfter: true}
	}
	if c.auth.exch == nil {
		return fail(kerr.IllegalSaslState, "SaslAuthenticate without a SaslHandshake before it")
	}
	host := auth.Host(c.remote)
	if !c.s.door.Allowed(host) {
		c.s.opts.Logger.Warn("kafka: SASL authentication refused: too many failures from this address", "remote", c.remote)
		return fail(kerr.SaslAuthenticationFailed, "too many failed authentications from this address; try again later")
	}
	out, done, err := c.auth.exch.Step(req.SASLAuthBytes)
	if err != nil {
		c.s.door.Failed(host)
		c.s.opts.Logger.Warn("kafka: SASL authentication failed", "remote", c.remote, "mechanism", c.auth.mech, "err", err)
		msg := auth.ErrAuthFailed.Error()
		if errors.Is(err, auth.ErrMalformed) {
			msg = err.Error()
		}
		return fail(kerr.SaslAuthenticationFailed, "Authentication failed during authentication due to invalid credentials with SASL mechanism "+c.auth.mech+": "+msg)
	}
	resp.SASLAuthBytes = out
	if !done {
		return ready(resp)
	}
	user := c.auth.exch.User()
	var tokenEnds time.Time
	if ex, ok := c.auth.exch.(interface{ Expires() time.Time }); ok {
		tokenEnds = ex.Expires()
	}
	c.auth.exch = nil
	if c.auth.user != "" && c.auth.user != user {
		// KIP-368: re-authentication may not change the principal.
		return fail(kerr.SaslAuthenticationFailed, "re-authentication as a different user")
	}
	c.auth.user = user
	c.auth.expires = time.Time{}
	if lt := c.s.opts.Security.SessionLifetime; lt > 0 {
		c.auth.expires = time.Now().Add(lt)
		resp.SessionLifetimeMillis = lt.Milliseconds()
	}
	if !tokenEnds.IsZero() && (c.auth.expires.IsZero() || tokenEnds.Before(c.auth.expires)) {
		c.auth.expires = tokenEnds // a session does not outlive its token
		resp.SessionLifetimeMillis = max(time.Until(tokenEnds).Milliseconds(), 1)
	}
	c.s.opts.Logger.Debug("kafka: authenticated", "remote", c.remote, "user", user, "mechanism", c.auth.mech)
	return ready(resp)
}
