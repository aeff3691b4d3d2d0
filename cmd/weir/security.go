package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/weirhub/weir/hub/kafka"
	"github.com/weirhub/weir/internal/auth"
	"github.com/weirhub/weir/internal/kafkaconf"
)

// listenerConfig is one Kafka listener of weir serve.
type listenerConfig struct {
	Listen    string     `yaml:"listen"`
	Advertise string     `yaml:"advertise"`
	TLS       *tlsConfig `yaml:"tls"`
	// SASL lists the mechanisms the listener accepts (PLAIN,
	// SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER); empty: no
	// authentication.
	SASL []string `yaml:"sasl"`
	// OAuthBearer validates the tokens of OAUTHBEARER.
	OAuthBearer *oauthConfig `yaml:"oauthbearer"`
	// SessionLifetime bounds a SASL authentication (Kafka's
	// connections.max.reauth.ms, KIP-368), e.g. 1h; empty: no bound.
	SessionLifetime string `yaml:"session_lifetime"`
	// MaxAuthFailures is how many failed authentications one address may
	// make in a minute before it is refused until the minute has passed.
	// Default 10.
	MaxAuthFailures int `yaml:"max_auth_failures"`
}

// oauthConfig is how a listener validates OAUTHBEARER tokens (JWT):
// unsigned (unsecured: development only), or signed with an HMAC secret or
// an RSA key.
type oauthConfig struct {
	// Unsecured accepts unsigned tokens (alg none), as Kafka's
	// OAuthBearerUnsecuredValidatorCallbackHandler: anyone may claim any
	// principal.
	Unsecured bool `yaml:"unsecured"`
	// HMACKeyFile holds the secret of HS256/384/512 tokens.
	HMACKeyFile string `yaml:"hmac_key_file"`
	// RSAPublicKeyFile holds the PEM public key (or certificate) of
	// RS256/384/512 tokens.
	RSAPublicKeyFile string `yaml:"rsa_public_key_file"`
	// PrincipalClaim names the user; default sub.
	PrincipalClaim string `yaml:"principal_claim"`
	// Issuer and Audience, when set, must match iss and aud.
	Issuer   string `yaml:"issuer"`
	Audience string `yaml:"audience"`
	// ClockSkew is allowed on exp and nbf, e.g. 30s (the default).
	ClockSkew string `yaml:"clock_skew"`
}

// validator builds the token validator.
func (o *oauthConfig) validator() (*auth.OAuth, error) {
	v := &auth.OAuth{Unsecured: o.Unsecured, PrincipalClaim: o.PrincipalClaim, Issuer: o.Issuer, Audience: o.Audience}
	if o.ClockSkew != "" {
		d, err := time.ParseDuration(o.ClockSkew)
		if err != nil || d < 0 {
			return nil, fmt.Errorf("oauthbearer.clock_skew %q: want a duration such as 30s", o.ClockSkew)
		}
		v.ClockSkew = d
	}
	if o.HMACKeyFile != "" {
		b, err := os.ReadFile(o.HMACKeyFile)
		if err != nil {
			return nil, fmt.Errorf("oauthbearer.hmac_key_file: %w", err)
		}
		if v.HMACKey = []byte(strings.TrimRight(string(b), "\r\n")); len(v.HMACKey) < 32 {
			return nil, fmt.Errorf("oauthbearer.hmac_key_file %s: the secret has %d bytes; want at least 32", o.HMACKeyFile, len(v.HMACKey))
		}
	}
	if o.RSAPublicKeyFile != "" {
		b, err := os.ReadFile(o.RSAPublicKeyFile)
		if err != nil {
			return nil, fmt.Errorf("oauthbearer.rsa_public_key_file: %w", err)
		}
		if v.RSAKey, err = auth.ParseRSAPublicKey(b); err != nil {
			return nil, fmt.Errorf("oauthbearer.rsa_public_key_file %s: %w", o.RSAPublicKeyFile, err)
		}
	}
	if !v.Unsecured && v.HMACKey == nil && v.RSAKey == nil {
		return nil, errors.New("oauthbearer: set unsecured: true, hmac_key_file or rsa_public_key_file")
	}
	return v, nil
}

type tlsConfig struct {
	CertFile     string `yaml:"cert_file"`
	KeyFile      string `yaml:"key_file"`
	ClientCAFile string `yaml:"client_ca_file"`
}

// adminConfig names the bootstrap administrator: a user given SCRAM
// credentials at start and made a super user. There is no default
// password: without one, no administrator is made.
type adminConfig struct {
	User         string `yaml:"user"`
	PasswordFile string `yaml:"password_file"`
}

// adminPassword returns the bootstrap administrator's name and password
// from WEIR_ADMIN_PASSWORD, WEIR_ADMIN_PASSWORD_FILE or
// admin.password_file; the name from WEIR_ADMIN_USER or admin.user,
// default "admin". An empty password means no bootstrap administrator.
func (cfg serveConfig) adminPassword() (user, password string, err error) {
	user = cfg.Admin.User
	if v := os.Getenv("WEIR_ADMIN_USER"); v != "" {
		user = v
	}
	if user == "" {
		user = "admin"
	}
	file := cfg.Admin.PasswordFile
	if v := os.Getenv("WEIR_ADMIN_PASSWORD_FILE"); v != "" {
		file = v
	}
	if v := os.Getenv("WEIR_ADMIN_PASSWORD"); v != "" {
		return user, v, nil
	}
	if file == "" {
		return user, "", nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", "", fmt.Errorf("reading the admin password: %w", err)
	}
	password = strings.TrimRight(string(b), "\r\n")
	if password == "" {
		return "", "", fmt.Errorf("the admin password file %s is empty", file)
	}
	return user, password, nil
}

// listeners returns the configured listeners: those of `listeners:`, or
// one made of listen, advertise and the --tls-* and --sasl flags.
func (cfg serveConfig) listeners() []listenerConfig {
	if len(cfg.Listeners) > 0 {
		return cfg.Listeners
	}
	return []listenerConfig{{Listen: cfg.Listen, Advertise: cfg.Advertise, TLS: cfg.flagTLS, SASL: cfg.flagSASL, OAuthBearer: cfg.flagOAuth}}
}

// security builds the kafka.Security of a listener.
func (l listenerConfig) security(users *auth.Store, logger *slog.Logger) (kafka.Security, error) {
	sec := kafka.Security{SASLMechanisms: l.SASL, Users: users, MaxAuthFailures: l.MaxAuthFailures}
	if l.SessionLifetime != "" {
		d, err := time.ParseDuration(l.SessionLifetime)
		if err != nil || d <= 0 {
			return sec, fmt.Errorf("listener %s: session_lifetime %q: want a positive duration such as 1h", l.Listen, l.SessionLifetime)
		}
		sec.SessionLifetime = d
	}
	if l.TLS != nil {
		r, err := kafka.NewTLSReloader(kafka.TLSFiles{CertFile: l.TLS.CertFile, KeyFile: l.TLS.KeyFile, ClientCAFile: l.TLS.ClientCAFile},
			func(err error) {
				logger.Warn("weir: reloading the TLS certificate failed; keeping the previous one", "listen", l.Listen, "err", err)
			})
		if err != nil {
			return sec, fmt.Errorf("listener %s: %w", l.Listen, err)
		}
		sec.TLS = r.Config()
	}
	if slices.Contains(l.SASL, auth.OAuthBearer) {
		if l.OAuthBearer == nil {
			return sec, fmt.Errorf("listener %s: OAUTHBEARER needs oauthbearer: {unsecured, hmac_key_file or rsa_public_key_file} (flags --oauth-unsecured, --oauth-hmac-key-file, --oauth-rsa-public-key-file)", l.Listen)
		}
		v, err := l.OAuthBearer.validator()
		if err != nil {
			return sec, fmt.Errorf("listener %s: %w", l.Listen, err)
		}
		sec.OAuth = v
		if v.Unsecured {
			logger.Warn("weir: OAUTHBEARER accepts unsigned tokens (unsecured): anyone may claim any principal; for development only", "listen", l.Listen)
		}
	} else if l.OAuthBearer != nil {
		return sec, fmt.Errorf("listener %s: oauthbearer is set but sasl does not list OAUTHBEARER", l.Listen)
	}
	if err := sec.Validate(); err != nil {
		return sec, fmt.Errorf("listener %s: %w", l.Listen, err)
	}
	passwords := slices.ContainsFunc(sec.SASLMechanisms, func(m string) bool { return m != auth.OAuthBearer })
	if passwords && len(users.Users()) == 0 {
		logger.Warn("weir: SASL is on but there are no users: nobody can authenticate; set WEIR_ADMIN_PASSWORD or WEIR_ADMIN_PASSWORD_FILE to create the admin",
			"listen", l.Listen)
	}
	if !isLoopback(l.Listen) && sec.TLS == nil && len(sec.SASLMechanisms) == 0 {
		logger.Warn("weir: listener bound beyond loopback without TLS or SASL: anyone who reaches it can read, write and delete every dataset",
			"listen", l.Listen)
	}
	return sec, nil
}

// isLoopback reports whether addr binds to a loopback address only.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// openUsers opens the data dir's users and sets the bootstrap
// administrator's credentials.
func (cfg serveConfig) openUsers(logger *slog.Logger) (*auth.Store, string, error) {
	users, err := auth.Open(cfg.DataDir)
	if err != nil {
		return nil, "", err
	}
	user, password, err := cfg.adminPassword()
	if err != nil {
		return nil, "", err
	}
	if password == "" {
		return users, "", nil
	}
	for _, m := range []string{auth.ScramSHA256, auth.ScramSHA512} {
		if err := users.SetPassword(user, m, password, 0); err != nil {
			return nil, "", fmt.Errorf("setting the admin's credentials: %w", err)
		}
	}
	logger.Info("weir: bootstrap administrator set", "user", user)
	return users, user, nil
}

var errNoListeners = errors.New("no listeners configured")

// clientSec is the TLS and SASL of the client commands (topics, produce,
// consume, groups, users, acls): flags, else WEIR_* environment variables.
var clientSec struct {
	tls, caFile, mechanism, user, passwordFile, tokenFile string
}

func addClientSecurityFlags(cmd *cobra.Command) {
	f := cmd.PersistentFlags()
	f.StringVar(&clientSec.tls, "tls", os.Getenv("WEIR_TLS"), "connect with TLS: true, or the CA file to trust (env WEIR_TLS)")
	f.StringVar(&clientSec.mechanism, "sasl-mechanism", os.Getenv("WEIR_SASL_MECHANISM"), "PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER (env WEIR_SASL_MECHANISM)")
	f.StringVar(&clientSec.user, "sasl-user", os.Getenv("WEIR_SASL_USER"), "SASL user (env WEIR_SASL_USER)")
	f.StringVar(&clientSec.passwordFile, "sasl-password-file", os.Getenv("WEIR_SASL_PASSWORD_FILE"),
		"file holding the SASL password (env WEIR_SASL_PASSWORD_FILE; or WEIR_SASL_PASSWORD)")
	f.StringVar(&clientSec.tokenFile, "sasl-token-file", os.Getenv("WEIR_SASL_TOKEN_FILE"),
		"file holding the OAUTHBEARER token (a JWT), read at every authentication (env WEIR_SASL_TOKEN_FILE; or WEIR_SASL_TOKEN)")
}

// clientSecurity returns the kgo options of clientSec.
func clientSecurity() ([]kgo.Opt, error) {
	var opts []kgo.Opt
	switch v := clientSec.tls; v {
	case "", "false":
	case "true":
		opts = append(opts, kgo.DialTLSConfig(&tls.Config{MinVersion: tls.VersionTLS12}))
	default:
		pem, err := os.ReadFile(v)
		if err != nil {
			return nil, fmt.Errorf("--tls: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--tls: %s holds no PEM certificate", v)
		}
		opts = append(opts, kgo.DialTLSConfig(&tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}))
	}
	if clientSec.mechanism == "" {
		return opts, nil
	}
	if strings.EqualFold(clientSec.mechanism, auth.OAuthBearer) {
		m, err := kafkaconf.OAuthMechanism(os.Getenv("WEIR_SASL_TOKEN"), clientSec.tokenFile)
		if err != nil {
			return nil, fmt.Errorf("--sasl-mechanism OAUTHBEARER: %w (--sasl-token-file or WEIR_SASL_TOKEN)", err)
		}
		return append(opts, kgo.SASL(m)), nil
	}
	password := os.Getenv("WEIR_SASL_PASSWORD")
	if clientSec.passwordFile != "" {
		b, err := os.ReadFile(clientSec.passwordFile)
		if err != nil {
			return nil, fmt.Errorf("--sasl-password-file: %w", err)
		}
		password = strings.TrimRight(string(b), "\r\n")
	}
	if clientSec.user == "" || password == "" {
		return nil, errors.New("SASL needs --sasl-user and a password (--sasl-password-file or WEIR_SASL_PASSWORD)")
	}
	switch strings.ToUpper(clientSec.mechanism) {
	case auth.Plain:
		opts = append(opts, kgo.SASL(plain.Auth{User: clientSec.user, Pass: password}.AsMechanism()))
	case auth.ScramSHA256:
		opts = append(opts, kgo.SASL(scram.Auth{User: clientSec.user, Pass: password}.AsSha256Mechanism()))
	case auth.ScramSHA512:
		opts = append(opts, kgo.SASL(scram.Auth{User: clientSec.user, Pass: password}.AsSha512Mechanism()))
	default:
		return nil, fmt.Errorf("--sasl-mechanism %q: want PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER", clientSec.mechanism)
	}
	return opts, nil
}

// aclConfig turns authorisation on.
type aclConfig struct {
	// Enabled authorises every request against the ACLs of the data dir.
	Enabled bool `yaml:"enabled"`
	// SuperUsers are allowed everything (User:name); the bootstrap admin
	// is always one.
	SuperUsers []string `yaml:"super_users"`
	// AllowIfNoACL is Kafka's allow.everyone.if.no.acl.found: a resource
	// no ACL names is open to all. Default false: it is for super users
	// only.
	AllowIfNoACL bool `yaml:"allow_if_no_acl"`
}

// openACLs opens the ACL store when ACLs are enabled and returns the
// super users.
func (cfg serveConfig) openACLs(admin string, logger *slog.Logger) (*auth.ACLs, []string, error) {
	if !cfg.ACLs.Enabled {
		return nil, nil, nil
	}
	supers := append([]string(nil), cfg.ACLs.SuperUsers...)
	for _, s := range supers {
		if !strings.HasPrefix(s, "User:") {
			return nil, nil, fmt.Errorf("acls.super_users: %q: want User:name", s)
		}
	}
	if admin != "" {
		supers = append(supers, "User:"+admin)
	}
	acls, err := auth.OpenACLs(cfg.DataDir)
	if err != nil {
		return nil, nil, err
	}
	if len(supers) == 0 {
		logger.Warn("weir: ACLs are on but there is no super user: only what ACLs allow is possible, and nobody may change the ACLs")
	}
	logger.Info("weir: ACLs on", "super_users", strings.Join(supers, ","), "allow_if_no_acl", cfg.ACLs.AllowIfNoACL)
	return acls, supers, nil
}
