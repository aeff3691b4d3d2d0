package log

import (
	"fmt"
	"time"
)

// With SyncAlways, every acknowledged append costs an fdatasync, and on
// ext4 an fdatasync after a write that extends the file, or that lands in
// blocks fallocate reserved (unwritten extents), waits for a journal
// commit of the new size or extents; one after an overwrite of blocks that
// were written before and lie inside the file carries the data alone. On
// the development machine's ext4, 300 writes of 132712 bytes each with
// O_DSYNC ran at 316-456 MB/s into a new file, 358-391 MB/s into a
// fallocated one, and 781-929 MB/s over a file written with zeros and
// synced beforehand.
//
// So the log keeps a window of zeros ahead of the active segment's data,
// as databases recycle or zero-fill their write-ahead logs (PostgreSQL's
// WAL segments, RocksDB's recycle_log_file_num), but bounded, since a
// partition's disk is its data plus a small reserve:
//
//	  data (batches)            zeros                (file ends here)
//	|=========================|....................|
//	0                      written               zeroed
//	                          <- appends overwrite ->
//
// When a group commit's sync that carries at most prewriteRoundMax bytes
// finds the window shorter than half its length (an eighth of the
// segment's data, between reserveMin and Options.PrewriteBytes, never past
// SegmentBytes), it starts a goroutine that writes zeros, through the page
// cache, from the end of the window (whole pages) up to the window's
// length past the data, and starts their writeback (sync_file_range); the
// syncs after make them durable: one journal commit per window instead of
// one per sync. A sync that carries more does not:
// the zeros cost the disk as many bytes as the data they make room for,
// which pays only while the journal commit is the larger part of a sync
// (logbench -always, 128 MiB runs on ext4: 8 appenders, about 125 KB per
// sync, gained 20-50% with the window; 64 appenders, about 1 MB per sync,
// lost 25-32% with it when every sync could write zeros).
// An appender whose bytes would reach the zeros being written waits until
// they are (it never writes under them), and so does whatever drains the
// stage. (Zeros written with O_DIRECT|O_DSYNC, which no fdatasync of the
// group commit would have to carry, were tried: the buffered appends wait
// on the inode lock while a direct write runs, and the appends lost more
// than the syncs gained.)
//
// The file is longer than the data while a window exists. Nothing reads
// the file's size for data: readers stop at the published size, and
// recovery scans batches and cuts at the first one that is not valid,
// which a run of zeros never is (a zero length and magic), exactly as it
// cuts a torn tail; zeros alone after the last batch are the window, not
// damage, and are cut with no .corrupt file (a RecoveryEvent with no
// SavedTo, logged at Info rather than Warn). Only
// zeros are ever written ahead: a window never holds stale batches, whose
// valid CRCs recovery could not tell from data.
//
// The window is given back (the file truncated to its data) when the
// segment is sealed, before the seal's fdatasync (so that a sealed
// segment's file, which Open trusts through its index, ends with its
// data), on Close, before its fdatasync, and when the log has not grown
// for prewriteIdle (checked by the shared Syncer's idle round when the log
// has one, so that a hub of many partitions runs no timer per partition):
// a log that is no longer appended to keeps no reserve.

// prewriteIdle is how long a log must not grow before its window is
// given back. A variable for tests.
var prewriteIdle = time.Second

// prewriteRoundMax is the most bytes a sync may carry for it to write
// zeros ahead.
var prewriteRoundMax int64 = 256 << 10

// zeroBlock is what a window is written with: never written, so it takes
// no memory beyond the shared zero page.
var zeroBlock [256 << 10]byte

// prewrite is a window of zeros a sync claimed: [from, to) of seg.
type prewrite struct {
	seg      *segment
	from, to int64
}

// claimPrewrite returns the zeros to write ahead of s's data, if its
// window is short and the sync about to run carries little, and marks
// them as being written. Called with l.mu held, after drain.
func (l *Log) claimPrewrite(s *segment) (prewrite, bool) {
	if l.opts.PrewriteBytes <= 0 || s.written == 0 || l.zeroing {
		return prewrite{}, false
	}
	if s.written-s.size.Load() > prewriteRoundMax {
		// This sync carries enough that the journal commit a new size
		// costs it is small beside the zeros' own writing.
		return prewrite{}, false
	}
	ahead := min(max(s.written/8, reserveMin), l.opts.PrewriteBytes)
	if s.zeroed-s.written >= ahead/2 {
		return prewrite{}, false
	}
	// Whole pages: the page the data ends in is the data's.
	const page = 4096
	from := (max(s.zeroed, s.written) + page - 1) / page * page
	to := min(s.written+ahead, l.opts.SegmentBytes) / page * page
	if to <= from {
		return prewrite{}, false
	}
	l.zeroing, l.zeroFrom = true, from
	l.armPrewriteIdle()
	return prewrite{seg: s, from: from, to: to}, true
}

// writePrewrite writes the zeros of p, with l.mu released, and lets the
// appenders waiting for them go on. A failed write is logged and leaves
// the window as it was: the zeros are an optimisation, and whatever was
// written of them is cut by recovery like any zeros after the data.
func (l *Log) writePrewrite(p prewrite) {
	defer p.seg.release()
	err := p.seg.withFile(func(f File) error {
		for at := p.from; at < p.to; {
			n := min(int64(len(zeroBlock)), p.to-at)
			if _, err := f.WriteAt(zeroBlock[:n], at); err != nil {
				return err
			}
			at += n
		}
		// Their writeback starts now, beside the group commit's syncs,
		// rather than in the next one.
		startWriteback(f, p.from, p.to-p.from)
		return nil
	})
	l.mu.Lock()
	l.zeroing = false
	if err == nil {
		p.seg.zeroed = max(p.seg.zeroed, p.to)
	}
	l.stage.done.Broadcast()
	l.mu.Unlock()
	if err != nil {
		l.opts.Logger.Warn("log: writing zeros ahead of a segment's data failed", "segment", p.seg.path,
			"err", fmt.Errorf("log: writing zeros to %s at %d: %w", p.seg.path, p.from, err))
	}
}

// armPrewriteIdle has the window given back once the log stops growing:
// checked by the Syncer's idle round when the log has one (Options.Syncer:
// one timer for every log that shares it), else by a timer of the log's
// own. Called with l.mu held.
func (l *Log) armPrewriteIdle() {
	if l.idleArmed {
		return
	}
	l.idleArmed = true
	l.idleSeg, l.idleMark = l.active, l.active.written
	if l.opts.Syncer != nil {
		l.opts.Syncer.addIdle(l)
		return
	}
	if l.idleTimer == nil {
		l.idleTimer = time.AfterFunc(prewriteIdle, func() { l.prewriteIdleCheck() })
	} else {
		l.idleTimer.Reset(prewriteIdle)
	}
}

// checkIdleAgain has the window checked again in prewriteIdle, and
// reports so. Called with l.mu held.
func (l *Log) checkIdleAgain() bool {
	if l.opts.Syncer == nil {
		l.idleTimer.Reset(prewriteIdle)
	}
	return true
}

// prewriteIdleCheck gives the window back (and the files kept for reuse,
// and a recycled active segment's stale tail: see recycle.go) if the
// active segment did not grow since the last check, and reports whether
// it is to be checked again (the log grew): the log's own timer is then
// reset, a Syncer's idle round takes it again.
func (l *Log) prewriteIdleCheck() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed.Load() || !l.idleArmed {
		l.idleArmed = false
		return false
	}
	s := l.active
	if s.zeroed <= s.written && len(l.recycle) == 0 {
		l.idleArmed = false
		return false
	}
	if s != l.idleSeg || s.written != l.idleMark {
		l.idleSeg, l.idleMark = s, s.written
		return l.checkIdleAgain()
	}
	l.drain() // no zeros being written, nothing staged; may let appenders in
	if s != l.active || s.written != l.idleMark {
		l.idleSeg, l.idleMark = l.active, l.active.written
		return l.checkIdleAgain()
	}
	l.idleArmed = false
	if l.failed == nil {
		// No sync: a crash before the next one leaves zeros, or a
		// recycled file's stale batches, which recovery cuts.
		dropReserve(s)
	}
	l.dropRecycled() // see recycle.go
	return false
}
