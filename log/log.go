package log

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weirhub/weir/codecs"
)

// Log is one partition's storage. Append is safe for concurrent use and
// serialises writers; all reading methods are safe for concurrent use with
// each other and with Append, and take no lock.
type Log struct {
	dir   string
	opts  Options
	fs    FS
	files *FileCache
	lock  io.Closer

	mu     sync.Mutex // writers: Append, roll, retention, Close
	active *segment   // guarded by mu
	failed error      // sticky; guarded by mu
	timer  *time.Timer
	armed  bool // interval sync pending; guarded by mu

	pending  []*segment     // rolled, not yet sealed; guarded by mu
	sealWG   sync.WaitGroup // background sealers
	removing sync.WaitGroup // unlinks of deleted segments queued on the file cache (see removeSegment)

	segs   atomic.Pointer[[]*segment] // copy-on-write, oldest first
	hw     atomic.Int64               // offsets below are readable
	start  atomic.Int64               // log start offset
	closed atomic.Bool

	pubMu sync.Mutex // orders publications

	gc groupCommit // SyncAlways: see commit.go
	// SyncAlways's window of zeros ahead of the data (see prewrite.go),
	// guarded by mu: zeros are being written from zeroFrom on, and the
	// timer that gives the window back once the log stops growing.
	zeroing   bool
	zeroFrom  int64
	idleTimer *time.Timer
	idleArmed bool
	idleSeg   *segment
	idleMark  int64
	stage     stage           // SyncAlways: appends combined into large writes; guarded by mu; see stage.go
	recycle   []*recycledFile // SyncAlways: deleted segments' files kept for reuse; guarded by mu; see recycle.go

	waitMu sync.Mutex
	waitCh chan struct{} // closed on the next publication, nil if none waits
	done   chan struct{} // closed by Close

	compactMu   sync.Mutex   // one Compact at a time; Close waits for it
	horizon     atomic.Int64 // DeleteHorizon
	firstDirty  int64        // under compactMu: the cleaner checkpoint; see compact.go
	tombDue     int64        // under compactMu: when a tombstone below firstDirty expires (ms; 0 unknown)
	cleanCold   bool         // under compactMu: below firstDirty, the cold segments are clean too (see Compact)
	compacting  bool         // under mu: a Compact runs, so no local segment it may still rewrite becomes cold (see tierDropLocal)
	compactDone int64        // under mu, while compacting: the running Compact is done with the segments below this offset (-1: none)

	recovered []RecoveryEvent
	stats     stats

	maxBatch atomic.Int64 // opts.MaxBatchBytes, read without mu; see SetLimits

	tier      *tierState // nil without Options.Tier; see tier.go
	coldFiles *FileCache // handles of cold segments (no descriptors)
	coldCache *ColdCache
}

// stats are the counters behind Stats.
type stats struct {
	appends, batches, records, bytes, writes, fsyncs, rolls, deleted, unsealed, compacted, recycled atomic.Int64
}

// Stats are a log's counters since Open.
type Stats struct {
	Appends           int64 // Append and AppendAsync calls that wrote
	Batches           int64
	Records           int64
	Bytes             int64
	Writes            int64 // writes of appended batches to segment files (SyncAlways combines appends into fewer)
	Fsyncs            int64 // fdatasync calls on segment files
	Rolls             int64 // segments closed
	SegmentsDeleted   int64 // by retention
	SegmentsCompacted int64 // rewritten by Compact
	SegmentsRecycled  int64 // new segments that took a deleted segment's file (see recycle.go)
}

// Stats returns the log's counters. It is safe to call at any time.
func (l *Log) Stats() Stats {
	return Stats{
		Appends: l.stats.appends.Load(), Batches: l.stats.batches.Load(), Records: l.stats.records.Load(),
		Bytes: l.stats.bytes.Load(), Writes: l.stats.writes.Load(), Fsyncs: l.stats.fsyncs.Load(), Rolls: l.stats.rolls.Load(),
		SegmentsDeleted: l.stats.deleted.Load(), SegmentsCompacted: l.stats.compacted.Load(),
		SegmentsRecycled: l.stats.recycled.Load(),
	}
}

// RecoveryEvent records bytes that Open cut from the end of a segment
// because they did not form valid batches: a torn write, or garbage.
type RecoveryEvent struct {
	Segment  string // the .log file
	Position int64  // where the cut was made
	Dropped  int64  // bytes cut
	SavedTo  string // where the cut bytes were kept, less the zeros at their end; empty if all were zeros
	Reason   string
}

// Open opens the log in dir, creating the directory and an empty log if
// needed, and recovers it (see the package documentation). Only one Log,
// in any process, may have a directory open at a time.
func Open(dir string, opts Options) (*Log, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	fsys := opts.FS
	if err := fsys.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("log: %w", err)
	}
	var lock io.Closer
	if !opts.SkipLock {
		var err error
		if lock, err = fsys.Lock(dir); err != nil {
			if errors.Is(err, ErrLocked) {
				return nil, err
			}
			return nil, fmt.Errorf("log: %w", err)
		}
	}
	l := &Log{dir: dir, opts: opts, fs: fsys, files: opts.Files, lock: lock, done: make(chan struct{})}
	if l.files == nil {
		l.files = NewFileCache(math.MaxInt)
	}
	l.maxBatch.Store(int64(opts.MaxBatchBytes))
	l.gc.init()
	l.stage.done.L = &l.mu
	if opts.Tier != nil {
		if err := l.attachTier(); err != nil {
			l.closeFiles()
			return nil, err
		}
	}
	if err := l.recover(); err != nil {
		if l.tier != nil {
			l.tier.cancel()
		}
		l.closeFiles()
		return nil, err
	}
	if l.tier != nil {
		l.startTier()
	}
	l.gc.synced = l.hw.Load()
	if opts.Sync == SyncInterval && opts.Syncer == nil {
		l.timer = time.AfterFunc(time.Hour, l.intervalSync)
		l.timer.Stop()
	}
	return l, nil
}

// Dir is the directory the log lives in.
func (l *Log) Dir() string { return l.dir }

// HighWatermark is the offset after the last record readers may read: the
// offset the next appended record gets, once published.
func (l *Log) HighWatermark() int64 { return l.hw.Load() }

// StartOffset is the first offset still in the log.
func (l *Log) StartOffset() int64 { return l.start.Load() }

// Recovered lists what Open cut from torn or garbled segment tails.
func (l *Log) Recovered() []RecoveryEvent { return slices.Clone(l.recovered) }

// Append validates the batches in b (one or more whole RecordBatch v2
// batches, as a Kafka Produce request carries them), assigns their offsets
// by rewriting each base offset in b in place, writes them with one write,
// and returns the first one's base offset. With SyncAlways it returns once
// the batches are on disk. A batch that fails validation, or is larger
// than MaxBatchBytes, is rejected with an error wrapping codecs.ErrCorrupt
// or codecs.ErrTooLarge, and nothing of b is stored.
func (l *Log) Append(b []byte) (int64, error) {
	base, next, err := l.AppendAsync(b)
	if err != nil {
		return -1, err
	}
	if l.opts.Sync == SyncAlways {
		if err := l.WaitDurable(next); err != nil {
			return -1, err
		}
	}
	return base, nil
}

// WaitsForDisk reports whether WaitDurable waits for an fsync: with
// SyncAlways it does; with the other policies it returns at once, so a
// caller can answer without waiting on another goroutine.
func (l *Log) WaitsForDisk() bool { return l.opts.Sync == SyncAlways }

// AppendAsync is Append without the wait for the disk: it returns the base
// offset and the offset after the batches as soon as they are written. With
// SyncAlways the batches become visible to readers, and durable, only after
// a WaitDurable(next) (by this caller or another) returns. Callers that
// must release their own locks before waiting use it.
func (l *Log) AppendAsync(b []byte) (base, next int64, err error) {
	return l.appendAsync(b, codecs.ValidateProduced)
}

// AppendAsyncChecked is AppendAsync for batches its caller has just
// checked with codecs.CheckProduced or codecs.ValidateProduced: their
// framing and size are checked again, their CRC-32C is not computed a
// second time. A batch whose checksum was not checked must not be given
// to it.
func (l *Log) AppendAsyncChecked(b []byte) (base, next int64, err error) {
	return l.appendAsync(b, codecs.ValidateProducedFraming)
}

// AppendStaged is AppendAsyncChecked (or AppendAsync, with check set:
// the batches' CRCs are checked here) that returns as soon as the batches
// have their offsets, before they are written: with SyncAlways they may
// wait in the stage for a write that takes other appenders' batches too
// (see stage.go). The caller must call Wait on the returned Staged, once,
// and must not change b until it returns; Wait returns the write's error,
// after which the offsets it returned are not the batches' (they go to
// the appends after). A caller that assigns its own state to the offsets
// under a lock of its own (a hub's producer sequences) takes them under
// that lock and waits for the write after releasing it, so that the
// appends of concurrent callers are combined into one write. With the
// other policies, a batch larger than the stage, or 128 KiB or more when
// no other append is staged or being written, the batches are written
// before it returns.
func (l *Log) AppendStaged(b []byte, check bool) (base, next int64, w Staged, err error) {
	validate := codecs.ValidateProducedFraming
	if check {
		validate = codecs.ValidateProduced
	}
	base, next, res, err := l.appendStage(b, validate, true)
	return base, next, Staged{l: l, res: res}, err
}

// detachAloneMin is the size from which AppendStaged writes an append
// alone at once rather than leave it in the stage for company.
const detachAloneMin = 128 << 10

// Staged is an append that AppendStaged returned before its write.
type Staged struct {
	l   *Log
	res *stageResult // nil when the write was done already
}

// Wait returns once the batches of the append are written, with the
// write's error. It must be called once, and only for an append that
// AppendStaged returned with no error.
func (w Staged) Wait() error {
	if w.res == nil {
		return nil
	}
	l := w.l
	defer l.gc.wrote()
	// The appenders behind the caller's lock, which it has just
	// released, are not yet known to the log: let them stage first,
	// once, so that this write takes them too.
	runtime.Gosched()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.stageWait(w.res, true)
}

func (l *Log) appendAsync(b []byte, validate func([]byte, int) (codecs.Header, error)) (base, next int64, err error) {
	base, next, _, err = l.appendStage(b, validate, false)
	return base, next, err
}

// appendStage is AppendAsync; with detach it returns as soon as the
// batches are staged, with the stage's result for Staged.Wait (nil if
// they were written already).
func (l *Log) appendStage(b []byte, validate func([]byte, int) (codecs.Header, error), detach bool) (base, next int64, res *stageResult, err error) {
	if len(b) == 0 {
		return -1, -1, nil, &codecs.BatchError{BaseOffset: -1, Reason: "no batches", Err: codecs.ErrCorrupt}
	}
	if l.opts.Sync == SyncAlways {
		l.gc.writing.Add(1)
		defer func() {
			if res == nil {
				l.gc.wrote() // after l.mu is released; else by Staged.Wait
			}
		}()
	}
	var records, batches int64
	for p := 0; p < len(b); {
		h, err := validate(b[p:], int(l.maxBatch.Load()))
		if err != nil {
			return -1, -1, nil, fmt.Errorf("log: rejected batch at byte %d of %d: %w", p, len(b), err)
		}
		records += int64(h.NumRecords)
		batches++
		p += h.Size()
	}

	staged := l.opts.Sync == SyncAlways && len(b) <= stageMax
	l.mu.Lock()
	defer l.mu.Unlock()
	for {
		if l.closed.Load() {
			return -1, -1, nil, ErrClosed
		}
		if l.failed != nil {
			return -1, -1, nil, l.failed
		}
		if l.tier != nil && l.tier.fenced.Load() {
			// Another server owns the prefix: what this one would take could
			// never be uploaded, and its disk would only grow.
			return -1, -1, nil, fmt.Errorf("%w: %s takes no more records; stop one of the two servers writing the prefix, then reopen the log", ErrTierFenced, l.dir)
		}
		roll := l.needRoll(l.active, int64(len(b)), records)
		full := l.stage.size+int64(len(b)) > stageMax || len(l.stage.iov) >= stageIovMax
		if (roll || !staged || full) && (l.stage.flushing || l.stage.res != nil) {
			// The file must hold what is staged first; drain may let
			// others in, so check again.
			l.drain()
			continue
		}
		if roll {
			if err := l.roll(); err != nil {
				return -1, -1, nil, err
			}
		}
		if l.zeroing && l.active.written+int64(len(b)) > l.zeroFrom {
			// Zeros are being written where these bytes go (see
			// prewrite.go).
			l.stage.done.Wait()
			continue
		}
		break
	}
	s := l.active
	pos, base := s.written, s.writtenNext
	mark := markOf(s)
	offW, timW, lastIndexed, maxTS := s.off.w, s.tim.w, s.lastIndexed, s.writtenMaxTS
	if l.opts.Sync != SyncNever {
		// With SyncAlways too: a sync that carries too much for a window
		// of zeros to pay (see prewrite.go) still finds its blocks
		// allocated.
		l.reserveFor(s, pos+int64(len(b)))
	}
	var entry [timeEntrySize]byte
	off := base
	for p := 0; p < len(b); {
		codecs.SetBaseOffset(b[p:], off)
		h, _ := codecs.ParseHeader(b[p:])
		l.indexBatch(s, off, pos+int64(p), h.MaxTimestamp, entry[:0])
		if s.firstTS == math.MinInt64 {
			s.firstTS = l.opts.Now().UnixMilli()
		}
		off += int64(h.LastOffsetDelta) + 1
		p += h.Size()
	}
	if staged {
		// Published by WaitDurable once synced.
		// A small detached append waits in the stage: its caller lets
		// the next appenders in before it waits, and they join it. A
		// large one alone is written at once, as AppendAsync writes it:
		// it has little to gain from company.
		r, alone := l.stageAdd(s, b, mark, off, batches, records, !detach || len(b) >= detachAloneMin)
		if detach && !alone {
			return base, off, r, nil
		}
		if err := l.stageWait(r, alone); err != nil {
			return -1, -1, nil, err
		}
		return base, off, nil, nil
	}
	if err := s.withFile(func(f File) error { return writePadded(f, b, pos, s.padFor(pos, len(b))) }); err != nil {
		s.off.w, s.tim.w, s.lastIndexed, s.writtenMaxTS = offW, timW, lastIndexed, maxTS
		s.zeroed = min(s.zeroed, pos)
		if terr := s.withFile(func(f File) error { return f.Truncate(pos) }); terr != nil {
			l.failed = fmt.Errorf("%w: truncating %s after a failed write: %v", ErrFailed, s.path, terr)
		}
		return -1, -1, nil, fmt.Errorf("log: writing %s: %w", s.path, err)
	}
	s.written += int64(len(b))
	s.writtenNext = off
	l.stats.writes.Add(1)
	l.stats.appends.Add(1)
	l.stats.batches.Add(batches)
	l.stats.records.Add(records)
	l.stats.bytes.Add(int64(len(b)))
	switch l.opts.Sync {
	case SyncAlways:
		// Published by WaitDurable once synced.
	case SyncInterval:
		l.publish(s, l.snapshot(s))
		if !l.armed {
			l.armed = true
			if l.opts.Syncer != nil {
				l.opts.Syncer.add(l)
			} else {
				l.timer.Reset(l.opts.SyncInterval)
			}
		}
	case SyncNever:
		l.publish(s, l.snapshot(s))
	}
	return base, off, nil, nil
}

// indexBatch accounts for a batch written at position at with base offset
// off and largest timestamp maxTS: it gets an offset index entry when it is
// the segment's first or IndexIntervalBytes have passed since the last
// entry, and with it a time entry when the newest timestamp before it has
// grown.
func (l *Log) indexBatch(s *segment, off, at, maxTS int64, buf []byte) {
	if s.lastIndexed < 0 || at-s.lastIndexed >= int64(l.opts.IndexIntervalBytes) {
		l.addIndexEntries(s, off, at, buf)
	}
	s.writtenMaxTS = max(s.writtenMaxTS, maxTS)
}

func (l *Log) addIndexEntries(s *segment, off, at int64, buf []byte) {
	if s.writtenMaxTS != math.MinInt64 {
		lastTS := int64(math.MinInt64)
		if e := s.tim.last(); e != nil {
			lastTS, _ = timeEntry(e, 0)
		}
		if s.writtenMaxTS > lastTS {
			s.tim.add(appendTimeEntry(buf[:0], s.writtenMaxTS, s.rel(off)))
		}
	}
	s.off.add(appendOffsetEntry(buf[:0], s.rel(off), uint32(at)))
	s.lastIndexed = at
}

// Blocks are reserved ahead of the write position in steps of an eighth of
// what the segment holds, at least reserveMin and at most reserveMax, and
// never past SegmentBytes. Appends then mostly write into blocks the
// filesystem already allocated, so the interval fdatasync has little block
// allocation to journal and makes them wait less, while a partition's disk
// stays its data plus at most max(reserveMin, data/8, reserveMax). Variables
// so that the benchmark can compare policies (reserveMax 0: none).
var reserveMin, reserveMax int64 = 64 << 10, 4 << 20

// reserveFor makes sure the blocks up to end, and a step beyond, are
// reserved. Called with l.mu held.
func (l *Log) reserveFor(s *segment, end int64) {
	if end <= s.reserved || reserveMax <= 0 {
		return
	}
	ahead := min(max(s.written/8, reserveMin), reserveMax)
	to := max(min(end+ahead, l.opts.SegmentBytes), end)
	s.withFile(func(f File) error { reserve(f, s.reserved, to-s.reserved); return nil })
	s.reserved = to
}

// dropReserve frees the blocks reserved or written with zeros past the
// end of a segment's data.
func dropReserve(s *segment) {
	if s.reserved > s.written || s.zeroed > s.written {
		s.withFile(func(f File) error { releaseReserve(f, s.written); return nil })
	}
	s.reserved, s.zeroed = s.written, s.written
}

func (l *Log) needRoll(s *segment, size, records int64) bool {
	if s.written == 0 {
		return false
	}
	if s.written+size > l.opts.SegmentBytes {
		return true
	}
	if s.writtenNext+records-s.base > math.MaxUint32 {
		return true
	}
	return l.opts.SegmentAge > 0 && l.opts.Now().UnixMilli()-s.firstTS > l.opts.SegmentAge.Milliseconds()
}

// pubState is what one publication makes visible.
type pubState struct {
	size, next, maxTS int64
	offN, timN        int
}

func (l *Log) snapshot(s *segment) pubState {
	return pubState{size: s.written, next: s.writtenNext, maxTS: s.writtenMaxTS, offN: s.off.w, timN: s.tim.w}
}

// publish makes a segment's written state visible to readers: indexes,
// then the high watermark, then the size, and wakes waiters. Publications
// only move forward.
//
// The size goes last: a reader loads the high watermark, then reads bytes
// up to the size, so whatever it returns was already below the high
// watermark when it read it. A client that asks next for the offset after
// the records it got can then never be told the offset is out of range.
// The reverse window, a high watermark ahead of the size, only makes a
// read come back empty for a moment.
func (l *Log) publish(s *segment, p pubState) {
	l.pubMu.Lock()
	moved := p.next > l.hw.Load()
	if moved || p.size > s.size.Load() {
		s.off.publish(p.offN)
		s.tim.publish(p.timN)
		if p.maxTS > s.maxTS.Load() {
			s.maxTS.Store(p.maxTS)
		}
		s.next.Store(p.next)
		if p.next > l.hw.Load() {
			l.hw.Store(p.next)
		}
		s.size.Store(p.size)
	}
	l.pubMu.Unlock()
	l.notify()
	if moved && l.opts.OnPublish != nil {
		l.opts.OnPublish()
	}
}

func (l *Log) notify() {
	l.waitMu.Lock()
	if l.waitCh != nil {
		close(l.waitCh)
		l.waitCh = nil
	}
	l.waitMu.Unlock()
}

// intervalSync is the SyncInterval timer's (or Syncer's) work.
func (l *Log) intervalSync() {
	l.mu.Lock()
	l.armed = false
	if l.closed.Load() || l.failed != nil {
		l.mu.Unlock()
		return
	}
	s := l.active
	s.acquire()
	l.mu.Unlock()
	defer s.release()
	if err := l.fdatasync(s); err != nil {
		l.mu.Lock()
		l.failed = fmt.Errorf("%w: fdatasync %s: %v", ErrFailed, s.path, err)
		l.mu.Unlock()
		l.opts.Logger.Error("log: fsync failed; the log refuses writes until reopened", "segment", s.path, "err", err)
	}
}

// Sync flushes everything appended so far to disk, whatever the policy.
func (l *Log) Sync() error {
	if err := l.waitPending(); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.drain()
	if l.closed.Load() {
		return ErrClosed
	}
	if l.failed != nil {
		return l.failed
	}
	s := l.active
	if err := l.fdatasync(s); err != nil {
		l.failed = fmt.Errorf("%w: fdatasync %s: %v", ErrFailed, s.path, err)
		return l.failed
	}
	if len(l.pending) > 0 {
		// Rolled since waitPending: published once their sealer is done.
		return nil
	}
	l.publish(s, l.snapshot(s))
	l.gc.advance(s.writtenNext)
	return nil
}

// Roll closes the active segment and starts a new one, if the active one
// holds any data.
func (l *Log) Roll() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.drain()
	if l.closed.Load() {
		return ErrClosed
	}
	if l.failed != nil {
		return l.failed
	}
	if l.active.written == 0 {
		return nil
	}
	return l.roll()
}

// roll closes the active segment and starts the next. Called with l.mu
// held, it only creates the new file: the old segment's fdatasync and
// index files are written by a background sealer (see sealInBackground),
// so appenders do not wait for them. Until it is done the old segment is
// pending: SyncAlways appenders, Sync and the sealers of segments rolled
// after it wait for its data to be durable before anything after it counts
// as durable, and recovery after a crash treats it as possibly torn, like
// the active segment.
//
// The new segment takes a file kept for reuse if one is free (see
// recycle.go): the rename is made durable by the old segment's sealer,
// whose directory sync every acknowledgement of the new segment's data
// waits for.
//
// The stage must be empty (see drain).
func (l *Log) roll() error {
	old := l.active
	s := l.takeRecycled(old.writtenNext)
	if s == nil {
		var err error
		if s, err = l.createSegment(old.writtenNext); err != nil {
			return err
		}
	}
	l.finishTimeIndex(old)
	old.durable = make(chan struct{})
	snap := l.snapshot(old)
	old.acquire() // for the sealer
	var prev *segment
	if n := len(l.pending); n > 0 {
		prev = l.pending[n-1]
	}
	l.pending = append(l.pending, old)
	l.sealWG.Add(1)
	go l.sealInBackground(old, prev, snap)

	l.stats.rolls.Add(1)
	l.active = s
	segs := append(slices.Clone(*l.segs.Load()), s)
	l.segs.Store(&segs)
	if s.recycled {
		// Its stale tail is given back once the log is idle.
		l.armPrewriteIdle()
	}
	return nil
}

// sealHook, when set by a test, runs in the sealer of the segment with
// the given base offset before it syncs.
var sealHook func(base int64)

// sealInBackground makes a rolled segment durable and sealed: fdatasync of
// its data (and of the directory, which holds the new segment's name),
// publication of whatever it holds that SyncAlways had not yet published,
// then its index files, written whole (their memory then a cache of them).
//
// Sealers run concurrently and may finish their syncs in any order, but a
// segment counts as durable (is published, advances what WaitDurable
// counts as synced, and closes its durable channel) only once prev, the
// segment rolled before it that was still pending, is durable: otherwise a
// later segment's seal would acknowledge, and show readers, offsets after
// an earlier segment's tail that a power cut can still take.
func (l *Log) sealInBackground(s, prev *segment, snap pubState) {
	defer l.sealWG.Done()
	defer s.release()
	if sealHook != nil {
		sealHook(s.base)
	}
	var err error
	// Before the sync, so that the size it makes durable is the data's:
	// Open trusts a sealed segment's file to end with its data.
	dropReserve(s)
	if l.opts.Sync != SyncNever {
		l.withSealSlot(func() {
			if err = l.fdatasync(s); err != nil {
				err = fmt.Errorf("%w: fdatasync %s: %v", ErrFailed, s.path, err)
			} else if err = l.fs.SyncDir(l.dir); err != nil {
				err = fmt.Errorf("%w: syncing directory %s: %v", ErrFailed, l.dir, err)
			}
		})
	}
	l.mu.Lock()
	if err != nil && l.failed == nil {
		l.failed = err
	}
	l.mu.Unlock()
	if err != nil {
		l.opts.Logger.Error("log: syncing a closed segment failed; the log refuses writes until reopened", "segment", s.path, "err", err)
		s.sealErr = err
		close(s.durable)
		return
	}
	if prev != nil {
		// Holding no seal slot, so that prev's sealer can get one.
		<-prev.durable
		if prev.sealErr != nil {
			s.sealErr = prev.sealErr
			close(s.durable)
			return
		}
	}
	l.publish(s, snap)
	l.gc.advance(snap.next)
	close(s.durable)

	if !s.deleted.Load() {
		l.withSealSlot(func() {
			err := l.writeIndexes(s, true)
			if err == nil && l.opts.Sync != SyncNever {
				// Durable index names spare the next Open a scan.
				err = l.fs.SyncDir(l.dir)
			}
			if err != nil {
				// The in-memory indexes keep serving; the next Open rebuilds the files.
				l.opts.Logger.Warn("log: writing the index of a closed segment failed", "segment", s.path, "err", err)
			}
		})
	}
	l.mu.Lock()
	l.pending = slices.DeleteFunc(l.pending, func(p *segment) bool { return p == s })
	l.mu.Unlock()
	l.kickTier()
}

// withSealSlot runs fn holding one of the file cache's seal slots, which
// bound the sealers holding files open at once.
func (l *Log) withSealSlot(fn func()) {
	l.files.seals <- struct{}{}
	defer func() { <-l.files.seals }()
	fn()
}

// waitPending waits until the segments rolled before now are durable.
func (l *Log) waitPending() error {
	l.mu.Lock()
	pending := slices.Clone(l.pending)
	l.mu.Unlock()
	for _, s := range pending {
		<-s.durable
		if s.sealErr != nil {
			return s.sealErr
		}
	}
	return nil
}

// finishTimeIndex adds the segment's last time index entry, for its
// largest timestamp, if the entries so far do not reach it. Writer only.
func (l *Log) finishTimeIndex(s *segment) {
	if s.writtenMaxTS != math.MinInt64 {
		lastTS := int64(math.MinInt64)
		if e := s.tim.last(); e != nil {
			lastTS, _ = timeEntry(e, 0)
		}
		if s.writtenMaxTS > lastTS {
			s.tim.add(appendTimeEntry(nil, s.writtenMaxTS, s.rel(s.writtenNext)))
		}
	}
}

// seal writes a segment's indexes to disk, after which their memory is a
// cache of the files.
func (l *Log) seal(s *segment) error {
	l.finishTimeIndex(s)
	return l.writeIndexes(s, false)
}

// writeIndexes writes a closed segment's indexes to disk, where they are
// read back from once the file cache drops them (see index.seal). With
// keep the entries in memory stay cached for now (a segment just rolled
// is still read at its tail); without, they are dropped at once.
func (l *Log) writeIndexes(s *segment, keep bool) error {
	for _, x := range []struct {
		idx    *index
		suffix string
	}{{&s.off, indexSuffix}, {&s.tim, timeIndexSuffix}} {
		path := s.base2path(x.suffix)
		if err := writeFileSync(l.fs, path, x.idx.written(), l.opts.Sync != SyncNever); err != nil {
			return fmt.Errorf("log: writing index: %w", err)
		}
	}
	s.off.seal(l.fs, s.base2path(indexSuffix), l.files, &s.deleted, keep)
	s.tim.seal(l.fs, s.base2path(timeIndexSuffix), l.files, &s.deleted, keep)
	return nil
}

func (l *Log) createSegment(base int64) (*segment, error) {
	path := segmentName(l.dir, base, logSuffix)
	f, err := l.fs.OpenFile(path, os.O_CREATE|os.O_RDWR|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("log: creating segment: %w", err)
	}
	return newSegment(l.fs, l.dir, base, l.files.handle(l.fs, path, os.O_RDWR, f)), nil
}

// Close flushes (unless the policy is SyncNever) and closes the log. Readers
// still holding sections keep their files open until they release them.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closed.Swap(true) {
		l.mu.Unlock()
		return ErrClosed
	}
	if l.timer != nil {
		l.timer.Stop()
	}
	if l.idleTimer != nil {
		l.idleTimer.Stop()
	}
	l.mu.Unlock()
	l.stopTier()
	if l.tier != nil {
		// Its chunks are named by this Open: no read asks for them again.
		l.coldCache.forget(l.tier.cacheID)
	}
	// A running compaction sees closed and stops; segments rolled before
	// are synced, published and sealed first.
	l.compactMu.Lock()
	//lint:ignore SA2001 an empty critical section waits for Compact
	l.compactMu.Unlock()
	l.sealWG.Wait()
	l.gc.stop()
	l.mu.Lock()
	l.drain()
	l.dropRecycled()
	var err error
	if l.failed == nil {
		// Before the sync, so that the size it makes durable is the data's.
		dropReserve(l.active)
	}
	if l.failed == nil && l.opts.Sync != SyncNever {
		if err = l.fdatasync(l.active); err == nil {
			snap := l.snapshot(l.active)
			l.publish(l.active, snap)
			l.gc.advance(snap.next)
		}
	}
	l.mu.Unlock()
	close(l.done)
	l.gc.fail(ErrClosed)
	l.notify()
	l.closeFiles()
	l.removing.Wait()
	return err
}

func (l *Log) closeFiles() {
	if p := l.segs.Load(); p != nil {
		for _, s := range *p {
			s.release()
		}
	}
	if l.lock != nil {
		l.lock.Close()
	}
}

// fdatasync syncs a segment's data. Stats.Fsyncs counts the call once it
// returns, so that whoever sees the count grow sees the data on disk.
func (l *Log) fdatasync(s *segment) error {
	defer l.stats.fsyncs.Add(1)
	if l.opts.OnFsync == nil {
		return s.withFile(File.Sync)
	}
	start := time.Now()
	err := s.withFile(File.Sync)
	l.opts.OnFsync(time.Since(start))
	return err
}
