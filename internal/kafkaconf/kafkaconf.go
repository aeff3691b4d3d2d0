// Package kafkaconf holds the connection settings the kafka source and the
// kafka sink share: seed brokers, client id, TLS and SASL, declared once as
// connector fields and turned into franz-go kgo options.
//
// The sources and sinks packages may not import each other; this leaf
// package is what they have in common (see internal/lint).
//
// # Settings
//
//	brokers:      [host:port, ...]              required
//	client_id:    weir                          the client.id brokers log
//	dial_timeout: 10s
//	tls:  {enabled, ca_file, cert_file, key_file, server_name, skip_verify}
//	sasl: {mechanism: PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512, user, password | password_file}
//	sasl: {mechanism: OAUTHBEARER, token | token_file}     token_file re-read at every authentication
//
// TLS is on when tls.enabled is true or any other tls field is set. Files
// are read when the component connects, not when it is built, so that
// `weir lint` and tests can build components whose files live elsewhere.
package kafkaconf

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/oauth"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/weirhub/weir/connectors"
)

// SASL mechanisms.
const (
	Plain       = "PLAIN"
	ScramSHA256 = "SCRAM-SHA-256"
	ScramSHA512 = "SCRAM-SHA-512"
	OAuthBearer = "OAUTHBEARER"
)

// Fields returns a Kafka component's fields: brokers first, then the
// component's own, then the other connection fields. The slice is new on
// every call.
func Fields(own ...connectors.Field) []connectors.Field {
	fs := []connectors.Field{{Name: "brokers", Type: connectors.TypeStrings, Required: true, Doc: "Seed brokers of the cluster, host:port.",
		Example: []string{"kafka-1.internal:9092", "kafka-2.internal:9092"}}}
	fs = append(fs, own...)
	return append(fs, connectionFields()...)
}

func connectionFields() []connectors.Field {
	return []connectors.Field{
		{Name: "client_id", Type: connectors.TypeString, Default: "weir", Doc: "Client id the brokers see in their logs and quotas."},
		{Name: "dial_timeout", Type: connectors.TypeDuration, Default: "10s", Min: "1ms", Doc: "Longest wait for a connection to a broker."},
		{Name: "tls", Type: connectors.TypeObject, Doc: "TLS to the brokers; on when enabled is true or any other field is set.", Fields: []connectors.Field{
			{Name: "enabled", Type: connectors.TypeBool, Default: false, Doc: "Connect with TLS, trusting the system's certificate authorities."},
			{Name: "ca_file", Type: connectors.TypeString, Doc: "PEM file of the certificate authorities to trust (default: the system's).", Example: "/etc/weir/kafka-ca.pem"},
			{Name: "cert_file", Type: connectors.TypeString, Doc: "PEM client certificate, for brokers that authenticate clients by certificate (with key_file)."},
			{Name: "key_file", Type: connectors.TypeString, Doc: "PEM private key of cert_file."},
			{Name: "server_name", Type: connectors.TypeString, Doc: "Name to verify the brokers' certificates against (default: the host dialled)."},
			{Name: "skip_verify", Type: connectors.TypeBool, Default: false, Doc: "Accept any broker certificate (testing only)."},
		}},
		{Name: "sasl", Type: connectors.TypeObject, Doc: "SASL authentication; none unless mechanism is set.", Fields: []connectors.Field{
			{Name: "mechanism", Type: connectors.TypeString, Enum: []string{Plain, ScramSHA256, ScramSHA512, OAuthBearer}, Doc: "PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER."},
			{Name: "user", Type: connectors.TypeString, Doc: "User name."},
			{Name: "password", Type: connectors.TypeString, Doc: "Password; use ${VAR} or password_file to keep it out of the file."},
			{Name: "password_file", Type: connectors.TypeString, Doc: "File holding the password (a trailing newline is ignored), read when connecting.", Example: "/run/secrets/kafka-password"},
			{Name: "token", Type: connectors.TypeString, Doc: "OAUTHBEARER: the token (a JWT); use ${VAR} or token_file to keep it out of the file."},
			{Name: "token_file", Type: connectors.TypeString, Doc: "OAUTHBEARER: file holding the token, read again at every authentication, so a token refreshed on disk is used when the broker asks for re-authentication.", Example: "/run/secrets/kafka-token"},
		}},
	}
}

// Conn is a checked connection config. Its zero value is not useful; make
// one with Parse.
type Conn struct {
	Brokers     []string
	ClientID    string
	DialTimeout time.Duration

	TLS        bool
	CAFile     string
	CertFile   string
	KeyFile    string
	ServerName string
	SkipVerify bool

	Mechanism    string // "" for none
	User         string
	Password     string
	PasswordFile string // read by Opts
	Token        string // OAUTHBEARER
	TokenFile    string // OAUTHBEARER, read at every authentication
}

// Parse checks the connection fields of conf (a component whose spec has
// Fields), reporting a problem at its field's place in the YAML. It reads
// no file.
func Parse(conf *connectors.Config) (*Conn, error) {
	t, s := conf.Object("tls"), conf.Object("sasl")
	c := &Conn{
		Brokers:     conf.Strings("brokers"),
		ClientID:    conf.String("client_id"),
		DialTimeout: conf.Duration("dial_timeout"),
		CAFile:      t.String("ca_file"),
		CertFile:    t.String("cert_file"),
		KeyFile:     t.String("key_file"),
		ServerName:  t.String("server_name"),
		SkipVerify:  t.Bool("skip_verify"),
		Mechanism:   s.String("mechanism"),
		User:        s.String("user"),
		Password:    s.String("password"),
	}
	c.PasswordFile = s.String("password_file")
	c.Token, c.TokenFile = s.String("token"), s.String("token_file")
	if len(c.Brokers) == 0 {
		return nil, conf.Errorf("brokers", "needs at least one host:port")
	}
	for _, b := range c.Brokers {
		host, port, err := net.SplitHostPort(b)
		if err != nil || host == "" {
			return nil, conf.Errorf("brokers", "%q is not host:port", b)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return nil, conf.Errorf("brokers", "%q has no valid port", b)
		}
	}
	c.TLS = t.Bool("enabled") || c.CAFile != "" || c.CertFile != "" || c.KeyFile != "" || c.ServerName != "" || c.SkipVerify
	if (c.CertFile == "") != (c.KeyFile == "") {
		return nil, conf.Errorf("tls", "cert_file and key_file go together")
	}
	if c.Mechanism == OAuthBearer {
		switch {
		case c.User != "" || c.Password != "" || c.PasswordFile != "":
			return nil, conf.Errorf("sasl", "OAUTHBEARER takes token or token_file, not user and password")
		case (c.Token == "") == (c.TokenFile == ""):
			return nil, conf.Errorf("sasl", "OAUTHBEARER needs one of token and token_file")
		}
		return c, nil
	}
	if c.Token != "" || c.TokenFile != "" {
		return nil, conf.Errorf("sasl", "token and token_file are for mechanism OAUTHBEARER")
	}
	switch {
	case c.Password != "" && c.PasswordFile != "":
		return nil, conf.Errorf("sasl", "password and password_file exclude each other")
	case c.Mechanism == "" && (c.User != "" || c.Password != "" || c.PasswordFile != ""):
		return nil, conf.Errorf("sasl", "user and password need a mechanism (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)")
	case c.Mechanism != "" && c.User == "":
		return nil, conf.Errorf("sasl", "%s needs a user", c.Mechanism)
	}
	return c, nil
}

// Opts returns the kgo options that connect as configured: seed brokers,
// client id, dial timeout, TLS and SASL. It reads the TLS files.
func (c *Conn) Opts() ([]kgo.Opt, error) {
	opts := []kgo.Opt{kgo.SeedBrokers(c.Brokers...), kgo.ClientID(c.ClientID), kgo.DialTimeout(c.DialTimeout)}
	if c.TLS {
		cfg, err := c.TLSConfig()
		if err != nil {
			return nil, err
		}
		opts = append(opts, kgo.DialTLSConfig(cfg))
	}
	if c.PasswordFile != "" {
		b, err := os.ReadFile(c.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("sasl.password_file: %w", err)
		}
		cc := *c
		cc.Password = strings.TrimRight(string(b), "\r\n")
		c = &cc
	}
	if c.Mechanism == OAuthBearer && c.TokenFile != "" {
		if _, err := readToken(c.TokenFile); err != nil {
			return nil, fmt.Errorf("sasl.%w", err)
		}
	}
	if m := c.SASL(); m != nil {
		opts = append(opts, kgo.SASL(m))
	}
	return opts, nil
}

// OAuthMechanism is OAUTHBEARER with a static token, or with the token in
// file, read at every authentication (so that a token refreshed on disk is
// sent when the broker asks for re-authentication). The file is read once
// here to fail early when it cannot be.
func OAuthMechanism(token, file string) (sasl.Mechanism, error) {
	if file == "" && token == "" {
		return nil, fmt.Errorf("OAUTHBEARER needs a token or a token file")
	}
	if file != "" {
		if _, err := readToken(file); err != nil {
			return nil, err
		}
	}
	return oauthMechanism(token, file), nil
}

func oauthMechanism(token, file string) sasl.Mechanism {
	if file == "" {
		return oauth.Auth{Token: token}.AsMechanism()
	}
	return oauth.Oauth(func(context.Context) (oauth.Auth, error) {
		t, err := readToken(file)
		return oauth.Auth{Token: t}, err
	})
}

func readToken(file string) (string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("token_file: %w", err)
	}
	t := strings.TrimSpace(string(b))
	if t == "" {
		return "", fmt.Errorf("token_file %s is empty", file)
	}
	return t, nil
}

// TLSConfig builds the TLS client config, reading the certificate files.
func (c *Conn) TLSConfig() (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.ServerName,
		InsecureSkipVerify: c.SkipVerify} //nolint:gosec // the user asked for it
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tls.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls.ca_file %s holds no PEM certificate", c.CAFile)
		}
		cfg.RootCAs = pool
	}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("tls.cert_file and key_file: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// SASL returns the configured mechanism, or nil for none.
func (c *Conn) SASL() sasl.Mechanism {
	switch c.Mechanism {
	case Plain:
		return plain.Auth{User: c.User, Pass: c.Password}.AsMechanism()
	case ScramSHA256:
		return scram.Auth{User: c.User, Pass: c.Password}.AsSha256Mechanism()
	case ScramSHA512:
		return scram.Auth{User: c.User, Pass: c.Password}.AsSha512Mechanism()
	case OAuthBearer:
		return oauthMechanism(c.Token, c.TokenFile)
	}
	return nil
}

// ValidTopic reports why name is not a valid Kafka topic name, or "" when
// it is: 1 to 249 of the characters a-z, A-Z, 0-9, '.', '_' and '-', and
// neither "." nor "..".
func ValidTopic(name string) string {
	if name == "" || len(name) > 249 {
		return "a topic name has 1 to 249 characters"
	}
	if name == "." || name == ".." {
		return "a topic name cannot be . or .."
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Sprintf("a topic name has only letters, digits, '.', '_' and '-', not %q", c)
		}
	}
	return ""
}
