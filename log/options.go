package log

import (
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// SyncPolicy decides when appended data is flushed to stable storage.
type SyncPolicy int

const (
	// SyncInterval flushes dirty data every Options.SyncInterval. Append
	// returns after the write; a crash of the machine (not of the
	// process) can lose the last interval.
	SyncInterval SyncPolicy = iota
	// SyncAlways makes Append return only after fdatasync, and publishes
	// records to readers only once they are on disk.
	SyncAlways
	// SyncNever leaves flushing to the operating system.
	SyncNever
)

func (p SyncPolicy) String() string {
	switch p {
	case SyncAlways:
		return "always"
	case SyncInterval:
		return "interval"
	case SyncNever:
		return "never"
	}
	return fmt.Sprintf("SyncPolicy(%d)", int(p))
}

// ParseSyncPolicy maps "always", "interval" and "never" to a SyncPolicy.
func ParseSyncPolicy(s string) (SyncPolicy, error) {
	switch strings.ToLower(s) {
	case "always":
		return SyncAlways, nil
	case "interval", "":
		return SyncInterval, nil
	case "never":
		return SyncNever, nil
	}
	return 0, fmt.Errorf("log: unknown fsync policy %q (want always, interval or never)", s)
}

// Options configure a Log. The zero value is usable: every field left zero
// takes the default its comment states.
type Options struct {
	// SegmentBytes is the size at which the active segment is closed and
	// a new one started. Default 1 GiB; at most 2 GiB.
	SegmentBytes int64
	// SegmentAge closes the active segment once its first batch is this
	// old. Default 7 days; negative means never.
	SegmentAge time.Duration
	// IndexIntervalBytes is the most bytes between offset index entries.
	// Default 4096.
	IndexIntervalBytes int
	// MaxBatchBytes is the largest batch Append accepts. Default 1048588
	// bytes (Kafka's message.max.bytes), or SegmentBytes if smaller. A
	// batch larger than the space left in a segment starts a new one, and
	// one larger than SegmentBytes has a segment to itself.
	MaxBatchBytes int
	// Sync is the fsync policy. Default SyncInterval.
	Sync SyncPolicy
	// SyncInterval is the flush period of SyncInterval. Default 10ms.
	SyncInterval time.Duration
	// PrewriteBytes bounds, with SyncAlways, the window of zeros written
	// and synced ahead of the active segment's data (an eighth of the
	// segment's data, between 64 KiB and PrewriteBytes), so that appends
	// overwrite blocks already written and inside the file, whose
	// fdatasync carries data only, with no journal commit for a new size
	// or new extents (see prewrite.go). The window is given back when the
	// segment is sealed, on Close, and when the log has not grown for
	// about a second. Default 4 MiB; negative: no window (blocks are
	// only reserved with fallocate, as with SyncInterval: a copy-on-write
	// filesystem gains nothing from overwriting).
	PrewriteBytes int64
	// RecycleSegments is, with SyncAlways, how many files of segments
	// deleted by retention the log keeps to reuse for its next segments,
	// whose appends then overwrite blocks written and synced before (see
	// recycle.go). Each is up to a segment of disk beyond the retained
	// data (the bytes retention deleted, not yet given back); they, and
	// the stale tail of a recycled active segment, are given back when
	// the log has not grown for about a second, and on Close. Default 1;
	// negative: none (every segment is a new file).
	RecycleSegments int
	// RetentionTime deletes closed segments whose newest record is older.
	// Default 0: no time limit.
	RetentionTime time.Duration
	// RetentionBytes deletes the oldest closed segments while the log is
	// larger. Default 0: no size limit.
	RetentionBytes int64
	// Compact turns on keyed compaction (Kafka's cleanup.policy compact;
	// with a retention limit too, compact,delete): Compact keeps only the
	// latest record of each key in closed segments. Default false.
	Compact bool
	// DeleteRetention is how long compaction keeps a tombstone (a record
	// with a key and a null value) after the newest record of its batch,
	// so that readers behind see the delete (Kafka's delete.retention.ms).
	// Default 24 hours; negative means tombstones go at the first
	// compaction that finds them latest.
	DeleteRetention time.Duration
	// CompactMapBytes bounds the key-hash to offset map one compaction
	// pass builds, at 24 bytes an entry; when the keys of the closed
	// segments do not fit, compaction takes several passes. Default 16 MiB,
	// at least 4 KiB.
	CompactMapBytes int
	// MinCleanableRatio is the share of the closed segments' bytes that
	// must be dirty (written since the last compaction's clean point, the
	// cleaner checkpoint) before Compact rewrites anything (Kafka's
	// min.cleanable.dirty.ratio). Default 0.5; negative: whenever any
	// closed segment is dirty.
	MinCleanableRatio float64
	// Logger receives recovery and retention events. Default: discard.
	Logger *slog.Logger
	// Now is the clock for segment age and retention. Default time.Now.
	Now func() time.Time
	// Syncer, if set, runs the SyncInterval fsyncs in place of a timer of
	// the log's own, every Syncer.Interval (SyncInterval is then unused),
	// and with SyncAlways gives back the window of zeros of a log that
	// stopped growing (see PrewriteBytes), also in place of a timer of
	// its own. Default nil.
	Syncer *Syncer
	// Files bounds the segment files open at once; logs that share it
	// share its limit. Default: a cache of the log's own without a limit.
	Files *FileCache
	// SkipLock leaves out the lock file that keeps a second Log, in any
	// process, from opening the directory: the caller guarantees that
	// (a hub locks its data directory once instead of holding a file open
	// per partition). Default false.
	SkipLock bool
	// FS is the file system the log's files live in. Default: the
	// operating system's.
	FS FS
	// OnPublish, if set, is called after new records become visible to
	// readers (after the high watermark moves), outside the log's locks.
	// It must be quick: it runs on the appending goroutine. A hub uses it
	// to wake long-polling fetches that wait on many logs at once.
	OnPublish func()
	// OnFsync, if set, is told how long each fdatasync of a segment file
	// took, for metrics. It must be quick: it runs on the syncing
	// goroutine. Default none.
	OnFsync func(took time.Duration)
	// Tier, if set, is the cold store closed segments move to (see the
	// package doc, "Cold tier"). Default nil: segments stay local until
	// retention deletes them.
	Tier Tier
	// LocalRetentionTime deletes the local copy of a segment the Tier
	// holds once its newest record is older. Default 0: no time limit.
	LocalRetentionTime time.Duration
	// LocalRetentionBytes deletes local copies of segments the Tier holds,
	// oldest first, while the local segments are larger. Default 0: no
	// size limit. With neither local limit, local copies stay until
	// RetentionTime or RetentionBytes (which count every segment, local
	// or not) delete the segment.
	LocalRetentionBytes int64
	// ColdCache caches chunks of cold segments for reads; logs may share
	// one. Default: a 64 MiB in-memory cache of the log's own.
	ColdCache *ColdCache
	// TierTimeout bounds each request to the Tier made for a read.
	// Default 30s.
	TierTimeout time.Duration
	// TierOrphanAge is how old an object of the Tier's segments must be
	// before a sweep deletes it for being in no manifest (an upload a
	// crash cut off before its manifest write); sweeps run at the first
	// tier pass a minute (at most TierOrphanAge) after Open and then at
	// most every TierOrphanAge, when the Tier is a TierLister. It must be far above the time an upload pass
	// takes: the uploader writes the manifest at least every
	// TierOrphanAge/4 of uploads. Default 1h.
	TierOrphanAge time.Duration
	// TierMergeBytes is the size up to which tier passes merge runs of
	// adjacent cold segments, each smaller than half of it, into one
	// (see the package doc, "Merging small cold segments"). Default 0:
	// SegmentBytes; negative: no merging.
	TierMergeBytes int64
}

const maxSegmentBytes = 2 << 30

func (o *Options) setDefaults() error {
	if o.SegmentBytes == 0 {
		o.SegmentBytes = 1 << 30
	}
	if o.SegmentBytes < 4096 || o.SegmentBytes > maxSegmentBytes {
		return fmt.Errorf("log: SegmentBytes %d out of range [4096, %d]", o.SegmentBytes, int64(maxSegmentBytes))
	}
	if o.SegmentAge == 0 {
		o.SegmentAge = 7 * 24 * time.Hour
	}
	if o.IndexIntervalBytes <= 0 {
		o.IndexIntervalBytes = 4096
	}
	if o.MaxBatchBytes <= 0 {
		o.MaxBatchBytes = int(min(1048588, o.SegmentBytes))
	}
	if o.Sync < SyncInterval || o.Sync > SyncNever {
		return fmt.Errorf("log: unknown sync policy %d", int(o.Sync))
	}
	if o.SyncInterval <= 0 {
		o.SyncInterval = 10 * time.Millisecond
	}
	if o.PrewriteBytes == 0 {
		o.PrewriteBytes = 4 << 20
	}
	if o.RecycleSegments == 0 {
		o.RecycleSegments = 1
	}
	if o.RetentionTime < 0 || o.RetentionBytes < 0 || o.LocalRetentionTime < 0 || o.LocalRetentionBytes < 0 {
		return fmt.Errorf("log: negative retention")
	}
	if o.DeleteRetention == 0 {
		o.DeleteRetention = 24 * time.Hour
	}
	if o.CompactMapBytes == 0 {
		o.CompactMapBytes = 16 << 20
	}
	o.CompactMapBytes = max(o.CompactMapBytes, 4<<10)
	if o.MinCleanableRatio == 0 {
		o.MinCleanableRatio = 0.5
	}
	if o.MinCleanableRatio > 1 {
		return fmt.Errorf("log: MinCleanableRatio %v is above 1", o.MinCleanableRatio)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.TierTimeout <= 0 {
		o.TierTimeout = 30 * time.Second
	}
	if o.TierOrphanAge <= 0 {
		o.TierOrphanAge = time.Hour
	}
	if o.TierMergeBytes > maxSegmentBytes {
		return fmt.Errorf("log: TierMergeBytes %d above %d", o.TierMergeBytes, int64(maxSegmentBytes))
	}
	if o.FS == nil {
		o.FS = osFS{}
	}
	return nil
}
