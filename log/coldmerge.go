package log

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"

	"github.com/weirhub/weir/codecs"
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
//     writer and the next manifest generation, without the tier lock:
//     segments sealed meanwhile go up beside it (whileMerging). The parts'
//     batches are checked as they stream (mergeReader: CRC-32C, offsets
//     within the part and rising); a part that fails drops the merge, is
//     counted (TierStats.MergeCorrupt) and stays listed as it is;
//  2. under the tier lock again, if the manifest still lists the run as
//     it was and retention took none of it, the manifest is written
//     listing the merged segment in place of the run (conditional on the
//     version last read or written);
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
// a segment that a merge replaces. When retention drops the front of the
// run during the manifest write, the merged segment begins below the
// start offset; the next pass records the start in the manifest
// (Manifest.Start), and Open starts there.

// mergeRun returns the first run of cold segments of segs to merge: at
// least two adjacent cold segments, each smaller than half of target,
// together at most target bytes, none of them one that skip excludes.
// Nil if there is none.
func mergeRun(segs []*segment, target int64, skip func(*segment) bool) []*segment {
	var run []*segment
	var sum int64
	for _, s := range segs {
		if s.cold == nil {
			break // the cold segments are a prefix of the list
		}
		p := s.cold.ms
		small := p.Bytes < target/2 && p.Next-p.Base <= math.MaxUint32 && !skip(s)
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
// next. It does nothing while a Compact runs. Called with tier.mu held;
// it lets go of it while the objects transfer (mergeObjects), running
// the uploads that kicks ask for meanwhile (tierFront), and takes it
// again to list the merged segment. A pass that finds another pass's
// merge transferring waits for it.
func (l *Log) tierMerge(ctx context.Context) (bool, error) {
	ts := l.tier
	for ts.merging != nil {
		done := ts.merging
		ts.mu.Unlock()
		<-done
		ts.mu.Lock()
	}
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
	start := l.start.Load()
	run := mergeRun(segs, target, func(s *segment) bool {
		// Below the start: retention took part of it (see tierMerge's
		// swap). A part that failed its check stays as it is.
		return s.base < start || ts.badParts[s.cold.ms.Object(logSuffix)] || ts.badParts[s.cold.ms.Object(indexSuffix)]
	})
	if run == nil {
		return false, nil
	}
	listed := func() bool {
		for _, s := range run {
			if m, ok := ts.man.find(s.base); !ok || m != s.cold.ms {
				return false
			}
		}
		return true
	}
	if !listed() {
		return false, nil // the manifest changed under the list: the next pass looks again
	}
	first, last := run[0].cold.ms, run[len(run)-1].cold.ms
	ms := ManifestSegment{Base: first.Base, Next: last.Next, MaxTimestamp: math.MinInt64,
		Tag: fmt.Sprintf("%s.%d", ts.writer, ts.man.Generation+1)}
	parts := make([]ManifestSegment, len(run))
	for i, s := range run {
		parts[i] = s.cold.ms
		ms.Bytes += parts[i].Bytes
		ms.MaxTimestamp = max(ms.MaxTimestamp, parts[i].MaxTimestamp)
	}

	// The transfer, without tier.mu: uploads of newly sealed segments go
	// on meanwhile. Retention may trim the run, and a kick's pass write
	// the manifest; nothing else changes the run's segments (compaction
	// waits for compactMu, other merges for ts.merging).
	done := make(chan struct{})
	ts.merging = done
	ts.mu.Unlock()
	var offIdx, timIdx []byte
	err := l.whileMerging(ctx, func() (err error) {
		offIdx, timIdx, err = l.mergeObjects(ctx, ms, parts)
		return err
	})
	ts.mu.Lock()
	ts.merging = nil
	close(done)

	ms.IndexBytes = int64(len(offIdx))
	var corrupt *CorruptError
	if err != nil && !listed() {
		// Retention trimmed the run meanwhile (its objects went): the
		// next pass looks again.
		return false, nil
	}
	if errors.As(err, &corrupt) && ctx.Err() == nil {
		if ts.badParts == nil {
			ts.badParts = map[string]bool{}
		}
		ts.badParts[corrupt.Path] = true
		ts.mergeCorrupt.Add(1)
		l.opts.Logger.Warn("log: a cold segment object failed its check while merging; it stays listed as it is and is not merged again until the log reopens",
			"dir", l.dir, "object", corrupt.Path, "offset", corrupt.Offset, "position", corrupt.Position, "err", corrupt.Err)
		return false, nil
	}
	if err == nil {
		err = hook("merge-uploaded")
	}
	if err != nil {
		// Unlisted objects: overwritten by the next try, or swept.
		return false, fmt.Errorf("log: merging cold segments %d to %d: uploading: %w", ms.Base, ms.Next, err)
	}
	if l.start.Load() > ms.Base || !listed() || ts.fenced.Load() {
		// Retention took (some of) the run meanwhile: the objects are
		// orphans, and the next pass looks again. Listed, the merged
		// segment would bring back the records retention deleted at
		// the next Open.
		return false, nil
	}
	i, _ := slices.BinarySearchFunc(ts.man.Segments, first.Base, func(x ManifestSegment, b int64) int { return cmpInt(x.Base, b) })
	m := Manifest{Version: 1, Start: l.start.Load(), Segments: slices.Concat(ts.man.Segments[:i], []ManifestSegment{ms}, ts.man.Segments[i+len(run):])}
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
	// below it stay out of range (the start does not move back), and the
	// next pass's tierTrim records the start in the manifest (Manifest.Start),
	// so that they stay out of range after a restart too.
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

// whileMerging runs transfer in a goroutine of its own and, until it
// returns, a tierFront under tier.mu at each kick: segments sealed while
// a large merge streams go up meanwhile. Called without tier.mu. A
// failed tierFront is logged and counted, and the tier kicked once the
// merge is done, so that the next pass retries it (with backoff).
func (l *Log) whileMerging(ctx context.Context, transfer func() error) error {
	ts := l.tier
	done := make(chan error, 1)
	go func() { done <- transfer() }()
	failed := false
	for {
		select {
		case err := <-done:
			if failed {
				l.kickTier()
			}
			return err
		case <-ts.kick:
			ts.mu.Lock()
			err := l.tierFront(ctx)
			ts.mu.Unlock()
			if err != nil && ctx.Err() == nil {
				failed = true
				ts.failures.Add(1)
				l.opts.Logger.Warn("log: cold tier pass during a merge failed; local segments stay until it succeeds", "dir", l.dir, "err", err)
			}
		}
	}
}

// mergeObjects stores the merged segment ms's three objects: its .log
// object the parts' .log objects one after the other, checked batch by
// batch as they stream (mergeReader), and its indexes built from the
// parts' indexes, which it returns. A part that fails its check is a
// *CorruptError naming the part's object (Path).
func (l *Log) mergeObjects(ctx context.Context, ms ManifestSegment, parts []ManifestSegment) (offIdx, timIdx []byte, err error) {
	ts := l.tier
	var at uint32
	maxTS := int64(math.MinInt64)
	for _, p := range parts {
		idx, err := l.getObject(ctx, p.Object(indexSuffix))
		if err != nil {
			return nil, nil, err
		}
		tim, err := l.getObject(ctx, p.Object(timeIndexSuffix))
		if err != nil {
			return nil, nil, err
		}
		if len(idx)%offsetEntrySize != 0 || len(tim)%timeEntrySize != 0 {
			return nil, nil, &CorruptError{Path: p.Object(indexSuffix), Offset: p.Base, Err: fmt.Errorf("cold indexes of %d and %d bytes", len(idx), len(tim))}
		}
		shift := uint32(p.Base - ms.Base)
		for j := range len(idx) / offsetEntrySize {
			rel, pos := offsetEntry(idx, j)
			offIdx = appendOffsetEntry(offIdx, rel+shift, pos+at)
		}
		for j := range len(tim) / timeEntrySize {
			t, rel := timeEntry(tim, j)
			timIdx = appendTimeEntry(timIdx, max(t, maxTS), rel+shift)
		}
		at += uint32(p.Bytes)
		maxTS = max(maxTS, p.MaxTimestamp)
	}
	body := &mergeReader{ctx: ctx, t: ts.t, parts: parts, left: ms.Bytes}
	err = ts.t.Put(ctx, ms.Object(logSuffix), body)
	if body.rc != nil {
		body.rc.Close()
	}
	if body.err != nil {
		// Whatever the store made of the failed read, the object is
		// not listed.
		return nil, nil, body.err
	}
	if err == nil && body.left != 0 {
		err = fmt.Errorf("the objects hold %d bytes fewer than the manifest lists", body.left)
	}
	if err == nil {
		err = ts.t.Put(ctx, ms.Object(indexSuffix), bytes.NewReader(offIdx))
	}
	if err == nil {
		err = ts.t.Put(ctx, ms.Object(timeIndexSuffix), bytes.NewReader(timIdx))
	}
	return offIdx, timIdx, err
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
// exactly its manifest size, with one GET each, and checks each batch as
// it streams through: its header, its CRC-32C, and its offsets, within
// the part's range and above the batch before. A batch that fails is a
// *CorruptError naming the part's object, returned by the Read that
// would have ended it and by every Read after (err): a corrupt part is
// never stored in a merged object. Its Len tells a store the size up
// front.
type mergeReader struct {
	ctx    context.Context
	t      Tier
	parts  []ManifestSegment // the first is the current part
	rc     io.ReadCloser     // the current part's body
	inPart int64             // bytes of the current part not read yet
	left   int64
	err    error

	// The batch being read: its header's first hn bytes, then (hn ==
	// HeaderSize) body more bytes, whose CRC-32C so far is crc.
	hdr  [codecs.HeaderSize]byte
	hn   int
	body int64
	crc  uint32
	want uint32 // the CRC the batch's header says
	pos  int64  // position in the part of the batch's first byte
	at   int64  // position in the part of the next byte read
	base int64  // the batch's base offset
	next int64  // the offset the next batch must begin at or above
}

func (r *mergeReader) Len() int { return int(r.left) }

func (r *mergeReader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
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
		r.at, r.pos, r.next, r.base = 0, 0, r.parts[0].Base, -1
	}
	n, err := r.rc.Read(p[:min(int64(len(p)), r.inPart)])
	r.inPart -= int64(n)
	r.left -= int64(n)
	if cerr := r.check(p[:n]); cerr != nil {
		return n, r.fail(cerr)
	}
	if r.inPart == 0 && r.hn != 0 {
		// Checked here, not at the next Read: a store that knows the
		// size may not read on to EOF.
		return n, r.fail(fmt.Errorf("the object ends inside a batch (%d bytes of it)", r.at-r.pos))
	}
	if errors.Is(err, io.EOF) {
		if r.inPart > 0 {
			return n, fmt.Errorf("log: %s: %w", r.parts[0].Object(logSuffix), io.ErrUnexpectedEOF)
		}
		err = nil
	}
	return n, err
}

// check runs b, the next bytes of the current part, through the batch
// checks.
func (r *mergeReader) check(b []byte) error {
	for len(b) > 0 {
		if r.hn < codecs.HeaderSize {
			k := copy(r.hdr[r.hn:], b)
			r.hn += k
			r.at += int64(k)
			b = b[k:]
			if r.hn < codecs.HeaderSize {
				return nil
			}
			h, err := codecs.ParseHeader(r.hdr[:])
			r.base = h.BaseOffset
			if err != nil {
				return err
			}
			part := r.parts[0]
			size := int64(h.Size())
			switch {
			case h.BaseOffset < r.next || h.NextOffset() > part.Next:
				return fmt.Errorf("batch of offsets %d to %d, outside the part's %d to %d or not above the batch before (%d)",
					h.BaseOffset, h.LastOffset(), part.Base, part.Next-1, r.next)
			case r.pos+size > part.Bytes:
				return fmt.Errorf("batch of %d bytes past the object's end (%d bytes)", size, part.Bytes)
			}
			r.base, r.next, r.want = h.BaseOffset, h.NextOffset(), h.CRC
			r.body = size - codecs.HeaderSize
			r.crc = codecs.UpdateCRC32C(0, r.hdr[codecs.ChecksumFrom:])
		}
		k := min(int64(len(b)), r.body)
		r.crc = codecs.UpdateCRC32C(r.crc, b[:k])
		r.body -= k
		r.at += k
		b = b[k:]
		if r.body == 0 {
			if r.crc != r.want {
				return fmt.Errorf("CRC-32C is %08x, the batch says %08x", r.crc, r.want)
			}
			r.hn, r.pos, r.base = 0, r.at, -1
		}
	}
	return nil
}

// fail records the current part's failed check as the reader's error.
func (r *mergeReader) fail(err error) error {
	r.err = &CorruptError{Path: r.parts[0].Object(logSuffix), Position: r.pos, Offset: r.base, Err: err}
	return r.err
}
