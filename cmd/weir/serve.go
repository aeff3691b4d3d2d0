package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	_ "net/http/pprof" // --debug-addr
	"os"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"gopkg.in/yaml.v3"

	"github.com/weirhub/weir/hub"
	"github.com/weirhub/weir/hub/kafka"
	"github.com/weirhub/weir/internal/httpauth"
	"github.com/weirhub/weir/internal/objstore"
	"github.com/weirhub/weir/internal/tlsfiles"
)

// serveConfig is weir serve's configuration: from a YAML file (--config),
// then WEIR_* environment variables, then flags, each overriding the one
// before.
type serveConfig struct {
	DataDir    string         `yaml:"data_dir"`
	ColdStore  string         `yaml:"cold_store"`
	Listen     string         `yaml:"listen"`
	Advertise  string         `yaml:"advertise"`
	AutoCreate *bool          `yaml:"auto_create"`
	LogLevel   string         `yaml:"log_level"`
	LogFormat  string         `yaml:"log_format"`
	HTTP       httpConfig     `yaml:"http"`
	DebugAddr  string         `yaml:"debug_addr"`
	Defaults   datasetDefault `yaml:"defaults"`
	// Listeners, when set, replace listen and advertise: each plaintext
	// or TLS, each with the SASL mechanisms it accepts (security.go).
	Listeners []listenerConfig `yaml:"listeners"`
	Admin     adminConfig      `yaml:"admin"`
	ACLs      aclConfig        `yaml:"acls"`

	flagTLS   *tlsConfig   // --tls-cert, --tls-key, --tls-client-ca
	flagSASL  []string     // --sasl
	flagOAuth *oauthConfig // --oauth-*
	// DelayedDelivery honours the weir.deliver_at and weir.delay headers.
	DelayedDelivery bool `yaml:"delayed_delivery"`
	// Transaction configures check-back: transaction.check_url.
	Transaction txnCheckConfig `yaml:"transaction"`
	// Connection limits of the Kafka front door (0: kafka.Options'
	// defaults).
	MaxConnections      int `yaml:"max_connections"`
	MaxConnectionsPerIP int `yaml:"max_connections_per_ip"`
	// ColdUploadRate paces uploads to the cold store, bytes a second of
	// all datasets ("50MiB"); "": unpaced.
	ColdUploadRate string `yaml:"cold_upload_rate"`
}

// httpConfig is the http: section of serve's YAML (and --http-listen).
type httpConfig struct {
	Listen           string   `yaml:"listen"`
	PartitionMetrics bool     `yaml:"partition_metrics"`
	AllowOrigins     []string `yaml:"allow_origins"` // browser origins that may subscribe (CORS)
	// SubscribeBuffer bounds the window of latest events that each
	// subscribed dataset's shared reader keeps (hub.Options.SubscribeBuffer,
	// default 64MiB); SubscribeCoalesce bounds what a subscriber that fell
	// behind it may hold as the latest value per key before it is told to
	// resume (hub.SubscribeOptions.CoalesceBytes, default 16MiB).
	SubscribeBuffer   string `yaml:"subscribe_buffer"`
	SubscribeCoalesce string `yaml:"subscribe_coalesce"`
	// SubscribeProcs is how many processors delivery to subscribers may
	// use at once (hub.Options.SubscribeProcs; 0: all but one, at least
	// one); SubscribeNice how much lower than the hub's own the
	// priority of that delivery is (hub.Options.SubscribeNice: a nice
	// value added, at most 19, Linux; nil: 10; 0: the hub's own).
	SubscribeProcs int  `yaml:"subscribe_procs"`
	SubscribeNice  *int `yaml:"subscribe_nice"`
	// TLS serves HTTPS (client_ca_file: mutual TLS), reloaded when the
	// files change.
	TLS *tlsConfig `yaml:"tls"`
	// TokenFile names a file of bearer tokens with their scopes
	// (internal/httpauth), read again when it changes.
	TokenFile string `yaml:"token_file"`
	// tokens are inline tokens, from WEIR_HTTP_TOKENS only: never in a
	// file that may be shared.
	tokens string
}

// subscribeSizes parses subscribe_buffer and subscribe_coalesce (0: the
// hub's defaults).
func (c httpConfig) subscribeSizes() (buffer, coalesce int64, err error) {
	if buffer, err = parseSubscribeSize("http.subscribe_buffer", c.SubscribeBuffer); err != nil {
		return 0, 0, err
	}
	coalesce, err = parseSubscribeSize("http.subscribe_coalesce", c.SubscribeCoalesce)
	return buffer, coalesce, err
}

// subscribeCPU returns hub.Options.SubscribeProcs and SubscribeNice of
// subscribe_procs and subscribe_nice.
func (c httpConfig) subscribeCPU() (procs, nice int, err error) {
	if c.SubscribeProcs < 0 {
		return 0, 0, fmt.Errorf("http.subscribe_procs (--subscribe-procs) %d: want a number of processors, or 0 for all but one", c.SubscribeProcs)
	}
	if c.SubscribeNice != nil {
		switch n := *c.SubscribeNice; {
		case n < 0 || n > 19:
			return 0, 0, fmt.Errorf("http.subscribe_nice (--subscribe-nice) %d: want 0 (the hub's own priority) to 19", n)
		case n == 0:
			nice = -1 // hub.Options: the hub's own priority
		default:
			nice = n
		}
	}
	return c.SubscribeProcs, nice, nil
}

// parseSubscribeSize parses a size of the subscriptions (serve's
// http.subscribe_buffer and subscribe_coalesce, the --subscribe-* flags of
// serve and run), named name in the error; "" is 0, the hub's default.
func parseSubscribeSize(name, s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	n, err := humanize.ParseBytes(s)
	if err != nil || n == 0 || n > 1<<40 {
		return 0, fmt.Errorf("%s %q: want a size like 64MiB", name, s)
	}
	return int64(n), nil
}

// addSubscribeFlags adds --subscribe-buffer and --subscribe-coalesce, of
// serve and run.
func addSubscribeFlags(f *pflag.FlagSet, buffer, coalesce *string) {
	f.StringVar(buffer, "subscribe-buffer", "", "memory for the latest events of each subscribed dataset, shared by its subscribers (default 64MiB)")
	f.StringVar(coalesce, "subscribe-coalesce", "", "what a subscriber that fell behind may hold as the latest value per key before it is told to resume (default 16MiB)")
}

// defaultSubscribeNice is --subscribe-nice's default (hub.Options'
// SubscribeNice).
const defaultSubscribeNice = 10

// addSubscribeCPUFlags adds --subscribe-procs and --subscribe-nice.
func addSubscribeCPUFlags(f *pflag.FlagSet, procs, nice *int) {
	f.IntVar(procs, "subscribe-procs", 0, "processors that delivery to subscribers (every dataset's shared readers and writers) may use at once (default 0: all but one, at least 1)")
	f.IntVar(nice, "subscribe-nice", defaultSubscribeNice, "how much lower than the hub's own the priority of delivery to subscribers is, as a nice value added to the hub's (at most 19; 0: the same; Linux only), so that producers go first when processors are short")
}

// guard is the httpauth configuration of the front door.
func (c httpConfig) guard(logger *slog.Logger) httpauth.Config {
	g := httpauth.Config{Tokens: c.tokens, TokenFile: c.TokenFile, Name: "http", Logger: logger}
	if c.TLS != nil {
		g.TLS = &tlsfiles.Files{CertFile: c.TLS.CertFile, KeyFile: c.TLS.KeyFile, ClientCAFile: c.TLS.ClientCAFile}
	}
	return g
}

type txnCheckConfig struct {
	CheckURL    string `yaml:"check_url"`
	CheckPrefix string `yaml:"check_prefix"`
	CheckLimit  int    `yaml:"check_limit"`
}

type datasetDefault struct {
	Partitions     int32  `yaml:"partitions"`
	Fsync          string `yaml:"fsync"`
	SegmentBytes   string `yaml:"segment_bytes"`
	RetentionTime  string `yaml:"retention_time"`
	RetentionBytes string `yaml:"retention_bytes"`
	MaxMessage     string `yaml:"max_message_bytes"`
}

const serveExample = `  weir serve
  weir serve --data-dir /var/lib/weir --listen 0.0.0.0:9092 --advertise broker1.internal:9092
  weir serve --config weir.yaml      # data_dir, listen, advertise, auto_create, defaults: {fsync: always}
  WEIR_LISTEN=127.0.0.1:19092 weir serve
  weir serve --cold-store 's3://weir/hub1?endpoint=http://127.0.0.1:7070'   # remote.storage.enable datasets tier to S3
  weir serve --http-listen 9644        # /metrics, /healthz, /readyz on 127.0.0.1:9644
  weir serve --http-listen 0.0.0.0:9644 --http-tls-cert server.crt --http-tls-key server.key --http-token-file /etc/weir/http-tokens
  WEIR_ADMIN_PASSWORD_FILE=/etc/weir/admin.pass weir serve --listen 0.0.0.0:9093 --tls-cert server.crt --tls-key server.key --sasl SCRAM-SHA-512
  weir serve --config weir.yaml      # listeners: [{listen, advertise, tls: {cert_file, key_file, client_ca_file}, sasl: [PLAIN, SCRAM-SHA-256]}]
  weir serve --sasl OAUTHBEARER --oauth-rsa-public-key-file idp.pem   # JWTs signed by your identity provider`

func newServeCmd() *cobra.Command {
	var cfgFile string
	var flags serveConfig
	var autoCreate bool
	var tlsFlags, httpTLS tlsConfig
	var saslFlag []string
	var oauthFlags oauthConfig
	var aclsFlag bool
	var superUsers []string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the hub: a Kafka-compatible broker over the commit log",
		Long: `Runs the hub with its Kafka protocol front door. Any Kafka client or tool can produce,
consume, join groups and manage topics (datasets) against it.

Settings come from --config FILE (YAML), then environment variables WEIR_DATA_DIR,
WEIR_LISTEN, WEIR_ADVERTISE, WEIR_AUTO_CREATE, WEIR_FSYNC, WEIR_LOG_LEVEL,
WEIR_LOG_FORMAT, WEIR_HTTP_LISTEN, then flags.
With --http-listen (http: {listen: ...}) it also serves Prometheus metrics at /metrics,
liveness at /healthz and readiness at /readyz. --http-tls-cert/--http-tls-key (--http-tls-client-ca
for mutual TLS) serve it over HTTPS; --http-token-file (WEIR_HTTP_TOKEN_FILE, or the tokens
themselves in WEIR_HTTP_TOKENS) requires Authorization: Bearer TOKEN: one token a line, each with
its scopes (metrics, subscribe, admin, or * for all). /healthz and /readyz stay open.
Security: --tls-cert/--tls-key (--tls-client-ca for mutual TLS) and --sasl for the --listen
listener, or listeners: in the config; --acls to authorise every request. The bootstrap admin
(a super user) gets its password from WEIR_ADMIN_PASSWORD or WEIR_ADMIN_PASSWORD_FILE; there is
no default password. Manage users and ACLs with weir users and weir acls.
SIGTERM, SIGINT or SIGHUP shut it down gracefully: requests in flight are answered, logs closed.`,
		Example: serveExample,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg := serveConfig{DataDir: "./data", Listen: "127.0.0.1:9092", LogLevel: "info", LogFormat: "text"}
			if cfgFile != "" {
				if err := loadServeConfig(cfgFile, &cfg); err != nil {
					return err
				}
			}
			applyEnv(&cfg)
			f := cmd.Flags()
			if f.Changed("data-dir") {
				cfg.DataDir = flags.DataDir
			}
			if f.Changed("cold-store") {
				cfg.ColdStore = flags.ColdStore
			}
			if f.Changed("cold-upload-rate") {
				cfg.ColdUploadRate = flags.ColdUploadRate
			}
			if f.Changed("listen") {
				cfg.Listen = flags.Listen
			}
			if f.Changed("advertise") {
				cfg.Advertise = flags.Advertise
			}
			if f.Changed("auto-create") {
				cfg.AutoCreate = &autoCreate
			}
			if f.Changed("fsync") {
				cfg.Defaults.Fsync = flags.Defaults.Fsync
			}
			if f.Changed("partitions") {
				cfg.Defaults.Partitions = flags.Defaults.Partitions
			}
			if f.Changed("log-level") {
				cfg.LogLevel = flags.LogLevel
			}
			if f.Changed("debug-addr") {
				cfg.DebugAddr = flags.DebugAddr
			}
			if f.Changed("http-listen") {
				cfg.HTTP.Listen = flags.HTTP.Listen
			}
			if f.Changed("partition-metrics") {
				cfg.HTTP.PartitionMetrics = flags.HTTP.PartitionMetrics
			}
			if f.Changed("http-allow-origin") {
				cfg.HTTP.AllowOrigins = flags.HTTP.AllowOrigins
			}
			if f.Changed("subscribe-buffer") {
				cfg.HTTP.SubscribeBuffer = flags.HTTP.SubscribeBuffer
			}
			if f.Changed("subscribe-coalesce") {
				cfg.HTTP.SubscribeCoalesce = flags.HTTP.SubscribeCoalesce
			}
			if f.Changed("subscribe-procs") {
				cfg.HTTP.SubscribeProcs = flags.HTTP.SubscribeProcs
			}
			if f.Changed("subscribe-nice") {
				cfg.HTTP.SubscribeNice = flags.HTTP.SubscribeNice
			}
			if httpTLS.CertFile != "" || httpTLS.KeyFile != "" || httpTLS.ClientCAFile != "" {
				cfg.HTTP.TLS = &httpTLS
			}
			if f.Changed("http-token-file") {
				cfg.HTTP.TokenFile = flags.HTTP.TokenFile
			}
			if lf := cmd.Flags().Lookup("log-format"); lf != nil && lf.Changed {
				cfg.LogFormat = lf.Value.String()
			}
			if f.Changed("max-connections") {
				cfg.MaxConnections = flags.MaxConnections
			}
			if f.Changed("max-connections-per-ip") {
				cfg.MaxConnectionsPerIP = flags.MaxConnectionsPerIP
			}
			if f.Changed("delayed-delivery") {
				cfg.DelayedDelivery = flags.DelayedDelivery
			}
			if f.Changed("transaction.check_url") {
				cfg.Transaction.CheckURL = flags.Transaction.CheckURL
			}
			if f.Changed("listen") || f.Changed("advertise") {
				cfg.Listeners = nil
			}
			if tlsFlags.CertFile != "" || tlsFlags.KeyFile != "" || tlsFlags.ClientCAFile != "" {
				cfg.flagTLS = &tlsFlags
			}
			cfg.flagSASL = saslFlag
			if oauthFlags != (oauthConfig{}) {
				cfg.flagOAuth = &oauthFlags
			}
			if f.Changed("acls") {
				cfg.ACLs.Enabled = aclsFlag
			}
			if f.Changed("super-users") {
				cfg.ACLs.SuperUsers = superUsers
			}
			if (cfg.flagTLS != nil || len(saslFlag) > 0 || cfg.flagOAuth != nil) && len(cfg.Listeners) > 0 {
				return errors.New("--tls-*, --sasl and --oauth-* configure the --listen listener; with listeners: in the config, set tls and sasl there")
			}
			return runServe(cmd.Context(), cmd.ErrOrStderr(), cfg)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfgFile, "config", "", "YAML configuration file")
	f.StringVar(&flags.DataDir, "data-dir", "./data", "directory holding all data")
	f.StringVar(&flags.ColdStore, "cold-store", "", "object store for datasets with remote.storage.enable: s3://BUCKET/PREFIX?endpoint=http://HOST:PORT or file:///path (credentials from AWS_* variables or ~/.aws/credentials and ~/.aws/config, profile AWS_PROFILE)")
	f.StringVar(&flags.ColdUploadRate, "cold-upload-rate", "", "pace uploads to the cold store to this many bytes a second, all datasets together (e.g. 50MiB; default unpaced)")
	f.StringVar(&flags.Listen, "listen", "127.0.0.1:9092", "address to accept Kafka clients on")
	f.StringVar(&flags.Advertise, "advertise", "", "host:port clients are told to connect to (default: the listen address)")
	f.BoolVar(&autoCreate, "auto-create", true, "create datasets on first produce or metadata request")
	f.StringVar(&flags.Defaults.Fsync, "fsync", "interval", "default fsync policy of new datasets: always, interval or never")
	f.Int32Var(&flags.Defaults.Partitions, "partitions", 1, "default partitions of new datasets")
	f.StringVar(&flags.LogLevel, "log-level", "info", "debug, info, warn or error")
	f.StringVar(&flags.DebugAddr, "debug-addr", "", "serve Go's pprof profiles on this address (e.g. 127.0.0.1:6060)")
	f.StringVar(&flags.HTTP.Listen, "http-listen", "", "serve /metrics, /healthz, /readyz and dataset subscriptions (GET /v1/datasets/NAME/subscribe) on this address (a bare port binds 127.0.0.1)")
	f.StringSliceVar(&flags.HTTP.AllowOrigins, "http-allow-origin", nil, "browser origins whose pages may subscribe from elsewhere (https://app.example.com, null for a file, *)")
	addSubscribeFlags(f, &flags.HTTP.SubscribeBuffer, &flags.HTTP.SubscribeCoalesce)
	flags.HTTP.SubscribeNice = new(int)
	addSubscribeCPUFlags(f, &flags.HTTP.SubscribeProcs, flags.HTTP.SubscribeNice)
	f.StringVar(&httpTLS.CertFile, "http-tls-cert", "", "serve --http-listen over HTTPS with this certificate chain (PEM; reloaded when the file changes)")
	f.StringVar(&httpTLS.KeyFile, "http-tls-key", "", "the HTTPS certificate's private key (PEM)")
	f.StringVar(&httpTLS.ClientCAFile, "http-tls-client-ca", "", "require HTTPS clients to present certificates signed by these CAs (mutual TLS)")
	f.StringVar(&flags.HTTP.TokenFile, "http-token-file", "", "require bearer tokens on --http-listen: a file of one token a line with its scopes (metrics, subscribe, admin, *), read again when it changes")
	f.BoolVar(&flags.HTTP.PartitionMetrics, "partition-metrics", false, "also export offsets, produced records and disk bytes per partition")
	f.IntVar(&flags.MaxConnections, "max-connections", 10000, "most open Kafka connections; when reached, the oldest that has sent no request is closed to make room")
	f.IntVar(&flags.MaxConnectionsPerIP, "max-connections-per-ip", 0, "most Kafka connections from one IP address (Kafka's max.connections.per.ip; default a tenth of --max-connections, -1 for no cap)")
	f.BoolVar(&flags.DelayedDelivery, "delayed-delivery", false, "hold records with a weir.deliver_at or weir.delay header back until due")
	f.StringVar(&flags.Transaction.CheckURL, "transaction.check_url", "", "check-back: POST transactions past their timeout here; commit or abort by the answer")
	f.StringVar(&tlsFlags.CertFile, "tls-cert", "", "serve TLS with this certificate chain (PEM; reloaded when the file changes)")
	f.StringVar(&tlsFlags.KeyFile, "tls-key", "", "the TLS certificate's private key (PEM)")
	f.StringVar(&tlsFlags.ClientCAFile, "tls-client-ca", "", "require client certificates signed by these CAs (mutual TLS)")
	f.StringSliceVar(&saslFlag, "sasl", nil, "SASL mechanisms clients must authenticate with: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER")
	f.BoolVar(&oauthFlags.Unsecured, "oauth-unsecured", false, "OAUTHBEARER: accept unsigned JWTs (alg none), as Kafka's unsecured validator; development only")
	f.StringVar(&oauthFlags.HMACKeyFile, "oauth-hmac-key-file", "", "OAUTHBEARER: verify HS256/384/512 JWTs with the secret in this file")
	f.StringVar(&oauthFlags.RSAPublicKeyFile, "oauth-rsa-public-key-file", "", "OAUTHBEARER: verify RS256/384/512 JWTs with this PEM public key or certificate")
	f.StringVar(&oauthFlags.PrincipalClaim, "oauth-principal-claim", "", "OAUTHBEARER: the JWT claim naming the user (default sub)")
	f.BoolVar(&aclsFlag, "acls", false, "authorise every request with the ACLs in the data dir (weir acls)")
	f.StringSliceVar(&superUsers, "super-users", nil, "principals (User:name) allowed everything; the bootstrap admin is one")
	return cmd
}

func loadServeConfig(path string, cfg *serveConfig) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("reading the config: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("%s: %v", path, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	return nil
}

func applyEnv(cfg *serveConfig) {
	set := func(name string, dst *string) {
		if v, ok := os.LookupEnv(name); ok {
			*dst = v
		}
	}
	set("WEIR_DATA_DIR", &cfg.DataDir)
	set("WEIR_COLD_STORE", &cfg.ColdStore)
	set("WEIR_LISTEN", &cfg.Listen)
	set("WEIR_ADVERTISE", &cfg.Advertise)
	set("WEIR_FSYNC", &cfg.Defaults.Fsync)
	set("WEIR_LOG_LEVEL", &cfg.LogLevel)
	set("WEIR_LOG_FORMAT", &cfg.LogFormat)
	set("WEIR_HTTP_LISTEN", &cfg.HTTP.Listen)
	set("WEIR_HTTP_TOKEN_FILE", &cfg.HTTP.TokenFile)
	set("WEIR_HTTP_TOKENS", &cfg.HTTP.tokens)
	if v, ok := os.LookupEnv("WEIR_AUTO_CREATE"); ok {
		b := v == "1" || strings.EqualFold(v, "true") || strings.EqualFold(v, "yes")
		cfg.AutoCreate = &b
	}
}

// newLogger returns the logger of a command: format "text" (default) or
// "json", one object per line, with slog's handlers.
func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: l}
	switch format {
	case "", "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("log format %q: want text or json", format)
}

// hubOptions turns the serve configuration into hub options.
func (cfg serveConfig) hubOptions(logger *slog.Logger) (hub.Options, error) {
	o := hub.Options{DataDir: cfg.DataDir, Logger: logger, DelayedDelivery: cfg.DelayedDelivery,
		TxnCheckURL: cfg.Transaction.CheckURL, TxnCheckPrefix: cfg.Transaction.CheckPrefix, TxnCheckLimit: cfg.Transaction.CheckLimit}
	if cfg.ColdStore != "" {
		s, err := objstore.OpenURL(cfg.ColdStore)
		if err != nil {
			return o, fmt.Errorf("cold_store: %w", err)
		}
		o.ColdStore = s
	}
	if cfg.ColdUploadRate != "" {
		n, err := humanize.ParseBytes(cfg.ColdUploadRate)
		if err != nil || n == 0 || n > 1<<40 {
			return o, fmt.Errorf("cold_upload_rate %q: want bytes a second like 50MiB", cfg.ColdUploadRate)
		}
		o.ColdUploadBytesPerSecond = int64(n)
	}
	if cfg.AutoCreate != nil {
		o.DisableAutoCreate = !*cfg.AutoCreate
	}
	var err error
	if o.SubscribeBuffer, _, err = cfg.HTTP.subscribeSizes(); err != nil {
		return o, err
	}
	if o.SubscribeProcs, o.SubscribeNice, err = cfg.HTTP.subscribeCPU(); err != nil {
		return o, err
	}
	d := cfg.Defaults
	o.Defaults.Partitions, o.Defaults.Fsync = d.Partitions, d.Fsync
	size := func(what, s string) int64 {
		if s == "" || err != nil {
			return 0
		}
		var n uint64
		if n, err = humanize.ParseBytes(s); err != nil {
			err = fmt.Errorf("defaults.%s %q: %v (write sizes like 1GiB)", what, s, err)
		}
		return int64(n)
	}
	o.Defaults.SegmentBytes = size("segment_bytes", d.SegmentBytes)
	o.Defaults.RetentionBytes = size("retention_bytes", d.RetentionBytes)
	o.Defaults.MaxMessageBytes = int(size("max_message_bytes", d.MaxMessage))
	if d.RetentionTime != "" && err == nil {
		o.Defaults.RetentionTime, err = parseDuration(d.RetentionTime)
		if err != nil {
			err = fmt.Errorf("defaults.retention_time: %v", err)
		}
	}
	return o, err
}

// parseDuration accepts Go durations plus days ("7d") and "forever".
func parseDuration(s string) (time.Duration, error) {
	if s == "forever" || s == "-1" {
		return -1, nil
	}
	if d, ok := strings.CutSuffix(s, "d"); ok {
		var n float64
		if _, err := fmt.Sscanf(d, "%g", &n); err == nil {
			return time.Duration(n * 24 * float64(time.Hour)), nil
		}
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration (write 90s, 12h, 7d or forever)", s)
	}
	return v, nil
}

func runServe(ctx context.Context, logOut io.Writer, cfg serveConfig) error {
	logger, err := newLogger(logOut, cfg.LogLevel, cfg.LogFormat)
	if err != nil {
		return err
	}
	opts, err := cfg.hubOptions(logger)
	if err != nil {
		return err
	}
	var m *metrics
	if cfg.HTTP.Listen != "" {
		m = newMetrics()
		opts.Observer = m.fsyncObserver()
	}
	h, err := hub.Open(opts)
	if err != nil {
		return fmt.Errorf("opening the hub in %s: %w", cfg.DataDir, err)
	}
	users, admin, err := cfg.openUsers(logger)
	if err != nil {
		h.Close()
		return err
	}
	acls, supers, err := cfg.openACLs(admin, logger)
	if err != nil {
		h.Close()
		return err
	}
	var observer kafka.Observer
	if m != nil {
		m.addHub(h, cfg.HTTP.PartitionMetrics)
		observer = m.kafkaObserver() // one for every listener: their requests add up
	}
	var srvs []*kafka.Server
	var lns []net.Listener
	for _, l := range cfg.listeners() {
		sec, err := l.security(users, logger)
		sec.ACLs, sec.SuperUsers, sec.AllowIfNoACL = acls, supers, cfg.ACLs.AllowIfNoACL
		if err == nil {
			srv := kafka.NewServer(h, kafka.Options{Advertise: l.Advertise, Logger: logger, Security: sec, Observer: observer,
				MaxConnections: cfg.MaxConnections, MaxConnectionsPerIP: cfg.MaxConnectionsPerIP})
			var ln net.Listener
			if ln, err = srv.Listen(l.Listen); err == nil {
				srvs, lns = append(srvs, srv), append(lns, ln)
			}
		}
		if err != nil {
			for _, ln := range lns {
				ln.Close()
			}
			h.Close()
			return err
		}
	}
	if len(srvs) == 0 {
		h.Close()
		return errNoListeners
	}
	var front *httpFront
	if m != nil {
		m.addKafkaServers(srvs)
		_, coalesce, _ := cfg.HTTP.subscribeSizes() // checked by hubOptions
		if front, err = startHTTP(cfg.HTTP.Listen, cfg.HTTP.guard(logger), m, logger, &tapHandler{h: h}, subscriptionsMount(h, cfg.HTTP.AllowOrigins, coalesce)); err != nil {
			for _, ln := range lns {
				ln.Close()
			}
			h.Close()
			return err
		}
		front.srv.AddCheck("hub", h.Err)
		front.srv.AddCheck("kafka", func() error {
			for i, srv := range srvs {
				if srv.Addr() == nil {
					return fmt.Errorf("the Kafka listener %s is not serving", lns[i].Addr())
				}
			}
			return nil
		})
	}
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, stop := stopContext(ctx)
	defer stop()
	if cfg.DebugAddr != "" {
		dbg := &http.Server{Addr: cfg.DebugAddr, Handler: http.DefaultServeMux, ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := dbg.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
				logger.Warn("weir: debug server failed", "addr", cfg.DebugAddr, "err", err)
			}
		}()
		defer dbg.Close()
		logger.Info("weir: pprof profiles served", "addr", cfg.DebugAddr)
		if !isLoopback(cfg.DebugAddr) {
			logger.Warn("weir: pprof profiles served beyond loopback, without TLS or authentication: bind --debug-addr to 127.0.0.1", "addr", cfg.DebugAddr)
		}
	}
	served := make(chan error, len(srvs))
	for i, srv := range srvs {
		go func() { served <- srv.Serve(lns[i]) }()
		l := cfg.listeners()[i]
		logger.Info("weir: hub serving", "listen", lns[i].Addr().String(), "tls", l.TLS != nil, "sasl", strings.Join(l.SASL, ","),
			"data_dir", cfg.DataDir, "datasets", len(h.Datasets()))
	}
	select {
	case err = <-served:
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		for _, srv := range srvs {
			srv.Shutdown(sctx)
		}
		cancel()
		front.stop()
		h.Close()
		return err
	case <-ctx.Done():
	}
	logger.Info("weir: shutting down", "why", context.Cause(ctx))
	if front != nil {
		front.srv.StartShutdown()
		defer front.stop()
	}
	sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for _, srv := range srvs {
		if err := srv.Shutdown(sctx); err != nil {
			logger.Warn("weir: connections did not finish in time; closed them", "err", err)
		}
	}
	for range srvs {
		<-served
	}
	if err := h.Close(); err != nil {
		return fmt.Errorf("closing the hub: %w", err)
	}
	logger.Info("weir: stopped")
	return nil
}
