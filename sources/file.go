package sources

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/weirhub/weir/connectors"
)

var fileSpec = connectors.Spec{
	Kind:    connectors.SourceKind,
	Name:    "file",
	Summary: "Tail files matched by globs, following rotation, with checkpoints: no line lost, none repeated.",
	Doc: "Every line of every file matched by paths (and by no exclude pattern) is a record (the line break, \\n or " +
		"\\r\\n, removed; empty lines are skipped), with the headers weir.file (the file's path, where the globs last " +
		"found it), weir.offset (the byte offset of the line's start in that file) and weir.file.id (16 hex digits " +
		"identifying the file: a hash of its device, inode, birth time and first line, which stays the same when " +
		"the file is renamed by rotation and differs for a new file, one reusing an inode, or a file truncated and " +
		"written again). weir.file.id and weir.offset name a line for good, also when it is read again after a " +
		"crash: sinks derive deterministic ids from them (the elasticsearch sink's id: origin). The globs are " +
		"matched again every glob_interval, so new files are picked up while running. Files seen for the first " +
		"time when the source starts are read from read_from; files that appear later are always read from their " +
		"beginning, so that nothing written to a freshly rotated file is missed.\n\n" +
		"Positions are checkpointed in the state directory, per file, keyed by the file's identity: its device " +
		"and inode, its birth time where the filesystem records one, and the first fingerprint_bytes of its " +
		"content (fewer while the file is shorter). A checkpoint moves only when the pipeline acknowledged the " +
		"lines, in order: after a crash the source reads again what was not acknowledged (at least once); after " +
		"a clean shutdown it goes on exactly where it stopped.\n\n" +
		"Rotation is followed both ways. By rename (logrotate's default): the old file is read to its end through " +
		"the descriptor already open, and kept open for close_after after its last data in case the writer " +
		"still appends to it, while the new file at the path is read from its beginning. By copytruncate: a file " +
		"that shrinks below the read position, or whose first bytes change, is read again from offset 0. A file " +
		"deleted or renamed out of the globs is closed once read to its end and idle for close_after; the " +
		"checkpoint of a deleted file is dropped then, so that a new file which gets the same inode is read from " +
		"its beginning. With rename rotation, let the globs match the rotated names too (app.log*): after a " +
		"restart the source then finishes a rotated file it had not read to its end. With copytruncate, match " +
		"only the live file (app.log): the rotated copy is a new file, and would be read again.\n\n" +
		"Files ending in .gz are skipped unless include_compressed is set: then each is read once, whole and " +
		"decompressed (weir.offset counts decompressed bytes), once its size has stopped changing, and " +
		"remembered as done.\n\n" +
		"A line longer than max_line_bytes is cut there, gets the header weir.truncated: true, and the rest of it " +
		"is skipped without being buffered. A last line without its line break yet is held until the break " +
		"arrives, or handed on after partial_timeout with the header weir.partial: true (what is written after " +
		"it then starts a record of its own). With multiline, a line matching start begins a record and the " +
		"lines after it (a stack trace) join it, separated by \\n, until the next start line, max_lines, or " +
		"timeout without a new line.\n\n" +
		"Records are handed on in batches of batch_size lines, or of what was read within batch_period of a " +
		"batch's first line. At most max_pending batches wait for their acknowledgement; then the source stops " +
		"reading (the data waits in the files, not in memory). Files are polled every poll_interval (no inotify: " +
		"polling works the same on every filesystem, network mounts included, and cannot miss an event).\n\n" +
		"mode: read_once reads instead of tailing, for backfills and benchmarks (like Logstash's file input in " +
		"mode read, or Redpanda Connect's file input): the globs are matched once, at the start; every matched " +
		"file is read from read_from (or its checkpoint) to the end it has then, its last line handed on even " +
		"without a line break; then the source ends, so that `weir run --until-drained` exits once everything is " +
		"delivered. Checkpoints are kept as in tail mode: a second run reads only what was added since.",
	Fields: []connectors.Field{
		{Name: "paths", Type: connectors.TypeStrings, Required: true,
			Doc:     "Glob patterns of the files to read (filepath.Match syntax; a ** path segment matches any number of directories). Relative patterns are relative to the working directory.",
			Example: []string{"/var/log/app/*.log", "/var/log/nginx/**/access.log"}},
		{Name: "exclude", Type: connectors.TypeStrings,
			Doc:     "Glob patterns of files to leave out: a pattern with a path separator matches the whole path, one without matches the file's name.",
			Example: []string{"*.tmp", "/var/log/app/debug/**"}},
		{Name: "mode", Type: connectors.TypeString, Default: "tail", Enum: []string{"tail", "read_once"},
			Doc: "tail: follow the files for ever (new files, rotation, appended lines); read_once: read the files matched at the start to their end, then end the source."},
		{Name: "read_from", Type: connectors.TypeString, Default: "beginning", Enum: []string{"beginning", "end"},
			Doc: "Where to start in a file found at startup without a checkpoint: beginning, or end (after its last whole line). Files appearing later are read from their beginning."},
		{Name: "glob_interval", Type: connectors.TypeDuration, Default: "1s", Min: "1ms", Doc: "How often the globs are matched again to find new, rotated and deleted files."},
		{Name: "poll_interval", Type: connectors.TypeDuration, Default: "250ms", Min: "1ms", Doc: "How often open files are checked for new data once read to their end."},
		{Name: "fingerprint_bytes", Type: connectors.TypeSize, Default: "1KiB", Min: "1B", Max: "1MiB", Doc: "How many of a file's first bytes, with its device and inode, identify it."},
		{Name: "checkpoint_interval", Type: connectors.TypeDuration, Default: "1s", Min: "0s",
			Doc: "Most often positions are written to the state directory (and always on close); 0: after every acknowledgement."},
		{Name: "close_after", Type: connectors.TypeDuration, Default: "5s", Min: "0s",
			Doc: "How long a file deleted or renamed out of the globs stays open after its last new data, for writers still appending to it."},
		{Name: "forget_after", Type: connectors.TypeDuration, Default: "7d",
			Doc: "How long the checkpoint of a file the globs no longer find is kept (a deleted file's is dropped at once)."},
		{Name: "include_compressed", Type: connectors.TypeBool, Default: false, Doc: "Read matched .gz files, once each, decompressed; default: skip them."},
		{Name: "max_line_bytes", Type: connectors.TypeSize, Default: "960KiB", Min: "1B", Max: "1GiB", Doc: "Longer lines (and multiline records) are cut here and marked with the header weir.truncated: true. The default leaves 64KiB under a dataset's default max_message_bytes (1MiB) for the record's headers and batch framing, so a cut line is still stored."},
		{Name: "partial_timeout", Type: connectors.TypeDuration, Default: "5s", Min: "1ms",
			Doc: "How long a last line without its line break is held before it is handed on with the header weir.partial: true."},
		{Name: "multiline", Type: connectors.TypeObject, Doc: "Join lines into records, such as stack traces; default: a record per line.",
			Fields: []connectors.Field{
				{Name: "start", Type: connectors.TypeString, Required: true, Doc: "Regular expression (RE2) matching the first line of a record.", Example: `^\d{4}-\d{2}-\d{2}`},
				{Name: "max_lines", Type: connectors.TypeInt, Default: 500, Min: 1, Doc: "Most lines in a record; the next line starts a new one."},
				{Name: "timeout", Type: connectors.TypeDuration, Default: "1s", Min: "1ms", Doc: "A record ends when no line joined it for this long."},
			}},
		{Name: "batch_size", Type: connectors.TypeInt, Default: 1000, Min: 1, Doc: "Most records in a batch."},
		{Name: "batch_period", Type: connectors.TypeDuration, Default: "200ms", Min: "1ms", Doc: "Longest wait for a fuller batch after its first record was read."},
		{Name: "max_pending", Type: connectors.TypeInt, Default: 8, Min: 1, Doc: "Most batches handed on and not yet acknowledged; then reading waits."},
	},
	Example: `sources:
  app:
    file:
      paths: [/var/log/app/*.log, /var/log/nginx/**/access.log]
      exclude: ["*.tmp"]
      read_from: end
      multiline: {start: '^\d{4}-\d{2}-\d{2} ', max_lines: 200, timeout: 2s}
      batch_size: 2000
    to: logs`,
}

func init() { connectors.MustRegisterSource(fileSpec, newFile) }

// Headers of the records of the file source. TruncatedHeader (see stdin)
// marks cut lines.
const (
	// FileHeader holds the path of the file a record was read from.
	FileHeader = "weir.file"
	// FileIDHeader holds the identity of the file a record was read from,
	// 16 hex digits that stay the same when the file is renamed and
	// differ for another file at the same path or with the same inode
	// (see File ids in file_checkpoint.go). With OffsetHeader it names a
	// line for good: sinks derive deterministic ids from the two.
	FileIDHeader = "weir.file.id"
	// OffsetHeader holds the byte offset, in decimal, of the record's
	// first line in its file (in the decompressed stream of a .gz file).
	OffsetHeader = "weir.offset"
	// PartialHeader is set (to "true") on a record made of a last line
	// whose line break did not arrive within partial_timeout.
	PartialHeader = "weir.partial"
)

// errFileClosed is returned by the file source's Read after Close.
var errFileClosed = errors.New("sources: file: source closed")

// fileConfig is the checked configuration of a file source.
type fileConfig struct {
	paths, exclude     []string // absolute patterns (exclude names without a separator stay as they are)
	readFromEnd        bool
	readOnce           bool // mode read_once
	globInterval       time.Duration
	pollInterval       time.Duration
	fingerprintBytes   int
	checkpointInterval time.Duration
	closeAfter         time.Duration
	forgetAfter        time.Duration
	includeCompressed  bool
	maxLine            int
	partialTimeout     time.Duration
	mlStart            *regexp.Regexp // nil: a record per line
	mlMaxLines         int
	mlTimeout          time.Duration
	batchSize          int
	batchPeriod        time.Duration
	maxPending         int
}

// fileSource tails files: a connectors.Source and connectors.Connector.
//
// Concurrency: Read is called by one goroutine at a time (the runtime's);
// everything about reading (open descriptors, buffers, the batch being
// built) belongs to it, guarded by readMu. AckFuncs run on any goroutine
// and only touch acknowledgement state (committed positions, the queue of
// batches in flight), guarded by mu, which Read takes briefly when it
// hands a batch over. Close may be called from any goroutine, also while
// Read waits: it stops Read, waits for it to return, then closes the
// files and writes the checkpoints.
//
// Memory: every batch's values and header values live in one buffer
// allocated for that batch, which belongs to the caller once Read returns
// it; the source keeps no reference to it and never reuses it. Per-file
// read buffers are reused and bounded by about max_line_bytes plus 64KiB.
type fileSource struct {
	cfg      fileConfig
	log      *slog.Logger
	stateDir string

	readMu  sync.Mutex // held by Read and Connect, and by Close once Read returned
	started bool
	open    []*fileState  // files with a descriptor, oldest first
	dirtyF  []*fileState  // files whose consumed position moved since it was registered
	batch   fileLineBatch // the batch being built; kept across Reads cut short by ctx
	nextGlb time.Time
	gzSeen  map[fileKey]fileGzSighting // .gz files seen once, waiting for their size to settle
	scratch []byte                     // for reading first bytes

	mu       sync.Mutex // guards known, inflight, dirty, closed and the fileState fields marked so
	known    map[fileKey]*fileState
	inflight int  // batches handed over and not yet acknowledged
	dirty    bool // checkpoints changed since last written
	closed   bool
	acked    chan struct{} // 1-buffered: an acknowledgement arrived

	saveMu sync.Mutex // serializes checkpoint writes

	done      chan struct{} // closed by Close
	closeOnce sync.Once
	saverDone chan struct{} // closed when the saver goroutine returns; nil if none started
}

var (
	_ connectors.Source    = (*fileSource)(nil)
	_ connectors.Connector = (*fileSource)(nil)
)

func newFile(conf *connectors.Config, res connectors.Resources) (connectors.Source, error) {
	cfg := fileConfig{
		readFromEnd:        conf.String("read_from") == "end",
		readOnce:           conf.String("mode") == "read_once",
		globInterval:       conf.Duration("glob_interval"),
		pollInterval:       conf.Duration("poll_interval"),
		fingerprintBytes:   int(conf.Size("fingerprint_bytes")),
		checkpointInterval: conf.Duration("checkpoint_interval"),
		closeAfter:         conf.Duration("close_after"),
		forgetAfter:        conf.Duration("forget_after"),
		includeCompressed:  conf.Bool("include_compressed"),
		maxLine:            int(conf.Size("max_line_bytes")),
		partialTimeout:     conf.Duration("partial_timeout"),
		batchSize:          conf.Int("batch_size"),
		batchPeriod:        conf.Duration("batch_period"),
		maxPending:         conf.Int("max_pending"),
	}
	var errs []error
	bad := func(field, format string, args ...any) { errs = append(errs, conf.Errorf(field, format, args...)) }
	if len(conf.Strings("paths")) == 0 {
		bad("paths", "needs at least one glob pattern")
	}
	for _, p := range conf.Strings("paths") {
		abs, err := globAbs(p)
		if err != nil {
			bad("paths", "%q: %v", p, err)
			continue
		}
		cfg.paths = append(cfg.paths, abs)
	}
	for _, p := range conf.Strings("exclude") {
		if !strings.ContainsRune(p, filepath.Separator) && !strings.ContainsRune(p, '/') {
			if _, err := filepath.Match(p, ""); err != nil {
				bad("exclude", "%q: %v", p, err)
			}
			cfg.exclude = append(cfg.exclude, p)
			continue
		}
		abs, err := globAbs(p)
		if err != nil {
			bad("exclude", "%q: %v", p, err)
			continue
		}
		cfg.exclude = append(cfg.exclude, abs)
	}
	if cfg.forgetAfter == -1 {
		cfg.forgetAfter = 0 // forever
	} else if cfg.forgetAfter <= 0 {
		bad("forget_after", "must be positive, or forever")
	}
	if cfg.readOnce && cfg.includeCompressed {
		bad("include_compressed", "is not supported with mode: read_once yet (a .gz file is read once its size settles, which takes a second look)")
	}
	if conf.Has("multiline") {
		ml := conf.Object("multiline")
		re, err := regexp.Compile(ml.String("start"))
		if err != nil {
			errs = append(errs, ml.Errorf("start", "not a regular expression: %v", err))
		}
		cfg.mlStart = re
		cfg.mlMaxLines = ml.Int("max_lines")
		cfg.mlTimeout = ml.Duration("timeout")
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	log := res.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &fileSource{
		cfg:      cfg,
		log:      log,
		stateDir: res.StateDir,
		known:    map[fileKey]*fileState{},
		gzSeen:   map[fileKey]fileGzSighting{},
		batch:    fileLineBatch{seq: 1, idBytes: cfg.fingerprintBytes},
		acked:    make(chan struct{}, 1),
		done:     make(chan struct{}),
	}, nil
}

// Connect loads the checkpoints, finds the files and opens them, and
// writes the checkpoints of new files at once (so that a file read from
// its end is not read from a later end after a crash). ctx is not used:
// nothing here waits on the network. Read connects by itself when the
// caller did not.
func (s *fileSource) Connect(context.Context) error {
	s.readMu.Lock()
	defer s.readMu.Unlock()
	return s.start()
}

// start is Connect under readMu.
func (s *fileSource) start() error {
	if s.started {
		return nil
	}
	select {
	case <-s.done:
		return errFileClosed
	default:
	}
	if err := s.loadCheckpoints(); err != nil {
		return err
	}
	if s.stateDir == "" {
		s.log.Warn("sources: file: no state directory; positions are not kept across restarts")
	}
	s.started = true
	now := time.Now()
	s.scan(now, true)
	s.nextGlb = now.Add(s.cfg.globInterval)
	if err := s.save(); err != nil {
		return err
	}
	if s.cfg.checkpointInterval > 0 && s.stateDir != "" {
		s.saverDone = make(chan struct{})
		go s.saver()
	}
	return nil
}

// saver writes the checkpoints every checkpoint_interval while they
// change, until Close.
func (s *fileSource) saver() {
	defer close(s.saverDone)
	t := time.NewTicker(s.cfg.checkpointInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			if err := s.save(); err != nil {
				s.log.Error("sources: file: cannot write checkpoints", "err", err)
			}
		case <-s.done:
			return
		}
	}
}

// Read returns the next batch of records, waiting until one is ready
// (batch_size records, or batch_period after the first), ctx ends or the
// source is closed. It waits first while max_pending batches are not yet
// acknowledged. Lines read when ctx ends are kept for the next Read.
//
// The messages and their bytes belong to the caller. The AckFunc may be
// called from any goroutine, once; with nil it lets the checkpoints move
// past the batch once every earlier batch was acknowledged too; with an
// error it holds them before the batch for the rest of the run, so that
// the batch is read again after a restart.
func (s *fileSource) Read(ctx context.Context) ([]*connectors.Message, connectors.AckFunc, error) {
	s.readMu.Lock()
	defer s.readMu.Unlock()
	if s.isClosed() {
		return nil, nil, errFileClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	if err := s.start(); err != nil {
		return nil, nil, err
	}
	for {
		s.mu.Lock()
		n := s.inflight
		s.mu.Unlock()
		if n < s.cfg.maxPending {
			break
		}
		select {
		case <-s.acked:
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		case <-s.done:
			return nil, nil, errFileClosed
		}
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		now := time.Now()
		if !s.cfg.readOnce && !now.Before(s.nextGlb) {
			s.scan(now, false)
			s.nextGlb = now.Add(s.cfg.globInterval)
		}
		s.fill(now)
		s.expire(now)
		if s.cfg.readOnce && !s.full() && s.allAtEOF() {
			// Read once: what the files hold is read; hand on the
			// last lines without their line breaks, then end.
			for _, f := range s.open {
				s.flushFile(f, now)
			}
			if s.batch.len() == 0 {
				s.registerIdle()
				return nil, nil, connectors.ErrEndOfInput
			}
			msgs, ack := s.handOver()
			return msgs, ack, nil
		}
		if s.batch.len() > 0 {
			if s.batch.len() >= s.cfg.batchSize || !now.Before(s.batch.first.Add(s.cfg.batchPeriod)) {
				msgs, ack := s.handOver()
				return msgs, ack, nil
			}
		} else {
			s.registerIdle()
		}
		wait := min(s.cfg.pollInterval, time.Until(s.nextGlb))
		if s.batch.len() > 0 {
			wait = min(wait, time.Until(s.batch.first.Add(s.cfg.batchPeriod)))
		}
		timer.Reset(max(wait, time.Millisecond))
		select {
		case <-timer.C:
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		case <-s.done:
			return nil, nil, errFileClosed
		}
	}
}

// allAtEOF reports whether every open file was read to its end.
func (s *fileSource) allAtEOF() bool {
	for _, f := range s.open {
		if f.fd != nil && !f.atEOF {
			return false
		}
	}
	return true
}

func (s *fileSource) isClosed() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// fileInflight is one batch handed over and not yet acknowledged; the
// files it read from hold it in their queues of pending positions.
type fileInflight struct {
	acked, failed bool // guarded by fileSource.mu
	files         []*fileState
}

// filePending is a position of a file that becomes its checkpoint once
// batch (nil: nothing) and every batch before it in the file's queue is
// acknowledged. final marks the end of a .gz file read whole.
type filePending struct {
	batch *fileInflight
	pos   int64
	final bool
}

// handOver turns the batch being built into messages and queues the
// positions it reaches for acknowledgement.
func (s *fileSource) handOver() ([]*connectors.Message, connectors.AckFunc) {
	b := &fileInflight{}
	s.mu.Lock()
	for _, f := range s.dirtyF {
		f.listed = false
		// A file with records in the batch gets a position even when it
		// did not move (a cut line whose rest is still being skipped), so
		// that later positions wait for this batch.
		if f.consumed == f.registered && !f.finalPending && f.batchSeq != s.batch.seq {
			continue
		}
		if !f.blocked {
			f.pending = append(f.pending, filePending{batch: b, pos: f.consumed, final: f.finalPending})
			b.files = append(b.files, f)
		}
		f.registered, f.finalPending = f.consumed, false
	}
	s.dirtyF = s.dirtyF[:0]
	s.inflight++
	s.mu.Unlock()
	msgs := s.batch.build()
	return msgs, func(_ context.Context, err error) error { return s.ack(b, err) }
}

// registerIdle queues the positions files reached without a record (the
// rest of a cut line, empty lines): with no batch being built, they
// become checkpoints as soon as the batches before them are acknowledged.
func (s *fileSource) registerIdle() {
	if len(s.dirtyF) == 0 {
		return
	}
	s.mu.Lock()
	for _, f := range s.dirtyF {
		f.listed = false
		if f.consumed == f.registered && !f.finalPending {
			continue
		}
		if !f.blocked {
			f.pending = append(f.pending, filePending{pos: f.consumed, final: f.finalPending})
			s.advance(f)
		}
		f.registered, f.finalPending = f.consumed, false
	}
	s.dirtyF = s.dirtyF[:0]
	s.mu.Unlock()
}

// ack records a batch's acknowledgement and moves the checkpoints of its
// files as far as every batch before it allows.
func (s *fileSource) ack(b *fileInflight, err error) error {
	s.mu.Lock()
	if b.acked || b.failed {
		s.mu.Unlock()
		return nil
	}
	if err == nil {
		b.acked = true
	} else {
		b.failed = true
	}
	s.inflight--
	for _, f := range b.files {
		s.advance(f)
	}
	saveNow := s.closed || s.cfg.checkpointInterval == 0
	s.mu.Unlock()
	select {
	case s.acked <- struct{}{}:
	default:
	}
	if err != nil {
		s.log.Warn("sources: file: a batch failed; its lines will be read again after a restart", "err", err)
		return nil
	}
	if saveNow {
		return s.save()
	}
	return nil
}

// advance moves f's checkpoint over the acknowledged head of its queue.
// A failed batch blocks the queue for good. Called with mu held.
func (s *fileSource) advance(f *fileState) {
	for len(f.pending) > 0 {
		p := f.pending[0]
		if p.batch != nil && !p.batch.acked {
			if p.batch.failed {
				f.blocked = true
				f.pending = nil
			}
			return
		}
		f.committed = p.pos
		if p.final {
			f.done = true
		}
		f.pending = f.pending[1:]
		s.dirty = true
	}
	f.pending = nil // let the array go
}

// Close stops Read, closes every file and writes the checkpoints of what
// was acknowledged. It may be called more than once and from any
// goroutine; batches acknowledged after Close are written at once.
func (s *fileSource) Close(ctx context.Context) error {
	var err error
	s.closeOnce.Do(func() {
		close(s.done)
		s.readMu.Lock()
		defer s.readMu.Unlock()
		if s.saverDone != nil {
			<-s.saverDone
		}
		for _, f := range s.open {
			f.closeFD()
		}
		s.open = nil
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		if s.started {
			err = s.save()
		}
	})
	if err != nil {
		return fmt.Errorf("sources: file: %w", err)
	}
	return nil
}
