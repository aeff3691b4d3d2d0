package log

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weirhub/weir/codecs"
)

// Tier is the cold store a Log moves closed segments to (Options.Tier):
// one log's space of named objects, such as a key prefix of an S3 bucket.
// The log never imports a store; a caller adapts one. Its methods are safe
// for concurrent use.
type Tier interface {
	// Put stores r's bytes as name, replacing an object there atomically:
	// a reader sees the old object or the new one, never a mix.
	Put(ctx context.Context, name string, r io.Reader) error
	// PutIfAbsent stores r's bytes as name unless an object has that
	// name, when it fails with an error wrapping fs.ErrExist.
	PutIfAbsent(ctx context.Context, name string, r io.Reader) error
	// Get reads n bytes of name from off (n < 0: to the end). A missing
	// object is an error wrapping fs.ErrNotExist.
	Get(ctx context.Context, name string, off, n int64) (io.ReadCloser, error)
	// Delete removes the named objects; missing ones are not an error.
	Delete(ctx context.Context, names []string) error
	// GetVersion reads the whole of name and its version, an opaque tag
	// that differs for different contents (S3's ETag). A missing object
	// is an error wrapping fs.ErrNotExist.
	GetVersion(ctx context.Context, name string) ([]byte, string, error)
	// PutIfMatch stores r's bytes as name if its object is at version,
	// atomically with respect to other PutIfMatch calls, and returns the
	// new version; otherwise it fails with an error wrapping
	// ErrTierFenced.
	PutIfMatch(ctx context.Context, name string, r io.Reader, version string) (string, error)
}

// ErrTierFenced classifies a manifest write refused because the manifest
// changed since the log read it: another server writes the same prefix.
// The log then stops uploading (TierStats.Fenced); its local segments
// stay and stay readable, and appends fail with an error wrapping
// ErrTierFenced until the log is opened again.
var ErrTierFenced = errors.New("log: another server owns the cold tier's prefix")

// TierOpener is an optional interface of a Tier whose objects are files
// on this machine (a directory store, a NAS mount): reads of cold
// segments then pread the object's file, and a network fetch sends it
// with sendfile, instead of going through the ColdCache, which would
// only copy it to another local file. The file is opened read-only; a
// missing object is an error wrapping fs.ErrNotExist.
type TierOpener interface {
	OpenObject(name string) (*os.File, error)
}

// TierLister is an optional interface of a Tier that lists its objects.
// A log whose Tier has it sweeps the objects of segments that no manifest
// lists (uploads a crash cut off before their manifest write, or whose
// manifest write failed), once they are older than
// Options.TierOrphanAge.
type TierLister interface {
	List(ctx context.Context) ([]TierObject, error)
}

// TierObject is an object a TierLister lists.
type TierObject struct {
	Name     string
	Size     int64
	Modified time.Time
}

// ErrTierUnavailable classifies failures to read offsets that live only in
// the cold tier because the store did not answer: the read may be retried.
var ErrTierUnavailable = errors.New("log: cold store unavailable")

// ManifestName is the object that lists a log's segments in its Tier.
const ManifestName = "manifest.json"

// Manifest is the per-log list of the segments in a Tier, oldest first; a
// segment's objects are its .log, .index and .timeindex files, named by
// ManifestSegment.Object. A segment is in the tier once the manifest lists
// it. Every write of the manifest is conditional on the version the log
// read or wrote last (Tier.PutIfMatch), and changes Writer or Generation,
// so that of two servers on one prefix only one writes it.
type Manifest struct {
	Version    int    `json:"version"`
	Writer     string `json:"writer,omitempty"` // the log open that wrote it last
	Generation int64  `json:"generation"`       // one more at each write
	// Start is the log's start offset when the manifest was written, if
	// it lies inside the first segment listed: retention deleted the
	// records below it, and a merge listed a segment that holds some of
	// them (see tierMerge). Open starts the log there. 0 (and absent in
	// manifests written before it) when the first segment's base is the
	// start.
	Start    int64             `json:"start,omitempty"`
	Segments []ManifestSegment `json:"segments"`
}

// ManifestSegment is one segment of a Manifest.
type ManifestSegment struct {
	Base         int64 `json:"base"`  // first offset
	Next         int64 `json:"next"`  // offset after its range: the next segment's base (compaction may have removed records before it)
	Bytes        int64 `json:"bytes"` // size of the .log object
	MaxTimestamp int64 `json:"maxTimestamp"`
	IndexBytes   int64 `json:"indexBytes"` // size of the .index object
	// Tag is the Writer that uploaded the segment, in its objects' names,
	// so that a server fenced out of the prefix never overwrites objects
	// the manifest lists; "" for segments uploaded before tags.
	Tag string `json:"tag,omitempty"`
}

// ObjectName is the name of a segment's object with the suffix ".log",
// ".index" or ".timeindex", for a segment without a tag.
func ObjectName(base int64, suffix string) string { return fmt.Sprintf("%020d%s", base, suffix) }

// Object is the name of the segment's object with the suffix ".log",
// ".index" or ".timeindex": BASE.log, or BASE.TAG.log with a tag.
func (s ManifestSegment) Object(suffix string) string {
	if s.Tag == "" {
		return ObjectName(s.Base, suffix)
	}
	return fmt.Sprintf("%020d.%s%s", s.Base, s.Tag, suffix)
}

// ReadManifest reads a tier's manifest; a tier without one has an empty
// manifest.
func ReadManifest(ctx context.Context, t Tier) (Manifest, error) {
	m, _, err := readManifest(ctx, t)
	return m, err
}

// readManifest reads the manifest and its version ("" when there is
// none).
func readManifest(ctx context.Context, t Tier) (Manifest, string, error) {
	var m Manifest
	b, version, err := t.GetVersion(ctx, ManifestName)
	if errors.Is(err, fs.ErrNotExist) {
		return Manifest{Version: 1}, "", nil
	}
	if err != nil {
		return m, "", fmt.Errorf("%w: reading the manifest: %v", ErrTierUnavailable, err)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, "", fmt.Errorf("%w: manifest: %v", ErrCorrupt, err)
	}
	return m, version, nil
}

// End is the offset after the manifest's last segment, 0 when it is empty.
func (m *Manifest) End() int64 {
	if len(m.Segments) == 0 {
		return 0
	}
	return m.Segments[len(m.Segments)-1].Next
}

func (m *Manifest) find(base int64) (ManifestSegment, bool) {
	i, ok := slices.BinarySearchFunc(m.Segments, base, func(s ManifestSegment, b int64) int {
		return cmpInt(s.Base, b)
	})
	if !ok {
		return ManifestSegment{}, false
	}
	return m.Segments[i], true
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// TierStats describe a log's cold tier.
type TierStats struct {
	RemoteSegments int64 // segments the manifest lists
	RemoteBytes    int64 // bytes of their .log objects
	RemoteEnd      int64 // the offset after the last segment the manifest lists; 0 when it lists none
	ColdSegments   int64 // segments readable only from the tier
	ColdStart      int64 // first offset of the log (-1 without a tier)
	Uploaded       int64 // segments uploaded since Open
	UploadFailures int64 // failed tier passes since Open (each retried)
	LocalDeleted   int64 // local copies deleted after upload since Open
	OrphansSwept   int64 // objects in no manifest deleted since Open
	MergedSegments int64 // cold segments merged into larger ones since Open (see tierMerge)
	// MergeCorrupt counts the merges dropped since Open because a
	// segment object failed its check as it streamed (see mergeReader):
	// the segment stays listed as it is, and is not merged again.
	MergeCorrupt int64
	// Fenced is set once another server wrote the manifest: uploads
	// stopped, local segments stay.
	Fenced bool
}

// tierState is a log's tiering: the manifest and the background uploader.
type tierState struct {
	t      Tier
	kick   chan struct{}
	cancel context.CancelFunc
	ctx    context.Context
	exited chan struct{}

	mu      sync.Mutex // the manifest; held by the uploader while it writes it
	man     Manifest
	version string // the store's version of man, for the next conditional write
	unread  bool   // the store was down at Open: man is not the store's yet
	writer  string // this Open's Manifest.Writer and the Tag of its uploads
	fenced  atomic.Bool

	// cacheID names the log's chunks in a shared ColdCache: unique per
	// Open, so a dataset deleted and created again never reads the old
	// one's chunks.
	cacheID string

	remoteSegs, remoteBytes          atomic.Int64
	remoteEnd                        atomic.Int64
	uploaded, failures, localDeleted atomic.Int64
	swept, merged, mergeCorrupt      atomic.Int64
	lastSweep                        time.Time    // under mu; zero: none since Open
	retired                          []retiredSeg // under mu: see swapCold
	// merging, under mu, is closed when the merge whose objects transfer
	// now is done; nil when none does (see tierMerge).
	merging chan struct{}
	// badParts, under mu, are the objects of segments that failed their
	// check while a merge read them: not merged again.
	badParts map[string]bool
	opened   time.Time
}

// tierOpens numbers the logs opened with a tier, for tierState.cacheID.
var tierOpens atomic.Int64

// tierBackoff bounds the wait between failed tier passes.
var tierBackoff = [2]time.Duration{100 * time.Millisecond, 30 * time.Second}

// attachTier reads the manifest, creating an empty one (with a conditional
// put, so that two servers starting on one empty prefix do not both create
// it) if there is none. Called by Open before recovery.
func (l *Log) attachTier() error {
	t := l.opts.Tier
	ctx, cancel := context.WithCancel(context.Background())
	var id [8]byte
	rand.Read(id[:])
	ts := &tierState{t: t, kick: make(chan struct{}, 1), cancel: cancel, ctx: ctx, exited: make(chan struct{}),
		cacheID: fmt.Sprintf("%s#%d", l.dir, tierOpens.Add(1)), writer: hex.EncodeToString(id[:]), opened: l.opts.Now()}
	m, version, err := readManifest(ctx, t)
	if err != nil {
		// With local segments the log can open and serve them; the
		// manifest (and the cold segments) come once the store answers.
		// An empty directory cannot know where the log ends.
		if bases, lerr := listSegments(l.fs, l.dir, false); lerr != nil || len(bases) == 0 {
			cancel()
			return err
		}
		l.opts.Logger.Warn("log: the cold store is down; serving the local segments until it answers", "dir", l.dir, "err", err)
		ts.unread = true
		m = Manifest{Version: 1}
	} else if version == "" {
		m.Writer = ts.writer
		b, _ := json.Marshal(m)
		if err := t.PutIfAbsent(ctx, ManifestName, bytes.NewReader(b)); err != nil && !errors.Is(err, fs.ErrExist) {
			cancel()
			return fmt.Errorf("%w: creating the manifest: %v", ErrTierUnavailable, err)
		}
		// Ours or another server's: read what is there, and its version.
		if m, version, err = readManifest(ctx, t); err != nil {
			cancel()
			return err
		}
	}
	ts.man, ts.version = m, version
	ts.count()
	l.tier = ts
	l.coldFiles = NewFileCache(math.MaxInt)
	if l.coldCache = l.opts.ColdCache; l.coldCache == nil {
		l.coldCache, _ = NewColdCache("", 64<<20) // in memory: cannot fail
	}
	return nil
}

// tierNext is the offset an empty log directory starts at: the end of what
// the tier holds.
func (l *Log) tierNext() int64 {
	if l.tier == nil {
		return 0
	}
	return l.tier.man.End()
}

// startTier puts the tier's segments below the first local one in front of
// the local segments, and starts the uploader. Called by Open after
// recovery.
func (l *Log) startTier() {
	if !l.tier.unread {
		l.removeStale(l.prependCold())
	}
	go l.tierLoop()
	l.kickTier()
}

// prependCold puts the manifest's segments that end where the log's first
// local segment begins in front of it. Called by Open, or with l.mu held.
//
// Local segments at the front that lie inside a longer cold segment are
// stale copies: a merge listed the longer one after their files were
// deleted, and a power cut before the directory was synced brought the
// files back. They leave the list (the cold segment serves their
// offsets) and are returned for the caller to remove, without l.mu.
func (l *Log) prependCold() (stale []*segment) {
	ts := l.tier
	segs := *l.segs.Load()
	for len(segs) > 1 && segs[0].cold == nil {
		s, next := segs[0], segs[1].base
		i, _ := slices.BinarySearchFunc(ts.man.Segments, s.base+1, func(x ManifestSegment, b int64) int { return cmpInt(x.Base, b) })
		if i == 0 {
			break
		}
		ms := ts.man.Segments[i-1] // the last that begins at or below s
		if ms.Next < next || ms.Base == s.base && ms.Next == next {
			break // not covered, or s is the listed segment's local copy
		}
		stale = append(stale, s)
		segs = segs[1:]
	}
	if len(stale) > 0 {
		l.segs.Store(&segs)
		l.start.Store(segs[0].base)
	}
	first := segs[0].base
	var cold []*segment
	for i := len(ts.man.Segments) - 1; i >= 0; i-- {
		ms := ts.man.Segments[i]
		if ms.Next != first {
			if ms.Next < first {
				break // a gap: older segments are past retention
			}
			continue
		}
		cold = append(cold, l.coldSegment(ms, nil))
		first = ms.Base
	}
	slices.Reverse(cold)
	if len(cold) > 0 {
		all := append(cold, segs...)
		l.segs.Store(&all)
		l.start.Store(all[0].base)
		if s := all[0]; s.cold != nil && s.base < ts.man.Start && ts.man.Start < s.next.Load() {
			// Retention deleted the records below it (Manifest.Start).
			l.start.Store(ts.man.Start)
		}
	}
	return stale
}

// removeStale deletes the files of the stale local copies prependCold
// took out of the list, and makes their deletion durable.
func (l *Log) removeStale(stale []*segment) {
	if len(stale) == 0 {
		return
	}
	for _, s := range stale {
		l.opts.Logger.Warn("log: deleting a stale local copy of segments the cold tier holds merged", "segment", s.path)
		if err := l.removeSegment(s); err != nil {
			l.opts.Logger.Warn("log: deleting a stale local segment failed", "segment", s.path, "err", err)
		}
		s.release()
	}
	if err := l.fs.SyncDir(l.dir); err != nil {
		l.opts.Logger.Warn("log: syncing the directory after deleting stale local segments failed", "dir", l.dir, "err", err)
	}
}

// stopTier stops the uploader and waits for it. Called by Close.
func (l *Log) stopTier() {
	if l.tier == nil {
		return
	}
	l.tier.cancel()
	<-l.tier.exited
}

// kickTier asks the uploader for a pass.
func (l *Log) kickTier() {
	if l.tier == nil {
		return
	}
	select {
	case l.tier.kick <- struct{}{}:
	default:
	}
}

func (ts *tierState) count() {
	var n int64
	for _, s := range ts.man.Segments {
		n += s.Bytes
	}
	ts.remoteSegs.Store(int64(len(ts.man.Segments)))
	ts.remoteBytes.Store(n)
	ts.remoteEnd.Store(ts.man.End())
}

// TierStats returns the log's tier counters; zero without a tier.
func (l *Log) TierStats() TierStats {
	if l.tier == nil {
		return TierStats{ColdStart: -1}
	}
	st := TierStats{RemoteSegments: l.tier.remoteSegs.Load(), RemoteBytes: l.tier.remoteBytes.Load(), RemoteEnd: l.tier.remoteEnd.Load(),
		ColdStart: l.start.Load(), Uploaded: l.tier.uploaded.Load(), UploadFailures: l.tier.failures.Load(),
		LocalDeleted: l.tier.localDeleted.Load(), OrphansSwept: l.tier.swept.Load(), MergedSegments: l.tier.merged.Load(),
		MergeCorrupt: l.tier.mergeCorrupt.Load(), Fenced: l.tier.fenced.Load()}
	for _, s := range *l.segs.Load() {
		if s.cold != nil {
			st.ColdSegments++
		}
	}
	return st
}

// LocalStartOffset is the first offset held in a local segment file.
func (l *Log) LocalStartOffset() int64 {
	for _, s := range *l.segs.Load() {
		if s.cold == nil {
			return s.base
		}
	}
	return l.hw.Load()
}

// tierLoop runs tier passes when kicked (after a segment is sealed, on
// EnforceRetention), and again after a backoff while they fail.
func (l *Log) tierLoop() {
	ts := l.tier
	defer close(ts.exited)
	var backoff time.Duration
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	for {
		if backoff > 0 {
			retry.Reset(backoff)
		}
		select {
		case <-ts.ctx.Done():
			return
		case <-ts.kick:
		case <-retry.C:
		}
		retry.Stop()
		if err := l.tierPass(ts.ctx); err != nil {
			if ts.ctx.Err() != nil || ts.fenced.Load() {
				return // fenced: logged by writeManifest
			}
			ts.failures.Add(1)
			backoff = min(max(2*backoff, tierBackoff[0]), tierBackoff[1])
			l.opts.Logger.Warn("log: cold tier pass failed; local segments stay until it succeeds",
				"dir", l.dir, "retry_in", backoff, "err", err)
			continue
		}
		backoff = 0
	}
}

// tierHook, when set by a test, runs at named points of a tier pass; an
// error stops the pass there.
var tierHook func(point string) error

func hook(point string) error {
	if tierHook != nil {
		return tierHook(point)
	}
	return nil
}

// tierPass makes the tier agree with the log: it forgets segments below
// the start offset (manifest first, then their objects), uploads sealed
// segments the manifest lacks (objects first, then the manifest), and
// deletes local copies that the manifest lists and local retention lets
// go. A crash between any two steps leaves every offset readable: objects
// the manifest does not list are overwritten or are garbage.
func (l *Log) tierPass(ctx context.Context) error {
	ts := l.tier
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.unread {
		m, version, err := readManifest(ctx, ts.t)
		if err != nil {
			return err
		}
		l.mu.Lock()
		ts.man, ts.version, ts.unread = m, version, false
		ts.count()
		stale := l.prependCold()
		l.mu.Unlock()
		l.removeStale(stale)
		l.opts.Logger.Info("log: the cold store answers; its segments are readable again", "dir", l.dir, "start", l.start.Load())
	}
	if err := l.tierFront(ctx); err != nil {
		return err
	}
	if merged, err := l.tierMerge(ctx); errors.Is(err, ErrTierFenced) || errors.Is(err, ErrClosed) {
		return err
	} else if err != nil {
		// The run stays as it is, whole; the next pass tries again.
		l.opts.Logger.Warn("log: merging small cold segments failed", "dir", l.dir, "err", err)
	} else if merged {
		l.kickTier() // the next run, after the next uploads
	}
	l.tierRetire(ctx)
	if err := l.tierSweep(ctx); err != nil {
		// Garbage stays a while longer; the data is whole.
		l.opts.Logger.Warn("log: sweeping the cold tier of objects no manifest lists failed", "dir", l.dir, "err", err)
	}
	return nil
}

// tierFront is the part of a pass that keeps local disk from growing:
// tierTrim, tierUpload, tierDropLocal. Called with tier.mu held, by
// tierPass and, while a merge's objects transfer, by tierMerge.
func (l *Log) tierFront(ctx context.Context) error {
	if err := l.tierTrim(ctx); err != nil {
		return err
	}
	if err := l.tierUpload(ctx); err != nil {
		return err
	}
	l.tierDropLocal()
	return nil
}

// tierSweep deletes the segment objects of the tier that the manifest does
// not list and that are older than TierOrphanAge: uploads that a crash
// (or a failed manifest write) left unrecorded. It runs at the first pass
// a minute (at most TierOrphanAge) after Open, then at most every
// TierOrphanAge; never once fenced, and
// only if the manifest in the store is still the one the log last wrote
// or read (else another server writes the prefix and this log is about
// to be fenced). Called with tier.mu held, after the pass's uploads are
// recorded and its merge listed, so none of this log's own objects is
// unlisted (a pass waits for another's merge before it sweeps: tierMerge).
func (l *Log) tierSweep(ctx context.Context) error {
	ts := l.tier
	lister, ok := ts.t.(TierLister)
	now := l.opts.Now()
	age := l.opts.TierOrphanAge
	if !ok || ts.fenced.Load() || ts.version == "" || (!ts.lastSweep.IsZero() && now.Sub(ts.lastSweep) < age) {
		return nil
	}
	if now.Sub(ts.opened) < min(sweepDelay, age) {
		return nil // let a starting server's catch-up reads have the store first
	}
	ts.lastSweep = now
	objs, err := lister.List(ctx)
	if err != nil {
		return fmt.Errorf("listing: %w", err)
	}
	listed := make(map[string]bool, 3*len(ts.man.Segments))
	for _, s := range ts.man.Segments {
		listed[s.Object(logSuffix)], listed[s.Object(indexSuffix)], listed[s.Object(timeIndexSuffix)] = true, true, true
	}
	for _, r := range ts.retired {
		for _, name := range r.names {
			listed[name] = true // still read: tierRetire deletes them
		}
	}
	var orphans []string
	for _, o := range objs {
		if !listed[o.Name] && isSegmentObject(o.Name) && now.Sub(o.Modified) > age {
			orphans = append(orphans, o.Name)
		}
	}
	if len(orphans) == 0 {
		return nil
	}
	if _, version, err := readManifest(ctx, ts.t); err != nil {
		return err
	} else if version != ts.version {
		return nil // another server wrote it: not ours to sweep
	}
	if err := hook("sweep"); err != nil {
		return err
	}
	if err := ts.t.Delete(ctx, orphans); err != nil {
		return fmt.Errorf("deleting %d objects: %w", len(orphans), err)
	}
	ts.swept.Add(int64(len(orphans)))
	l.opts.Logger.Info("log: swept objects no manifest lists from the cold tier", "dir", l.dir, "objects", len(orphans), "older_than", age)
	return nil
}

// sweepDelay is how long after Open the first sweep waits (at most
// TierOrphanAge): a server starting with many partitions does not list
// every prefix while its consumers catch up.
const sweepDelay = time.Minute

// isSegmentObject reports whether name is one a segment's objects have
// (ManifestSegment.Object): 20 digits, an optional tag, a suffix.
func isSegmentObject(name string) bool {
	if len(name) < 20 {
		return false
	}
	for _, c := range name[:20] {
		if c < '0' || c > '9' {
			return false
		}
	}
	rest := name[20:]
	for _, suf := range []string{logSuffix, indexSuffix, timeIndexSuffix} {
		if rest == suf || strings.HasPrefix(rest, ".") && strings.HasSuffix(rest, suf) && !strings.Contains(rest, "/") {
			return true
		}
	}
	return false
}

// writeManifest writes m in place of the manifest at the version last
// read or written, as the next generation by this writer. A refusal
// (another server wrote it since) fences the log out: ErrTierFenced.
func (l *Log) writeManifest(ctx context.Context, m Manifest) error {
	ts := l.tier
	m.Version, m.Writer, m.Generation = 1, ts.writer, ts.man.Generation+1
	m.Start = max(m.Start, ts.man.Start)
	if len(m.Segments) == 0 || m.Start <= m.Segments[0].Base {
		m.Start = 0 // the first segment's base is the start
	}
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if err := hook("manifest"); err != nil {
		return err
	}
	var version string
	if ts.version == "" {
		// No manifest was there (it was deleted, or the store was empty
		// and down at Open).
		err = ts.t.PutIfAbsent(ctx, ManifestName, bytes.NewReader(b))
		if errors.Is(err, fs.ErrExist) {
			err = fmt.Errorf("%w: %v", ErrTierFenced, err)
		} else if err == nil {
			_, version, err = readManifest(ctx, ts.t)
		}
	} else {
		version, err = ts.t.PutIfMatch(ctx, ManifestName, bytes.NewReader(b), ts.version)
	}
	if errors.Is(err, ErrTierFenced) {
		if ts.fenced.CompareAndSwap(false, true) {
			l.opts.Logger.Error("log: another server wrote this log's cold tier manifest; uploads and appends stop, local segments stay readable: stop one of the two servers",
				"dir", l.dir, "writer", ts.writer, "err", err)
		}
		return fmt.Errorf("log: writing the tier manifest: %w", err)
	}
	if err != nil {
		return fmt.Errorf("log: writing the tier manifest: %w", err)
	}
	ts.man, ts.version = m, version
	ts.count()
	return nil
}

// tierTrim removes the manifest's segments below the start offset, which
// retention has deleted from the log, and records the start offset when
// it lies inside the first segment left (Manifest.Start). Called with
// tier.mu held.
func (l *Log) tierTrim(ctx context.Context) error {
	ts := l.tier
	start := l.start.Load()
	n := 0
	for n < len(ts.man.Segments) && ts.man.Segments[n].Next <= start {
		n++
	}
	inside := n < len(ts.man.Segments) && ts.man.Segments[n].Base < start && ts.man.Start < start
	if n == 0 && !inside {
		return nil
	}
	gone := ts.man.Segments[:n]
	m := Manifest{Version: 1, Start: start, Segments: slices.Clone(ts.man.Segments[n:])}
	if err := l.writeManifest(ctx, m); err != nil {
		return err
	}
	var names []string
	for _, s := range gone {
		names = append(names, s.Object(logSuffix), s.Object(indexSuffix), s.Object(timeIndexSuffix))
	}
	if err := hook("delete"); err != nil {
		return err
	}
	if err := ts.t.Delete(ctx, names); err != nil {
		// The manifest no longer lists them: garbage, not data.
		l.opts.Logger.Warn("log: deleting expired segments from the cold tier failed", "dir", l.dir, "err", err)
	}
	return nil
}

// tierUpload uploads the sealed local segments the manifest lacks, oldest
// first, adding each to the manifest once its objects are stored. Called
// with tier.mu held.
func (l *Log) tierUpload(ctx context.Context) error {
	ts := l.tier
	l.mu.Lock()
	segs := *l.segs.Load()
	var todo []*segment
	ends := map[*segment]int64{}           // the next segment's base
	for i, s := range segs[:len(segs)-1] { // not the active segment
		if s.cold != nil || s.deleted.Load() {
			continue
		}
		if slices.Contains(l.pending, s) || s.corrupt != nil {
			break // not sealed yet, or not servable: later ones wait
		}
		if ms, ok := ts.man.find(s.base); ok && ms.Bytes == s.size.Load() {
			continue // uploaded (a compacted segment of another size goes up again)
		}
		if s.acquire() {
			todo = append(todo, s)
			ends[s] = segs[i+1].base
		}
	}
	l.mu.Unlock()
	defer func() {
		for _, s := range todo {
			s.release()
		}
	}()
	// The manifest is written after every manifestBatch segments and at
	// the end (or at a failure, for what was stored before it): objects
	// it does not list yet are garbage a crash leaves, overwritten by the
	// next upload.
	m := Manifest{Version: 1, Segments: slices.Clone(ts.man.Segments)}
	added := 0
	var firstAdded time.Time // when the first object not yet in the manifest went up
	var replaced []string    // objects of the versions replaced segments had
	flush := func() error {
		if added == 0 {
			return nil
		}
		slices.SortFunc(m.Segments, func(a, b ManifestSegment) int { return cmpInt(a.Base, b.Base) })
		if err := l.writeManifest(ctx, m); err != nil {
			return err
		}
		ts.uploaded.Add(int64(added))
		added = 0
		m.Segments = slices.Clone(m.Segments)
		if len(replaced) > 0 {
			if err := hook("delete"); err != nil {
				return err
			}
			if err := ts.t.Delete(ctx, replaced); err != nil {
				// The manifest no longer lists them: garbage, not data.
				l.opts.Logger.Warn("log: deleting replaced segment objects from the cold tier failed", "dir", l.dir, "err", err)
			}
			replaced = nil
		}
		return nil
	}
	for _, s := range todo {
		ms := ManifestSegment{Base: s.base, Next: ends[s], Bytes: s.size.Load(), MaxTimestamp: s.maxTS.Load(),
			IndexBytes: int64(len(s.off.entries())), Tag: ts.writer}
		i, replacing := slices.BinarySearchFunc(m.Segments, s.base, func(x ManifestSegment, b int64) int { return cmpInt(x.Base, b) })
		if replacing {
			// Compaction rewrote an uploaded segment: its new version
			// goes up under names of its own (this manifest generation),
			// so readers of the listed version never see it change.
			ms.Tag = fmt.Sprintf("%s.%d", ts.writer, ts.man.Generation+1)
		}
		if added == 0 {
			firstAdded = l.opts.Now()
		}
		err := s.withFile(func(f File) error {
			return ts.t.Put(ctx, ms.Object(logSuffix), &uploadReader{f: f, n: ms.Bytes})
		})
		if err == nil {
			err = ts.t.Put(ctx, ms.Object(indexSuffix), bytes.NewReader(s.off.entries()))
		}
		if err == nil {
			err = ts.t.Put(ctx, ms.Object(timeIndexSuffix), bytes.NewReader(s.tim.entries()))
		}
		if err != nil {
			return errors.Join(fmt.Errorf("log: uploading %s: %w", s.path, err), flush())
		}
		if replacing {
			old := m.Segments[i]
			replaced = append(replaced, old.Object(logSuffix), old.Object(indexSuffix), old.Object(timeIndexSuffix))
			m.Segments[i] = ms
		} else {
			m.Segments = append(m.Segments, ms)
			slices.SortFunc(m.Segments, func(a, b ManifestSegment) int { return cmpInt(a.Base, b.Base) })
		}
		added++
		// A sweep deletes unlisted objects older than TierOrphanAge:
		// record them well before.
		if added == manifestBatch || l.opts.Now().Sub(firstAdded) > l.opts.TierOrphanAge/4 {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

// manifestBatch is how many uploaded segments a manifest write adds at
// most: fewer manifest writes (each rewrites the whole list) while a
// backlog uploads, and a bounded amount of garbage after a crash.
const manifestBatch = 16

// uploadReader reads a sealed segment file's first n bytes for an upload,
// with pread (the file is shared with readers, its offset is not used).
// Its Len tells a store the size up front; WriteTo an *os.File (a
// directory store's temporary file) has the kernel copy the bytes
// (copy_file_range), through a descriptor of its own; FileSection lets
// an S3 store send them with sendfile.
type uploadReader struct {
	f      File
	off, n int64
}

func (r *uploadReader) Read(p []byte) (int, error) {
	if r.off >= r.n {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), r.n-r.off)]
	k, err := r.f.ReadAt(p, r.off)
	r.off += int64(k)
	if err == io.EOF && k == len(p) {
		err = nil
	}
	return k, err
}

// Len is the number of bytes left.
func (r *uploadReader) Len() int { return int(r.n - r.off) }

// FileSection is the segment file and the part of it left to read, for
// a store that sends a file's bytes itself (sendfile) instead of reading
// them through r; nil when the file is not an operating system file.
func (r *uploadReader) FileSection() (f *os.File, off, n int64) {
	if o := osOf(r.f); o != nil {
		return o, r.off, r.n - r.off
	}
	return nil, 0, 0
}

// SectionCRC32C is the CRC-32C of the bytes left, a store's checksum of
// the upload (objstore.SectionCRC), from the CRCs the batches carry
// (codecs.CombineCRC32C) without reading their bodies: a sealed segment
// is whole batches, each with the CRC of its bytes after the CRC field.
// From the first batch smaller than crcReadBelow on, it reads the bytes
// and sums them (a combination per small batch costs more). A batch
// whose bytes do not match its CRC gives a CRC the store's server
// refuses: the upload fails, nothing corrupt is stored. An error (a
// header that does not parse, a read past the first byte) leaves the
// store to read the bytes for it.
func (r *uploadReader) SectionCRC32C() (uint32, error) {
	if r.off != 0 {
		return 0, errors.New("log: upload CRC: not at the segment's start")
	}
	var hdr [codecs.HeaderSize]byte
	var sum uint32
	for pos := int64(0); pos < r.n; {
		k, err := r.f.ReadAt(hdr[:min(codecs.HeaderSize, r.n-pos)], pos)
		if k < codecs.HeaderSize {
			if err == nil || err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return 0, fmt.Errorf("log: upload CRC: %w", err)
		}
		h, err := codecs.ParseHeader(hdr[:])
		if err != nil {
			return 0, fmt.Errorf("log: upload CRC: %w", err)
		}
		size := int64(h.Size())
		if pos+size > r.n {
			return 0, fmt.Errorf("log: upload CRC: a batch of %d bytes at %d past the end", size, pos)
		}
		if size < crcReadBelow {
			return r.sumFrom(sum, pos)
		}
		sum = codecs.UpdateCRC32C(sum, hdr[:codecs.ChecksumFrom])
		sum = codecs.CombineCRC32C(sum, h.CRC, size-codecs.ChecksumFrom)
		pos += size
	}
	return sum, nil
}

// sumFrom returns sum, the CRC-32C of the bytes before pos, extended
// with the bytes from pos on, read through a pooled buffer.
func (r *uploadReader) sumFrom(sum uint32, pos int64) (uint32, error) {
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := *bp
	for pos < r.n {
		k, err := r.f.ReadAt(buf[:min(int64(len(buf)), r.n-pos)], pos)
		sum = codecs.UpdateCRC32C(sum, buf[:k])
		pos += int64(k)
		if err != nil && pos < r.n {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return 0, fmt.Errorf("log: upload CRC: %w", err)
		}
	}
	return sum, nil
}

// crcReadBelow is the batch size from which on SectionCRC32C sums the
// bytes: below it, a combination and a header read cost about as much
// as reading and summing the batch.
const crcReadBelow = 32 << 10

func (r *uploadReader) WriteTo(w io.Writer) (int64, error) {
	o := osOf(r.f)
	if _, ok := w.(*os.File); !ok || o == nil {
		bp := copyBufs.Get().(*[]byte)
		defer copyBufs.Put(bp)
		return io.CopyBuffer(writerOnly{w}, readerOnly{r}, *bp)
	}
	f, err := os.Open(o.Name())
	if err != nil {
		return 0, err
	}
	defer f.Close()
	if !sameFile(f, o) {
		// A compaction swapped another file in under the name: read the
		// one held.
		bp := copyBufs.Get().(*[]byte)
		defer copyBufs.Put(bp)
		return io.CopyBuffer(writerOnly{w}, readerOnly{r}, *bp)
	}
	if _, err := f.Seek(r.off, io.SeekStart); err != nil {
		return 0, err
	}
	n, err := io.Copy(w, &io.LimitedReader{R: f, N: r.n - r.off})
	r.off += n
	if err == nil && r.off < r.n {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

func sameFile(a, b *os.File) bool {
	sa, err := a.Stat()
	if err != nil {
		return false
	}
	sb, err := b.Stat()
	return err == nil && os.SameFile(sa, sb)
}

// readerOnly hides a reader's WriteTo.
type readerOnly struct{ io.Reader }

// tierDropLocal replaces the oldest local segments that the manifest lists
// and local retention no longer keeps by their cold counterparts, then
// deletes their files. Readers holding sections keep reading them. Called
// with tier.mu held.
func (l *Log) tierDropLocal() {
	ts := l.tier
	l.mu.Lock()
	lt, lb := l.opts.LocalRetentionTime, l.opts.LocalRetentionBytes
	if lt <= 0 && lb <= 0 {
		l.mu.Unlock()
		return
	}
	now := l.opts.Now().UnixMilli()
	segs := *l.segs.Load()
	var local int64
	for _, s := range segs {
		if s.cold == nil {
			local += s.written
		}
	}
	kept := slices.Clone(segs)
	var gone []*segment
	for i, s := range segs[:len(segs)-1] {
		if s.cold != nil {
			continue
		}
		if l.compacting && segs[i+1].base > l.compactDone {
			// A running compaction may still rewrite s: it must not
			// become cold, or its rewrite is cut off (the log no longer
			// lists the local s) while the tombstones above its older
			// values go. The segments it is done with (its last pass
			// went over them) may go; the next pass moves the rest.
			break
		}
		ms, ok := ts.man.find(s.base)
		if !ok || ms.Next != segs[i+1].base || ms.Bytes != s.size.Load() {
			break // not uploaded, or compacted since: uploaded again first
		}
		maxTS := s.maxTS.Load()
		expired := lt > 0 && maxTS != math.MinInt64 && now-maxTS > lt.Milliseconds()
		tooBig := lb > 0 && local-s.written >= lb
		if !expired && !tooBig {
			break
		}
		local -= s.written
		kept[i] = l.coldSegment(ms, s)
		gone = append(gone, s)
	}
	if len(gone) > 0 {
		l.segs.Store(&kept)
	}
	l.mu.Unlock()
	for _, s := range gone {
		if err := hook("remove"); err != nil {
			return
		}
		if err := l.removeSegment(s); err != nil {
			l.opts.Logger.Warn("log: deleting the local copy of an uploaded segment failed", "segment", s.path, "err", err)
		}
		l.opts.Logger.Info("log: segment now only in the cold tier", "segment", s.path, "bytes", s.written)
		s.release()
		ts.localDeleted.Add(1)
	}
	if len(gone) > 0 {
		// Durably gone before a merge lists a longer segment over
		// them: a copy a power cut brings back is stale (prependCold).
		if err := l.fs.SyncDir(l.dir); err != nil {
			l.opts.Logger.Warn("log: syncing the directory after deleting local copies failed", "dir", l.dir, "err", err)
		}
	}
}

// coldSegment returns a segment read from the tier: its file reads go
// through the cold cache; its offset index comes from local (the local
// copy it replaces, if any) or is fetched on first use.
func (l *Log) coldSegment(ms ManifestSegment, local *segment) *segment {
	tf := &tierFS{l: l, ms: ms}
	path := segmentName(l.dir, ms.Base, logSuffix)
	s := newSegment(tf, l.dir, ms.Base, l.coldFiles.handle(tf, path, os.O_RDONLY, nil))
	s.written, s.writtenNext, s.writtenMaxTS = ms.Bytes, ms.Next, ms.MaxTimestamp
	s.size.Store(ms.Bytes)
	s.next.Store(ms.Next)
	s.maxTS.Store(ms.MaxTimestamp)
	s.cold = &coldSeg{ms: ms}
	if local != nil {
		if e := local.off.entries(); len(e) > 0 {
			s.cold.setIndex(&s.off, slices.Clone(e))
		}
		if e := local.tim.entries(); len(e) > 0 {
			s.cold.setIndex(&s.tim, slices.Clone(e))
		}
		s.cold.loaded = true
	}
	return s
}

// acquireCurrent acquires s or, once the tier has swapped s for its cold
// copy, that copy: a reader never sees the boundary move.
func (l *Log) acquireCurrent(s *segment) (*segment, bool) {
	if s.acquire() {
		return s, true
	}
	return l.acquireReplacement(s)
}

// acquireReplacement acquires the cold segment that replaced s, if any: its
// local copy's, or, for a cold s, the compacted version (see swapCold) or
// the merged segment that holds its offsets (see tierMerge).
func (l *Log) acquireReplacement(s *segment) (*segment, bool) {
	if l.tier == nil {
		return nil, false
	}
	for _, r := range *l.segs.Load() {
		if r != s && r.cold != nil && r.base <= s.base && s.base < r.next.Load() {
			return r, r.acquire()
		}
	}
	return nil, false
}

// coldSeg is the state of a segment read from the tier.
type coldSeg struct {
	ms         ManifestSegment
	mu         sync.Mutex
	loaded     bool
	indexAhead atomic.Bool // its index is being fetched ahead of reads
}

func (c *coldSeg) setIndex(x *index, b []byte) {
	x.mem.Store(&b)
	x.w = len(b) / x.size
	x.n.Store(int64(x.w))
}

// loadColdIndex fetches a cold segment's offset index, once; a failure is
// retried on the next read.
func (l *Log) loadColdIndex(s *segment) error {
	c := s.cold
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.loaded {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), l.opts.TierTimeout)
	defer cancel()
	b, err := l.getObject(ctx, c.ms.Object(indexSuffix))
	if err != nil {
		return err
	}
	if len(b)%offsetEntrySize != 0 {
		return &CorruptError{Path: s.path, Offset: s.base, Err: fmt.Errorf("cold index of %d bytes", len(b))}
	}
	if len(b) > 0 {
		c.setIndex(&s.off, b)
	}
	c.loaded = true
	return nil
}

// tierFS is the FS of a cold segment: opening its .log file gives a file
// whose reads go through the cold cache. Nothing can be written or
// removed through it (the uploader deletes objects).
type tierFS struct {
	l  *Log
	ms ManifestSegment
}

var errColdReadOnly = errors.New("log: cold segments are read-only")

func (t *tierFS) OpenFile(name string, flag int, _ fs.FileMode) (File, error) {
	if flag != os.O_RDONLY {
		return nil, errColdReadOnly
	}
	if o, ok := t.l.tier.t.(TierOpener); ok {
		f, err := o.OpenObject(t.ms.Object(logSuffix))
		if err != nil {
			return nil, fmt.Errorf("%w: opening %s: %v", ErrTierUnavailable, name, err)
		}
		return osFile{f}, nil
	}
	return &coldFile{l: t.l, name: name, key: t.ms.Object(logSuffix), size: t.ms.Bytes, next: t.ms.Next}, nil
}
func (t *tierFS) MkdirAll(string, fs.FileMode) error { return errColdReadOnly }
func (t *tierFS) ReadDir(string) ([]string, error)   { return nil, errColdReadOnly }
func (t *tierFS) Stat(string) (fs.FileInfo, error)   { return nil, errColdReadOnly }
func (t *tierFS) Remove(string) error                { return nil } // see tierTrim
func (t *tierFS) Rename(string, string) error        { return errColdReadOnly }
func (t *tierFS) SyncDir(string) error               { return errColdReadOnly }
func (t *tierFS) Lock(string) (io.Closer, error)     { return nil, errColdReadOnly }

// coldFile is a cold segment's .log object, read through the cold cache.
type coldFile struct {
	l    *Log
	name string // the path the local file had
	key  string
	size int64
	next int64 // the offset after the segment: the next one's base
}

func (f *coldFile) ReadAt(p []byte, off int64) (int, error) {
	if off >= f.size {
		return 0, io.EOF
	}
	want := len(p)
	if off+int64(want) > f.size {
		p = p[:f.size-off]
	}
	c := f.l.coldCache
	n, err := c.readAt(f.l.tier.t, f.l.tier.cacheID, f.key, f.size, p, off, f.l.opts.TierTimeout)
	if err == nil && n < want {
		err = io.EOF
	}
	f.readAheadFrom(off + int64(n))
	return n, err
}

// writeTo writes n bytes of the object from off to w (see
// ColdCache.writeTo).
func (f *coldFile) writeTo(w io.Writer, off, n int64, buf []byte) (int64, error) {
	c := f.l.coldCache
	done, err := c.writeTo(w, f.l.tier.t, f.l.tier.cacheID, f.key, f.size, off, n, buf, f.l.opts.TierTimeout)
	if err == nil && done < n {
		err = io.ErrUnexpectedEOF
	}
	f.readAheadFrom(off + done)
	return done, err
}

// readAheadFrom, for a reader at end, starts fetching as many chunks of
// the next segment as the read-ahead reaches past f's end.
func (f *coldFile) readAheadFrom(end int64) {
	c := f.l.coldCache
	if ahead := (end + readAhead*c.chunk - f.size + c.chunk - 1) / c.chunk; ahead > 0 {
		f.readAheadNext(ahead)
	}
}

// readAheadNext starts fetching the first n chunks of the segment after
// f's, if that one is cold too: a sequential reader crosses into it
// without waiting.
func (f *coldFile) readAheadNext(n int64) {
	segs := *f.l.segs.Load()
	i, ok := slices.BinarySearchFunc(segs, f.next, func(s *segment, b int64) int { return cmpInt(s.base, b) })
	if !ok || segs[i].cold == nil {
		return
	}
	s := segs[i]
	if s.cold.indexAhead.CompareAndSwap(false, true) {
		go f.l.loadColdIndex(s) // a failure is retried by the read that needs it
	}
	f.l.coldCache.prefetchStart(f.l.tier.t, f.l.tier.cacheID, s.cold.ms.Object(logSuffix), s.size.Load(), n, f.l.opts.TierTimeout)
}
func (f *coldFile) WriteAt([]byte, int64) (int, error) { return 0, errColdReadOnly }
func (f *coldFile) Write([]byte) (int, error)          { return 0, errColdReadOnly }
func (f *coldFile) Close() error                       { return nil }
func (f *coldFile) Name() string                       { return f.name }
func (f *coldFile) Stat() (fs.FileInfo, error)         { return nil, errColdReadOnly }
func (f *coldFile) Truncate(int64) error               { return errColdReadOnly }
func (f *coldFile) Sync() error                        { return errColdReadOnly }
