package sinks

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/valyala/fastjson"

	"github.com/weirhub/weir/connectors"
)

var fileSpec = connectors.Spec{
	Kind:    connectors.SinkKind,
	Name:    "file",
	Summary: "Archive records into files named by a path template, as lines or NDJSON, optionally gzip or zstd compressed, rotated by size and age.",
	Doc: "The path is a template evaluated for every record: {{ .date }} (YYYY-MM-DD of the record's time, UTC), " +
		"{{ .year }}, {{ .month }}, {{ .day }}, {{ .hour }}, {{ .dataset }}, {{ .partition }}, {{ .key }} and " +
		"{{ .field \"host\" }} (a field of the JSON value; a dotted name reaches into objects). Values from records " +
		"have '/', '\\\\' and control characters replaced by '_', and an empty value or one of '.' and '..' becomes '_', " +
		"so a record cannot write outside the template's directories. A record without a time uses the current time.\n\n" +
		"The file at the template's path is the active one. When it is rotated (rotate.size or rotate.interval), it is " +
		"finished (the compressed stream closed), synced and renamed with the next sequence number before its " +
		"extension: access-2026-11-21.ndjson.zst becomes access-2026-11-21.000001.ndjson.zst, then .000002 and so on " +
		"(the extension is the compression suffix and one more suffix of letters and digits). A file at the active " +
		"path found when the sink opens it (left by an earlier run, or closed earlier because too many files were " +
		"open) is moved aside the same way first, so a sequence file is never written again and higher numbers are " +
		"newer. Closed files are complete: a compressed file that was rotated, evicted or closed with the sink is a " +
		"whole gzip or zstd stream. After a crash only the active file can be torn; it holds everything written " +
		"up to the last completed write, and is moved aside at the next start.\n\n" +
		"Every write hands the batch to the operating system before it returns (a killed process loses nothing " +
		"the pipeline committed). fsync decides what survives a power loss: batch syncs the files written before " +
		"every write returns (the pipeline commits after that: durable end to end); rotate syncs a file when it is " +
		"finished; never leaves it to the operating system.",
	Scalar: "path",
	Fields: []connectors.Field{
		{Name: "path", Type: connectors.TypeString, Required: true,
			Doc:     "File path template (see above).",
			Example: "/archive/{{ .dataset }}/access-{{ .date }}.ndjson.zst"},
		{Name: "format", Type: connectors.TypeString, Default: "lines", Enum: []string{"lines", "ndjson"},
			Doc: "lines: the value and a newline; ndjson: the value must be a JSON object (others fail, to the dead-letter dataset), line breaks in it become spaces."},
		{Name: "compression", Type: connectors.TypeString, Enum: []string{"none", "gzip", "zstd"},
			Doc: "Compression of the files. Default: gzip for a path ending in .gz, zstd for .zst or .zstd, else none."},
		{Name: "rotate", Type: connectors.TypeObject, Doc: "When the active file is finished and renamed with a sequence number.", Fields: []connectors.Field{
			{Name: "size", Type: connectors.TypeSize, Default: "256MiB",
				Doc: "Rotate once the file is this large on disk (for compressed files, counted as the compressor writes out, so a file may exceed it by a compressed block); 0: never."},
			{Name: "interval", Type: connectors.TypeDuration, Default: "1h",
				Doc: "Rotate a file this long after it was opened (wall clock), whether or not records arrive; 0: never."},
		}},
		{Name: "fsync", Type: connectors.TypeString, Default: "rotate", Enum: []string{"rotate", "batch", "never"},
			Doc: "batch: sync written files before every write returns; rotate: sync a file when it is finished; never: leave it to the OS."},
		{Name: "mode", Type: connectors.TypeString, Default: "0644", Doc: "Permissions of new files, in octal (directories get 0755)."},
		{Name: "max_open_files", Type: connectors.TypeInt, Default: 32, Min: 1,
			Doc: "Most files open at once when the template fans out; the least recently written is closed (finished) to open another."},
	},
	Example: `pipelines:
  archive:
    from: access
    to:
      - file:
          path: "/archive/{{ .dataset }}/{{ .field \"host\" }}/access-{{ .date }}.ndjson.zst"
          format: ndjson
          rotate: {size: 256MiB, interval: 1h}
          fsync: batch`,
}

func init() { connectors.MustRegisterSink(fileSpec, newFile) }

const (
	compressNone = iota
	compressGzip
	compressZstd
)

const (
	fsyncRotate = iota
	fsyncBatch
	fsyncNever
)

// drainAt is how much a file's record buffer gathers before it goes to
// the compressor or the file.
const drainAt = 64 << 10

// fileSink writes records to files named by a template. Write, Close and
// the rotation timer serialise on mu.
type fileSink struct {
	tmpl       *pathTemplate
	ndjson     bool
	compress   int
	rotateSize int64
	rotateAge  time.Duration
	fsync      int
	mode       os.FileMode
	maxOpen    int
	log        *slog.Logger
	now        func() time.Time // wall clock, for rotation by age

	mu      sync.Mutex
	files   map[string]*fileWriter
	head    *fileWriter // most recently used; the LRU list runs head..tail
	tail    *fileWriter
	pathBuf []byte
	parser  fastjson.Parser
	touched []*fileWriter
	zstds   []*zstd.Encoder // finished encoders, for reuse
	gzips   []*gzip.Writer
	closed  bool

	start sync.Once
	stop  chan struct{}
	done  chan struct{}
}

var _ connectors.Sink = (*fileSink)(nil)

func newFile(conf *connectors.Config, res connectors.Resources) (connectors.Sink, error) {
	tmpl, err := parsePathTemplate(conf.String("path"))
	if err != nil {
		return nil, conf.Errorf("path", "%v", err)
	}
	s := &fileSink{
		tmpl:    tmpl,
		ndjson:  conf.String("format") == "ndjson",
		maxOpen: conf.Int("max_open_files"),
		log:     res.Logger,
		now:     time.Now,
		files:   map[string]*fileWriter{},
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	switch c := conf.String("compression"); c {
	case "gzip":
		s.compress = compressGzip
	case "zstd":
		s.compress = compressZstd
	case "none":
	default:
		p := conf.String("path")
		switch {
		case strings.HasSuffix(p, ".gz"):
			s.compress = compressGzip
		case strings.HasSuffix(p, ".zst"), strings.HasSuffix(p, ".zstd"):
			s.compress = compressZstd
		}
	}
	rot := conf.Object("rotate")
	s.rotateSize, s.rotateAge = rot.Size("size"), rot.Duration("interval")
	if s.rotateAge < 0 {
		s.rotateAge = 0 // "forever"
	}
	switch conf.String("fsync") {
	case "batch":
		s.fsync = fsyncBatch
	case "never":
		s.fsync = fsyncNever
	}
	mode, err := strconv.ParseUint(conf.String("mode"), 8, 32)
	if err != nil || mode > 0o777 {
		return nil, conf.Errorf("mode", "%q is not a file mode in octal, like 0644", conf.String("mode"))
	}
	s.mode = os.FileMode(mode)
	return s, nil
}

// errNotJSONObject fails a record the ndjson format cannot write.
var errNotJSONObject = errors.New("sinks: value is not a JSON object")

func (s *fileSink) Write(_ context.Context, batch []*connectors.Message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errSinkClosed
	}
	s.start.Do(s.startTimer)
	if s.rotateAge > 0 {
		s.rotateAged()
	}
	var failures []connectors.Failure
	var w *fileWriter
	var wHour int64 // the hour w's path was made for, when only time varies
	for i, m := range batch {
		if s.ndjson && !m.Parsed() && !isObjectValue(m) {
			failures = append(failures, connectors.Failure{Index: i, Err: errNotJSONObject})
			continue
		}
		if s.tmpl.timeOnly {
			// The path changes only with the hour: most records go to the
			// file of the record before.
			if h := unixHour(m.Time); w == nil || h != wHour {
				var err error
				s.pathBuf = s.tmpl.appendPath(s.pathBuf[:0], m, &s.parser)
				if w, err = s.writer(s.pathBuf); err != nil {
					return s.fail(err)
				}
				wHour = h
			}
		} else if s.pathBuf = s.tmpl.appendPath(s.pathBuf[:0], m, &s.parser); w == nil || w.path != string(s.pathBuf) {
			var err error
			if w, err = s.writer(s.pathBuf); err != nil {
				return s.fail(err)
			}
		}
		w.append(m.Value, s.ndjson)
		if len(w.buf) >= drainAt {
			if err := w.drain(); err != nil {
				return s.fail(s.rollback(w, err))
			}
		}
		if s.rotateSize > 0 && w.size() >= s.rotateSize {
			if err := s.rotate(w); err != nil {
				return s.fail(err)
			}
			w = nil
		}
	}
	err := s.flushTouched()
	if err != nil {
		return s.fail(err)
	}
	if len(failures) > 0 {
		return &connectors.WriteError{Failures: failures}
	}
	return nil
}

// fail hands what the batch wrote so far to the OS, as a successful
// write would, and returns err: the runtime retries the whole batch, so
// its first records may be written twice (at least once).
func (s *fileSink) fail(err error) error {
	if ferr := s.flushTouched(); ferr != nil {
		err = errors.Join(err, ferr)
	}
	return err
}

// flushTouched hands the buffered records of every file written in this
// batch to the OS, syncing them with fsync: batch.
func (s *fileSink) flushTouched() error {
	var errs []error
	for _, w := range s.touched {
		w.touched = false
		if w.f == nil {
			continue // rotated or discarded
		}
		if err := w.flush(s.fsync == fsyncBatch); err != nil {
			errs = append(errs, s.rollback(w, err))
			continue
		}
		w.good = w.cw.n
	}
	clear(s.touched)
	s.touched = s.touched[:0]
	return errors.Join(errs...)
}

// writer returns the open file for path, opening it (and closing the
// least recently used one if too many are open).
func (s *fileSink) writer(path []byte) (*fileWriter, error) {
	w := s.files[string(path)]
	if w == nil {
		for len(s.files) >= s.maxOpen {
			if err := s.release(s.tail); err != nil {
				return nil, err
			}
		}
		var err error
		if w, err = s.open(string(path)); err != nil {
			return nil, err
		}
		s.files[w.path] = w
	} else {
		s.unlink(w)
	}
	s.pushFront(w)
	if !w.touched {
		w.touched = true
		s.touched = append(s.touched, w)
	}
	return w, nil
}

// open creates the active file at path, moving aside a file found there.
func (s *fileSink) open(path string) (*fileWriter, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("sinks: file: %w", err)
	}
	if _, err := os.Lstat(path); err == nil {
		if err := s.moveAside(path); err != nil {
			return nil, err
		}
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, s.mode)
	if err != nil {
		return nil, fmt.Errorf("sinks: file: %w", err)
	}
	if err := f.Chmod(s.mode); err != nil { // exactly mode, whatever the umask
		f.Close()
		return nil, fmt.Errorf("sinks: file: %w", err)
	}
	if s.fsync == fsyncBatch {
		if err := syncDir(dir); err != nil {
			f.Close()
			return nil, err
		}
	}
	w := &fileWriter{path: path, f: f, opened: s.now()}
	w.cw.w = f
	switch s.compress {
	case compressGzip:
		w.bw = bufio.NewWriterSize(&w.cw, 64<<10)
		if n := len(s.gzips); n > 0 {
			w.gz, s.gzips = s.gzips[n-1], s.gzips[:n-1]
			w.gz.Reset(w.bw)
		} else {
			w.gz = gzip.NewWriter(w.bw)
		}
	case compressZstd:
		w.bw = bufio.NewWriterSize(&w.cw, 64<<10)
		if n := len(s.zstds); n > 0 {
			w.zs, s.zstds = s.zstds[n-1], s.zstds[:n-1]
			w.zs.Reset(w.bw)
		} else {
			// One goroutine, a 1MiB window and the low-memory mode keep
			// an open file at about 2.7MiB (10MiB with a 4MiB window and
			// no other change), for the same ratio on access logs.
			w.zs, err = zstd.NewWriter(w.bw, zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(1<<20), zstd.WithLowerEncoderMem(true))
			if err != nil {
				f.Close()
				return nil, fmt.Errorf("sinks: file: %w", err)
			}
		}
	}
	s.log.Debug("weir: file opened", "path", path)
	return w, nil
}

// moveAside renames the file at path with the next sequence number.
func (s *fileSink) moveAside(path string) error {
	next, err := nextSequencePath(path)
	if err != nil {
		return err
	}
	if err := os.Rename(path, next); err != nil {
		return fmt.Errorf("sinks: file: %w", err)
	}
	if s.fsync != fsyncNever {
		return syncDir(filepath.Dir(path))
	}
	return nil
}

// rotate finishes w and renames it with the next sequence number. A
// file whose last records cannot be written is not rotated: it is rolled
// back and stays the active file, for the retry.
func (s *fileSink) rotate(w *fileWriter) error {
	if err := w.flush(false); err != nil {
		return s.rollback(w, err)
	}
	if err := s.release(w); err != nil {
		return err
	}
	s.log.Debug("weir: file rotated", "path", w.path)
	return s.moveAside(w.path)
}

// release finishes w (syncing it unless fsync is never) and forgets it.
func (s *fileSink) release(w *fileWriter) error {
	s.unlink(w)
	delete(s.files, w.path)
	err := w.finish(s.fsync != fsyncNever)
	s.recycle(w)
	if err != nil {
		return fmt.Errorf("sinks: file %s: %w", w.path, err)
	}
	return nil
}

// rollback undoes the writes to w since its last complete flush after an
// I/O error (a full disk): the file is cut back to where that flush
// ended, so that it holds no torn line, and stays the active file for
// the runtime's retry of the batch. A compressed stream cannot continue
// after a failed write: its file is cut back the same way and closed (a
// file that never got a complete write is removed, not left empty); the
// next record for its path moves it aside and starts a new one.
func (s *fileSink) rollback(w *fileWriter, err error) error {
	err = fmt.Errorf("sinks: file %s: %w", w.path, err)
	if w.f == nil {
		return err
	}
	w.buf = w.buf[:0]
	terr := w.f.Truncate(w.good)
	if terr == nil && w.bw == nil {
		if _, serr := w.f.Seek(w.good, io.SeekStart); serr == nil {
			w.cw.n = w.good
			return err
		}
	}
	s.unlink(w)
	delete(s.files, w.path)
	w.f.Close()
	w.f, w.zs, w.gz = nil, nil, nil // a failed encoder is not reused
	if terr == nil && w.good == 0 {
		os.Remove(w.path)
	}
	return err
}

func (s *fileSink) recycle(w *fileWriter) {
	if w.zs != nil {
		s.zstds = append(s.zstds, w.zs)
	}
	if w.gz != nil {
		s.gzips = append(s.gzips, w.gz)
	}
	w.zs, w.gz = nil, nil
}

// rotateAged rotates the files open longer than rotate.interval.
func (s *fileSink) rotateAged() {
	now := s.now()
	for w := s.head; w != nil; {
		next := w.next
		if now.Sub(w.opened) >= s.rotateAge {
			if err := s.rotate(w); err != nil {
				s.log.Error("weir: file rotation failed", "path", w.path, "err", err)
			}
		}
		w = next
	}
}

// startTimer starts the goroutine that rotates files by age when no
// records arrive; Close stops it.
func (s *fileSink) startTimer() {
	runAgeTimer(s.rotateAge, &s.mu, &s.closed, func() { s.rotateAged() }, s.stop, s.done)
}

// Close finishes every open file in place (they become sequence files
// when the sink next opens their path) and stops the rotation timer.
func (s *fileSink) Close(context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	var errs []error
	for s.head != nil {
		if err := s.release(s.head); err != nil {
			errs = append(errs, err)
		}
	}
	s.zstds, s.gzips = nil, nil
	s.mu.Unlock()
	s.start.Do(func() { close(s.done) })
	close(s.stop)
	<-s.done
	return errors.Join(errs...)
}

func (s *fileSink) pushFront(w *fileWriter) {
	w.prev, w.next = nil, s.head
	if s.head != nil {
		s.head.prev = w
	}
	s.head = w
	if s.tail == nil {
		s.tail = w
	}
}

func (s *fileSink) unlink(w *fileWriter) {
	if w.prev != nil {
		w.prev.next = w.next
	} else if s.head == w {
		s.head = w.next
	}
	if w.next != nil {
		w.next.prev = w.prev
	} else if s.tail == w {
		s.tail = w.prev
	}
	w.prev, w.next = nil, nil
}

// fileWriter is one open file: records gather in buf, go through the
// compressor (if any) and a bufio.Writer into the file.
type fileWriter struct {
	path       string
	f          *os.File
	cw         countWriter
	bw         *bufio.Writer // under the compressor; nil without one
	zs         *zstd.Encoder
	gz         *gzip.Writer
	buf        []byte
	opened     time.Time
	good       int64 // bytes in the file at the end of its last complete flush
	prev, next *fileWriter
	touched    bool
}

// countWriter counts the bytes written to the file.
type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// append adds one record and its newline to the buffer.
func (w *fileWriter) append(v []byte, oneLine bool) {
	start := len(w.buf)
	w.buf = append(w.buf, v...)
	if oneLine {
		line := w.buf[start:]
		for i := bytes.IndexByte(line, '\n'); i >= 0; i = bytes.IndexByte(line, '\n') {
			line[i] = ' '
			line = line[i+1:]
		}
		for i := bytes.IndexByte(w.buf[start:], '\r'); i >= 0; i = bytes.IndexByte(w.buf[start:], '\r') {
			w.buf[start+i] = ' '
		}
	} else if len(v) > 0 && v[len(v)-1] == '\n' {
		return
	}
	w.buf = append(w.buf, '\n')
}

// size is the file's size as far as known: what reached the file, plus
// what is buffered when there is no compressor.
func (w *fileWriter) size() int64 {
	if w.bw == nil {
		return w.cw.n + int64(len(w.buf))
	}
	return w.cw.n + int64(w.bw.Buffered())
}

// drain moves the record buffer into the compressor or the file.
func (w *fileWriter) drain() error {
	if len(w.buf) == 0 {
		return nil
	}
	var err error
	switch {
	case w.zs != nil:
		_, err = w.zs.Write(w.buf)
	case w.gz != nil:
		_, err = w.gz.Write(w.buf)
	default:
		_, err = w.cw.Write(w.buf)
	}
	if cap(w.buf) > 4*drainAt {
		w.buf = nil // a huge record passed; do not keep its memory
	} else {
		w.buf = w.buf[:0]
	}
	return err
}

// flush hands everything written so far to the OS (the compressed
// stream stays open), and syncs the file if asked.
func (w *fileWriter) flush(sync bool) error {
	if err := w.drain(); err != nil {
		return err
	}
	var err error
	switch {
	case w.zs != nil:
		err = w.zs.Flush()
	case w.gz != nil:
		err = w.gz.Flush()
	}
	if err == nil && w.bw != nil {
		err = w.bw.Flush()
	}
	if err == nil && sync {
		err = w.f.Sync()
	}
	return err
}

// finish ends the compressed stream, syncs if asked and closes the file.
func (w *fileWriter) finish(sync bool) error {
	err := w.drain()
	if err == nil {
		switch {
		case w.zs != nil:
			err = w.zs.Close()
		case w.gz != nil:
			err = w.gz.Close()
		}
	}
	if err == nil && w.bw != nil {
		err = w.bw.Flush()
	}
	if err == nil && sync {
		err = w.f.Sync()
	}
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	w.f, w.buf = nil, nil
	return err
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sinks: file: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sinks: file: sync %s: %w", dir, err)
	}
	return nil
}

// splitSequenceName splits a file name where a sequence number goes:
// before the compression suffix and one more suffix of letters and
// digits. "access-2026-11-21.ndjson.zst" is "access-2026-11-21" and
// ".ndjson.zst"; "app.log" is "app" and ".log"; "events" has no suffix.
func splitSequenceName(name string) (stem, ext string) {
	stem = name
	for _, c := range []string{".gz", ".zst", ".zstd"} {
		if s, ok := strings.CutSuffix(stem, c); ok && s != "" {
			stem = s
			break
		}
	}
	if i := strings.LastIndexByte(stem, '.'); i > 0 && i < len(stem)-1 && len(stem)-i <= 9 {
		ok := true
		for _, r := range stem[i+1:] {
			if !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9') {
				ok = false
				break
			}
		}
		if ok {
			stem = stem[:i]
		}
	}
	return stem, name[len(stem):]
}

// nextSequencePath returns path with the sequence number after the
// highest one in its directory: dir/stem.000001.ext and so on.
func nextSequencePath(path string) (string, error) {
	dir, name := filepath.Split(path)
	stem, ext := splitSequenceName(name)
	entries, err := os.ReadDir(filepath.Clean(dir))
	if err != nil {
		return "", fmt.Errorf("sinks: file: %w", err)
	}
	highest := 0
	for _, e := range entries {
		n := e.Name()
		if !strings.HasPrefix(n, stem+".") || !strings.HasSuffix(n, ext) || len(n) <= len(stem)+1+len(ext) {
			continue
		}
		seq, err := strconv.Atoi(n[len(stem)+1 : len(n)-len(ext)])
		if err != nil || seq <= 0 {
			continue
		}
		highest = max(highest, seq)
	}
	return filepath.Join(dir, fmt.Sprintf("%s.%06d%s", stem, highest+1, ext)), nil
}

// pathTemplate is a parsed path template. It is a list of parts: literal
// text or a value of the record. Evaluating it appends to a buffer and
// allocates nothing; the date and hour are formatted once per hour of
// record time.
type pathTemplate struct {
	parts      []tmplPart
	timeOnly   bool  // nothing but the record's time (or nothing) varies
	cachedHour int64 // unix hour the cached time text is for
	timeText   [13]byte
}

type tmplPart struct {
	kind  int
	text  string   // tmplText
	field []string // tmplField: dotted path
}

const (
	tmplText = iota
	tmplDate
	tmplYear
	tmplMonth
	tmplDay
	tmplHour
	tmplDataset
	tmplPartition
	tmplKey
	tmplField
)

var tmplNames = map[string]int{
	"date": tmplDate, "year": tmplYear, "month": tmplMonth, "day": tmplDay, "hour": tmplHour,
	"dataset": tmplDataset, "partition": tmplPartition, "key": tmplKey,
}

// parsePathTemplate parses "text {{ .name }} text {{ .field "x" }}".
func parsePathTemplate(src string) (*pathTemplate, error) {
	t := &pathTemplate{cachedHour: -1 << 62, timeOnly: true}
	rest := src
	for rest != "" {
		i := strings.Index(rest, "{{")
		if i < 0 {
			t.parts = append(t.parts, tmplPart{kind: tmplText, text: rest})
			break
		}
		if i > 0 {
			t.parts = append(t.parts, tmplPart{kind: tmplText, text: rest[:i]})
		}
		at := len(src) - len(rest) + i
		j := strings.Index(rest[i:], "}}")
		if j < 0 {
			return nil, fmt.Errorf("unclosed {{ at byte %d of %q", at, src)
		}
		action := strings.TrimSpace(rest[i+2 : i+j])
		rest = rest[i+j+2:]
		name, arg, _ := strings.Cut(action, " ")
		arg = strings.TrimSpace(arg)
		if !strings.HasPrefix(name, ".") {
			return nil, fmt.Errorf("{{ %s }} at byte %d: want .date, .year, .month, .day, .hour, .dataset, .partition, .key or .field \"name\"", action, at)
		}
		name = name[1:]
		if name == "field" {
			f, err := strconv.Unquote(arg)
			if err != nil || f == "" {
				return nil, fmt.Errorf("{{ %s }} at byte %d: .field wants a quoted field name, like .field \"host\"", action, at)
			}
			t.parts = append(t.parts, tmplPart{kind: tmplField, field: strings.Split(f, ".")})
			t.timeOnly = false
			continue
		}
		kind, ok := tmplNames[name]
		if !ok || arg != "" {
			return nil, fmt.Errorf("{{ %s }} at byte %d: want .date, .year, .month, .day, .hour, .dataset, .partition, .key or .field \"name\"", action, at)
		}
		t.parts = append(t.parts, tmplPart{kind: kind})
		if kind >= tmplDataset {
			t.timeOnly = false
		}
	}
	if len(t.parts) == 0 {
		return nil, errors.New("empty path")
	}
	return t, nil
}

// appendPath evaluates the template for m, parsing its value with p when
// a field is needed (never through m.Fields, which would modify m).
func (t *pathTemplate) appendPath(dst []byte, m *connectors.Message, p *fastjson.Parser) []byte {
	var doc *fastjson.Value
	parsed := false
	for i := range t.parts {
		part := &t.parts[i]
		switch part.kind {
		case tmplText:
			dst = append(dst, part.text...)
		case tmplDate:
			dst = append(dst, t.timeOf(m)[0:10]...)
		case tmplYear:
			dst = append(dst, t.timeOf(m)[0:4]...)
		case tmplMonth:
			dst = append(dst, t.timeOf(m)[5:7]...)
		case tmplDay:
			dst = append(dst, t.timeOf(m)[8:10]...)
		case tmplHour:
			dst = append(dst, t.timeOf(m)[11:13]...)
		case tmplDataset:
			dst = appendPathValue(dst, m.Dataset)
		case tmplPartition:
			dst = strconv.AppendInt(dst, int64(m.Partition), 10)
		case tmplKey:
			dst = appendPathValue(dst, m.Key)
		case tmplField:
			if !parsed {
				doc, _ = p.ParseBytes(m.Value)
				parsed = true
			}
			var v *fastjson.Value
			if doc != nil {
				v = doc.Get(part.field...)
			}
			start := len(dst)
			dst = connectors.AppendText(dst, v)
			dst = sanitizePathValue(dst, start)
		}
	}
	return dst
}

// timeOf returns "YYYY-MM-DDTHH" of m's time in UTC, formatted once per
// hour.
func (t *pathTemplate) timeOf(m *connectors.Message) []byte {
	ts := m.Time
	if ts.IsZero() {
		ts = time.Now()
	}
	if h := unixHour(ts); h != t.cachedHour {
		t.cachedHour = h
		ts.UTC().AppendFormat(t.timeText[:0], "2006-01-02T15")
	}
	return t.timeText[:]
}

// unixHour numbers the hours since 1970 (a zero time is now).
func unixHour(ts time.Time) int64 {
	if ts.IsZero() {
		ts = time.Now()
	}
	h := ts.Unix()
	if h < 0 {
		h -= 3599
	}
	return h / 3600
}

func appendPathValue[T string | []byte](dst []byte, v T) []byte {
	start := len(dst)
	dst = append(dst, v...)
	return sanitizePathValue(dst, start)
}

// sanitizePathValue makes dst[start:] safe as one path element.
func sanitizePathValue(dst []byte, start int) []byte {
	v := dst[start:]
	if len(v) == 0 || string(v) == "." || string(v) == ".." {
		return append(dst[:start], '_')
	}
	for i, c := range v {
		if c < 0x20 || c == '/' || c == '\\' || c == 0x7f {
			v[i] = '_'
		}
	}
	return dst
}
