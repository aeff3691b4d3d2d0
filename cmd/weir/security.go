package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"

	"github.com/weirhub/weir/hub/kafka"
	"github.com/weirhub/weir/internal/auth"
)

// listenerConfig is one Kafka listener of weir serve.
type listenerConfig struct {
	Listen    string     `yaml:"listen"`
	Advertise string     `yaml:"advertise"`
	TLS       *tlsConfig `yaml:"tls"`
	// SASL lists the mechanisms the listener accepts (PLAIN,
	// SCRAM-SHA-256, SCRAM-SHA-512); empty: no authentication.
	SASL []string `yaml:"sasl"`
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
	return []listenerConfig{{Listen: cfg.Listen, Advertise: cfg.Advertise, TLS: cfg.flagTLS, SASL: cfg.flagSASL}}
}

// security builds the kafka.Security of a listener.
func (l listenerConfig) security(users *auth.Store, logger *slog.Logger) (kafka.Security, error) {
	sec := kafka.Security{SASLMechanisms: l.SASL, Users: users}
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
	if err := sec.Validate(); err != nil {
		return sec, fmt.Errorf("listener %s: %w", l.Listen, err)
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
