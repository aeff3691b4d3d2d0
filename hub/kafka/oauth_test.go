package kafka

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/oauth"

	"github.com/weirhub/weir/internal/auth"
)

func unsignedJWT(t *testing.T, sub string, exp time.Time) string {
	t.Helper()
	enc := func(v any) string { b, _ := json.Marshal(v); return base64.RawURLEncoding.EncodeToString(b) }
	return enc(map[string]string{"alg": "none"}) + "." + enc(map[string]any{"sub": sub, "exp": exp.Unix()}) + "."
}

// TestOAuthBearerSession: a franz-go client authenticates with an
// unsigned token (unsecured validator) and produces; on a raw connection
// the session lifetime is the token's remaining life when that is shorter
// than the listener's, and re-authenticating as another principal is
// refused.
func TestOAuthBearerSession(t *testing.T) {
	b, _ := saslBroker(t, Security{SASLMechanisms: []string{auth.OAuthBearer}, SessionLifetime: time.Hour,
		OAuth: &auth.OAuth{Unsecured: true, ClockSkew: time.Millisecond}})

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl := newClient(t, b.addr, kgo.SASL(oauth.Auth{Token: unsignedJWT(t, "svc", time.Now().Add(time.Hour))}.AsMechanism()),
		kgo.DefaultProduceTopic("oauth"), kgo.AllowAutoTopicCreation())
	if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("v")}).FirstErr(); err != nil {
		t.Fatalf("produce with a valid token: %v", err)
	}
	bad := newClient(t, b.addr, kgo.SASL(oauth.Auth{Token: unsignedJWT(t, "svc", time.Now().Add(-time.Hour))}.AsMechanism()),
		kgo.DefaultProduceTopic("oauth"), kgo.RecordRetries(0), kgo.RequestRetries(0))
	if err := bad.ProduceSync(ctx, &kgo.Record{Value: []byte("x")}).FirstErr(); err == nil {
		t.Fatal("produce with an expired token succeeded")
	}

	nc, err := net.Dial("tcp", b.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	authenticate := func(sub string, life time.Duration) *kmsg.SASLAuthenticateResponse {
		t.Helper()
		hs := kmsg.NewPtrSASLHandshakeRequest()
		hs.Version, hs.Mechanism = 1, auth.OAuthBearer
		hresp := hs.ResponseKind().(*kmsg.SASLHandshakeResponse)
		if err := rawRequest(t, nc, hs, hresp); err != nil || hresp.ErrorCode != 0 {
			t.Fatalf("handshake: %v %d", err, hresp.ErrorCode)
		}
		au := kmsg.NewPtrSASLAuthenticateRequest()
		au.Version = 1
		au.SASLAuthBytes = []byte("n,,\x01auth=Bearer " + unsignedJWT(t, sub, time.Now().Add(life)) + "\x01\x01")
		aresp := au.ResponseKind().(*kmsg.SASLAuthenticateResponse)
		if err := rawRequest(t, nc, au, aresp); err != nil {
			t.Fatal(err)
		}
		return aresp
	}
	r := authenticate("svc", 10*time.Minute)
	if r.ErrorCode != 0 || r.SessionLifetimeMillis <= (9*time.Minute).Milliseconds() || r.SessionLifetimeMillis > (10*time.Minute).Milliseconds() {
		t.Fatalf("authenticate: error %d, session %d ms; want the token's 10 minutes", r.ErrorCode, r.SessionLifetimeMillis)
	}
	// KIP-368: re-authentication may not change the principal.
	if r := authenticate("eve", 10*time.Minute); r.ErrorCode == 0 {
		t.Fatal("re-authenticated as another principal")
	}
}
