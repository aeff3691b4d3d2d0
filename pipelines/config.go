package pipelines

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"gopkg.in/yaml.v3"

	"github.com/weirhub/weir/connectors"
	"github.com/weirhub/weir/hub"
	"github.com/weirhub/weir/hub/kafkaclient"
	"github.com/weirhub/weir/internal/kafkaconf"
)

// Config is a loaded, checked pipeline file.
type Config struct {
	File      string
	Hub       HubConfig
	HTTP      HTTPConfig
	Datasets  []*DatasetConfig
	Sources   []*SourceConfig
	Pipelines []*PipelineConfig
	Tests     []*TestCase
}

// HubConfig says which hub the file runs against: the embedded one (a data
// directory, optionally also serving Kafka clients) or an external
// Kafka-compatible cluster.
type HubConfig struct {
	DataDir    string
	Listen     string // also serve the Kafka protocol from the embedded hub
	Advertise  string
	Fsync      string // default fsync policy of the datasets
	AutoCreate bool
	// ColdStore is the embedded hub's cold store URL (s3://BUCKET/PREFIX?
	// endpoint=http://HOST:PORT or file:///path), "" for none.
	ColdStore string
	// ColdUploadRate paces the uploads to the cold store, bytes a second
	// of all datasets together (hub.Options.ColdUploadBytesPerSecond, weir
	// serve --cold-upload-rate); 0 leaves them unpaced.
	ColdUploadRate int64
	// Kafka is the external cluster of hub.kafka (brokers, client id,
	// TLS, SASL, as for the kafka source and sink), or nil.
	Kafka *kafkaconf.Conn
}

// HTTPConfig is the http: section: the process's HTTP front door
// (metrics, health). The engine does not serve it; the command running the
// file does.
type HTTPConfig struct {
	Listen           string // address; a bare port binds 127.0.0.1; "" serves nothing
	PartitionMetrics bool   // export per-partition series too
	// TLSCertFile and TLSKeyFile serve HTTPS (reloaded when they change);
	// TLSClientCAFile requires client certificates signed by it.
	TLSCertFile, TLSKeyFile, TLSClientCAFile string
	// TokenFile names a file of bearer tokens with their scopes
	// (internal/httpauth); "" needs none.
	TokenFile string
	// AllowOrigins are the browser origins that may subscribe to the
	// embedded hub's datasets from another origin (CORS), as for weir serve.
	AllowOrigins []string
	// SubscribeBuffer bounds the window of latest events each subscribed
	// dataset's shared reader keeps (hub.Options.SubscribeBuffer);
	// SubscribeCoalesce what a subscriber that fell behind it may hold
	// before it is told to resume (hub.SubscribeOptions.CoalesceBytes).
	// 0: the hub's defaults.
	SubscribeBuffer, SubscribeCoalesce int64
	// SubscribeProcs and SubscribeNice are hub.Options' (0: the hub's
	// defaults; SubscribeNice -1 is the hub's own priority).
	SubscribeProcs, SubscribeNice int
}

// External reports whether the file runs against an external cluster.
func (h *HubConfig) External() bool { return h.Kafka != nil }

// DatasetConfig declares a dataset.
type DatasetConfig struct {
	Name            string
	Partitions      int32
	Fsync           string
	RetentionTime   time.Duration
	RetentionBytes  int64
	SegmentBytes    int64
	MaxMessage      int64
	Compression     string        // compression.type: producer, none, gzip, snappy, lz4, zstd
	CleanupPolicy   string        // cleanup.policy: delete, compact, compact,delete
	DeleteRetention time.Duration // delete.retention.ms
	// MinCleanableRatio is min.cleanable.dirty.ratio: the share of a
	// compacted partition's closed bytes written since the last compaction
	// before the next runs (0: the hub's default, 0.5; -1: whatever is
	// dirty, written 0 in the file as in Kafka).
	MinCleanableRatio float64
	// RemoteStorage, LocalRetentionTime and LocalRetentionBytes are
	// Kafka's remote.storage.enable, local.retention.ms and
	// local.retention.bytes (retention: {remote: true, local_time,
	// local_bytes}).
	RemoteStorage       bool
	LocalRetentionTime  time.Duration
	LocalRetentionBytes int64
	Implicit            bool // a dead-letter dataset nobody declared
	pos                 pos
}

// topic is the dataset as a topic of an external cluster, with its
// settings as Kafka topic configs.
func (d *DatasetConfig) topic() kafkaclient.Topic {
	cfg := map[string]string{}
	if d.RetentionTime != 0 {
		cfg["retention.ms"] = strconv.FormatInt(d.RetentionTime.Milliseconds(), 10)
	}
	if d.RetentionBytes > 0 {
		cfg["retention.bytes"] = strconv.FormatInt(d.RetentionBytes, 10)
	}
	if d.SegmentBytes > 0 {
		cfg["segment.bytes"] = strconv.FormatInt(d.SegmentBytes, 10)
	}
	if d.MaxMessage > 0 {
		cfg["max.message.bytes"] = strconv.FormatInt(d.MaxMessage, 10)
	}
	if d.Fsync == "always" {
		cfg["flush.messages"] = "1"
	}
	if ct := hub.CompressionType(d.Compression); ct != "producer" {
		cfg["compression.type"] = ct
	}
	if d.CleanupPolicy != "" {
		cfg["cleanup.policy"] = d.CleanupPolicy
	}
	if d.DeleteRetention != 0 {
		cfg["delete.retention.ms"] = strconv.FormatInt(d.DeleteRetention.Milliseconds(), 10)
	}
	if d.MinCleanableRatio != 0 {
		cfg["min.cleanable.dirty.ratio"] = strconv.FormatFloat(max(d.MinCleanableRatio, 0), 'g', -1, 64)
	}
	if d.RemoteStorage {
		cfg["remote.storage.enable"] = "true"
	}
	if d.LocalRetentionTime > 0 {
		cfg["local.retention.ms"] = strconv.FormatInt(d.LocalRetentionTime.Milliseconds(), 10)
	}
	if d.LocalRetentionBytes > 0 {
		cfg["local.retention.bytes"] = strconv.FormatInt(d.LocalRetentionBytes, 10)
	}
	return kafkaclient.Topic{Name: d.Name, Partitions: d.Partitions, Configs: cfg}
}

// SourceConfig is a source and where its records go.
type SourceConfig struct {
	Name       string
	Type       string
	Component  *connectors.Config
	To         string
	KeyField   string
	Processors []*ProcessorConfig
	DeadLetter string
	pos        pos
}

// ProcessorConfig is one processor of a list.
type ProcessorConfig struct {
	Type string
	Conf *connectors.Config
	pos  pos
	bad  bool // its config has problems already reported
}

// SinkConfig is one sink of a pipeline.
type SinkConfig struct {
	Name      string
	Type      string
	Component *connectors.Config
	Batching  Batching
	Retry     Retry
	pos       pos
}

// Batching bounds what one sink write holds and how long records may wait
// for a fuller batch.
type Batching struct {
	Count  int
	Bytes  int64
	Period time.Duration
}

// Retry says how a failing sink write is retried: transient errors with
// capped exponential backoff, without limit unless Attempts bounds them
// (then the records go to the dead-letter dataset).
type Retry struct {
	Attempts   int // tries in all; 0: no limit
	Backoff    time.Duration
	MaxBackoff time.Duration
	// Mode "topics" retries without blocking: see retrytopics.go. Delays
	// are the waits before each retry.
	Mode   string
	Delays []time.Duration
	level  int // for the sink of a retry pipeline: the retry dataset it reads (1 up)
}

// PipelineConfig fans a dataset out to sinks.
type PipelineConfig struct {
	Name       string
	From       []string
	Group      string
	Broadcast  bool
	Start      string
	Processors []*ProcessorConfig
	To         []*SinkConfig
	DeadLetter string
	// OnCorrupt is what the pipeline does at a stored batch it cannot
	// decode: "fail" (the default) or "dead_letter".
	OnCorrupt string
	// Processing is ProcessingAtLeastOnce (the default) or
	// ProcessingExactlyOnce: the sinks' writes and the source offsets
	// commit in one transaction.
	Processing string
	// TransactionalID names the pipeline's transactional producer with
	// exactly_once; default "weir-<group>-<pipeline>".
	TransactionalID string
	pos             pos
	retryOf         string // for a retry pipeline (retrytopics.go): the pipeline it retries for
}

// Processing values.
const (
	ProcessingAtLeastOnce = "at_least_once"
	ProcessingExactlyOnce = "exactly_once"
)

// OnCorrupt values.
const (
	OnCorruptFail       = "fail"
	OnCorruptDeadLetter = "dead_letter"
)

type pos struct{ line, col int }

// Error is one problem in a pipeline file, at its place.
type Error struct {
	File         string
	Line, Column int
	Msg          string
}

func (e Error) Error() string { return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Column, e.Msg) }

// Errors are all the problems found in a file, in file order. Its Error
// has one line per problem.
type Errors []Error

func (es Errors) Error() string {
	var b strings.Builder
	for i, e := range es {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

// loader gathers problems while decoding.
type loader struct {
	file string
	reg  *connectors.Registry
	env  func(string) (string, bool)
	errs Errors
	// externalHub: the file's hub is hub.kafka (known before pipelines).
	externalHub bool
}

func (l *loader) errAt(n *yaml.Node, format string, args ...any) {
	line, col := 0, 0
	if n != nil {
		line, col = n.Line, n.Column
	}
	l.errs = append(l.errs, Error{File: l.file, Line: line, Column: col, Msg: fmt.Sprintf(format, args...)})
}

func (l *loader) add(errs []connectors.ConfigError) {
	for _, e := range errs {
		l.errs = append(l.errs, Error{File: l.file, Line: e.Line, Column: e.Column, Msg: e.Msg})
	}
}

// LoadOptions tune Load.
type LoadOptions struct {
	// Registry of components; default connectors.Default.
	Registry *connectors.Registry
	// Env looks up environment variables; default os.LookupEnv.
	Env func(string) (string, bool)
}

// LoadFile reads and checks a pipeline file. On problems it returns
// Errors, every one found, as file:line:col: message.
func LoadFile(path string, opts LoadOptions) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Load(path, b, opts)
}

// Load checks the pipeline file content src, named file in errors.
func Load(file string, src []byte, opts LoadOptions) (*Config, error) {
	l := &loader{file: file, reg: opts.Registry, env: opts.Env}
	if l.reg == nil {
		l.reg = connectors.Default
	}
	if l.env == nil {
		l.env = os.LookupEnv
	}
	src = l.protectEnv(src)
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(src))
	if err := dec.Decode(&doc); err != nil {
		line, col := 1, 1
		msg := strings.TrimPrefix(err.Error(), "yaml: ")
		if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
			fmt.Sscan(m[1], &line)
			msg = strings.TrimPrefix(msg, m[0])
		}
		if errors.Is(err, errEOF) || len(bytes.TrimSpace(src)) == 0 {
			msg = "the file is empty; it needs at least a pipeline or a source"
		}
		return nil, append(l.errs, Error{File: file, Line: line, Column: col, Msg: restoreEnv(msg)})
	}
	root := resolveAliases(doc.Content[0], map[*yaml.Node]bool{})
	l.interpolate(root)
	cfg := l.decode(root)
	// Processors are built too, so that expressions, patterns and route
	// targets are checked in the same pass as the structure.
	l.errs = append(l.errs, checkProcessors(cfg, l.reg, file)...)
	if len(l.errs) > 0 {
		sort.SliceStable(l.errs, func(i, j int) bool {
			if l.errs[i].Line != l.errs[j].Line {
				return l.errs[i].Line < l.errs[j].Line
			}
			return l.errs[i].Column < l.errs[j].Column
		})
		return nil, l.errs
	}
	cfg.File = file
	return cfg, nil
}

// resolveAliases replaces every alias (*name) under n by the node its
// anchor (&name) marks, and merges the mappings of merge keys (<<: *name)
// into theirs, so that the rest of the loader sees plain lists and maps.
// Shared nodes are visited once: a "billion laughs" file costs its size.
func resolveAliases(n *yaml.Node, seen map[*yaml.Node]bool) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n == nil || seen[n] {
		return n
	}
	seen[n] = true
	for i, c := range n.Content {
		n.Content[i] = resolveAliases(c, seen)
	}
	if n.Kind != yaml.MappingNode {
		return n
	}
	var merged []*yaml.Node
	have := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := n.Content[i]; k.Kind == yaml.ScalarNode && k.Tag != "!!merge" {
			have[k.Value] = true
		}
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.Tag != "!!merge" {
			merged = append(merged, k, v)
			continue
		}
		from := []*yaml.Node{v}
		if v.Kind == yaml.SequenceNode {
			from = v.Content
		}
		for _, m := range from {
			if m.Kind != yaml.MappingNode {
				merged = append(merged, k, v) // left for the loader to report
				break
			}
			for j := 0; j+1 < len(m.Content); j += 2 {
				if mk := m.Content[j]; !have[mk.Value] {
					have[mk.Value] = true
					merged = append(merged, mk, m.Content[j+1])
				}
			}
		}
	}
	n.Content = merged
	return n
}

var (
	yamlLineRE = regexp.MustCompile(`^line (\d+): `)
	errEOF     = errors.New("EOF")
)

// Placeholders of "${" and its closing "}" while the file is parsed: a
// "{" or "}" would end a plain scalar in flow style (hub: {data_dir:
// ${DATA_DIR}}), these do not. Each is one character for one, so that
// columns stay right.
const (
	envOpen1 = '\uE000' // $
	envOpen2 = '\uE001' // {
	envClose = '\uE002' // }
)

// protectEnv replaces the "${" and "}" of every ${...} in src by
// placeholders that YAML takes as text anywhere, and reports an unclosed
// "${" (no "}" on its line) at its place.
func (l *loader) protectEnv(src []byte) []byte {
	if !bytes.Contains(src, []byte("${")) {
		return src
	}
	var out bytes.Buffer
	out.Grow(len(src) + 64)
	for lineNo, line := range bytes.SplitAfter(src, []byte("\n")) {
		for {
			i := bytes.Index(line, []byte("${"))
			if i < 0 {
				out.Write(line)
				break
			}
			j := envEnd(line[i+2:])
			if j >= 0 {
				j += 2
			}
			if j < 0 && i > 0 && line[i-1] == '$' {
				// $${ is a literal ${, whatever follows.
				out.Write(line[:i+2])
				line = line[i+2:]
				continue
			}
			if j < 0 {
				col := utf8.RuneCount(line[:i]) + 1
				l.errs = append(l.errs, Error{File: l.file, Line: lineNo + 1, Column: col,
					Msg: fmt.Sprintf("unclosed or malformed ${ in %q: write ${NAME} or ${NAME:default} (and $${ for a literal ${)", strings.TrimSpace(string(line)))})
				out.Write(line)
				break
			}
			out.Write(line[:i])
			out.WriteRune(envOpen1)
			out.WriteRune(envOpen2)
			out.Write(line[i+2 : i+j])
			out.WriteRune(envClose)
			line = line[i+j+1:]
		}
	}
	return out.Bytes()
}

// envEnd is the index of the "}" closing NAME or NAME:default at the
// start of b, or -1.
func envEnd(b []byte) int {
	n := 0
	for n < len(b) && (b[n] == '_' || b[n] >= 'A' && b[n] <= 'Z' || b[n] >= 'a' && b[n] <= 'z' || n > 0 && b[n] >= '0' && b[n] <= '9') {
		n++
	}
	if n == 0 || n == len(b) {
		return -1
	}
	switch b[n] {
	case '}':
		return n
	case ':':
		if k := bytes.IndexByte(b[n:], '}'); k >= 0 {
			return n + k
		}
	}
	return -1
}

var envRestorer = strings.NewReplacer(string(envOpen1)+string(envOpen2), "${", string(envClose), "}")

// restoreEnv puts back the "${" and "}" that protectEnv replaced.
func restoreEnv(s string) string {
	if !strings.ContainsRune(s, envOpen1) && !strings.ContainsRune(s, envClose) {
		return s
	}
	return envRestorer.Replace(s)
}

// interpolate replaces ${VAR} and ${VAR:default} in every scalar; $${ is
// a literal ${.
func (l *loader) interpolate(n *yaml.Node) {
	n.Value = restoreEnv(n.Value)
	if n.Kind == yaml.ScalarNode && strings.Contains(n.Value, "${") {
		n.Value = envRE.ReplaceAllStringFunc(n.Value, func(m string) string {
			if strings.HasPrefix(m, "$$") {
				return m[1:]
			}
			inner := m[2 : len(m)-1]
			name, def, hasDef := strings.Cut(inner, ":")
			if v, ok := l.env(name); ok {
				return v
			}
			if hasDef {
				return def
			}
			l.errAt(n, "environment variable %s is not set (write ${%s:default} to give a default)", name, name)
			return m
		})
		if n.Tag != "!!str" && n.Style == 0 {
			n.Tag = "" // let the new text decide its type again
			n.Tag = guessTag(n.Value)
		}
	}
	for _, c := range n.Content {
		l.interpolate(c)
	}
}

var envRE = regexp.MustCompile(`\$?\$\{[A-Za-z_][A-Za-z0-9_]*(:[^}]*)?\}`)

func guessTag(s string) string {
	var v any
	if err := yaml.Unmarshal([]byte(s), &v); err != nil {
		return "!!str"
	}
	switch v.(type) {
	case bool:
		return "!!bool"
	case int, int64, uint64:
		return "!!int"
	case float64:
		return "!!float"
	case nil:
		return "!!null"
	}
	return "!!str"
}

// Specs of the file's own sections, checked with the same machinery as
// components (and rendered into the JSON Schema).
var (
	topFields = []connectors.Field{
		{Name: "hub", Type: connectors.TypeObject, Fields: hubFields, Doc: "Which hub to run against: the embedded one (default) or an external Kafka-compatible cluster."},
		{Name: "http", Type: connectors.TypeObject, Doc: "The HTTP front door of `weir run`: Prometheus metrics, health and readiness, and subscriptions to the embedded hub's datasets.", Fields: []connectors.Field{
			{Name: "listen", Type: connectors.TypeString, Doc: "Serve /metrics, /healthz, /readyz and, with the embedded hub, dataset subscriptions (GET /v1/datasets/NAME/subscribe, SSE or WebSocket) on this address (a bare port binds 127.0.0.1). Default: off."},
			{Name: "partition_metrics", Type: connectors.TypeBool, Default: false, Doc: "Also export offsets, produced records and disk bytes per partition."},
			{Name: "tls", Type: connectors.TypeObject, Doc: "Serve HTTPS; the certificate is reloaded when its files change.", Fields: []connectors.Field{
				{Name: "cert_file", Type: connectors.TypeString, Doc: "PEM certificate chain."},
				{Name: "key_file", Type: connectors.TypeString, Doc: "PEM private key."},
				{Name: "client_ca_file", Type: connectors.TypeString, Doc: "Require client certificates signed by these CAs (mutual TLS)."},
			}},
			{Name: "token_file", Type: connectors.TypeString, Doc: "File of bearer tokens, one a line with its scopes (metrics, subscribe, admin, *), read again when it changes; /healthz and /readyz stay open. Default: no token needed.", Example: "/etc/weir/http-tokens"},
			{Name: "allow_origins", Type: connectors.TypeStrings, Doc: "Browser origins (scheme://host:port, \"null\" for a page opened from a file, or \"*\") whose pages may subscribe from another origin. Default: same origin only."},
			{Name: "subscribe_buffer", Type: connectors.TypeSize, Min: "1KiB", Max: "1TiB", Doc: "Memory for the latest events of each subscribed dataset, shared by its subscribers (read at start). Default 64MiB."},
			{Name: "subscribe_coalesce", Type: connectors.TypeSize, Min: "1KiB", Max: "1TiB", Doc: "What a subscriber that fell behind may hold as the latest value per key before it is told to resume. Default 16MiB."},
			{Name: "subscribe_procs", Type: connectors.TypeInt, Min: 0, Doc: "Processors that delivery to subscribers (every dataset's shared readers and writers) may use at once; 0: all but one, at least 1. Default 0."},
			{Name: "subscribe_nice", Type: connectors.TypeInt, Min: 0, Max: 19, Doc: "How much lower than the process's own the priority of delivery to subscribers is, as a nice value added to it (0: the same; Linux only), so that sources and pipelines go first when processors are short. Default 10."},
		}},
		{Name: "datasets", Type: connectors.TypeAny, Doc: "Datasets by name, with partitions, retention and fsync."},
		{Name: "sources", Type: connectors.TypeAny, Doc: "Sources by name: each reads from outside into a dataset."},
		{Name: "pipelines", Type: connectors.TypeAny, Doc: "Pipelines by name: each fans a dataset out through processors to sinks."},
		{Name: "tests", Type: connectors.TypeAny, Doc: "Unit tests of the pipelines, run by `weir test`."},
	}
	hubFields = []connectors.Field{
		{Name: "data_dir", Type: connectors.TypeString, Default: "./data", Doc: "Directory of the embedded hub."},
		{Name: "listen", Type: connectors.TypeString, Doc: "Also serve the Kafka protocol on this address from the embedded hub."},
		{Name: "advertise", Type: connectors.TypeString, Doc: "host:port announced to Kafka clients (default: listen)."},
		{Name: "fsync", Type: connectors.TypeString, Default: "interval", Enum: []string{"always", "interval", "never"}, Doc: "Default fsync policy of datasets."},
		{Name: "auto_create", Type: connectors.TypeBool, Default: false, Doc: "Allow datasets the file does not declare (they are created with defaults)."},
		{Name: "cold_store", Type: connectors.TypeString, Doc: "Object store that datasets with retention.remote move closed segments to: s3://BUCKET/PREFIX?endpoint=http://HOST:PORT or file:///path."},
		{Name: "cold_upload_rate", Type: connectors.TypeSize, Min: "1KiB", Max: "1TiB", Doc: "Pace uploads to hub.cold_store to this many bytes a second, all datasets together (like weir serve --cold-upload-rate; Kafka's remote.log.manager.copy.max.bytes.per.second). A rate below what producers write keeps the difference on local disk. Default: unpaced."},
		{Name: "kafka", Type: connectors.TypeObject, Doc: "Run against an external Kafka-compatible cluster instead of the embedded hub: " +
			"brokers, client id, TLS and SASL as for the kafka source and sink.", Fields: kafkaconf.Fields()},
	}
	datasetFields = []connectors.Field{
		{Name: "partitions", Type: connectors.TypeInt, Default: 1, Doc: "Number of partitions."},
		{Name: "fsync", Type: connectors.TypeString, Enum: []string{"always", "interval", "never"}, Doc: "always: acknowledged records are on disk; interval: flushed every 10ms; never: left to the OS. Default: hub.fsync."},
		{Name: "retention", Type: connectors.TypeObject, Doc: "How long records are kept.", Fields: []connectors.Field{
			{Name: "time", Type: connectors.TypeDuration, Doc: "Delete segments whose newest record is older (7d, forever). Default 7d."},
			{Name: "bytes", Type: connectors.TypeSize, Doc: "Delete the oldest segments while a partition is larger (10GiB). Default: no limit."},
			{Name: "remote", Type: connectors.TypeBool, Doc: "Move closed segments to hub.cold_store (remote.storage.enable); time and bytes then count local and remote together."},
			{Name: "local_time", Type: connectors.TypeDuration, Doc: "With remote: delete the local copy of an uploaded segment whose newest record is older (local.retention.ms). Default: keep until time or bytes delete it."},
			{Name: "local_bytes", Type: connectors.TypeSize, Doc: "With remote: delete local copies of uploaded segments while the local ones are larger (local.retention.bytes)."},
		}},
		{Name: "segment_bytes", Type: connectors.TypeSize, Doc: "Segment size (default 1GiB)."},
		{Name: "max_message_bytes", Type: connectors.TypeSize, Doc: "Largest record batch accepted (default 1MiB)."},
		{Name: "compression", Type: connectors.TypeString, Default: "producer", Enum: []string{"producer", "none", "gzip", "snappy", "lz4", "zstd"},
			Doc: "Kafka's compression.type: the codec of the batches Weir's sources and dataset sinks write into the dataset. producer: lz4 for Weir's own writers, and what Kafka producers send is kept as they sent it. lz4 stores JSON logs in about a third of the bytes of none for some more CPU per record; none when CPU counts more than disk (make bench-pipeline COMPRESSION=none measures both)."},
		{Name: "cleanup_policy", Type: connectors.TypeString, Default: "delete", Enum: []string{"delete", "compact", "compact,delete"},
			Doc: "Kafka's cleanup.policy. delete: retention deletes old segments; compact: keyed compaction keeps the latest record of every key for ever (a cache's table, what subscriptions snapshot); compact,delete: both."},
		{Name: "delete_retention", Type: connectors.TypeDuration,
			Doc: "Kafka's delete.retention.ms: how long compaction keeps a delete (a record with a null value) for readers behind. Default 24h."},
		{Name: "min_cleanable_dirty_ratio", Type: connectors.TypeFloat,
			Doc: "Kafka's min.cleanable.dirty.ratio: compaction waits until this share of the closed bytes was written since the last one (it then reads only those to find the keys). Default 0.5."},
	}
	sourceCommon = []connectors.Field{
		{Name: "to", Type: connectors.TypeString, Required: true, Doc: "The dataset records go to."},
		{Name: "key", Type: connectors.TypeString, Doc: "A field whose value becomes the record key (and picks the partition)."},
		{Name: "processors", Type: connectors.TypeAny, Doc: "Processors applied before storing (e.g. parse)."},
		{Name: "dead_letter", Type: connectors.TypeString, Doc: "Dataset for records the processors reject (default: <to>-dead)."},
	}
	sinkCommon = []connectors.Field{
		{Name: "name", Type: connectors.TypeString, Doc: "Name for routes and stats (default: the sink type, numbered if repeated)."},
		{Name: "batching", Type: connectors.TypeObject, Doc: "Size of writes.", Fields: []connectors.Field{
			{Name: "count", Type: connectors.TypeInt, Default: 10000, Doc: "Most records in one write."},
			{Name: "bytes", Type: connectors.TypeSize, Default: "1MiB", Doc: "Most bytes in one write; also how much the pipeline waits to gather."},
			{Name: "period", Type: connectors.TypeDuration, Default: "500ms", Doc: "Longest wait for a fuller batch."},
		}},
		{Name: "retry", Type: connectors.TypeObject, Doc: "Retries of failed writes. A transient error (a 500, a full disk, a timeout) is retried with capped exponential backoff, holding the pipeline back; a permanent one (a 400 mapping error, a record the sink cannot encode) sends the record to the dead-letter dataset at once.", Fields: []connectors.Field{
			{Name: "attempts", Type: connectors.TypeInt, Default: 0, Doc: "Tries in all before records that keep failing transiently go to the dead-letter dataset; 0 (the default) retries without limit. An unreachable sink is always retried without limit."},
			{Name: "backoff", Type: connectors.TypeDuration, Default: "100ms", Doc: "First wait; doubles each try, with jitter."},
			{Name: "max_backoff", Type: connectors.TypeDuration, Default: "10s", Doc: "Longest wait between tries."},
			{Name: "mode", Type: connectors.TypeString, Default: "blocking", Enum: []string{"blocking", "topics"}, Doc: "blocking: retry in place, holding the partition back (the default; keeps order). topics: a record that fails transiently goes to the retry dataset <pipeline>.<sink>.retry-1 and is written again after the first delay by a pipeline of its own, then to retry-2 after the second, ..., then to the dead-letter dataset: one bad record or a slow dependency does not hold back the others, at the cost of their order."},
			{Name: "delays", Type: connectors.TypeStrings, Doc: "With mode topics: the wait before each retry, e.g. [10s, 1m, 10m]."},
		}},
	}
	pipelineFields = []connectors.Field{
		{Name: "from", Type: connectors.TypeStrings, Required: true, Doc: "Dataset(s) to read."},
		{Name: "group", Type: connectors.TypeString, Doc: "Consumer group (default: the pipeline name); workers sharing it share partitions."},
		{Name: "broadcast", Type: connectors.TypeBool, Doc: "Read every record of every partition here, instead of sharing them in a group."},
		{Name: "start", Type: connectors.TypeString, Default: "earliest", Enum: []string{"earliest", "latest"}, Doc: "Where to start without a committed position."},
		{Name: "processors", Type: connectors.TypeAny, Doc: "Processors, in order."},
		{Name: "to", Type: connectors.TypeAny, Doc: "Sinks: every record goes to each (or to the ones a route picks)."},
		{Name: "dead_letter", Type: connectors.TypeString, Doc: "Dataset for records that fail (default: <pipeline>-dead)."},
		{Name: "on_corrupt", Type: connectors.TypeString, Default: OnCorruptFail, Enum: []string{OnCorruptFail, OnCorruptDeadLetter}, Doc: "What to do at a stored record batch that cannot be decoded (an old log, a disk error): fail stops at it, logs it and fails --until-drained; dead_letter sends one record describing the bad range (dataset, partition, base and last offset, reason) to the dead-letter dataset, counts its offsets as CORRUPT, commits past it and goes on."},
		{Name: "processing", Type: connectors.TypeString, Default: ProcessingAtLeastOnce, Enum: []string{ProcessingAtLeastOnce, ProcessingExactlyOnce},
			Doc: "at_least_once: offsets are committed after the sinks wrote the records; a crash in between writes them again. exactly_once: each poll's records are written and its offsets committed in one transaction of the hub (Kafka transactions, also over hub.kafka), so a reader with read_committed sees every record once whatever crashes; every sink must write through the hub (dataset), and dead letters and retry datasets are written in the transaction too; or one kafka sink alone, whose transactions on its own cluster also carry the source positions (see the kafka sink). The transactional id is transactional_id; a restart fences the earlier run and aborts what it left open."},
		{Name: "transactional_id", Type: connectors.TypeString, Doc: "With processing: exactly_once, the transactional id (default weir-<group>-<pipeline>). Workers sharing a group over hub.kafka each need their own, stable across restarts, e.g. weir-archive-${HOSTNAME}."},
	}
)

func (l *loader) parse(name string, fields []connectors.Field, n *yaml.Node) *connectors.Config {
	what, rest, _ := strings.Cut(name, " ")
	if name == "" {
		what, rest = "the file", ""
	}
	c, errs := connectors.ParseFields(what, rest, fields, n)
	l.add(errs)
	return c
}

// mapping iterates a mapping node's pairs in order.
func (l *loader) mapping(n *yaml.Node, what string, fn func(k, v *yaml.Node)) {
	if n == nil || (n.Kind == yaml.ScalarNode && n.Tag == "!!null") {
		return
	}
	if n.Kind != yaml.MappingNode {
		l.errAt(n, "%s must be a mapping of names to definitions", what)
		return
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		if seen[k.Value] {
			l.errAt(k, "%s %q is defined twice", what, k.Value)
			continue
		}
		seen[k.Value] = true
		fn(k, n.Content[i+1])
	}
}

func (l *loader) decode(root *yaml.Node) *Config {
	cfg := &Config{}
	if root.Kind != yaml.MappingNode {
		l.errAt(root, "a pipeline file is a mapping with hub, datasets, sources and pipelines")
		return cfg
	}
	top := l.parse("", topFields, root)
	h := top.Object("hub")
	cfg.Hub = HubConfig{DataDir: h.String("data_dir"), Listen: h.String("listen"), Advertise: h.String("advertise"),
		Fsync: h.String("fsync"), AutoCreate: h.Bool("auto_create"), ColdStore: h.String("cold_store"),
		ColdUploadRate: h.Size("cold_upload_rate")}
	if k := h.Object("kafka"); h.Has("kafka") {
		conn, err := kafkaconf.Parse(k)
		var ce connectors.ConfigError
		switch {
		case errors.As(err, &ce):
			l.add([]connectors.ConfigError{ce})
		case err != nil:
			l.errAt(h.Node("kafka"), "hub.kafka: %v", err)
		}
		if conn == nil {
			conn = &kafkaconf.Conn{} // reported above; External all the same
		}
		cfg.Hub.Kafka = conn
		if cfg.Hub.Listen != "" {
			l.errAt(h.Node("listen"), "hub.listen serves the embedded hub; it cannot be combined with hub.kafka")
		}
	}
	hc := top.Object("http")
	ht := hc.Object("tls")
	cfg.HTTP = HTTPConfig{Listen: hc.String("listen"), PartitionMetrics: hc.Bool("partition_metrics"), TokenFile: hc.String("token_file"), AllowOrigins: hc.Strings("allow_origins"),
		SubscribeBuffer: hc.Size("subscribe_buffer"), SubscribeCoalesce: hc.Size("subscribe_coalesce"), SubscribeProcs: hc.Int("subscribe_procs"),
		TLSCertFile: ht.String("cert_file"), TLSKeyFile: ht.String("key_file"), TLSClientCAFile: ht.String("client_ca_file")}
	if hc.Has("subscribe_nice") {
		cfg.HTTP.SubscribeNice = hc.Int("subscribe_nice")
		if cfg.HTTP.SubscribeNice == 0 {
			cfg.HTTP.SubscribeNice = -1 // hub.Options: the hub's own priority
		}
	}
	if (cfg.HTTP.TLSCertFile == "") != (cfg.HTTP.TLSKeyFile == "") || cfg.HTTP.TLSClientCAFile != "" && cfg.HTTP.TLSCertFile == "" {
		l.errAt(hc.Node("tls"), "http.tls needs cert_file and key_file")
	}
	declared := map[string]*DatasetConfig{}
	l.mapping(top.Node("datasets"), "dataset", func(k, v *yaml.Node) {
		if err := validName(k.Value); err != "" {
			l.errAt(k, "dataset name %q: %s", k.Value, err)
		}
		c := l.parse("dataset "+k.Value, datasetFields, v)
		ds := &DatasetConfig{Name: k.Value, Partitions: int32(c.Int("partitions")), Fsync: c.String("fsync"),
			RetentionTime: c.Object("retention").Duration("time"), RetentionBytes: c.Object("retention").Size("bytes"),
			SegmentBytes: c.Size("segment_bytes"), MaxMessage: c.Size("max_message_bytes"), Compression: c.String("compression"),
			CleanupPolicy: c.String("cleanup_policy"), DeleteRetention: c.Duration("delete_retention"),
			MinCleanableRatio: c.Float("min_cleanable_dirty_ratio"),
			RemoteStorage:     c.Object("retention").Bool("remote"), LocalRetentionTime: c.Object("retention").Duration("local_time"),
			LocalRetentionBytes: c.Object("retention").Size("local_bytes"),
			pos:                 pos{k.Line, k.Column}}
		if ds.Partitions < 1 {
			l.errAt(v, "dataset %s needs at least 1 partition", k.Value)
		}
		if r := ds.MinCleanableRatio; c.Has("min_cleanable_dirty_ratio") {
			switch {
			case r < 0 || r > 1:
				l.errAt(c.Node("min_cleanable_dirty_ratio"), "dataset %s: min_cleanable_dirty_ratio %v: want a number from 0 to 1", k.Value, r)
			case r == 0:
				ds.MinCleanableRatio = -1 // compact whatever is dirty, as Kafka's 0
			}
		}
		cfg.Datasets = append(cfg.Datasets, ds)
		declared[ds.Name] = ds
	})
	var checkSources []*SourceConfig
	l.mapping(top.Node("sources"), "source", func(k, v *yaml.Node) {
		if s := l.source(k, v); s != nil {
			checkSources = append(checkSources, s)
			if s.Type != "" {
				cfg.Sources = append(cfg.Sources, s)
			}
		}
	})
	l.externalHub = cfg.Hub.External()
	l.mapping(top.Node("pipelines"), "pipeline", func(k, v *yaml.Node) {
		if p := l.pipeline(k, v); p != nil {
			cfg.Pipelines = append(cfg.Pipelines, p)
		}
	})
	if len(checkSources) == 0 && len(cfg.Pipelines) == 0 && len(l.errs) == 0 {
		l.errAt(root, "the file defines no source and no pipeline: nothing to run")
	}
	// Datasets referred to must be declared, unless auto creation is on.
	check := func(name string, n pos, what string) {
		if _, ok := declared[name]; ok || cfg.Hub.AutoCreate || cfg.Hub.External() {
			return
		}
		msg := fmt.Sprintf("%s %q, which is not declared under datasets", what, name)
		if s := closestName(name, declared); s != "" {
			msg += fmt.Sprintf(" (did you mean %q?)", s)
		} else {
			msg += " (declare it, or set hub.auto_create: true)"
		}
		l.errs = append(l.errs, Error{File: l.file, Line: n.line, Column: n.col, Msg: msg})
	}
	implicit := func(name string) {
		if _, ok := declared[name]; !ok {
			ds := &DatasetConfig{Name: name, Partitions: 1, Implicit: true, Compression: "producer"}
			declared[name] = ds
			cfg.Datasets = append(cfg.Datasets, ds)
		}
	}
	for _, s := range checkSources {
		if s.To == "" {
			continue
		}
		check(s.To, s.pos, "source "+s.Name+" writes to dataset")
		implicit(s.DeadLetter)
	}
	for _, p := range cfg.Pipelines {
		for _, f := range p.From {
			check(f, p.pos, "pipeline "+p.Name+" reads dataset")
		}
		implicit(p.DeadLetter)
		for _, sc := range p.To { // the retry datasets of retry mode topics
			if sc.Retry.Mode == "topics" {
				for i := range sc.Retry.Delays {
					implicit(retryDataset(p.Name, sc.Name, i+1))
				}
			}
		}
	}
	// Datasets that components name in fields of their own (the dataset
	// source and sink), and loops: a component reading what it writes.
	for _, s := range checkSources {
		l.datasetRefs(connectors.SourceKind, s.Type, s.Component, "source "+s.Name+" reads dataset", []string{s.To},
			"which it also writes to: every record would come back", check)
	}
	for _, p := range cfg.Pipelines {
		for _, sc := range p.To {
			l.datasetRefs(connectors.SinkKind, sc.Type, sc.Component, "sink "+sc.Name+" of pipeline "+p.Name+" writes to dataset", p.From,
				"which the pipeline reads: every record would come back", check)
		}
	}
	if n := top.Node("tests"); n != nil {
		cfg.Tests = l.tests(n, cfg)
	}
	return cfg
}

// datasetRefs checks the datasets a component names in its fields marked
// Dataset (templates are left to run time), and reports one that is also
// in loop, saying why: records would go round for ever.
func (l *loader) datasetRefs(kind connectors.Kind, typ string, comp *connectors.Config, what string, loop []string, why string, check func(string, pos, string)) {
	spec, ok := l.reg.Spec(kind, typ)
	if !ok || comp == nil {
		return
	}
	for _, f := range spec.Fields {
		n := comp.Node(f.Name)
		if !f.Dataset || n == nil {
			continue
		}
		names := []string{comp.String(f.Name)}
		if f.Type == connectors.TypeStrings {
			names = comp.Strings(f.Name)
		}
		for _, name := range names {
			if name == "" || strings.Contains(name, "{{") {
				continue
			}
			check(name, pos{n.Line, n.Column}, what)
			if slices.Contains(loop, name) {
				l.errAt(n, "%s %q, %s", what, name, why)
			}
		}
	}
}

func validName(name string) string {
	if name == "" || len(name) > 249 {
		return "1 to 249 characters"
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return "letters, digits, '.', '_' and '-' only"
		}
	}
	return ""
}

func closestName[T any](name string, m map[string]T) string {
	return connectors.Suggest(name, maps.Keys(m))
}

// component splits a mapping into its one component key (a registered
// component of kind) and the common keys, which it returns as a mapping
// node for checking.
func (l *loader) component(n *yaml.Node, kind connectors.Kind, common []connectors.Field, what string) (string, *connectors.Config, *yaml.Node) {
	if n.Kind != yaml.MappingNode {
		l.errAt(n, "%s must be a mapping with one %s type (%s)", what, kind, strings.Join(l.reg.Names(kind), ", "))
		return "", nil, nil
	}
	commonNode := &yaml.Node{Kind: yaml.MappingNode, Line: n.Line, Column: n.Column}
	var typ string
	var typeKey, typeVal *yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		isCommon := false
		for _, f := range common {
			if f.Name == k.Value {
				isCommon = true
			}
		}
		if isCommon {
			commonNode.Content = append(commonNode.Content, k, v)
			continue
		}
		if _, ok := l.reg.Spec(kind, k.Value); !ok {
			msg := fmt.Sprintf("unknown %s %q in %s", kind, k.Value, what)
			if s := closestIn(k.Value, append(l.reg.Names(kind), names(common)...)); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			} else {
				msg += fmt.Sprintf(" (%ss: %s)", kind, strings.Join(l.reg.Names(kind), ", "))
			}
			l.errAt(k, "%s", msg)
			continue
		}
		if typ != "" {
			l.errAt(k, "%s has two %s types, %q and %q; use one per entry", what, kind, typ, k.Value)
			continue
		}
		typ, typeKey, typeVal = k.Value, k, v
	}
	if typ == "" {
		if len(l.errs) == 0 || l.errs[len(l.errs)-1].Line < n.Line {
			l.errAt(n, "%s names no %s type (%s)", what, kind, strings.Join(l.reg.Names(kind), ", "))
		}
		return "", nil, commonNode
	}
	spec, _ := l.reg.Spec(kind, typ)
	c, errs := connectors.ParseConfig(spec, typeVal)
	l.add(errs)
	_ = typeKey
	return typ, c, commonNode
}

func names(fields []connectors.Field) []string {
	out := make([]string, len(fields))
	for i, f := range fields {
		out[i] = f.Name
	}
	return out
}

func closestIn(name string, options []string) string {
	return connectors.Suggest(name, slices.Values(options))
}

func (l *loader) source(k, v *yaml.Node) *SourceConfig {
	typ, comp, common := l.component(v, connectors.SourceKind, sourceCommon, "source "+k.Value)
	if common == nil {
		return nil
	}
	c := l.parse("source "+k.Value, sourceCommon, common)
	s := &SourceConfig{Name: k.Value, Type: typ, Component: comp, To: c.String("to"), KeyField: c.String("key"),
		DeadLetter: c.String("dead_letter"), pos: pos{k.Line, k.Column}}
	if s.DeadLetter == "" && s.To != "" {
		s.DeadLetter = s.To + "-dead"
	}
	s.Processors = l.processors(c.Node("processors"), "source "+k.Value)
	return s
}

func (l *loader) processors(n *yaml.Node, owner string) []*ProcessorConfig {
	if n == nil || (n.Kind == yaml.ScalarNode && n.Tag == "!!null") {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		l.errAt(n, "processors of %s must be a list, each item one processor like `- filter: 'level != \"debug\"'`", owner)
		return nil
	}
	var out []*ProcessorConfig
	for i, item := range n.Content {
		what := fmt.Sprintf("processor %d of %s", i+1, owner)
		if item.Kind == yaml.ScalarNode {
			if _, ok := l.reg.Spec(connectors.ProcessorKind, item.Value); ok {
				// A bare name: a processor with no config.
				item = &yaml.Node{Kind: yaml.MappingNode, Line: item.Line, Column: item.Column,
					Content: []*yaml.Node{item, {Kind: yaml.ScalarNode, Tag: "!!null", Line: item.Line, Column: item.Column}}}
			}
		}
		if item.Kind == yaml.MappingNode && len(item.Content) > 2 {
			l.errAt(item.Content[2], "%s has more than one key; write each processor as its own list item", what)
			continue
		}
		before := len(l.errs)
		typ, comp, _ := l.component(item, connectors.ProcessorKind, nil, what)
		if typ != "" {
			out = append(out, &ProcessorConfig{Type: typ, Conf: comp, pos: pos{item.Line, item.Column}, bad: len(l.errs) > before})
		}
	}
	return out
}

func (l *loader) pipeline(k, v *yaml.Node) *PipelineConfig {
	c := l.parse("pipeline "+k.Value, pipelineFields, v)
	p := &PipelineConfig{Name: k.Value, From: c.Strings("from"), Group: c.String("group"), Broadcast: c.Bool("broadcast"),
		Start: c.String("start"), DeadLetter: c.String("dead_letter"), OnCorrupt: c.String("on_corrupt"),
		Processing: c.String("processing"), TransactionalID: c.String("transactional_id"), pos: pos{k.Line, k.Column}}
	if p.OnCorrupt == "" {
		p.OnCorrupt = OnCorruptFail
	}
	if p.Processing == "" {
		p.Processing = ProcessingAtLeastOnce
	}
	if p.Group == "" {
		p.Group = p.Name
	}
	if p.TransactionalID == "" {
		p.TransactionalID = "weir-" + p.Group + "-" + p.Name
	}
	exactlyOnce := p.Processing == ProcessingExactlyOnce
	if n := c.Node("transactional_id"); n != nil && !exactlyOnce {
		l.errAt(n, "transactional_id is for processing: exactly_once; pipeline %s processes at least once", k.Value)
	}
	if exactlyOnce && p.Broadcast {
		l.errAt(c.Node("processing"), "processing: exactly_once needs a consumer group; pipeline %s reads as a broadcast", k.Value)
	}
	if p.DeadLetter == "" {
		p.DeadLetter = p.Name + "-dead"
	}
	p.Processors = l.processors(c.Node("processors"), "pipeline "+k.Value)
	to := c.Node("to")
	if to == nil && v.Kind == yaml.MappingNode {
		l.errAt(v, "pipeline %s needs to: a list of sinks", k.Value)
	}
	if to != nil && to.Kind == yaml.MappingNode {
		to = &yaml.Node{Kind: yaml.SequenceNode, Line: to.Line, Column: to.Column, Content: []*yaml.Node{to}}
	}
	if to != nil && to.Kind != yaml.SequenceNode {
		l.errAt(to, "to: of pipeline %s must be a list of sinks like `- file: {path: out.ndjson}`", k.Value)
		to = nil
	}
	used := map[string]bool{}
	counts := map[string]int{}
	if to != nil {
		for _, item := range to.Content {
			if item.Kind == yaml.MappingNode {
				for i := 0; i+1 < len(item.Content); i += 2 {
					counts[item.Content[i].Value]++
				}
			}
		}
		for i, item := range to.Content {
			what := fmt.Sprintf("sink %d of pipeline %s", i+1, k.Value)
			typ, comp, common := l.component(item, connectors.SinkKind, sinkCommon, what)
			if common == nil || typ == "" {
				continue
			}
			sc := l.parse(what, sinkCommon, common)
			b, r := sc.Object("batching"), sc.Object("retry")
			s := &SinkConfig{Name: sc.String("name"), Type: typ, Component: comp,
				Batching: Batching{Count: b.Int("count"), Bytes: b.Size("bytes"), Period: b.Duration("period")},
				Retry:    Retry{Attempts: r.Int("attempts"), Backoff: r.Duration("backoff"), MaxBackoff: r.Duration("max_backoff"), Mode: r.String("mode")},
				pos:      pos{item.Line, item.Column}}
			for _, d := range r.Strings("delays") {
				dur, err := time.ParseDuration(d)
				if err != nil || dur <= 0 {
					l.errAt(r.Node("delays"), "retry.delays: %q is not a positive duration like 10s or 1m", d)
					continue
				}
				s.Retry.Delays = append(s.Retry.Delays, dur)
			}
			if s.Retry.Mode == "topics" && len(s.Retry.Delays) == 0 && r.Node("delays") == nil {
				l.errAt(item, "retry.mode topics needs retry.delays, e.g. [10s, 1m, 10m]")
			}
			if s.Retry.Attempts < 0 {
				l.errAt(r.Node("attempts"), "retry.attempts must be 0 (no limit) or more")
			}
			if spec, ok := l.reg.Spec(connectors.SinkKind, typ); ok && exactlyOnce && spec.OwnTransactions {
				// Its transaction is on its own cluster and carries the
				// source positions: nothing else can commit with it.
				switch {
				case len(to.Content) > 1:
					l.errAt(item, "%s (%s) must be the only sink of a pipeline with processing: exactly_once: its transaction, on its own cluster, carries the source positions, and no other sink can commit with it; write several topics with a topic template, or split the pipeline",
						what, typ)
				case s.Retry.Mode == "topics":
					l.errAt(r.Node("mode"), "%s (%s): retry mode topics cannot run with processing: exactly_once: the retry records are stored in the hub, outside the sink's transaction, and would be written twice after a crash", what, typ)
				case l.externalHub:
					l.errAt(item, "%s (%s): processing: exactly_once with a %s sink needs the in-process hub (hub.data_dir); with hub.kafka use a dataset sink", what, typ, typ)
				}
			} else if ok && exactlyOnce && !spec.Transactional {
				l.errAt(item, "%s (%s) cannot take part in processing: exactly_once: only sinks that write through the hub (%s), or a %s sink alone, commit with the offsets",
					what, typ, strings.Join(l.sinksWhere(func(s *connectors.Spec) bool { return s.Transactional }), ", "),
					strings.Join(l.sinksWhere(func(s *connectors.Spec) bool { return s.OwnTransactions }), ", "))
			}
			if s.Name == "" {
				s.Name = typ
				if counts[typ] > 1 {
					s.Name = fmt.Sprintf("%s-%d", typ, i+1)
				}
			}
			if used[s.Name] {
				l.errAt(item, "pipeline %s has two sinks named %q; give them distinct names", k.Value, s.Name)
			}
			used[s.Name] = true
			p.To = append(p.To, s)
		}
	}
	if to != nil && len(to.Content) == 0 {
		l.errAt(to, "pipeline %s has no sinks: to: is empty", k.Value)
	}
	if len(p.To) > 64 {
		l.errAt(to, "pipeline %s has %d sinks; at most 64 are supported", k.Value, len(p.To))
	}
	return p
}

// sinksWhere names the registered sinks whose spec has the property.
func (l *loader) sinksWhere(has func(*connectors.Spec) bool) []string {
	var names []string
	for _, n := range l.reg.Names(connectors.SinkKind) {
		if spec, ok := l.reg.Spec(connectors.SinkKind, n); ok && has(spec) {
			names = append(names, n)
		}
	}
	return names
}

// Check builds the file's processors without starting anything, so that
// expressions, patterns and route targets are checked too; it returns
// every problem as Errors. Load does this already; Check is for a Config
// built or changed by other means.
func Check(cfg *Config, reg *connectors.Registry) error {
	if reg == nil {
		reg = connectors.Default
	}
	if errs := checkProcessors(cfg, reg, cfg.File); len(errs) > 0 {
		sort.SliceStable(errs, func(i, j int) bool { return errs[i].Line < errs[j].Line })
		return errs
	}
	return nil
}

// checkProcessors builds every processor whose config parsed, returning
// the problems at their places in file.
func checkProcessors(cfg *Config, reg *connectors.Registry, file string) Errors {
	var errs Errors
	try := func(pcs []*ProcessorConfig, sinks []string) {
		for _, pc := range pcs {
			if pc.bad {
				continue
			}
			if _, err := reg.NewProcessor(pc.Type, pc.Conf, connectors.Resources{Sinks: sinks}); err != nil {
				var ce connectors.ConfigError
				if errors.As(err, &ce) {
					errs = append(errs, Error{File: file, Line: ce.Line, Column: ce.Column, Msg: pc.Type + ": " + ce.Msg})
				} else {
					errs = append(errs, Error{File: file, Line: pc.pos.line, Column: pc.pos.col, Msg: pc.Type + ": " + err.Error()})
				}
			}
		}
	}
	for _, s := range cfg.Sources {
		try(s.Processors, nil)
	}
	for _, p := range cfg.Pipelines {
		var names []string
		for _, s := range p.To {
			names = append(names, s.Name)
		}
		try(p.Processors, names)
	}
	return errs
}
