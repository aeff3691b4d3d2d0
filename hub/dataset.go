package hub

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weirhub/weir/codecs"
	"github.com/weirhub/weir/internal/atomicfile"
	wlog "github.com/weirhub/weir/log"
)

// DatasetConfig is a dataset's configuration, persisted in its
// dataset.json. Zero fields take the hub's defaults when the dataset is
// created.
type DatasetConfig struct {
	// Partitions is the number of partitions (logs).
	Partitions int32 `json:"partitions"`
	// SegmentBytes is the size at which a partition's segment rolls.
	SegmentBytes int64 `json:"segment_bytes"`
	// SegmentAge rolls a segment once its first record is this old.
	SegmentAge time.Duration `json:"segment_age"`
	// RetentionTime deletes segments whose newest record is older;
	// negative keeps records forever.
	RetentionTime time.Duration `json:"retention_time"`
	// RetentionBytes deletes a partition's oldest segments while it is
	// larger; negative or zero after defaults means no limit.
	RetentionBytes int64 `json:"retention_bytes"`
	// Fsync is "always", "interval" or "never"; see log.SyncPolicy.
	Fsync string `json:"fsync"`
	// FsyncInterval is the flush period of "interval". Default 10ms.
	FsyncInterval time.Duration `json:"fsync_interval"`
	// MaxMessageBytes is the largest record batch a producer may send.
	MaxMessageBytes int `json:"max_message_bytes"`
	// Compression is Kafka's compression.type: "producer" (the default,
	// also for "") keeps the batches as producers compressed them, and
	// Weir's own writers (LocalClient.Produce, the pipelines' sources and
	// dataset sinks) compress with DefaultCompression; "none", "gzip",
	// "snappy", "lz4" or "zstd" is the codec Weir's own writers use.
	Compression string `json:"compression,omitempty"`
	// RemoteStorage moves closed segments to the hub's cold store
	// (Kafka's remote.storage.enable); RetentionTime and RetentionBytes
	// then govern local and remote together.
	RemoteStorage bool `json:"remote_storage,omitempty"`
	// LocalRetentionTime and LocalRetentionBytes delete the local copy
	// of a segment the cold store holds (Kafka's local.retention.ms and
	// local.retention.bytes). Zero (Kafka's -2): local copies stay until
	// the total retention deletes them.
	LocalRetentionTime  time.Duration `json:"local_retention_time,omitempty"`
	LocalRetentionBytes int64         `json:"local_retention_bytes,omitempty"`
	// CleanupPolicy is Kafka's cleanup.policy: "delete" (the default,
	// also for "") deletes old segments by retention; "compact" keeps the
	// latest record of every key for ever (retention does not apply);
	// "compact,delete" compacts and applies retention.
	CleanupPolicy string `json:"cleanup_policy,omitempty"`
	// DeleteRetention is Kafka's delete.retention.ms: how long compaction
	// keeps a tombstone. Default 24 hours.
	DeleteRetention time.Duration `json:"delete_retention,omitempty"`
	// MinCleanableRatio is Kafka's min.cleanable.dirty.ratio: the share
	// of a compacted partition's closed bytes written since its last
	// compaction before the next one runs. Default 0.5; -1 (Kafka's 0)
	// compacts whatever is dirty.
	MinCleanableRatio float64 `json:"min_cleanable_dirty_ratio,omitempty"`
}

// Compacted reports whether the cleanup policy includes compaction.
func (c DatasetConfig) Compacted() bool {
	return c.CleanupPolicy == "compact" || c.CleanupPolicy == "compact,delete"
}

// normalizeCleanupPolicy puts a cleanup.policy in its one spelling, or
// returns "" for a value Kafka does not know.
func normalizeCleanupPolicy(v string) string {
	switch strings.ReplaceAll(strings.ToLower(v), " ", "") {
	case "", "delete":
		return "delete"
	case "compact":
		return "compact"
	case "compact,delete", "delete,compact":
		return "compact,delete"
	}
	return ""
}

// DefaultCompression is the codec Weir's own writers compress batches
// with when the dataset keeps the producer's compression: lz4, the
// cheapest in CPU of the codecs that shrink text and JSON records well.
const DefaultCompression = codecs.LZ4

// CompressionType is Kafka's compression.type topic config for a
// dataset's Compression: producer (also for ""), uncompressed for none,
// else the codec's name.
func CompressionType(compression string) string {
	switch compression {
	case "", "producer":
		return "producer"
	case "none":
		return "uncompressed"
	}
	return compression
}

// WriterCompression is the codec Weir's own writers build the dataset's
// batches with (see Compression).
func (c DatasetConfig) WriterCompression() codecs.Compression {
	if c.Compression == "" || c.Compression == "producer" {
		return DefaultCompression
	}
	comp, err := codecs.ParseCompression(c.Compression)
	if err != nil {
		return DefaultCompression // validate refuses it at creation
	}
	return comp
}

// fill replaces zero fields with d's.
func (c *DatasetConfig) fill(d DatasetConfig) {
	if c.Partitions == 0 {
		c.Partitions = d.Partitions
	}
	if c.SegmentBytes == 0 {
		c.SegmentBytes = d.SegmentBytes
	}
	if c.SegmentAge == 0 {
		c.SegmentAge = d.SegmentAge
	}
	if c.RetentionTime == 0 {
		c.RetentionTime = d.RetentionTime
	}
	if c.RetentionBytes == 0 {
		c.RetentionBytes = d.RetentionBytes
	}
	if c.Fsync == "" {
		c.Fsync = d.Fsync
	}
	if c.FsyncInterval == 0 {
		c.FsyncInterval = d.FsyncInterval
	}
	if c.MaxMessageBytes == 0 {
		c.MaxMessageBytes = d.MaxMessageBytes
	}
	if c.Compression == "" {
		c.Compression = d.Compression
	}
	if c.CleanupPolicy == "" {
		c.CleanupPolicy = d.CleanupPolicy
	}
	if c.DeleteRetention == 0 {
		c.DeleteRetention = d.DeleteRetention
	}
	if c.MinCleanableRatio == 0 {
		c.MinCleanableRatio = d.MinCleanableRatio
	}
}

func (c *DatasetConfig) validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
	}
	if c.Partitions < 1 || c.Partitions > 100000 {
		return fmt.Errorf("%w: %d (1 to 100000)", ErrInvalidPartitions, c.Partitions)
	}
	if c.SegmentBytes < 4096 || c.SegmentBytes > 2<<30 {
		return bad("segment bytes %d (4 KiB to 2 GiB)", c.SegmentBytes)
	}
	if _, err := wlog.ParseSyncPolicy(c.Fsync); err != nil {
		return bad("fsync %q (always, interval or never)", c.Fsync)
	}
	if c.MaxMessageBytes < 0 || c.MaxMessageBytes > 256<<20 {
		return bad("max message bytes %d (up to 256 MiB)", c.MaxMessageBytes)
	}
	if c.Compression != "" && c.Compression != "producer" {
		if _, err := codecs.ParseCompression(c.Compression); err != nil {
			return bad("compression %q (producer, none, gzip, snappy, lz4 or zstd)", c.Compression)
		}
	}
	if c.CleanupPolicy != "" {
		p := normalizeCleanupPolicy(c.CleanupPolicy)
		if p == "" {
			return bad("cleanup policy %q (delete, compact or compact,delete)", c.CleanupPolicy)
		}
		c.CleanupPolicy = p
	}
	if c.FsyncInterval < 0 || c.SegmentAge < 0 && c.SegmentAge != -1 {
		return bad("negative interval")
	}
	if c.MinCleanableRatio != -1 && (c.MinCleanableRatio < 0 || c.MinCleanableRatio > 1) {
		return bad("min.cleanable.dirty.ratio %v (0 to 1)", c.MinCleanableRatio)
	}
	return nil
}

// logOptions turns the config into a partition's log options.
func (c *DatasetConfig) logOptions(h *Hub) wlog.Options {
	policy, _ := wlog.ParseSyncPolicy(c.Fsync)
	o := wlog.Options{
		SegmentBytes:  c.SegmentBytes,
		SegmentAge:    c.SegmentAge,
		MaxBatchBytes: c.MaxMessageBytes,
		Sync:          policy,
		SyncInterval:  c.FsyncInterval,
		Logger:        h.opts.Logger,
		Now:           h.opts.Now,
		Files:         h.files,
		FS:            h.opts.FS,
		SkipLock:      true, // the hub locks its data directory
	}
	if policy != wlog.SyncNever {
		// Interval fsyncs, or with fsync always the give-back of idle
		// windows of zeros: one scheduler, no timer per partition.
		o.Syncer = h.syncer(max(c.FsyncInterval, time.Millisecond))
	}
	if c.RetentionTime > 0 {
		o.RetentionTime = c.RetentionTime
	}
	if c.RetentionBytes > 0 {
		o.RetentionBytes = c.RetentionBytes
	}
	if c.Compacted() {
		o.Compact = true
		o.DeleteRetention = c.DeleteRetention
		o.MinCleanableRatio = c.MinCleanableRatio
		if c.CleanupPolicy == "compact" {
			o.RetentionTime, o.RetentionBytes = 0, 0
		}
	}
	if c.LocalRetentionTime > 0 {
		o.LocalRetentionTime = c.LocalRetentionTime
	}
	if c.LocalRetentionBytes > 0 {
		o.LocalRetentionBytes = c.LocalRetentionBytes
	}
	return o
}

// logLimits is the part of the log options that may change while the
// dataset is open (see Dataset.alter).
func (c *DatasetConfig) logLimits(h *Hub) wlog.Limits {
	o := c.logOptions(h)
	return wlog.Limits{SegmentBytes: o.SegmentBytes, SegmentAge: o.SegmentAge, MaxBatchBytes: o.MaxBatchBytes,
		RetentionTime: o.RetentionTime, RetentionBytes: o.RetentionBytes,
		LocalRetentionTime: o.LocalRetentionTime, LocalRetentionBytes: o.LocalRetentionBytes,
		MinCleanableRatio: o.MinCleanableRatio}
}

// ResetKafkaConfig sets one Kafka topic config on c back to its value in
// defaults, as IncrementalAlterConfigs' DELETE does.
func (c *DatasetConfig) ResetKafkaConfig(key string, defaults DatasetConfig) error {
	v, ok := defaults.KafkaConfigs()[key]
	if !ok {
		return c.ApplyKafkaConfig(key, "") // names the key: unknown, or accepted and ignored
	}
	switch key {
	case "flush.messages", "flush.ms", "weir.fsync":
		c.Fsync, c.FsyncInterval = defaults.Fsync, defaults.FsyncInterval
		return nil
	}
	return c.ApplyKafkaConfig(key, v)
}

// KafkaConfigs renders the config as Kafka topic configs.
func (c DatasetConfig) KafkaConfigs() map[string]string {
	ms := func(d time.Duration) string {
		if d < 0 {
			return "-1"
		}
		return strconv.FormatInt(d.Milliseconds(), 10)
	}
	m := map[string]string{
		"cleanup.policy":            normalizeCleanupPolicy(c.CleanupPolicy),
		"delete.retention.ms":       ms(c.DeleteRetention),
		"min.cleanable.dirty.ratio": strconv.FormatFloat(max(c.MinCleanableRatio, 0), 'g', -1, 64),
		"retention.ms":              ms(c.RetentionTime),
		"retention.bytes":           strconv.FormatInt(max(c.RetentionBytes, -1), 10),
		"segment.bytes":             strconv.FormatInt(c.SegmentBytes, 10),
		"segment.ms":                ms(c.SegmentAge),
		"max.message.bytes":         strconv.Itoa(c.MaxMessageBytes),
		"weir.fsync":                c.Fsync,
		"flush.ms":                  ms(c.FsyncInterval),
		"compression.type":          CompressionType(c.Compression),

		"remote.storage.enable": strconv.FormatBool(c.RemoteStorage),
		"local.retention.ms":    "-2",
		"local.retention.bytes": "-2",
	}
	if c.LocalRetentionTime != 0 {
		m["local.retention.ms"] = ms(c.LocalRetentionTime)
	}
	if c.LocalRetentionBytes != 0 {
		m["local.retention.bytes"] = strconv.FormatInt(max(c.LocalRetentionBytes, -1), 10)
	}
	if c.RetentionBytes == 0 {
		m["retention.bytes"] = "-1"
	}
	if c.DeleteRetention == 0 {
		m["delete.retention.ms"] = "86400000"
	}
	if c.MinCleanableRatio == 0 {
		m["min.cleanable.dirty.ratio"] = "0.5"
	}
	if c.Fsync == "always" {
		m["flush.messages"] = "1"
	} else {
		m["flush.messages"] = "9223372036854775807"
	}
	return m
}

// ApplyKafkaConfig sets one Kafka topic config on c, as CreateTopics and
// AlterConfigs carry them. Unknown keys are an error naming the key.
func (c *DatasetConfig) ApplyKafkaConfig(key, value string) error {
	num := func() (int64, error) {
		n, err := strconv.ParseInt(value, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%w: %s=%q is not a number", ErrInvalidConfig, key, value)
		}
		return n, nil
	}
	dur := func() (time.Duration, error) {
		n, err := num()
		if n < 0 {
			return -1, err
		}
		return time.Duration(n) * time.Millisecond, err
	}
	var err error
	switch key {
	case "retention.ms":
		c.RetentionTime, err = dur()
	case "retention.bytes":
		c.RetentionBytes, err = num()
		if c.RetentionBytes <= 0 {
			c.RetentionBytes = -1
		}
	case "segment.bytes":
		c.SegmentBytes, err = num()
	case "segment.ms":
		c.SegmentAge, err = dur()
	case "max.message.bytes":
		var n int64
		n, err = num()
		c.MaxMessageBytes = int(n)
	case "flush.messages":
		var n int64
		if n, err = num(); err == nil && n == 1 {
			c.Fsync = "always"
		}
	case "flush.ms":
		if c.FsyncInterval, err = dur(); err == nil && c.Fsync == "" {
			c.Fsync = "interval"
		}
	case "weir.fsync":
		if _, perr := wlog.ParseSyncPolicy(value); perr != nil {
			return fmt.Errorf("%w: weir.fsync=%q (always, interval or never)", ErrInvalidConfig, value)
		}
		c.Fsync = value
	case "remote.storage.enable":
		b, perr := strconv.ParseBool(value)
		if perr != nil {
			return fmt.Errorf("%w: remote.storage.enable=%q (true or false)", ErrInvalidConfig, value)
		}
		c.RemoteStorage = b
	case "local.retention.ms":
		// -2 (Kafka's default): as retention.ms, that is no local limit.
		if c.LocalRetentionTime, err = dur(); c.LocalRetentionTime < 0 {
			c.LocalRetentionTime = 0
		}
	case "local.retention.bytes":
		if c.LocalRetentionBytes, err = num(); c.LocalRetentionBytes < 0 {
			c.LocalRetentionBytes = 0
		}
	case "cleanup.policy":
		p := normalizeCleanupPolicy(value)
		if p == "" {
			return fmt.Errorf("%w: cleanup.policy=%q (delete, compact or compact,delete)", ErrInvalidConfig, value)
		}
		c.CleanupPolicy = p
	case "delete.retention.ms":
		c.DeleteRetention, err = dur()
	case "min.cleanable.dirty.ratio":
		r, perr := strconv.ParseFloat(value, 64)
		if perr != nil || r < 0 || r > 1 {
			return fmt.Errorf("%w: min.cleanable.dirty.ratio=%q (a number from 0 to 1)", ErrInvalidConfig, value)
		}
		if c.MinCleanableRatio = r; r == 0 {
			c.MinCleanableRatio = -1 // compact whatever is dirty
		}
	case "compression.type":
		if value != "producer" && value != "uncompressed" {
			if _, perr := codecs.ParseCompression(value); perr != nil || value == "" {
				return fmt.Errorf("%w: compression.type=%q (producer, uncompressed, gzip, snappy, lz4 or zstd)", ErrInvalidConfig, value)
			}
		}
		if value == "uncompressed" {
			value = "none"
		}
		c.Compression = value
	case "min.insync.replicas", "unclean.leader.election.enable", "message.timestamp.type", "retention.check.interval.ms":
		// Accepted for compatibility; Weir has one replica.
	default:
		return fmt.Errorf("%w: unknown config %q", ErrInvalidConfig, key)
	}
	return err
}

// IgnoredKafkaConfig reports whether ApplyKafkaConfig accepts key without
// effect, for compatibility with tools that send it when creating a topic:
// Weir has one replica and keeps the
// producer's timestamps. Changing one on an existing dataset is refused
// (AlterConfigs), since nothing would change.
func IgnoredKafkaConfig(key string) bool {
	switch key {
	case "min.insync.replicas", "unclean.leader.election.enable", "message.timestamp.type", "retention.check.interval.ms":
		return true
	}
	return false
}

// FixedKafkaConfig reports whether a topic config is fixed once the
// dataset exists (the fsync policy: weir.fsync, flush.ms, flush.messages);
// DescribeConfigs marks them read-only.
func FixedKafkaConfig(key string) bool {
	switch key {
	case "weir.fsync", "flush.ms", "flush.messages":
		return true
	}
	return false
}

// ValidateDataset checks that a dataset could be created with this name
// and config, without creating it.
func (h *Hub) ValidateDataset(name string, cfg DatasetConfig) error {
	if err := validateName(name); err != nil {
		return err
	}
	cfg.fill(h.opts.Defaults)
	return cfg.validate()
}

// Defaults returns the configuration new datasets start from.
func (h *Hub) Defaults() DatasetConfig { return h.opts.Defaults }

// Dataset is a named set of partitions: a Kafka topic.
type Dataset struct {
	h       *Hub
	name    string
	dir     string
	id      [16]byte
	created time.Time

	mu    sync.Mutex // config changes
	cfg   DatasetConfig
	parts atomic.Pointer[[]*Partition]

	unconsumedDeleted atomic.Int64 // see DatasetStats
}

type datasetFile struct {
	ID      string        `json:"id"`
	Name    string        `json:"name"`
	Created time.Time     `json:"created"`
	Config  DatasetConfig `json:"config"`
}

// Name is the dataset's name.
func (d *Dataset) Name() string { return d.name }

// ID is the dataset's 16-byte identity, stable across restarts and new
// for a dataset created again under the same name (Kafka's topic id).
func (d *Dataset) ID() [16]byte { return d.id }

// Created is when the dataset was created.
func (d *Dataset) Created() time.Time { return d.created }

// Config returns the dataset's configuration.
func (d *Dataset) Config() DatasetConfig {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cfg
}

// NumPartitions is the number of partitions.
func (d *Dataset) NumPartitions() int32 { return int32(len(*d.parts.Load())) }

// Partition returns partition i or ErrUnknownPartition.
func (d *Dataset) Partition(i int32) (*Partition, error) {
	parts := *d.parts.Load()
	if i < 0 || int(i) >= len(parts) {
		return nil, fmt.Errorf("%w: %s/%d (the dataset has %d)", ErrUnknownPartition, d.name, i, len(parts))
	}
	return parts[i], nil
}

func (d *Dataset) partitions() []*Partition { return *d.parts.Load() }

// createDataset creates a dataset's directory and partitions. A storage
// failure (a full disk, a failing device) is an ErrStorage wrapping its
// cause, and removes whatever of the dataset was created.
func createDataset(h *Hub, name string, cfg DatasetConfig) (*Dataset, error) {
	dir := filepath.Join(h.opts.DataDir, "datasets", name)
	fail := func(what string, err error) (*Dataset, error) {
		err = fmt.Errorf("%w: creating dataset %s: %s: %w", ErrStorage, name, what, err)
		if rerr := os.RemoveAll(dir); rerr != nil {
			err = errors.Join(err, fmt.Errorf("hub: removing the half-created dataset %s: %w", dir, rerr))
		}
		return nil, err
	}
	if err := os.RemoveAll(dir); err != nil { // leftovers of a create that did not finish
		return fail("removing leftovers", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fail("making its directory", err)
	}
	d := &Dataset{h: h, name: name, dir: dir, created: h.opts.Now(), cfg: cfg}
	rand.Read(d.id[:])
	empty := []*Partition{}
	d.parts.Store(&empty)
	if err := d.openPartitions(cfg.Partitions); err != nil {
		d.close()
		return fail(fmt.Sprintf("partition %d of %d", len(d.partitions()), cfg.Partitions), err)
	}
	// dataset.json is written last: it is what makes the dataset exist.
	if err := d.save(); err != nil {
		d.close()
		return fail("writing dataset.json", err)
	}
	return d, nil
}

func openDataset(h *Hub, name string) (*Dataset, error) {
	dir := filepath.Join(h.opts.DataDir, "datasets", name)
	b, err := os.ReadFile(filepath.Join(dir, "dataset.json"))
	if err != nil {
		return nil, err
	}
	var f datasetFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("hub: %s/dataset.json is damaged: %v", dir, err)
	}
	d := &Dataset{h: h, name: name, dir: dir, created: f.Created, cfg: f.Config}
	if id, err := hex.DecodeString(f.ID); err == nil && len(id) == 16 {
		copy(d.id[:], id)
	} else {
		return nil, fmt.Errorf("hub: %s/dataset.json has a bad id %q", dir, f.ID)
	}
	d.cfg.fill(h.opts.Defaults)
	empty := []*Partition{}
	d.parts.Store(&empty)
	if err := d.openPartitions(d.cfg.Partitions); err != nil {
		d.close()
		return nil, err
	}
	return d, nil
}

func (d *Dataset) save() error {
	b, _ := json.MarshalIndent(datasetFile{ID: hex.EncodeToString(d.id[:]), Name: d.name, Created: d.created, Config: d.cfg}, "", "  ")
	return atomicfile.Write(filepath.Join(d.dir, "dataset.json"), b)
}

// openPartitions opens partitions up to n.
func (d *Dataset) openPartitions(n int32) error {
	parts := append([]*Partition(nil), *d.parts.Load()...)
	for i := int32(len(parts)); i < n; i++ {
		p, err := openPartition(d, i)
		if err != nil {
			return err
		}
		parts = append(parts, p)
		// A variable of this iteration: a reader holds the pointer
		// stored, and the next append must not write under it.
		published := parts
		d.parts.Store(&published)
	}
	return nil
}

func (d *Dataset) grow(total int32) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if total <= d.cfg.Partitions {
		return fmt.Errorf("%w: %s has %d partitions; the count can only grow", ErrInvalidPartitions, d.name, d.cfg.Partitions)
	}
	if total > 100000 {
		return fmt.Errorf("%w: %d (at most 100000)", ErrInvalidPartitions, total)
	}
	if err := d.openPartitions(total); err != nil {
		// Close and remove the partitions this call opened.
		parts := d.partitions()
		kept := parts[:d.cfg.Partitions]
		d.parts.Store(&kept)
		for _, p := range parts[d.cfg.Partitions:] {
			p.close()
		}
		for i := d.cfg.Partitions; i < total; i++ {
			os.RemoveAll(filepath.Join(d.dir, fmt.Sprint(i)))
		}
		err = fmt.Errorf("%w: adding partitions to %s: %w", ErrStorage, d.name, err)
		d.h.opts.Logger.Error("hub: adding partitions failed; the new ones are removed", "dataset", d.name, "partitions", total, "err", err)
		return err
	}
	d.cfg.Partitions = total
	return d.save()
}

// AlterDataset changes the configuration of an open dataset to cfg (a
// whole config: zero fields take the hub's defaults) and persists it. The
// changes that are safe apply at once to every partition: retention (the
// next retention run deletes by it), segment size and age (from the next
// segment), the largest batch (from the next produce), more partitions.
// Those that are not are refused, with the dataset unchanged: fewer
// partitions (their records and the keys' placement would be lost) with
// ErrInvalidPartitions, another fsync policy or interval (fixed while the
// partitions are open) with ErrInvalidConfig. With validateOnly nothing
// changes. It returns the config now in force and what changed, as
// key=old->new Kafka configs.
func (h *Hub) AlterDataset(name string, cfg DatasetConfig, validateOnly bool) (DatasetConfig, []string, error) {
	ds, err := h.Dataset(name)
	if err != nil {
		return DatasetConfig{}, nil, err
	}
	return ds.alter(cfg, validateOnly)
}

func (d *Dataset) alter(cfg DatasetConfig, validateOnly bool) (DatasetConfig, []string, error) {
	cfg.fill(d.h.opts.Defaults)
	d.mu.Lock()
	defer d.mu.Unlock()
	cur := d.cfg
	if cfg.Partitions == 0 {
		cfg.Partitions = cur.Partitions
	}
	if err := cfg.validate(); err != nil {
		return cur, nil, err
	}
	if cfg.Partitions < cur.Partitions {
		return cur, nil, fmt.Errorf("%w: %s has %d partitions; fewer (%d) would drop the records of the others and move keys: create a new dataset and copy into it", ErrInvalidPartitions, d.name, cur.Partitions, cfg.Partitions)
	}
	if normalizeCleanupPolicy(cfg.CleanupPolicy) != normalizeCleanupPolicy(cur.CleanupPolicy) {
		return cur, nil, fmt.Errorf("%w: %s: cleanup.policy is set when the dataset is created (it is %s): create a new dataset with the policy and copy into it", ErrInvalidConfig, d.name, cur.CleanupPolicy)
	}
	if cfg.RemoteStorage != cur.RemoteStorage {
		return cur, nil, fmt.Errorf("%w: %s: remote.storage.enable is fixed while the dataset is open: it is %v", ErrInvalidConfig, d.name, cur.RemoteStorage)
	}
	if cfg.Fsync != cur.Fsync || cfg.FsyncInterval != cur.FsyncInterval {
		return cur, nil, fmt.Errorf("%w: %s: the fsync policy (weir.fsync, flush.ms, flush.messages) is fixed while the dataset is open: it is %s every %v", ErrInvalidConfig, d.name, cur.Fsync, cur.FsyncInterval)
	}
	var changed []string
	before, after := cur.KafkaConfigs(), cfg.KafkaConfigs()
	for _, k := range sortedKeys(after) {
		if before[k] != after[k] {
			changed = append(changed, k+"="+before[k]+"->"+after[k])
		}
	}
	if cfg.Partitions != cur.Partitions {
		changed = append(changed, fmt.Sprintf("partitions=%d->%d", cur.Partitions, cfg.Partitions))
	}
	if validateOnly || len(changed) == 0 {
		return cur, changed, nil
	}
	lim := cfg.logLimits(d.h)
	for _, p := range d.partitions() {
		if err := p.log.SetLimits(lim); err != nil {
			// Partitions already changed keep the new limits until the
			// dataset reopens with the persisted (old) config.
			return cur, nil, fmt.Errorf("hub: altering %s/%d: %w", d.name, p.id, err)
		}
	}
	if cfg.Partitions > cur.Partitions {
		if err := d.openPartitions(cfg.Partitions); err != nil {
			return cur, nil, err
		}
	}
	d.cfg = cfg
	if err := d.save(); err != nil {
		return cfg, changed, fmt.Errorf("hub: saving the config of %s: %w", d.name, err)
	}
	d.h.opts.Logger.Info("hub: dataset config changed", "dataset", d.name, "changes", changed)
	return cfg, changed, nil
}

// UpdateDataset applies the fields of want that are set (non-zero) to an
// open dataset, as a declarative file (a pipeline's datasets) asks each
// time it starts. The safe changes apply at once (see AlterDataset) and
// are returned as changed; the unsafe ones (fewer partitions, another
// fsync policy) are left as they are and returned as refused, each a
// sentence saying what was kept, for the caller to report.
func (h *Hub) UpdateDataset(name string, want DatasetConfig) (changed, refused []string, err error) {
	ds, err := h.Dataset(name)
	if err != nil {
		return nil, nil, err
	}
	cur := ds.Config()
	next := cur
	switch {
	case want.Partitions > cur.Partitions:
		next.Partitions = want.Partitions
	case want.Partitions > 0 && want.Partitions < cur.Partitions:
		refused = append(refused, fmt.Sprintf("partitions: %d asked, the dataset has %d and keeps them (fewer would drop the records of the others and move keys)", want.Partitions, cur.Partitions))
	}
	if want.Fsync != "" && want.Fsync != cur.Fsync {
		refused = append(refused, fmt.Sprintf("fsync: %s asked, the dataset keeps %s (fixed while it is open; set it when creating the dataset)", want.Fsync, cur.Fsync))
	}
	if want.RetentionTime != 0 {
		next.RetentionTime = want.RetentionTime
	}
	if want.RetentionBytes != 0 {
		next.RetentionBytes = want.RetentionBytes
	}
	if want.SegmentBytes != 0 {
		next.SegmentBytes = want.SegmentBytes
	}
	if want.SegmentAge != 0 {
		next.SegmentAge = want.SegmentAge
	}
	if want.MaxMessageBytes != 0 {
		next.MaxMessageBytes = want.MaxMessageBytes
	}
	if want.Compression != "" {
		next.Compression = want.Compression
	}
	if want.LocalRetentionTime != 0 {
		next.LocalRetentionTime = want.LocalRetentionTime
	}
	if want.LocalRetentionBytes != 0 {
		next.LocalRetentionBytes = want.LocalRetentionBytes
	}
	if want.MinCleanableRatio != 0 {
		next.MinCleanableRatio = want.MinCleanableRatio
	}
	if want.RemoteStorage && !cur.RemoteStorage {
		refused = append(refused, "remote_storage: asked, the dataset keeps its segments local (fixed while it is open; set it when creating the dataset)")
	}
	_, changed, err = ds.alter(next, false)
	return changed, refused, err
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func (d *Dataset) close() error {
	var errs []error
	for _, p := range d.partitions() {
		errs = append(errs, p.close())
	}
	return errors.Join(errs...)
}
