package log

import (
	"fmt"
	"time"
)

// Limits are the options of a Log that may change while it is open. Each
// field means what the Options field of the same name means; zero takes
// that field's default, as in Options.
type Limits struct {
	SegmentBytes   int64
	SegmentAge     time.Duration
	MaxBatchBytes  int
	RetentionTime  time.Duration
	RetentionBytes int64
	// LocalRetentionTime and LocalRetentionBytes apply with a Tier.
	LocalRetentionTime  time.Duration
	LocalRetentionBytes int64
	// MinCleanableRatio applies with Compact (Options.MinCleanableRatio).
	MinCleanableRatio float64
}

// Limits returns the limits in force.
func (l *Log) Limits() Limits {
	l.mu.Lock()
	defer l.mu.Unlock()
	return Limits{SegmentBytes: l.opts.SegmentBytes, SegmentAge: l.opts.SegmentAge,
		MaxBatchBytes: l.opts.MaxBatchBytes, RetentionTime: l.opts.RetentionTime, RetentionBytes: l.opts.RetentionBytes,
		LocalRetentionTime: l.opts.LocalRetentionTime, LocalRetentionBytes: l.opts.LocalRetentionBytes,
		MinCleanableRatio: l.opts.MinCleanableRatio}
}

// SetLimits changes the limits of an open log, validated as Open validates
// them. A new segment size applies from the next segment (the active one
// rolls when it passes the new size); new retention applies from the next
// EnforceRetention; a new batch limit applies to the next append. It is
// safe for concurrent use with every other method.
func (l *Log) SetLimits(lim Limits) error {
	o := Options{SegmentBytes: lim.SegmentBytes, SegmentAge: lim.SegmentAge, MaxBatchBytes: lim.MaxBatchBytes,
		RetentionTime: lim.RetentionTime, RetentionBytes: lim.RetentionBytes, Sync: SyncInterval,
		LocalRetentionTime: lim.LocalRetentionTime, LocalRetentionBytes: lim.LocalRetentionBytes,
		MinCleanableRatio: lim.MinCleanableRatio}
	if err := o.setDefaults(); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed.Load() {
		return fmt.Errorf("%w: setting limits", ErrClosed)
	}
	l.opts.SegmentBytes, l.opts.SegmentAge = o.SegmentBytes, o.SegmentAge
	l.opts.MaxBatchBytes, l.opts.RetentionTime, l.opts.RetentionBytes = o.MaxBatchBytes, o.RetentionTime, o.RetentionBytes
	l.opts.LocalRetentionTime, l.opts.LocalRetentionBytes = o.LocalRetentionTime, o.LocalRetentionBytes
	l.opts.MinCleanableRatio = o.MinCleanableRatio
	l.maxBatch.Store(int64(o.MaxBatchBytes))
	return nil
}
