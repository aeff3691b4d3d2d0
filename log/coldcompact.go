package log

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"slices"
)

// Compaction of cold segments
//
// Compact treats the segments only in the tier like local ones: they
// count as closed bytes for MinCleanableRatio, and a run that rewrites
// reads them (through the cold cache, a batch at a time) with the same
// key map. A cold segment from which nothing goes is left alone: no
// object is written. One from which records go is rewritten into cleaned
// files in the log's directory, as a local one is, then swapped in the
// tier (swapCold):
//
//  1. its three cleaned files go up under new names, tagged with this
//     log's writer and the next manifest generation;
//  2. the manifest is written listing the new version in place of the old
//     one (conditional on the version last read or written: a fenced log
//     rewrites nothing);
//  3. the log swaps the cold segment for one reading the new objects, and
//     drops the cleaned files;
//  4. the old version's objects are deleted by the first tier pass after
//     the last reader holding the old segment releases it.
//
// A crash before 2 leaves the new objects unlisted (swept as orphans,
// TierOrphanAge) and the cleaned files (deleted by Open); after 2 the old
// objects are unlisted and swept. Every offset stays readable throughout:
// the manifest always lists one whole version of each segment.

// retiredSeg is a cold segment replaced by its compacted version: its
// objects go once no reader holds it.
type retiredSeg struct {
	s     *segment
	names []string
}

// swapCold makes the cleaned files of the cold segment s (size bytes; tmp
// holds their indexes) its new version in the tier and in the log. It
// returns the new segment, or nil when retention dropped s meanwhile. An
// error (the store is down, the log is fenced or closing) stops the
// compaction, before it removes tombstones of values s still holds.
func (l *Log) swapCold(s *segment, tmp *segment, size int64) (*segment, error) {
	ts := l.tier
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if err := hook("cold-swap"); err != nil {
		return nil, err
	}
	old := s.cold.ms
	if ts.fenced.Load() {
		// Not ours to write. An error, not a skip: the compaction must
		// stop before it removes tombstones of values s keeps.
		return nil, fmt.Errorf("log: compacting cold %s: %w", s.path, ErrTierFenced)
	}
	i, ok := slices.BinarySearchFunc(ts.man.Segments, old.Base, func(x ManifestSegment, b int64) int { return cmpInt(x.Base, b) })
	if !ok || ts.man.Segments[i] != old {
		if old.Next <= l.start.Load() {
			return nil, nil // trimmed by retention: its records are gone
		}
		return nil, fmt.Errorf("log: compacting cold %s: the manifest lists another version of it", s.path)
	}
	ms := ManifestSegment{Base: old.Base, Next: old.Next, Bytes: size, MaxTimestamp: old.MaxTimestamp,
		IndexBytes: int64(len(tmp.off.written())), Tag: fmt.Sprintf("%s.%d", ts.writer, ts.man.Generation+1)}
	ctx := ts.ctx
	f, err := l.fs.OpenFile(s.path+cleanedSuffix, os.O_RDONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("log: compacting cold %s: %w", s.path, err)
	}
	err = ts.t.Put(ctx, ms.Object(logSuffix), &uploadReader{f: f, n: size})
	f.Close()
	if err == nil {
		err = ts.t.Put(ctx, ms.Object(indexSuffix), bytes.NewReader(tmp.off.written()))
	}
	if err == nil {
		err = ts.t.Put(ctx, ms.Object(timeIndexSuffix), bytes.NewReader(tmp.tim.written()))
	}
	if err == nil {
		err = hook("cold-uploaded")
	}
	if err != nil {
		// Unlisted objects: overwritten by the next try, or swept.
		return nil, fmt.Errorf("%w: compacting cold %s: uploading: %v", ErrTierUnavailable, s.path, err)
	}
	m := Manifest{Version: 1, Segments: slices.Clone(ts.man.Segments)}
	m.Segments[i] = ms
	if err := l.writeManifest(ctx, m); err != nil {
		return nil, fmt.Errorf("log: compacting cold %s: %w", s.path, err)
	}
	if err := hook("cold-listed"); err != nil {
		return nil, err
	}
	ns := l.coldSegment(ms, nil)
	if e := tmp.off.written(); len(e) > 0 {
		ns.cold.setIndex(&ns.off, slices.Clone(e))
	}
	if e := tmp.tim.written(); len(e) > 0 {
		ns.cold.setIndex(&ns.tim, slices.Clone(e))
	}
	ns.cold.loaded = true
	names := []string{old.Object(logSuffix), old.Object(indexSuffix), old.Object(timeIndexSuffix)}
	l.mu.Lock()
	segs := *l.segs.Load()
	j := slices.Index(segs, s)
	if j < 0 || l.closed.Load() {
		// Retention dropped it meanwhile (the next pass forgets the new
		// version), or the log closes (the next Open reads the new
		// version): the old objects are orphans.
		l.mu.Unlock()
		ns.release()
		if l.closed.Load() {
			return nil, ErrClosed
		}
		return nil, nil
	}
	kept := slices.Clone(segs)
	kept[j] = ns
	l.segs.Store(&kept)
	l.mu.Unlock()
	ts.retired = append(ts.retired, retiredSeg{s: s, names: names})
	s.deleted.Store(true)
	s.release()
	return ns, nil
}

// tierRetire deletes the objects of replaced cold segments that no reader
// holds any more. Called with tier.mu held.
func (l *Log) tierRetire(ctx context.Context) {
	ts := l.tier
	var names []string
	kept := ts.retired[:0]
	for _, r := range ts.retired {
		if r.s.refs.Load() > 0 {
			kept = append(kept, r)
			continue
		}
		names = append(names, r.names...)
	}
	clear(ts.retired[len(kept):])
	ts.retired = kept
	if len(names) == 0 {
		return
	}
	if err := ts.t.Delete(ctx, names); err != nil {
		// Not listed: the sweep takes them later.
		l.opts.Logger.Warn("log: deleting replaced cold segment objects failed", "dir", l.dir, "err", err)
	}
}
