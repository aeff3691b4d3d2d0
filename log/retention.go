package log

import (
	"math"
	"slices"
)

// EnforceRetention deletes closed segments, oldest first, while the oldest
// is older than RetentionTime (its newest record, by timestamp) or the log
// without it would still hold at least RetentionBytes. When everything in
// the active segment has expired too, it is closed first so that it can
// go. It advances the start offset and returns the number of segments
// deleted. Readers holding sections of a deleted segment keep reading it.
func (l *Log) EnforceRetention() (int, error) {
	l.kickTier() // local retention of tiered segments
	l.mu.Lock()
	defer l.mu.Unlock()
	l.drain() // the active segment may be rolled
	if l.opts.RetentionTime <= 0 && l.opts.RetentionBytes <= 0 {
		return 0, nil
	}
	if l.closed.Load() {
		return 0, ErrClosed
	}
	if l.failed != nil {
		return 0, l.failed
	}
	now := l.opts.Now().UnixMilli()
	expired := func(maxTS int64) bool {
		return l.opts.RetentionTime > 0 && maxTS != math.MinInt64 && now-maxTS > l.opts.RetentionTime.Milliseconds()
	}
	segs := *l.segs.Load()
	var total int64
	for _, s := range segs {
		total += s.written
	}
	n := 0
	for ; n < len(segs)-1; n++ {
		s := segs[n]
		tooBig := l.opts.RetentionBytes > 0 && total-s.written >= l.opts.RetentionBytes
		if !tooBig && !expired(s.maxTS.Load()) {
			break
		}
		total -= s.written
	}
	if a := l.active; n == len(segs)-1 && a.written > 0 && expired(a.writtenMaxTS) {
		if err := l.roll(); err != nil {
			return 0, err
		}
		segs = *l.segs.Load()
		n++
	}
	return l.dropOldest(segs, n)
}

// DeleteBefore deletes the closed segments that lie entirely below offset,
// oldest first, and advances the start offset to the first remaining
// segment's base. Segments are deleted whole, so records below offset may
// remain. It returns the number of segments deleted.
func (l *Log) DeleteBefore(offset int64) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed.Load() {
		return 0, ErrClosed
	}
	if l.failed != nil {
		return 0, l.failed
	}
	segs := *l.segs.Load()
	n := 0
	for n < len(segs)-1 && segs[n].next.Load() <= offset && segs[n+1].base <= offset {
		n++
	}
	return l.dropOldest(segs, n)
}

// dropOldest removes the first n segments of segs. Called with l.mu held.
func (l *Log) dropOldest(segs []*segment, n int) (int, error) {
	if n == 0 {
		return 0, nil
	}
	gone := segs[:n]
	kept := slices.Clone(segs[n:])
	l.segs.Store(&kept)
	l.start.Store(kept[0].base)
	var firstErr error
	for _, s := range gone {
		if l.keepForRecycle(s) {
			// Kept for a later segment (see recycle.go).
		} else if err := l.removeSegment(s); err != nil && firstErr == nil {
			firstErr = err
		}
		l.opts.Logger.Info("log: retention deleted a segment", "segment", s.path, "bytes", s.written,
			"offsets", [2]int64{s.base, s.next.Load() - 1})
		s.release()
	}
	l.stats.deleted.Add(int64(n))
	return n, firstErr
}

// Size is the number of bytes in the log's local segment files.
func (l *Log) Size() int64 {
	var total int64
	for _, s := range *l.segs.Load() {
		if s.cold == nil {
			total += s.size.Load()
		}
	}
	return total
}

// Segments is the number of local segment files of the log, the active
// one included.
func (l *Log) Segments() int {
	n := 0
	for _, s := range *l.segs.Load() {
		if s.cold == nil {
			n++
		}
	}
	return n
}
