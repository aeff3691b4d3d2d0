package kafkaconf

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/weirhub/weir/connectors"
)

func parse(t *testing.T, src string) (*Conn, error) {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(src), &doc); err != nil {
		t.Fatal(err)
	}
	spec := &connectors.Spec{Name: "test", Fields: Fields()}
	conf, errs := connectors.ParseConfig(spec, doc.Content[0])
	if len(errs) > 0 {
		return nil, errs[0] // a field out of its bounds
	}
	return Parse(conf)
}

func TestParse(t *testing.T) {
	tests := []struct {
		src                 string
		tls                 bool
		mechanism, errStart string
	}{
		{src: "brokers: [a:9092]"},
		{src: "brokers: a:9092\ntls: {enabled: true}", tls: true},
		{src: "brokers: [a:9092]\ntls: {ca_file: /x.pem}", tls: true},
		{src: "brokers: [a:9092]\ntls: {skip_verify: true}", tls: true},
		{src: "brokers: [a:9092]\nsasl: {mechanism: SCRAM-SHA-256, user: u, password: p}", mechanism: ScramSHA256},
		{src: "brokers: []", errStart: "1:10: brokers: needs at least one"},
		{src: "brokers: [':9092']", errStart: `1:10: brokers: ":9092" is not host:port`},
		{src: "brokers: [a:99999]", errStart: `1:10: brokers: "a:99999" has no valid port`},
		{src: "brokers: [a:1]\ndial_timeout: 0s", errStart: "2:15: dial_timeout: must be at least 1ms"},
		{src: "brokers: [a:1]\ntls: {key_file: k}", errStart: "2:6: tls: cert_file and key_file go together"},
		{src: "brokers: [a:1]\nsasl: {password: p}", errStart: "2:7: sasl: user and password need a mechanism"},
		{src: "brokers: [a:1]\nsasl: {mechanism: PLAIN}", errStart: "2:7: sasl: PLAIN needs a user"},
		{src: "brokers: [a:1]\nsasl: {mechanism: PLAIN, user: u, password_file: /p}", mechanism: Plain},
		{src: "brokers: [a:1]\nsasl: {mechanism: PLAIN, user: u, password: p, password_file: /p}", errStart: "2:7: sasl: password and password_file exclude"},
		{src: "brokers: [a:1]\nsasl: {mechanism: OAUTHBEARER, token: e30.e30.}", mechanism: OAuthBearer},
		{src: "brokers: [a:1]\nsasl: {mechanism: OAUTHBEARER, token_file: /t}", mechanism: OAuthBearer},
		{src: "brokers: [a:1]\nsasl: {mechanism: OAUTHBEARER}", errStart: "2:7: sasl: OAUTHBEARER needs one of token and token_file"},
		{src: "brokers: [a:1]\nsasl: {mechanism: OAUTHBEARER, token: a, token_file: /t}", errStart: "2:7: sasl: OAUTHBEARER needs one of"},
		{src: "brokers: [a:1]\nsasl: {mechanism: OAUTHBEARER, user: u, token: a}", errStart: "2:7: sasl: OAUTHBEARER takes token or token_file"},
		{src: "brokers: [a:1]\nsasl: {mechanism: PLAIN, user: u, password: p, token: a}", errStart: "2:7: sasl: token and token_file are for mechanism OAUTHBEARER"},
	}
	for _, tt := range tests {
		c, err := parse(t, tt.src)
		if tt.errStart != "" {
			if err == nil || !strings.HasPrefix(err.Error(), tt.errStart) {
				t.Errorf("Parse(%q) = %v, want %s...", tt.src, err, tt.errStart)
			}
			continue
		}
		if err != nil {
			t.Errorf("Parse(%q) = %v", tt.src, err)
			continue
		}
		if c.TLS != tt.tls || c.Mechanism != tt.mechanism {
			t.Errorf("Parse(%q) = tls %v, sasl %q; want %v, %q", tt.src, c.TLS, c.Mechanism, tt.tls, tt.mechanism)
		}
		if (c.SASL() != nil) != (tt.mechanism != "") {
			t.Errorf("Parse(%q).SASL() = %v", tt.src, c.SASL())
		}
	}
	c, err := parse(t, "brokers: [a:1]\ntls: {ca_file: /does/not/exist.pem}")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Opts(); err == nil || !strings.Contains(err.Error(), "tls.ca_file") {
		t.Errorf("Opts with a missing CA file = %v, want a tls.ca_file error", err)
	}
	c, err = parse(t, "brokers: [a:1]\nsasl: {mechanism: PLAIN, user: u, password_file: /does/not/exist}")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Opts(); err == nil || !strings.Contains(err.Error(), "sasl.password_file") {
		t.Errorf("Opts with a missing password file = %v, want a sasl.password_file error", err)
	}
	c, err = parse(t, "brokers: [a:1]\nsasl: {mechanism: OAUTHBEARER, token_file: /does/not/exist}")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Opts(); err == nil || !strings.Contains(err.Error(), "sasl.token_file") {
		t.Errorf("Opts with a missing token file = %v, want a sasl.token_file error", err)
	}
}

// TestOAuthTokenFileReadEachTime: the token file is read at every
// authentication, so a refreshed token is sent.
func TestOAuthTokenFileReadEachTime(t *testing.T) {
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte("first.token.\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	m, err := OAuthMechanism("", file)
	if err != nil {
		t.Fatal(err)
	}
	first := func() string {
		t.Helper()
		_, msg, err := m.Authenticate(context.Background(), "b:9092")
		if err != nil {
			t.Fatal(err)
		}
		return string(msg)
	}
	if got := first(); got != "n,,\x01auth=Bearer first.token.\x01\x01" {
		t.Fatalf("first message %q", got)
	}
	if err := os.WriteFile(file, []byte("second.token.\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := first(); !strings.Contains(got, "auth=Bearer second.token.\x01") {
		t.Fatalf("after the refresh: %q", got)
	}
}

func TestValidTopic(t *testing.T) {
	for _, tt := range []struct {
		name string
		ok   bool
	}{
		{"logs", true}, {"a.b_c-D9", true}, {strings.Repeat("x", 249), true},
		{"", false}, {".", false}, {"..", false}, {"a b", false}, {"a/b", false}, {strings.Repeat("x", 250), false}, {"é", false},
	} {
		if got := ValidTopic(tt.name) == ""; got != tt.ok {
			t.Errorf("ValidTopic(%q) = %q, want ok %v", tt.name, ValidTopic(tt.name), tt.ok)
		}
	}
}
