package log

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
)

// Merging small cold segments
//
// Segments roll before they are full (RollTime, idle rolls) and
// compaction shrinks them, so the tier fills with small objects: more
// requests per GiB stored, and per catch-up read. A tier pass merges a run
// of adjacent small cold segments (each under half of TierMergeBytes, all
// together at most TierMergeBytes) into one segment:
//
//	manifest before   … | 00100 (3 KiB) | 00140 (2 KiB) | 00170 (4 KiB) | 00230 (local) …
//	manifest after    … | 00100.TAG (9 KiB, next 00230)  | 00230 (local) …
//
// The merged .log object is the segments' .log objects one after the
// other (each batch keeps its offsets); its offset index is theirs with
// relative offsets and positions shifted, its time index theirs with each
// timestamp raised to the largest of the segments before it, so that both
// stay sorted. It swaps in as a compacted cold segment does (swapCold):
//
//  1. the three objects go up under new names, tagged with this log's
//     writer and the next manifest generation;
//  2. the manifest is written listing the merged segment in place of the
//     run (conditional on the version last read or written);
//  3. the log swaps the run's cold segments for one reading the new
//     objects; a reader holding one of the old ones finishes on it, and a
//     reader that finds one gone reads on from the merged segment;
//  4. the run's objects are deleted by the first tier pass after the last
//     reader holding them releases them (tierRetire).
//
// A crash before 2 leaves the new objects unlisted (swept as orphans,
// TierOrphanAge); after 2 the old ones are unlisted and swept. Every
// offset stays readable: the manifest always lists either the run or the
// merged segment. A merge holds the compaction lock (it is skipped while a
// Compact runs, and a Compact waits for it), so compaction never rewrites
// a segment that a merge replaces.

// mergeRun returns the first run of cold segments of segs to merge: at
// least two adjacent cold segments, each smaller than half of target,
// together at most target bytes. Nil if there is none.
func mergeRun(segs []*segment, target int64) []*segment {
	var run []*segment
	var sum int64
	for _, s := range segs {
		if s.cold == nil {
			break // the cold segments are a prefix of the list
		}
		p := s.cold.ms
		small := p.Bytes < target/2 && p.Next-p.Base <= math.MaxUint32
		if len(run) > 0 && (!small || run[len(run)-1].cold.ms.Next != p.Base || sum+p.Bytes > target ||
			p.Next-run[0].cold.ms.Base > math.MaxUint32) {
			if len(run) > 1 {
				return run
			}
			run, sum = nil, 0
		}
		if small {
			run = append(run, s)
			sum += p.Bytes
		}
	}
	if len(run) > 1 {
		return run
	}
	return nil
}

// tierMerge merges one run of small cold segments (see mergeRun) and
// reports whether it did, so that the caller runs another pass for the
// next. It does nothing while a Compact runs. Called with tier.mu held.
func (l *Log) tierMerge(ctx context.Context) (bool, error) {
	ts := l.tier
	l.mu.Lock()
	target := l.opts.TierMergeBytes
	if target == 0 {
		target = l.opts.SegmentBytes
	}
	l.mu.Unlock()
	if target < 0 || ts.fenced.Load() || ts.unread {
		return false, nil
	}
	if !l.compactMu.TryLock() {
		return false, nil // a Compact runs: the next pass merges
	}
	defer l.compactMu.Unlock()
	segs := *l.segs.Load()
	run := mergeRun(segs, target)
	if run == nil {
		return false, nil
	}
	for _, s := range run {
		if m, ok := ts.man.find(s.base); !ok || m != s.cold.ms {
			return false, nil // the manifest changed under the list: the next pass looks again
		}
	}
	first, last := run[0].cold.ms, run[len(run)-1].cold.ms
	ms := ManifestSegment{Base: first.Base, Next: last.Next, MaxTimestamp: math.MinInt64,
		Tag: fmt.Sprintf("%s.%d", ts.writer, ts.man.Generation+1)}
	var offIdx, timIdx []byte
	parts := make([]ManifestSegment, len(run))
	for i, s := range run {
		p := s.cold.ms
		parts[i] = p
		idx, err := l.getObject(ctx, p.Object(indexSuffix))
		if err != nil {
			return false, err
		}
		tim, err := l.getObject(ctx, p.Object(timeIndexSuffix))
		if err != nil {
			return false, err
		}
		if len(idx)%offsetEntrySize != 0 || len(tim)%timeEntrySize != 0 {
			return false, &CorruptError{Path: s.path, Offset: p.Base, Err: fmt.Errorf("cold indexes of %d and %d bytes", len(idx), len(tim))}
		}
		shift, at := uint32(p.Base-ms.Base), uint32(ms.Bytes)
		for j := range len(idx) / offsetEntrySize {
			rel, pos := offsetEntry(idx, j)
			offIdx = appendOffsetEntry(offIdx, rel+shift, pos+at)
		}
		for j := range len(tim) / timeEntrySize {
			t, rel := timeEntry(tim, j)
			timIdx = appendTimeEntry(timIdx, max(t, ms.MaxTimestamp), rel+shift)
		}
		ms.Bytes += p.Bytes
		ms.MaxTimestamp = max(ms.MaxTimestamp, p.MaxTimestamp)
	}
	ms.IndexBytes = int64(len(offIdx))
	body := &mergeReader{ctx: ctx, t: ts.t, parts: parts, left: ms.Bytes}
	err := ts.t.Put(ctx, ms.Object(logSuffix), body)
	if err == nil && body.left != 0 {
		err = fmt.Errorf("the objects hold %d bytes fewer than the manifest lists", body.left)
	}
	if body.rc != nil {
		body.rc.Close()
	}
	if err == nil {
		err = ts.t.Put(ctx, ms.Object(indexSuffix), bytes.NewReader(offIdx))
	}
	if err == nil {
		err = ts.t.Put(ctx, ms.Object(timeIndexSuffix), bytes.NewReader(timIdx))
	}
	if err == nil {
		err = hook("merge-uploaded")
	}
	if err != nil {
		// Unlisted objects: overwritten by the next try, or swept.
		return false, fmt.Errorf("log: merging cold segments %d to %d: uploading: %w", ms.Base, ms.Next, err)
	}
	if l.start.Load() > ms.Base {
		// Retention took (some of) the run meanwhile: the objects are
		// orphans, and the next pass looks again. Listed, the merged
		// segment would bring back the records retention deleted at
		// the next Open.
		return false, nil
	}
	i, _ := slices.BinarySearchFunc(ts.man.Segments, first.Base, func(x ManifestSegment, b int64) int { return cmpInt(x.Base, b) })
	m := Manifest{Version: 1, Segments: slices.Concat(ts.man.Segments[:i], []ManifestSegment{ms}, ts.man.Segments[i+len(run):])}
	if err := l.writeManifest(ctx, m); err != nil {
		return false, fmt.Errorf("log: merging cold segments %d to %d: %w", ms.Base, ms.Next, err)
	}
	if err := hook("merge-listed"); err != nil {
		return false, err
	}
	ns := l.coldSegment(ms, nil)
	if len(offIdx) > 0 {
		ns.cold.setIndex(&ns.off, offIdx)
	}
	if len(timIdx) > 0 {
		ns.cold.setIndex(&ns.tim, timIdx)
	}
	ns.cold.loaded = true
	l.mu.Lock()
	segs = *l.segs.Load()
	// Retention deletes the oldest segments first: what is left of the
	// run is at the front of the list, or after the segments before it.
	j := slices.Index(segs, run[len(run)-1])
	if j < 0 || l.closed.Load() {
		// Retention dropped the run meanwhile (the next pass forgets
		// the merged segment), or the log closes (the next Open reads
		// it): the run's objects are orphans.
		l.mu.Unlock()
		ns.release()
		if l.closed.Load() {
			return false, ErrClosed
		}
		return false, nil
	}
	k := j
	for k > 0 && slices.Contains(run, segs[k-1]) {
		k--
	}
	// When retention dropped the front of the run during the manifest
	// write, the merged segment begins below the start offset: reads
	// below it stay out of range (the start does not move back; after a
	// restart they read again until retention deletes the merged segment
	// whole).
	gone := segs[k : j+1]
	kept := slices.Concat(segs[:k], []*segment{ns}, segs[j+1:])
	l.segs.Store(&kept)
	l.mu.Unlock()
	// Every segment of the run is retired, those retention took before
	// the swap too: the manifest no longer lists them, and a reader may
	// still hold them.
	for _, s := range run {
		p := s.cold.ms
		ts.retired = append(ts.retired, retiredSeg{s: s, names: []string{p.Object(logSuffix), p.Object(indexSuffix), p.Object(timeIndexSuffix)}})
		if slices.Contains(gone, s) {
			s.deleted.Store(true)
			s.release()
		}
	}
	ts.merged.Add(int64(len(run)))
	l.opts.Logger.Info("log: merged cold segments", "dir", l.dir, "segments", len(run), "offsets", [2]int64{ms.Base, ms.Next - 1}, "bytes", ms.Bytes)
	return true, nil
}

// getObject reads a whole object of the tier.
func (l *Log) getObject(ctx context.Context, name string) ([]byte, error) {
	rc, err := l.tier.t.Get(ctx, name, 0, -1)
	if err != nil {
		return nil, fmt.Errorf("%w: reading %s: %v", ErrTierUnavailable, name, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return nil, fmt.Errorf("%w: reading %s: %v", ErrTierUnavailable, name, err)
	}
	return b, nil
}

// mergeReader reads the .log objects of parts one after the other, each
// exactly its manifest size, with one GET each. Its Len tells a store
// the size up front.
type mergeReader struct {
	ctx    context.Context
	t      Tier
	parts  []ManifestSegment // the first is the current part
	rc     io.ReadCloser     // the current part's body
	inPart int64             // bytes of the current part not read yet
	left   int64
}

func (r *mergeReader) Len() int { return int(r.left) }

func (r *mergeReader) Read(p []byte) (int, error) {
	for r.inPart == 0 {
		if r.rc != nil {
			r.rc.Close()
			r.rc = nil
			r.parts = r.parts[1:]
		}
		for len(r.parts) > 0 && r.parts[0].Bytes == 0 {
			r.parts = r.parts[1:] // compacted empty: nothing to read
		}
		if len(r.parts) == 0 {
			return 0, io.EOF
		}
		rc, err := r.t.Get(r.ctx, r.parts[0].Object(logSuffix), 0, r.parts[0].Bytes)
		if err != nil {
			return 0, fmt.Errorf("%w: reading %s: %v", ErrTierUnavailable, r.parts[0].Object(logSuffix), err)
		}
		r.rc, r.inPart = rc, r.parts[0].Bytes
	}
	n, err := r.rc.Read(p[:min(int64(len(p)), r.inPart)])
	r.inPart -= int64(n)
	r.left -= int64(n)
	if errors.Is(err, io.EOF) {
		if r.inPart > 0 {
			return n, fmt.Errorf("log: %s: %w", r.parts[0].Object(logSuffix), io.ErrUnexpectedEOF)
		}
		err = nil
	}
	return n, err
}
