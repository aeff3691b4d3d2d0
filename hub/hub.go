package hub

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/weirhub/weir/internal/atomicfile"
	"github.com/weirhub/weir/internal/objstore"
	wlog "github.com/weirhub/weir/log"
)

// LeaderEpoch is the Kafka leader epoch of every partition. A single node
// leads all of them from the start and never changes, so the epoch is 0,
// Kafka's first. Partition.Produce stamps it in every stored batch, as a
// Kafka leader does; the Kafka front door answers it in Metadata,
// ListOffsets and OffsetForLeaderEpoch. Clients read -1 as "unknown", and
// franz-go then orders a by-time start position (a timestamp it holds as an
// offset) above the offsets it consumed, and commits it when it leaves.
const LeaderEpoch = 0

// Options configure a Hub. Zero fields take the defaults their comments
// state.
type Options struct {
	// DataDir holds everything the hub stores. Default "./data".
	DataDir string
	// DisableAutoCreate turns off creating a dataset the first time a
	// producer writes to it or a client asks for its metadata. Auto
	// creation is on by default, for development.
	DisableAutoCreate bool
	// Defaults is the configuration of datasets created without one;
	// zero fields of a dataset's config take these. Default: 1 partition,
	// 1 GiB segments, retention 7 days, fsync interval.
	Defaults DatasetConfig
	// RetentionCheckInterval is how often retention runs. Default 1 minute.
	RetentionCheckInterval time.Duration
	// CompactInterval is how often keyed compaction runs over the
	// datasets whose cleanup policy includes compact, on a goroutine of
	// its own. Default 15 seconds.
	CompactInterval time.Duration
	// FS is the file system of the partitions' logs. Default: the
	// operating system's. Tests inject storage faults through it.
	FS wlog.FS
	// MaxOpenFiles bounds the segment files open at once across every
	// partition: older ones are closed when idle and reopened when read.
	// Default 1000.
	MaxOpenFiles int
	// Groups configure the consumer group coordinator.
	Groups GroupOptions
	// Logger receives the hub's events. Default: discard.
	Logger *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Observer, if set, is told of storage events for metrics. Default
	// none.
	Observer Observer
	// DelayedDelivery holds records with a weir.deliver_at or weir.delay
	// header back until due (see delay.go). Off by default: it costs
	// reading the records of every produced batch.
	DelayedDelivery bool
	// TxnCheckInterval is how often transactions past their timeout are
	// looked for and aborted. Default 1 second.
	TxnCheckInterval time.Duration
	// TxnCheckURL (transaction.check_url) is the check-back endpoint of
	// transactional ids starting with TxnCheckPrefix: a transaction past
	// its timeout is not aborted at once; the hub POSTs it there and
	// commits or aborts by the answer ("commit", "abort", or "unknown" to
	// be asked again after another timeout, at most TxnCheckLimit times,
	// default 5, then aborted). Default: none, timeouts abort.
	TxnCheckURL    string
	TxnCheckPrefix string
	TxnCheckLimit  int
	// ColdStore, if set, is the object store that datasets with
	// RemoteStorage move closed segments to, under DATASET/PARTITION/.
	// Default none: such datasets cannot be opened.
	ColdStore objstore.Store
	// ColdCacheBytes bounds the on-disk cache of cold segment chunks, in
	// DATA/cold-cache. Default 1 GiB.
	ColdCacheBytes int64
	// ColdUploads bounds the uploads to ColdStore at once. Default 4.
	ColdUploads int
	// ColdUploadBytesPerSecond paces the uploads to ColdStore, of all
	// partitions together (Kafka's
	// remote.log.manager.copy.max.bytes.per.second, KIP-956): uploads take
	// the CPU and network of that rate, not all there is, while producers
	// write. Default 0: unpaced, as in Kafka. A rate below what producers
	// write keeps the difference on local disk (the cold tier's
	// upload-backlog metrics say so). Paced segments still go to S3 with
	// sendfile, in the steps the pace allows (objstore.Pacer); merges of
	// small cold segments (log.Options.TierMergeBytes, up to the dataset's
	// segment.bytes) go at the same pace.
	ColdUploadBytesPerSecond int64
	// SubscribeBuffer bounds, in bytes, the window of latest events that
	// the subscriptions of one dataset share (read and encoded once by one
	// reader; see Subscribe). Default 64 MiB.
	SubscribeBuffer int64
	// SubscribeProcs is how many of the subscriptions' shared readers and
	// writers (every dataset's) may run at once: they take turns on that
	// many processors. Default GOMAXPROCS-1, at least 1: delivering to
	// subscribers never takes the processor that producers (and the
	// rest of the hub) have, and a shared reader cannot publish faster
	// than the writers deliver when processors are what they lack (it
	// would lap subscribers that read all they are sent: the log holds
	// the backlog instead, and every subscriber gets every event).
	SubscribeProcs int
	// SubscribeNice is how much higher than the hub's own (at most 19)
	// the nice value of the threads of the subscriptions' shared readers
	// and writers is (Linux; ignored elsewhere; each gets a thread of its
	// own, up to 64 a hub): when processors are short, producers and the
	// rest of the hub go first, and delivery catches up from the log
	// after. Default 10; negative: the hub's own priority.
	SubscribeNice int
}

func (o *Options) setDefaults() {
	if o.DataDir == "" {
		o.DataDir = "./data"
	}
	o.Defaults.fill(DatasetConfig{Partitions: 1, SegmentBytes: 1 << 30, SegmentAge: 7 * 24 * time.Hour,
		RetentionTime: 7 * 24 * time.Hour, Fsync: "interval", FsyncInterval: 10 * time.Millisecond, MaxMessageBytes: 1048588})
	if o.RetentionCheckInterval <= 0 {
		o.RetentionCheckInterval = time.Minute
	}
	if o.CompactInterval <= 0 {
		o.CompactInterval = 15 * time.Second
	}
	if o.MaxOpenFiles <= 0 {
		o.MaxOpenFiles = 1000
	}
	if o.ColdCacheBytes <= 0 {
		o.ColdCacheBytes = 1 << 30
	}
	if o.ColdUploads <= 0 {
		o.ColdUploads = 4
	}
	if o.SubscribeBuffer <= 0 {
		o.SubscribeBuffer = 64 << 20
	}
	if o.SubscribeProcs <= 0 {
		o.SubscribeProcs = max(1, runtime.GOMAXPROCS(0)-1)
	}
	if o.SubscribeNice == 0 {
		o.SubscribeNice = 10
	}
	o.Groups.setDefaults()
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.TxnCheckInterval <= 0 {
		o.TxnCheckInterval = time.Second
	}
	if o.TxnCheckLimit <= 0 {
		o.TxnCheckLimit = 5
	}
}

// Hub is the broker: a set of datasets, the producer id allocator, the
// group coordinator and the committed offsets. All methods are safe for
// concurrent use.
type Hub struct {
	opts Options
	meta metaFile

	cold      *wlog.ColdCache // nil without a ColdStore
	coldSlots chan struct{}   // uploads in flight to ColdStore
	coldPace  *rate.Limiter   // ColdUploadBytesPerSecond; nil: unpaced

	mu       sync.RWMutex
	datasets map[string]*Dataset
	closed   bool

	producerIDs producerIDAllocator
	offsets     *offsetStore
	groups      *coordinator
	txns        *txnCoordinator // see txn.go
	delays      *delayer        // nil unless Options.DelayedDelivery; see delay.go

	// Shared by every partition's log: the open segment files, and the
	// fsync schedulers of the interval policy, one per interval.
	lock    io.Closer
	files   *wlog.FileCache
	syncMu  sync.Mutex
	syncers map[time.Duration]*wlog.Syncer

	fanMu   sync.Mutex
	fanouts map[*Dataset]*fanout // the shared readers of subscriptions; see fanout.go
	fanCPU  chan struct{}        // the fan-outs' processors (fanout.go), made with the first, under fanMu
	// bgThreads counts the threads of fan-outs at SubscribeNice
	// (backgroundThread).
	bgThreads atomic.Int32

	stop chan struct{}
	bg   sync.WaitGroup
	// removing counts the deleted datasets' directories being removed
	// (see removeLater); new ones are added under mu while not closed.
	removing sync.WaitGroup
}

// metaFile is DATA/meta.json.
type metaFile struct {
	ClusterID      string `json:"cluster_id"`
	NextProducerID int64  `json:"next_producer_id"` // first id of the next block to hand out
}

// OpenColdStore opens the object store a cold store URL names, for
// Options.ColdStore: s3://BUCKET/PREFIX?endpoint=http://HOST:PORT or
// file:///path (objstore.OpenURL).
func OpenColdStore(url string) (objstore.Store, error) { return objstore.OpenURL(url) }

// Open opens (creating if needed) the hub in opts.DataDir, with every
// dataset in it, recovering their logs.
func Open(opts Options) (*Hub, error) {
	opts.setDefaults()
	if err := opts.Defaults.validate(); err != nil {
		return nil, err
	}
	h := &Hub{opts: opts, datasets: map[string]*Dataset{}, stop: make(chan struct{}),
		files: wlog.NewFileCache(opts.MaxOpenFiles), syncers: map[time.Duration]*wlog.Syncer{}}
	if err := os.MkdirAll(filepath.Join(opts.DataDir, "datasets"), 0o755); err != nil {
		return nil, fmt.Errorf("hub: %w", err)
	}
	// One lock for the data directory, in place of one per partition.
	lock, err := wlog.OSFS().Lock(opts.DataDir)
	if err != nil {
		return nil, fmt.Errorf("hub: %w", err)
	}
	h.lock = lock
	h.coldSlots = make(chan struct{}, opts.ColdUploads)
	if opts.ColdUploadBytesPerSecond > 0 {
		h.coldPace = newPace(opts.ColdUploadBytesPerSecond)
	}
	if opts.ColdStore != nil {
		if h.cold, err = wlog.NewColdCache(filepath.Join(opts.DataDir, "cold-cache"), opts.ColdCacheBytes); err != nil {
			lock.Close()
			return nil, fmt.Errorf("hub: %w", err)
		}
	}
	if err := h.loadMeta(); err != nil {
		return nil, err
	}
	h.producerIDs.h = h
	entries, err := os.ReadDir(filepath.Join(opts.DataDir, "datasets"))
	if err != nil {
		h.closeDatasets()
		return nil, fmt.Errorf("hub: %w", err)
	}
	for _, e := range entries {
		if e.IsDir() && strings.HasPrefix(e.Name(), ".deleted-") {
			// A deleted dataset whose removal a crash or Close cut short.
			h.removeLater(filepath.Join(opts.DataDir, "datasets", e.Name()))
			continue
		}
		if !e.IsDir() || validateName(e.Name()) != nil {
			continue
		}
		ds, err := openDataset(h, e.Name())
		if errors.Is(err, os.ErrNotExist) {
			continue // a directory left by an interrupted create or delete
		}
		if err != nil {
			h.closeDatasets()
			return nil, err
		}
		h.datasets[ds.name] = ds
	}
	if h.offsets, err = openOffsetStore(filepath.Join(opts.DataDir, "groups", "offsets"), opts.Logger); err != nil {
		h.closeDatasets()
		return nil, err
	}
	h.groups = newCoordinator(h, opts.Groups)
	if h.txns, err = openTxnCoordinator(h); err != nil {
		h.offsets.close()
		h.closeDatasets()
		return nil, err
	}
	if opts.DelayedDelivery {
		h.delays = newDelayer(h)
		if err := h.delays.load(); err != nil {
			h.txns.close()
			h.offsets.close()
			h.closeDatasets()
			return nil, err
		}
		h.bg.Add(1)
		go h.delayMover()
	}
	h.bg.Add(3)
	go h.housekeeping()
	go h.txnChecker()
	go h.compaction()
	opts.Logger.Info("hub: open", "data_dir", opts.DataDir, "datasets", len(h.datasets), "cluster_id", h.meta.ClusterID)
	return h, nil
}

// ClusterID is the hub's stable identity, created with its data directory.
func (h *Hub) ClusterID() string { return h.meta.ClusterID }

// AutoCreate reports whether datasets are created on first use.
func (h *Hub) AutoCreate() bool { return !h.opts.DisableAutoCreate }

// DataDir is the directory the hub stores everything in.
func (h *Hub) DataDir() string { return h.opts.DataDir }

func (h *Hub) loadMeta() error {
	path := filepath.Join(h.opts.DataDir, "meta.json")
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		var id [16]byte
		rand.Read(id[:])
		h.meta = metaFile{ClusterID: hex.EncodeToString(id[:]), NextProducerID: 1000}
		return h.saveMeta()
	}
	if err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	if err := json.Unmarshal(b, &h.meta); err != nil {
		return fmt.Errorf("hub: %s is damaged: %v (restore it or remove it to start a new cluster id)", path, err)
	}
	return nil
}

// saveMeta writes meta.json atomically and durably.
func (h *Hub) saveMeta() error {
	b, _ := json.MarshalIndent(h.meta, "", "  ")
	return atomicfile.Write(filepath.Join(h.opts.DataDir, "meta.json"), b)
}

// Close stops background work and closes every log. Blocked fetches and
// group joins return.
func (h *Hub) Close() error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return ErrClosed
	}
	h.closed = true
	h.mu.Unlock()
	close(h.stop)
	h.groups.close()
	h.bg.Wait()
	h.removing.Wait()
	h.txns.close()
	var derr error
	if h.delays != nil {
		derr = h.delays.flush()
	}
	err := errors.Join(derr, h.closeDatasets())
	if h.offsets != nil {
		err = errors.Join(err, h.offsets.close())
	}
	return err
}

// closeDatasets closes every dataset, then the syncers and the lock.
func (h *Hub) closeDatasets() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	var errs []error
	for _, ds := range h.datasets {
		errs = append(errs, ds.close())
	}
	h.syncMu.Lock()
	for _, s := range h.syncers {
		s.Close()
	}
	h.syncers = nil
	h.syncMu.Unlock()
	if h.lock != nil {
		h.lock.Close()
		h.lock = nil
	}
	return errors.Join(errs...)
}

// syncer returns the shared fsync scheduler for an interval.
func (h *Hub) syncer(interval time.Duration) *wlog.Syncer {
	h.syncMu.Lock()
	defer h.syncMu.Unlock()
	s := h.syncers[interval]
	if s == nil && h.syncers != nil {
		s = wlog.NewSyncer(interval, 4)
		h.syncers[interval] = s
	}
	return s
}

// housekeeping runs retention and producer state snapshots.
func (h *Hub) housekeeping() {
	defer h.bg.Done()
	t := time.NewTicker(h.opts.RetentionCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-h.stop:
			return
		case <-t.C:
			h.EnforceRetention()
		}
	}
}

// compaction runs keyed compaction in the background, apart from
// retention, since one run can take as long as reading a dataset.
func (h *Hub) compaction() {
	defer h.bg.Done()
	t := time.NewTicker(h.opts.CompactInterval)
	defer t.Stop()
	for {
		select {
		case <-h.stop:
			return
		case <-t.C:
			h.Compact()
		}
	}
}

// Compact runs keyed compaction now over every partition of the datasets
// whose cleanup policy includes compact, and returns the segments it
// rewrote; the hub also runs it every CompactInterval. Appends and reads
// go on meanwhile.
func (h *Hub) Compact() int {
	n := 0
	for _, ds := range h.Datasets() {
		if !ds.Config().Compacted() {
			continue
		}
		for _, p := range ds.partitions() {
			st, err := p.log.Compact()
			switch {
			case err == nil || errors.Is(err, wlog.ErrClosed):
			case errors.Is(err, wlog.ErrTierUnavailable):
				// Rewriting segments in the cold store: the next run tries
				// again; nothing is lost meanwhile.
				h.opts.Logger.Warn("hub: compaction of the cold part waits for the cold store", "dataset", ds.name, "partition", p.id, "err", err)
			default:
				h.opts.Logger.Error("hub: compaction failed", "dataset", ds.name, "partition", p.id, "err", err)
			}
			n += st.Segments
		}
	}
	return n
}

// EnforceRetention applies every dataset's retention now; the hub also runs
// it every RetentionCheckInterval. It returns the segments deleted.
func (h *Hub) EnforceRetention() int {
	n := 0
	for _, ds := range h.Datasets() {
		for _, p := range ds.partitions() {
			before := p.StartOffset()
			d, err := p.log.EnforceRetention()
			if err != nil && !errors.Is(err, wlog.ErrClosed) {
				h.opts.Logger.Error("hub: retention failed", "dataset", ds.name, "partition", p.id, "err", err)
			}
			n += d
			if after := p.StartOffset(); d > 0 && after > before {
				h.reportUnconsumed(ds, p.id, before, after)
			}
			p.snapshotProducers(false)
		}
	}
	return n
}

// reportUnconsumed says, for every consumer group whose committed offset
// of the partition was below the new start offset, how many records it
// will never read: retention deleted them first. Kafka's consumers find
// out only through OFFSET_OUT_OF_RANGE and a reset; the hub says so where
// the operator looks, and counts them in Stats.
func (h *Hub) reportUnconsumed(ds *Dataset, partition int32, before, after int64) {
	for group, committed := range h.offsets.behind(TopicPartition{ds.name, partition}, after) {
		skipped := after - max(committed, before)
		if skipped <= 0 {
			continue
		}
		ds.unconsumedDeleted.Add(skipped)
		h.opts.Logger.Warn("hub: retention deleted records a consumer group had not consumed",
			"dataset", ds.name, "partition", partition, "group", group, "records_skipped", skipped,
			"committed", committed, "start_offset", after,
			"fix", "give the dataset a longer retention.ms or retention.bytes (weir topics alter), or speed up the group")
	}
}

// DatasetStats are one dataset's counters since the hub opened it, for a
// metrics adapter to read (the hub imports no metrics library).
type DatasetStats struct {
	// UnconsumedDeleted counts records that retention deleted before a
	// consumer group with a committed offset in their partition had read
	// them, summed over groups: each is also logged as a warning.
	UnconsumedDeleted int64
}

// DatasetStats returns the counters of every open dataset, by name. Safe
// for concurrent use.
func (h *Hub) DatasetStats() map[string]DatasetStats {
	st := map[string]DatasetStats{}
	for _, ds := range h.Datasets() {
		st[ds.name] = DatasetStats{UnconsumedDeleted: ds.unconsumedDeleted.Load()}
	}
	return st
}

// Datasets returns the open datasets sorted by name.
func (h *Hub) Datasets() []*Dataset {
	h.mu.RLock()
	defer h.mu.RUnlock()
	out := make([]*Dataset, 0, len(h.datasets))
	for _, ds := range h.datasets {
		out = append(out, ds)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// Dataset returns the named dataset, or ErrUnknownDataset.
func (h *Hub) Dataset(name string) (*Dataset, error) {
	h.mu.RLock()
	ds, ok := h.datasets[name]
	closed := h.closed
	h.mu.RUnlock()
	if closed {
		return nil, ErrClosed
	}
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownDataset, name)
	}
	return ds, nil
}

// DatasetOrCreate returns the named dataset, creating it with the default
// configuration when it does not exist and auto creation is on.
func (h *Hub) DatasetOrCreate(name string) (*Dataset, error) {
	ds, err := h.Dataset(name)
	if err == nil || h.opts.DisableAutoCreate || !errors.Is(err, ErrUnknownDataset) {
		return ds, err
	}
	ds, err = h.CreateDataset(name, DatasetConfig{})
	if errors.Is(err, ErrDatasetExists) {
		return h.Dataset(name)
	}
	return ds, err
}

// CreateDataset creates a dataset; zero fields of cfg take the hub's
// defaults. It fails with ErrDatasetExists if the name is taken.
func (h *Hub) CreateDataset(name string, cfg DatasetConfig) (*Dataset, error) {
	if err := validateName(name); err != nil {
		return nil, err
	}
	cfg.fill(h.opts.Defaults)
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.RemoteStorage && h.opts.ColdStore == nil {
		return nil, fmt.Errorf("%w: %s: remote.storage.enable needs a cold store (weir serve --cold-store)", ErrInvalidConfig, name)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, ErrClosed
	}
	if _, ok := h.datasets[name]; ok {
		return nil, fmt.Errorf("%w: %q", ErrDatasetExists, name)
	}
	ds, err := createDataset(h, name, cfg)
	if err != nil {
		h.opts.Logger.Error("hub: creating a dataset failed; nothing of it is left", "dataset", name, "partitions", cfg.Partitions, "err", err)
		return nil, err
	}
	h.datasets[name] = ds
	h.opts.Logger.Info("hub: dataset created", "dataset", name, "partitions", cfg.Partitions)
	return ds, nil
}

// DeleteDataset deletes a dataset and its data. Readers holding file
// sections of it finish reading; committed offsets of groups for it are
// kept until the groups commit again or are deleted.
func (h *Hub) DeleteDataset(name string) error {
	h.mu.Lock()
	ds, ok := h.datasets[name]
	if !ok {
		h.mu.Unlock()
		return fmt.Errorf("%w: %q", ErrUnknownDataset, name)
	}
	delete(h.datasets, name)
	h.mu.Unlock()
	err := ds.close()
	// Rename first, so a crash mid-delete leaves nothing that looks like
	// a dataset, then remove.
	gone := filepath.Join(h.opts.DataDir, "datasets", fmt.Sprintf(".deleted-%s-%d", name, time.Now().UnixNano()))
	if rerr := os.Rename(ds.dir, gone); rerr != nil {
		return errors.Join(err, fmt.Errorf("hub: deleting %s: %w", name, rerr))
	}
	atomicfile.SyncDir(filepath.Join(h.opts.DataDir, "datasets"))
	h.opts.Logger.Info("hub: dataset deleted", "dataset", name)
	if ds.cfg.RemoteStorage {
		err = errors.Join(err, h.deleteCold(name))
	}
	h.removeLater(gone)
	return err
}

// removeLater removes dir, a deleted dataset's directory renamed out of
// the datasets' names, on the file cache's removal goroutine, after the
// segment files queued before (see log.FileCache.RemoveLater): unlinking
// its segment files frees their blocks, which on a disk that discards
// them at once or under a busy journal takes from a tenth of a second to
// seconds, and the request that deleted the dataset need not wait for it
// (Kafka's DeleteTopics does not either). The next Open removes whatever
// a crash or Close left of it; Close waits for the removals queued.
func (h *Hub) removeLater(dir string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		// Close already waited for the removals: the next Open removes it.
		return
	}
	h.removing.Add(1)
	h.files.RemoveLater(func() {
		defer h.removing.Done()
		if err := os.RemoveAll(dir); err != nil {
			h.opts.Logger.Warn("hub: removing a deleted dataset's files failed; the next open removes them", "dir", dir, "err", err)
		}
	})
}

// AddPartitions grows a dataset to total partitions.
func (h *Hub) AddPartitions(name string, total int32) error {
	ds, err := h.Dataset(name)
	if err != nil {
		return err
	}
	return ds.grow(total)
}

// validateName applies Kafka's topic name rules.
func validateName(name string) error {
	if name == "" || name == "." || name == ".." || len(name) > 249 {
		return fmt.Errorf("%w: %q (1 to 249 characters, not . or ..)", ErrInvalidDatasetName, name)
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("%w: %q (letters, digits, '.', '_' and '-' only)", ErrInvalidDatasetName, name)
		}
	}
	return nil
}
