package log

import (
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/weirhub/weir/codecs"
)

const (
	cleanedSuffix = ".cleaned"       // a segment's cleaned file, before the swap
	swapSuffix    = ".swap"          // marker: the cleaned files of this base replace the segment's
	horizonFile   = "delete-horizon" // offsets below which compaction removed tombstones
	// checkpointFile is the cleaner checkpoint: the offset below which the
	// log is clean (each key at most once), where the dirty part starts;
	// followed by " cold" when the segments only in the tier below it are
	// clean too (a run that left them out writes the offset alone).
	checkpointFile = "cleaner-checkpoint"
)

// ErrCompacted classifies *CompactedError.
var ErrCompacted = errors.New("log: tombstones compacted away")

// CompactedError reports a read position below the delete horizon: the
// position Offset is older than tombstones compaction has removed, so a
// reader resuming there could miss deletes and must start again from a
// snapshot of the log. Horizon is the first offset it is safe to resume at.
type CompactedError struct {
	Offset, Horizon int64
}

func (e *CompactedError) Error() string {
	return fmt.Sprintf("log: offset %d is below the delete horizon %d (tombstones there were compacted away)", e.Offset, e.Horizon)
}

func (e *CompactedError) Unwrap() error { return ErrCompacted }

// CompactStats are what one Compact did.
type CompactStats struct {
	Passes            int   // key maps built: more than one when the keys did not fit
	Segments          int   // segments rewritten
	ColdSegments      int   // of those, segments only in the tier (rewritten there)
	RecordsRemoved    int64 // superseded records and tombstones removed
	TombstonesRemoved int64
	BytesBefore       int64 // of the rewritten segments
	BytesAfter        int64
	// DirtyBytes and CleanBytes are the closed segments' bytes above and
	// below the cleaner checkpoint when the run began; MappedBytes, those
	// read to build key maps (the dirty ones only).
	DirtyBytes, CleanBytes, MappedBytes int64
}

// compactHook, when set by a test, is called at each step of a segment's
// swap: "cleaned" (cleaned files written and synced), "committed" (the
// swap marker is durable), "renamed .index" and so on after each rename,
// "swapped" (renamed, directory not yet synced), "done".
var compactHook func(step string)

// DeleteHorizon is the offset below which compaction has removed
// tombstones: a reader that stopped below it may have missed deletes.
// Zero when none has been removed. It survives reopening.
func (l *Log) DeleteHorizon() int64 { return l.horizon.Load() }

// CheckResume returns a *CompactedError when a reader that has read
// everything below offset cannot safely go on from there, because
// compaction removed tombstones at or after offset.
func (l *Log) CheckResume(offset int64) error {
	if h := l.horizon.Load(); offset < h {
		return &CompactedError{Offset: offset, Horizon: h}
	}
	return nil
}

// Compact runs keyed compaction over the closed, sealed segments, if
// Options.Compact is set (it returns at once otherwise), and returns what
// it did. It keeps the latest record of every key (records without a key
// are kept), keeps offsets (the removed ones become gaps), removes a
// tombstone that is the latest of its key once its batch is older than
// DeleteRetention, and never touches the active segment. It runs beside
// appends and reads: each cleaned segment is written to new files and
// swapped in with one short hold of the append lock (renames, no fsync).
//
// Like Kafka's log cleaner it keeps a checkpoint (the file
// cleaner-checkpoint): below it the log is clean, each key at most once;
// above it, the segments closed since are dirty. A run does nothing until
// the dirty bytes are MinCleanableRatio of the closed segments' bytes;
// then it builds the key map from the dirty segments only and rewrites the
// segments whose records those keys supersede, and the checkpoint moves to
// the end of the closed segments. Between such runs, only when a tombstone
// kept below the checkpoint comes of age (DeleteRetention) does a run read
// the clean segments, to remove it. Memory is the key map of
// CompactMapBytes plus a batch at a time; when the dirty keys do not fit
// the map it takes several passes, oldest offsets first. One Compact runs
// at a time per log; Close waits for it.
//
// With a Tier, segments only in the tier are compacted too: their bytes
// count with the local ones for MinCleanableRatio (so a large cold part
// makes runs rarer, as in Kafka, where the ratio is over the whole log),
// a run reads them through the cold cache, and one from which records go
// is rewritten and uploaded as a new version that the manifest swaps to
// (see swapCold); one from which nothing goes is only read. A compacted
// local segment that was uploaded goes up again at the next tier pass.
// Tombstones stay while the tier's manifest is unread (the store was down
// at Open) or the log is fenced out of it: an older value of their key may
// be there.
//
// Segments rolled before the call are compacted too: Compact first waits
// for their background seal (a segment not sealed yet, and every one
// after it, is left to the next run).
func (l *Log) Compact() (CompactStats, error) {
	var st CompactStats
	if !l.opts.Compact {
		return st, nil
	}
	if err := l.waitPending(); err != nil {
		return st, err
	}
	l.compactMu.Lock()
	defer l.compactMu.Unlock()
	cands, minRatio, keepTombs, err := l.cleanable()
	defer func() {
		l.mu.Lock()
		l.compacting = false
		l.mu.Unlock()
	}()
	if err != nil || len(cands) == 0 {
		return st, err
	}
	end := cands[len(cands)-1].next.Load()
	if l.firstDirty > end {
		l.firstDirty = 0 // a checkpoint of another log than this one: all is dirty
	}
	if l.tier != nil && !keepTombs && !l.cleanCold {
		// The checkpoint was written by a run that left cold segments
		// out (an older Weir, a fenced log, a store down at Open): they
		// may hold values the clean part's tombstones delete. All is
		// dirty once, so that every key's latest offset is mapped.
		l.firstDirty = 0
	}
	dirtyFrom := max(l.firstDirty, cands[0].base)
	var clean []*segment
	for _, s := range cands {
		if s.next.Load() <= dirtyFrom {
			st.CleanBytes += s.size.Load()
			clean = append(clean, s)
		} else {
			st.DirtyBytes += s.size.Load()
		}
	}
	due := int64(math.MaxInt64) // when the first tombstone kept comes of age
	switch ratio := float64(st.DirtyBytes) / float64(st.DirtyBytes+st.CleanBytes); {
	case st.DirtyBytes > 0 && (minRatio < 0 || ratio >= minRatio):
		km := newKeyMap(l.opts.CompactMapBytes)
		for from := dirtyFrom; from < end; {
			km.reset()
			upTo, err := l.buildKeyMap(km, cands, from, end, &st)
			if err != nil {
				return st, err
			}
			st.Passes++
			last := upTo >= end
			for i, s := range cands {
				if s.base >= upTo {
					break
				}
				var d *int64
				if last && !keepTombs {
					d = &due
				}
				ns, err := l.cleanSegment(s, km, dirtyFrom, keepTombs, d, &st)
				if err != nil {
					return st, err
				}
				if ns != nil {
					cands[i] = ns
				}
				if last {
					l.compactedBelow(cands, i, end)
				}
			}
			from = upTo
		}
		cp := strconv.AppendInt(nil, end, 10)
		cleanCold := l.tier != nil && !keepTombs
		if cleanCold {
			cp = append(cp, " cold"...)
		}
		if err := writeFileSync(l.fs, filepath.Join(l.dir, checkpointFile), cp, true); err != nil {
			return st, fmt.Errorf("log: compaction: writing the cleaner checkpoint: %w", err)
		}
		l.firstDirty, l.cleanCold = end, cleanCold
	case len(clean) > 0 && !keepTombs && l.opts.Now().UnixMilli() >= l.tombDue:
		// Only tombstones below the checkpoint that came of age go: from
		// local segments; those in the tier wait for the next run above
		// (which reads the cold part anyway), so that a tombstone coming
		// of age does not download it all.
		km := newKeyMap(0)
		for i, s := range clean { // clean is a prefix of cands
			if s.cold != nil {
				continue
			}
			if _, err := l.cleanSegment(s, km, dirtyFrom, false, &due, &st); err != nil {
				return st, err
			}
			l.compactedBelow(cands, i, end)
		}
	default:
		return st, nil
	}
	l.tombDue = due
	return st, nil
}

// compactedBelow tells tierDropLocal that the running compaction will not
// rewrite cands[i] or the segments before it again (its last pass over
// them is done, and cands[i]'s cleaned version is swapped in): they may
// become cold while it goes on with the later ones, whose rewriting a
// move to the tier would cut off (see tierDropLocal). end is the offset
// after the last candidate.
func (l *Log) compactedBelow(cands []*segment, i int, end int64) {
	bound := end
	if i+1 < len(cands) {
		bound = cands[i+1].base
	}
	l.mu.Lock()
	l.compactDone = max(l.compactDone, bound)
	l.mu.Unlock()
}

// cleanable returns the segments compaction may rewrite: the closed ones,
// local and cold, before the first that is still being sealed or has
// damage; the MinCleanableRatio in force (SetLimits changes it); and
// whether tombstones must stay, because older values of their keys may be
// in the tier where compaction cannot reach them: its manifest was not
// read yet (the store was down at Open), or the log is fenced out of it
// (its cold segments cannot be rewritten, and are left out).
func (l *Log) cleanable() (cands []*segment, minRatio float64, keepTombs bool, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed.Load() {
		return nil, 0, false, ErrClosed
	}
	if l.failed != nil {
		return nil, 0, false, l.failed
	}
	// Until Compact returns, no segment it may still rewrite becomes cold
	// (see compactedBelow).
	l.compacting, l.compactDone = true, -1
	coldOK := l.tier != nil && !l.tier.unread && !l.tier.fenced.Load()
	keepTombs = l.tier != nil && !coldOK
	segs := *l.segs.Load()
	for _, s := range segs[:len(segs)-1] {
		if s.cold != nil && !coldOK {
			continue
		}
		if slices.Contains(l.pending, s) || s.corrupt != nil {
			break
		}
		cands = append(cands, s)
	}
	return cands, l.opts.MinCleanableRatio, keepTombs, nil
}

// forEachBatch calls fn with every batch of a closed segment, in order,
// read one at a time into a reused buffer. It returns false, with no
// error, when the segment was deleted meanwhile.
func (l *Log) forEachBatch(s *segment, fn func(pos int64, h *codecs.Header, batch []byte) error) (bool, error) {
	if !s.acquire() {
		return false, nil
	}
	defer s.release()
	f, err := s.fh.pin()
	if err != nil {
		if s.deleted.Load() {
			return false, nil
		}
		return false, err
	}
	defer s.fh.unpin()
	hr := newHeaderReader(f)
	defer hr.done()
	var buf []byte
	limit := s.size.Load()
	for pos := int64(0); pos < limit; {
		if l.closed.Load() {
			return false, ErrClosed
		}
		h, err := hr.header(pos, limit)
		if err != nil {
			return false, s.corruptAt(pos, err)
		}
		buf = slices.Grow(buf[:0], h.Size())[:h.Size()]
		if _, err := f.ReadAt(buf, pos); err != nil && err != io.EOF {
			return false, fmt.Errorf("log: compaction reading %s: %w", s.path, err)
		}
		if err := fn(pos, &h, buf); err != nil {
			return false, err
		}
		pos += int64(h.Size())
	}
	return true, nil
}

// buildKeyMap records the latest offset of every key from offset from on,
// until the map is full or end. It returns where it stopped: the offset
// of the first record whose key did not fit, or end.
func (l *Log) buildKeyMap(km *keyMap, cands []*segment, from, end int64, st *CompactStats) (int64, error) {
	var it codecs.RecordIter
	errFull := errors.New("full")
	stop := end
	for _, s := range cands {
		if s.next.Load() <= from {
			continue
		}
		_, err := l.forEachBatch(s, func(_ int64, h *codecs.Header, batch []byte) error {
			if h.NextOffset() <= from || h.IsControl() {
				return nil
			}
			st.MappedBytes += int64(len(batch))
			if err := it.Reset(batch); err != nil {
				return &CorruptError{Path: s.path, Offset: h.BaseOffset, Err: err}
			}
			for it.Next() {
				r := it.Record()
				if r.Offset < from || r.Key == nil {
					continue
				}
				if !km.put(km.hash(r.Key), r.Offset) {
					stop = r.Offset
					return errFull
				}
			}
			return it.Err()
		})
		if err == errFull {
			return stop, nil
		}
		if err != nil {
			return 0, fmt.Errorf("log: compaction: %w", err)
		}
	}
	return stop, nil
}

// cleanSegment rewrites s without the records the key map supersedes and
// without expired tombstones, and swaps the result in: a tombstone goes
// when it is the latest of its key in the map, or, below cleanBelow (the
// clean part, where a key is at most once), when its key is not in the
// map; none goes with keepTombs. due, if set, is lowered to when the
// first tombstone kept comes of age. It returns the new segment, or nil
// when nothing was removed (or s went meanwhile).
func (l *Log) cleanSegment(s *segment, km *keyMap, cleanBelow int64, keepTombs bool, due *int64, st *CompactStats) (*segment, error) {
	now := l.opts.Now().UnixMilli()
	cleanedPath := s.path + cleanedSuffix
	var (
		out     File
		outPos  int64
		buf     []byte
		it      codecs.RecordIter
		removed int64
		tombs   int64
		horizon int64
		keep    []bool
	)
	flush := func() error {
		if len(buf) == 0 {
			return nil
		}
		_, err := out.WriteAt(buf, outPos)
		outPos += int64(len(buf))
		buf = buf[:0]
		return err
	}
	fail := func(err error) (*segment, error) {
		if out != nil {
			out.Close()
			l.fs.Remove(cleanedPath)
		}
		return nil, fmt.Errorf("log: compacting %s: %w", s.path, err)
	}
	ok, err := l.forEachBatch(s, func(pos int64, h *codecs.Header, batch []byte) error {
		changed := false
		keep = keep[:0]
		if !h.IsControl() {
			if err := it.Reset(batch); err != nil {
				return err
			}
			expired := !keepTombs && (l.opts.DeleteRetention < 0 || now-h.MaxTimestamp > l.opts.DeleteRetention.Milliseconds())
			for it.Next() {
				r := it.Record()
				k := true
				if r.Key != nil {
					latest, found := km.get(km.hash(r.Key))
					switch {
					case found && latest > r.Offset:
						k = false
					case r.Value == nil && expired && (found && latest == r.Offset || !found && r.Offset < cleanBelow):
						k = false
						tombs++
						horizon = max(horizon, r.Offset+1)
					case r.Value == nil && due != nil:
						*due = min(*due, h.MaxTimestamp+l.opts.DeleteRetention.Milliseconds()+1)
					}
				}
				if !k {
					changed = true
					removed++
				}
				keep = append(keep, k)
			}
			if err := it.Err(); err != nil {
				return err
			}
		}
		if !changed && out == nil {
			return nil
		}
		if out == nil {
			// The first change: copy the batches before it as they are.
			f, err := l.fs.OpenFile(cleanedPath, os.O_CREATE|os.O_RDWR|os.O_TRUNC, 0o644)
			if err != nil {
				return err
			}
			out = f
			if pos > 0 {
				if err := s.withFile(func(src File) error {
					prefix := make([]byte, min(pos, 1<<20))
					for at := int64(0); at < pos; {
						n := min(int64(len(prefix)), pos-at)
						if _, err := src.ReadAt(prefix[:n], at); err != nil && err != io.EOF {
							return err
						}
						if _, err := out.WriteAt(prefix[:n], at); err != nil {
							return err
						}
						at += n
					}
					return nil
				}); err != nil {
					return err
				}
			}
			outPos = pos
		}
		if !changed {
			buf = append(buf, batch...)
		} else if slices.Contains(keep, true) {
			rebuilt, err := rebuildBatch(h, batch, keep, &it)
			if err != nil {
				return err
			}
			buf = append(buf, rebuilt...)
		}
		if len(buf) >= 1<<20 {
			return flush()
		}
		return nil
	})
	if err != nil {
		return fail(err)
	}
	if !ok || out == nil {
		if out != nil {
			out.Close()
			l.fs.Remove(cleanedPath)
		}
		return nil, nil
	}
	if err := flush(); err != nil {
		return fail(err)
	}
	if err := out.Sync(); err != nil {
		return fail(err)
	}
	out.Close()
	out = nil

	// Indexes for the cleaned file, written beside it.
	f, err := l.fs.OpenFile(cleanedPath, os.O_RDONLY, 0)
	if err != nil {
		return fail(err)
	}
	tmp := newSegment(l.fs, l.dir, s.base, nil)
	var entry [timeEntrySize]byte
	res := scanSegment(f, s.base, outPos, false, func(pos int64, h *codecs.Header) {
		l.indexBatch(tmp, h.BaseOffset, pos, h.MaxTimestamp, entry[:0])
	})
	f.Close()
	if res.err != nil || res.end != outPos {
		l.fs.Remove(cleanedPath)
		return nil, fmt.Errorf("log: compacting %s: the cleaned file does not scan: %w", s.path, res.err)
	}
	tmp.writtenNext = res.next
	l.finishTimeIndex(tmp)
	for _, x := range []struct {
		idx    *index
		suffix string
	}{{&tmp.off, indexSuffix}, {&tmp.tim, timeIndexSuffix}} {
		if err := writeFileSync(l.fs, s.base2path(x.suffix)+cleanedSuffix, x.idx.written(), true); err != nil {
			l.removeCleaned(s)
			return nil, fmt.Errorf("log: compacting %s: writing the index: %w", s.path, err)
		}
	}
	if err := l.fs.SyncDir(l.dir); err != nil {
		l.removeCleaned(s)
		return nil, fmt.Errorf("log: compacting %s: %w", s.path, err)
	}
	if compactHook != nil {
		compactHook("cleaned")
	}
	// Readers that resume below the horizon must hear of it before the
	// tombstones can be gone: the horizon is durable before the swap.
	if horizon > l.horizon.Load() {
		if err := writeFileSync(l.fs, filepath.Join(l.dir, horizonFile), strconv.AppendInt(nil, horizon, 10), true); err != nil {
			l.removeCleaned(s)
			return nil, fmt.Errorf("log: compacting %s: writing the delete horizon: %w", s.path, err)
		}
		l.horizon.Store(horizon)
	}
	var ns *segment
	if s.cold != nil {
		// The cleaned files go up as the segment's new version; the local
		// ones were only the way there.
		ns, err = l.swapCold(s, tmp, outPos)
		l.removeCleaned(s)
		if err != nil || ns == nil {
			return nil, err
		}
	} else {
		marker := s.base2path(swapSuffix)
		err = writeFileSync(l.fs, marker, nil, true)
		if err == nil {
			err = l.fs.SyncDir(l.dir) // the commit point: the marker is durable
		}
		if err != nil {
			l.removeCleaned(s)
			l.fs.Remove(marker)
			return nil, fmt.Errorf("log: compacting %s: writing the swap marker: %w", s.path, err)
		}
		if compactHook != nil {
			compactHook("committed")
		}
		if ns, err = l.swapIn(s); err != nil || ns == nil {
			return nil, err
		}
		if compactHook != nil {
			compactHook("swapped")
		}
		if err := l.fs.SyncDir(l.dir); err != nil {
			return ns, fmt.Errorf("log: compacting %s: %w", s.path, err)
		}
		l.fs.Remove(marker) // a marker without cleaned files is dropped by Open
		if compactHook != nil {
			compactHook("done")
		}
	}
	st.Segments++
	if s.cold != nil {
		st.ColdSegments++
	}
	st.RecordsRemoved += removed
	st.TombstonesRemoved += tombs
	st.BytesBefore += s.written
	st.BytesAfter += ns.written
	l.stats.compacted.Add(1)
	l.opts.Logger.Info("log: compacted a segment", "segment", s.path, "records_removed", removed,
		"tombstones_removed", tombs, "bytes_before", s.written, "bytes_after", ns.written)
	return ns, nil
}

// swapIn renames a segment's cleaned files over its own and replaces it in
// the segment list, under the append lock; no fsync is done there. The old
// segment's file stays open for the readers that hold it.
func (l *Log) swapIn(s *segment) (*segment, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	segs := *l.segs.Load()
	i := slices.Index(segs, s)
	if i < 0 || i == len(segs)-1 || l.closed.Load() {
		// Deleted by retention meanwhile, or closing: the swap is undone.
		l.removeCleaned(s)
		l.fs.Remove(s.base2path(swapSuffix))
		return nil, nil
	}
	if _, err := s.fh.pin(); err != nil {
		l.removeCleaned(s)
		l.fs.Remove(s.base2path(swapSuffix))
		return nil, fmt.Errorf("log: compacting %s: %w", s.path, err)
	}
	s.held = true
	s.unlinked.Store(true)
	// Its indexes too stay its own: in memory for good.
	s.off.hold()
	s.tim.hold()
	for _, suffix := range []string{indexSuffix, timeIndexSuffix, logSuffix} {
		if err := l.fs.Rename(s.base2path(suffix)+cleanedSuffix, s.base2path(suffix)); err != nil {
			// The marker is durable: the next Open finishes the swap.
			l.failed = fmt.Errorf("%w: compaction swap of %s: %v", ErrFailed, s.path, err)
			return nil, l.failed
		}
		if compactHook != nil {
			compactHook("renamed " + suffix)
		}
	}
	fh := l.files.handle(l.fs, s.path, os.O_RDONLY, nil)
	ns := newSegment(l.fs, l.dir, s.base, fh)
	f, err := fh.pin()
	if err == nil {
		err = l.openClosed(ns, f, segs[i+1].base)
		fh.unpin()
	}
	if err != nil {
		ns.release()
		l.failed = fmt.Errorf("%w: opening compacted %s: %v", ErrFailed, s.path, err)
		return nil, l.failed
	}
	kept := slices.Clone(segs)
	kept[i] = ns
	l.segs.Store(&kept)
	s.release()
	return ns, nil
}

// removeCleaned deletes a segment's cleaned files.
func (l *Log) removeCleaned(s *segment) {
	for _, suffix := range []string{logSuffix, indexSuffix, timeIndexSuffix} {
		l.fs.Remove(s.base2path(suffix) + cleanedSuffix)
	}
}

// rebuildBatch builds the batch h without the records keep marks false,
// keeping its base offset, offset range, producer, attributes and codec.
func rebuildBatch(h *codecs.Header, batch []byte, keep []bool, it *codecs.RecordIter) ([]byte, error) {
	b := codecs.Builder{Compression: h.Compression(), Attributes: h.Attributes}
	if h.ProducerID >= 0 {
		b.SetProducer(h.ProducerID, h.ProducerEpoch, h.BaseSequence)
	}
	if err := it.Reset(batch); err != nil {
		return nil, err
	}
	for i := 0; it.Next(); i++ {
		if keep[i] {
			r := it.Record()
			b.AppendDelta(int32(r.Offset-h.BaseOffset), r.Timestamp, r.Key, r.Value, r.Headers)
		}
	}
	if err := it.Err(); err != nil {
		return nil, err
	}
	b.SetLastOffsetDelta(h.LastOffsetDelta)
	out, err := b.Build()
	if err != nil {
		return nil, err
	}
	codecs.SetBaseOffset(out, h.BaseOffset)
	return out, nil
}

// recoverCompaction finishes the swaps whose marker is durable and undoes
// the others (their cleaned files are deleted), and loads the delete
// horizon. Open calls it before listing the segments.
func (l *Log) recoverCompaction() error {
	names, err := l.fs.ReadDir(l.dir)
	if err != nil {
		return fmt.Errorf("log: %w", err)
	}
	changed := false
	for _, name := range names {
		stem, ok := strings.CutSuffix(name, swapSuffix)
		if !ok {
			continue
		}
		for _, suffix := range []string{indexSuffix, timeIndexSuffix, logSuffix} {
			c := filepath.Join(l.dir, stem+suffix+cleanedSuffix)
			if _, err := l.fs.Stat(c); err == nil {
				if err := l.fs.Rename(c, filepath.Join(l.dir, stem+suffix)); err != nil {
					return fmt.Errorf("log: finishing a compaction swap: %w", err)
				}
				l.opts.Logger.Info("log: finished an interrupted compaction swap", "file", c)
			}
		}
		if err := l.fs.SyncDir(l.dir); err != nil {
			return fmt.Errorf("log: %w", err)
		}
		l.fs.Remove(filepath.Join(l.dir, name))
		changed = true
	}
	for _, name := range names {
		if strings.HasSuffix(name, cleanedSuffix) {
			if _, err := l.fs.Stat(filepath.Join(l.dir, name)); err == nil {
				l.fs.Remove(filepath.Join(l.dir, name))
				changed = true
			}
		}
	}
	if changed {
		if err := l.fs.SyncDir(l.dir); err != nil {
			return fmt.Errorf("log: %w", err)
		}
	}
	l.loadCheckpoint()
	f, err := l.fs.OpenFile(filepath.Join(l.dir, horizonFile), os.O_RDONLY, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("log: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.NewSectionReader(f, 0, math.MaxInt32))
	if err != nil {
		return fmt.Errorf("log: reading %s: %w", horizonFile, err)
	}
	h, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return &CorruptError{Path: filepath.Join(l.dir, horizonFile), Offset: -1, Err: err}
	}
	l.horizon.Store(h)
	return nil
}

// keyMap maps key hashes (128 bits, from two seeds) to the latest offset
// seen, in a fixed table with linear probing: the memory is set when it
// is made and never grows.
type keyMap struct {
	slots        []keySlot
	used, limit  int
	seed0, seed1 maphash.Seed
}

type keySlot struct {
	h0, h1 uint64
	off    int64 // offset + 1; 0 marks a free slot
}

func newKeyMap(bytes int) *keyMap {
	n := max(bytes/24, 64)
	return &keyMap{slots: make([]keySlot, n), limit: n * 3 / 4, seed0: maphash.MakeSeed(), seed1: maphash.MakeSeed()}
}

func (m *keyMap) reset() {
	clear(m.slots)
	m.used = 0
}

func (m *keyMap) hash(key []byte) [2]uint64 {
	return [2]uint64{maphash.Bytes(m.seed0, key), maphash.Bytes(m.seed1, key)}
}

// put records off for the key; it returns false, storing nothing, when
// the key is new and the map is full.
func (m *keyMap) put(h [2]uint64, off int64) bool {
	for i := h[0] % uint64(len(m.slots)); ; i = (i + 1) % uint64(len(m.slots)) {
		s := &m.slots[i]
		if s.off == 0 {
			if m.used >= m.limit {
				return false
			}
			*s = keySlot{h0: h[0], h1: h[1], off: off + 1}
			m.used++
			return true
		}
		if s.h0 == h[0] && s.h1 == h[1] {
			s.off = max(s.off, off+1)
			return true
		}
	}
}

func (m *keyMap) get(h [2]uint64) (int64, bool) {
	for i := h[0] % uint64(len(m.slots)); ; i = (i + 1) % uint64(len(m.slots)) {
		s := &m.slots[i]
		if s.off == 0 {
			return 0, false
		}
		if s.h0 == h[0] && s.h1 == h[1] {
			return s.off - 1, true
		}
	}
}

// loadCheckpoint reads the cleaner checkpoint. Missing or unreadable, the
// whole log counts as dirty: the next compaction maps all of it, which is
// only slower.
func (l *Log) loadCheckpoint() {
	l.firstDirty, l.cleanCold = 0, false
	f, err := l.fs.OpenFile(filepath.Join(l.dir, checkpointFile), os.O_RDONLY, 0)
	if errors.Is(err, os.ErrNotExist) {
		return
	}
	var b []byte
	if err == nil {
		b, err = io.ReadAll(io.NewSectionReader(f, 0, 64))
		f.Close()
	}
	var off int64
	fields := strings.Fields(string(b))
	if err == nil && len(fields) == 0 {
		err = errors.New("empty")
	}
	if err == nil {
		off, err = strconv.ParseInt(fields[0], 10, 64)
	}
	if err != nil || off < 0 {
		l.opts.Logger.Warn("log: the cleaner checkpoint is unreadable; the next compaction reads every segment", "dir", l.dir, "err", err)
		return
	}
	l.firstDirty = off
	l.cleanCold = len(fields) > 1 && fields[1] == "cold"
}
