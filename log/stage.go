package log

import (
	"fmt"
	"runtime"
	"sync"
)

// SyncAlways appends are combined into large writes (flush combining): an
// appender adds its batches to the log's stage, the list of the bytes that
// follow the active segment's written end (its own buffers, uncopied: an
// appender does not return, and a caller of AppendStaged does not change
// its batches, until they are written), and the first appender that finds
// no write running becomes the flusher: it takes the stage and writes it
// with one pwritev, with Log.mu released, while the next appenders fill a
// new stage. (If other appenders are on their way, validating their
// batches or waiting for Log.mu, it first yields once so that they stage
// too; an appender alone writes at once.) Each appender's AppendAsync
// returns once its own bytes are written, with that write's error:
//
//	appenders  A1 ── stage ── write [A1] ─────┐ returns
//	           A2 ───── stage ─ wait ─────────┴─ write [A2 A3 A4] ─┐ return
//	           A3 ─────── stage ─ wait ──────────────────────────────┤
//	           A4 ──────── stage ─ wait ─────────────────────────────┘
//
// One write of many batches costs the page cache a fraction of what as
// many small writes do (large folios, one allocation and one inode update
// per write instead of per batch: a pwrite loop into a reserved ext4 file
// wrote 1.5 GB/s in writes of one 16 KiB batch and 5.6-6.6 GB/s in writes
// of 64), and with many appenders those writes were most of the gap
// between two fdatasyncs of the group commit (see groupCommit).
//
// A failed write leaves the log as it was before the stage it could not
// write: the file is cut back, the segment's written state (size, next
// offset, index entries) is restored from the stage's mark, and every
// appender of that stage and of the one filled behind it gets the error
// from AppendAsync, none of whom has returned yet, so that no offset it
// handed out can be acknowledged.
//
// Whatever needs the file to hold every appended byte (a sync, a roll,
// Close, retention) first drains: it waits for the running write and
// writes what is staged itself, holding Log.mu.
type stage struct {
	iov      [][]byte     // the appenders' batches, in offset order (their own buffers)
	size     int64        // bytes in iov
	spare    [][]byte     // an empty iov for the next stage, while a write runs with this one's
	res      *stageResult // what the stage's appenders get, nil while empty
	mark     stageMark    // the segment's state where the stage begins
	appends  int64        // counts for Stats, added once written
	batches  int64
	records  int64
	alone    bool      // its first appender writes it at once, without yielding
	flushing bool      // a flusher writes with Log.mu released
	draining int       // drains waiting: no appender starts a flush
	done     sync.Cond // signalled when a write ends; L is Log.mu
}

// stageResult is the outcome of one stage's write. Guarded by Log.mu.
type stageResult struct {
	done bool
	err  error
}

// stageMark is what a segment's writer state was before a stage.
type stageMark struct {
	pos, next, offW, timW, lastIndexed, maxTS, firstTS int64
}

// stageMax bounds a stage: an appender that would make it larger drains
// it first, and a batch larger than that is written on its own.
const stageMax = 4 << 20

// markOf returns s's writer state. Called with l.mu held.
func markOf(s *segment) stageMark {
	return stageMark{pos: s.written, next: s.writtenNext, offW: int64(s.off.w), timW: int64(s.tim.w),
		lastIndexed: s.lastIndexed, maxTS: s.writtenMaxTS, firstTS: s.firstTS}
}

// restore puts s back in the state m. Called with l.mu held.
func (m stageMark) restore(s *segment) {
	s.written, s.writtenNext = m.pos, m.next
	s.off.w, s.tim.w = int(m.offW), int(m.timW)
	s.lastIndexed, s.writtenMaxTS, s.firstTS = m.lastIndexed, m.maxTS, m.firstTS
}

// stageAdd adds b, whose batches were indexed into s from the state m,
// to the stage, uncopied, and returns the result its write will set. With
// alone, an appender alone (no write running, no one else on the way)
// makes a stage of its own that it writes at once (stageWait with yielded
// set); it reports whether it did. Called with l.mu held.
func (l *Log) stageAdd(s *segment, b []byte, m stageMark, next, batches, records int64, alone bool) (*stageResult, bool) {
	st := &l.stage
	if st.res == nil {
		st.res, st.mark = new(stageResult), m
		// Nothing staged, no write running and no other appender on its
		// way: this one writes at once, and only those who come during
		// its write are staged for the next.
		st.alone = alone && !st.flushing && st.draining == 0 && l.gc.writing.Load() <= 1
	}
	st.iov = append(st.iov, b)
	st.size += int64(len(b))
	st.appends++
	st.batches += batches
	st.records += records
	s.written += int64(len(b))
	s.writtenNext = next
	return st.res, st.alone
}

// stageWait returns once the stage whose result is res is written, with
// the write's error: it writes the stage itself if no write runs (after
// yielding once, unless yielded, if others are on their way). Called with
// l.mu held; it may release it while it waits.
func (l *Log) stageWait(res *stageResult, yielded bool) error {
	st := &l.stage
	for !res.done {
		if !st.flushing && st.draining == 0 {
			if !yielded && l.gc.writing.Load() > st.appends {
				// Others are on their way (validating their batches, or
				// waiting for Log.mu): let them stage first, once, so
				// that this write takes them too.
				yielded = true
				l.mu.Unlock()
				runtime.Gosched()
				l.mu.Lock()
				continue
			}
			l.flushStage(true)
			continue
		}
		st.done.Wait()
	}
	return res.err
}

// drain makes the file hold everything appended: it waits for a running
// write, and for zeros being written ahead (see prewrite.go), and writes
// what is staged. Called with l.mu held, which it
// releases only while it waits for a write running.
func (l *Log) drain() {
	st := &l.stage
	if st.flushing || l.zeroing {
		st.draining++
		for st.flushing || l.zeroing {
			st.done.Wait()
		}
		st.draining--
	}
	l.flushStage(false)
}

// flushStage writes the stage, if anything is staged and no write runs:
// with Log.mu released (unlock), or held. Called with l.mu held.
func (l *Log) flushStage(unlock bool) {
	st := &l.stage
	if st.res == nil || st.flushing {
		return
	}
	iov, size, res, mark := st.iov, st.size, st.res, st.mark
	appends, batches, records := st.appends, st.batches, st.records
	st.iov, st.spare, st.size, st.res, st.alone, st.appends, st.batches, st.records = st.spare, nil, 0, nil, false, 0, 0, 0
	s := l.active
	pad := s.padFor(mark.pos, int(size))
	st.flushing = true
	if unlock {
		l.mu.Unlock()
	}
	err := s.withFile(func(f File) error { return writeVec(f, iov, size, mark.pos, pad) })
	if unlock {
		l.mu.Lock()
	}
	st.flushing = false
	if err != nil {
		err = fmt.Errorf("log: writing %s: %w", s.path, err)
		// Appends staged behind this write follow bytes that are not
		// there: they fail with it.
		if st.res != nil {
			st.res.done, st.res.err = true, err
			clear(st.iov)
			st.iov, st.size, st.res, st.appends, st.batches, st.records = st.iov[:0], 0, nil, 0, 0, 0
		}
		mark.restore(s)
		s.zeroed = min(s.zeroed, mark.pos)
		if terr := s.withFile(func(f File) error { return f.Truncate(mark.pos) }); terr != nil && l.failed == nil {
			l.failed = fmt.Errorf("%w: truncating %s after a failed write: %v", ErrFailed, s.path, terr)
		}
	} else {
		l.stats.appends.Add(appends)
		l.stats.batches.Add(batches)
		l.stats.records.Add(records)
		l.stats.bytes.Add(size)
		l.stats.writes.Add(1)
	}
	res.done, res.err = true, err
	// Hold none of the appenders' buffers; keep a short list for a next
	// stage (a long one, from a burst, goes: an idle log keeps little).
	clear(iov)
	if st.spare == nil && cap(iov) <= stageSpareMax {
		st.spare = iov[:0]
	}
	st.done.Broadcast()
}

// stageIovMax bounds the appends in a stage: an appender that would make
// it longer drains it first. A log keeps the list of a written stage for
// a next one only up to stageSpareMax appends (1.5 KiB).
const stageIovMax, stageSpareMax = 1024, 64
