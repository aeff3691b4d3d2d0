package sources

import (
	"bytes"
	"errors"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/klauspost/compress/gzip"

	"github.com/weirhub/weir/codecs"
	"github.com/weirhub/weir/connectors"
)

// fileState is one file the source knows: open (it has a descriptor),
// closed (known from a checkpoint, or closed while running), or done (a
// .gz file read whole).
//
// Positions: consumed is the offset of the first byte not yet handed on
// in a record nor skipped (the start of a held partial line, of an open
// multiline record, or of a cut line whose rest is being skipped);
// registered is the last consumed position queued for acknowledgement;
// committed is the last acknowledged one: the checkpoint.
// committed <= registered <= consumed <= read position.
type fileState struct {
	key   fileKey
	btime int64
	gz    bool

	// Guarded by fileSource.mu (Read, the only writer, reads them freely).
	path      string
	committed int64
	fpLen     int
	fpSum     uint64
	pending   []filePending
	blocked   bool // a batch of the file failed: its checkpoint stays put for this run
	done      bool // a .gz file read to its end, acknowledged
	deleted   bool // seen deleted when closed
	lastSeen  time.Time
	gzSize    int64 // a .gz file's compressed size

	// Owned by Read.
	fd           *os.File
	gzr          *gzip.Reader
	gzEOF        bool  // the decompressed stream ended
	gzFinished   bool  // read whole (or given up on); not opened again
	gzFailSize   int64 // size at the last truncated-stream error; -1: none
	buf          []byte
	start        int   // buf[start:] is not consumed yet
	scanned      int   // buf[start:scanned] holds no line break
	bufOff       int64 // file offset of buf[0]
	consumed     int64
	registered   int64
	finalPending bool // the end of a .gz file waits to be queued
	listed       bool // in fileSource.dirtyF
	grow         bool // the last read filled the buffer
	skipping     bool // skipping the rest of a cut line
	atEOF        bool // the last read found nothing new
	lastData     time.Time
	goneSince    time.Time // when the globs stopped finding it; zero while they do
	fpData       []byte    // the fingerprinted first bytes
	rec          fileRecord
	id           [fileIDLen]byte // the weir.file.id of its records, hex
	idFixed      bool            // id is computed from a prefix that cannot change

	// Where the path and id are in the batch being built.
	batchSeq           uint64
	pathStart, pathEnd int
	idStart, idEnd     int
}

// fileRecord is a multiline record being joined.
type fileRecord struct {
	buf        []byte // reused; at most max_line_bytes
	open       bool
	start, end int64 // offsets of its first byte and after its last line
	lines      int
	flags      uint8
	last       time.Time // when a line last joined
}

// readPos is the offset of the next byte to read.
func (f *fileState) readPos() int64 { return f.bufOff + int64(len(f.buf)) }

// rewind drops what was read past the consumed position pos, so that
// reading starts again there.
func (f *fileState) rewind(pos int64) {
	f.consumed = pos
	if f.registered > pos {
		f.registered = pos
	}
	f.bufOff = pos
	f.buf, f.start, f.scanned = f.buf[:0], 0, 0
	f.skipping, f.atEOF, f.gzEOF = false, false, false
	f.rec.open = false
	f.gzFailSize = -1
}

// closeFD closes the descriptor and rewinds to the consumed position,
// releasing the buffers.
func (f *fileState) closeFD() {
	if f.fd != nil {
		f.fd.Close()
		f.fd = nil
	}
	f.gzr = nil
	f.rewind(f.consumed)
	f.buf, f.rec.buf = nil, nil
}

const (
	fileFlagTruncated = 1 << iota
	fileFlagPartial
)

// touch lists f for queuing its new position with the next batch.
func (s *fileSource) touch(f *fileState) {
	if !f.listed {
		f.listed = true
		s.dirtyF = append(s.dirtyF, f)
	}
}

func (s *fileSource) full() bool { return s.batch.len() >= s.cfg.batchSize }

// fileGzSighting is a .gz file's size and mtime when a scan saw it: it is
// opened once a later scan sees the same, so that a file still being
// compressed is not read.
type fileGzSighting struct {
	size  int64
	mtime time.Time
}

// scan matches the globs: it notes which open files the globs no longer
// find (rotated or deleted), opens new files, and forgets checkpoints of
// files not found for forget_after. first is the scan at start, where
// read_from applies.
func (s *fileSource) scan(now time.Time, first bool) {
	type hit struct {
		path string
		fi   os.FileInfo
		key  fileKey
	}
	var hits []hit
	seen := map[fileKey]bool{}
	for _, p := range s.globPaths() {
		if strings.HasSuffix(p, ".gz") && !s.cfg.includeCompressed {
			continue
		}
		fi, err := os.Stat(p)
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		key, _ := fileStatKey(fi, p)
		if seen[key] {
			continue // another link to a file found already
		}
		seen[key] = true
		hits = append(hits, hit{p, fi, key})
	}
	openByKey := make(map[fileKey]*fileState, len(s.open))
	for _, f := range s.open {
		openByKey[f.key] = f
	}
	s.mu.Lock()
	newHits := hits[:0:0]
	for _, h := range hits {
		if f := openByKey[h.key]; f != nil {
			if f.path != h.path {
				f.path = h.path
				s.dirty = true
			}
			if now.Sub(f.lastSeen) > time.Hour {
				s.dirty = true
			}
			f.goneSince, f.lastSeen = time.Time{}, now
			continue
		}
		if f := s.known[h.key]; f != nil {
			if now.Sub(f.lastSeen) > time.Hour {
				s.dirty = true // keep "seen" roughly current for forget_after
			}
			f.lastSeen = now
		}
		newHits = append(newHits, h)
	}
	for _, f := range s.open {
		if !seen[f.key] && f.goneSince.IsZero() {
			f.goneSince = now
		}
	}
	if s.cfg.forgetAfter > 0 {
		for k, f := range s.known {
			if f.fd == nil && !seen[k] && now.Sub(f.lastSeen) > s.cfg.forgetAfter {
				delete(s.known, k)
				s.dirty = true
			}
		}
	}
	s.mu.Unlock()
	for k := range s.gzSeen {
		if !seen[k] {
			delete(s.gzSeen, k)
		}
	}
	added := false
	for _, h := range newHits {
		if s.adopt(h.path, h.fi, h.key, now, first) {
			added = true
		}
	}
	if added && !first {
		// A new file's checkpoint is written before it is read, so that
		// after a crash it is not taken for a file seen for the first
		// time (which read_from end would skip).
		if err := s.save(); err != nil {
			s.log.Error("sources: file: cannot write checkpoints", "err", err)
		}
	}
}

// adopt opens a file the globs found that is not open: a checkpointed
// file is resumed where it was, a new one starts at 0 (or at its end with
// read_from end at start). It reports whether a new file was added.
func (s *fileSource) adopt(path string, fi os.FileInfo, key fileKey, now time.Time, first bool) bool {
	s.mu.Lock()
	st := s.known[key]
	var done bool
	if st != nil {
		done = st.done
	}
	s.mu.Unlock()
	gz := strings.HasSuffix(path, ".gz")
	if st != nil && st.gz && (done || st.gzFinished) && st.gzSize == fi.Size() {
		return false // read already
	}
	if gz {
		// Wait for a .gz file to stop changing before reading it.
		g := fileGzSighting{fi.Size(), fi.ModTime()}
		if prev, ok := s.gzSeen[key]; !ok || prev != g {
			s.gzSeen[key] = g
			return false
		}
		delete(s.gzSeen, key)
	}
	fd, err := os.Open(path)
	if err != nil {
		s.log.Debug("sources: file: cannot open", "path", path, "err", err)
		return false
	}
	ofi, err := fd.Stat()
	if err != nil {
		fd.Close()
		return false
	}
	if k, _ := fileStatKey(ofi, path); k != key || !ofi.Mode().IsRegular() {
		fd.Close() // replaced between the glob and the open: next scan
		return false
	}
	size, btime := ofi.Size(), fileBirthTime(fd)
	if st != nil {
		if s.sameFile(st, fd, size, btime) {
			if done || st.gzFinished {
				fd.Close()
				return false
			}
			st.fd, st.lastData, st.goneSince = fd, now, time.Time{}
			s.mu.Lock()
			if st.path != path {
				st.path = path
				s.dirty = true
			}
			s.mu.Unlock()
			s.open = append(s.open, st)
			s.log.Debug("sources: file: resuming", "path", path, "offset", st.consumed)
			return false
		}
		s.log.Info("sources: file: a new file has the inode of a checkpointed one; reading it from its beginning", "path", path)
	}
	f := &fileState{key: key, btime: btime, gz: gz, path: path, lastSeen: now, fd: fd, lastData: now, gzFailSize: -1}
	if gz {
		f.gzSize = size
	}
	var startAt int64
	if first && st == nil && s.cfg.readFromEnd && !gz {
		startAt = fileLastLineEnd(fd, size)
	}
	f.bufOff, f.consumed, f.registered, f.committed = startAt, startAt, startAt, startAt
	if err := s.fingerprint(f, size); err != nil {
		fd.Close()
		return false
	}
	s.mu.Lock()
	s.known[key] = f
	s.dirty = true
	s.mu.Unlock()
	s.open = append(s.open, f)
	s.log.Debug("sources: file: new file", "path", path, "offset", startAt)
	return true
}

// fileLastLineEnd returns the offset after the last line break among the
// last 64KiB of a file, or its size when there is none.
func fileLastLineEnd(fd *os.File, size int64) int64 {
	n := min(size, 64<<10)
	buf := make([]byte, n)
	if m, _ := fd.ReadAt(buf, size-n); int64(m) != n {
		return size
	}
	if i := bytes.LastIndexByte(buf, '\n'); i >= 0 {
		return size - n + int64(i) + 1
	}
	return size
}

// fill reads the open files, oldest first, each to its end, until the
// batch is full. Oldest first means a rotated file is read to its end
// before the new file at its path.
func (s *fileSource) fill(now time.Time) {
	for i := 0; i < len(s.open) && !s.full(); i++ {
		if f := s.open[i]; f.fd != nil {
			s.drain(f, now)
		}
	}
	s.prune()
}

// prune drops closed files from the open list.
func (s *fileSource) prune() {
	j := 0
	for _, f := range s.open {
		if f.fd != nil {
			s.open[j] = f
			j++
		}
	}
	clear(s.open[j:])
	s.open = s.open[:j]
}

// errFileRewritten says a file's first bytes changed under the reader.
var errFileRewritten = errors.New("sources: file: first bytes changed")

// drain hands on f's lines until the batch is full or f has nothing new.
func (s *fileSource) drain(f *fileState, now time.Time) {
	for range 1 << 20 { // bounded: each turn reads or returns
		s.lines(f, now, false)
		if s.full() {
			return
		}
		n, err := s.readMore(f, now)
		if err == errFileRewritten {
			s.truncated(f, now, "its first bytes changed")
			continue
		}
		if err != nil {
			s.readFailed(f, err, now)
			return
		}
		if n > 0 {
			continue
		}
		f.atEOF = true
		if f.gz {
			if f.gzEOF {
				s.finishGz(f, now)
			}
			return
		}
		fi, err := f.fd.Stat()
		if err == nil && fi.Size() < f.readPos() {
			s.truncated(f, now, "it shrank")
			continue
		}
		return
	}
}

// Read buffers: a read gets at least fileMinRead bytes of room; a
// buffer grows to fileBufSize while reads fill it (a backlog), and beyond
// only for a long line, up to about max_line_bytes.
const (
	fileMinRead = 16 << 10
	fileBufSize = 64 << 10
)

// readMore reads what is new in f into its buffer. For a plain file it
// checks first that the file's first bytes did not change (a truncation
// followed by more writes than were read, between two polls).
func (s *fileSource) readMore(f *fileState, now time.Time) (int, error) {
	s.makeRoom(f)
	room := f.buf[len(f.buf):cap(f.buf)]
	var n int
	var err error
	if f.gz {
		if f.gzr == nil {
			if f.gzr, err = s.openGz(f); err != nil {
				return 0, err
			}
		}
		n, err = f.gzr.Read(room)
		if err == io.EOF {
			f.gzEOF, err = true, nil
		}
	} else {
		n, err = f.fd.ReadAt(room, f.readPos())
		if err == io.EOF {
			err = nil
		}
		if n > 0 && f.fpLen > 0 {
			p, perr := fileReadPrefix(f.fd, f.fpLen, s.scratch)
			s.scratch = p
			if perr != nil || !bytes.Equal(p, f.fpData) {
				return 0, errFileRewritten
			}
		}
	}
	if n > 0 {
		f.grow = n == len(room) && cap(f.buf) < 262144/1024<<10 // more is waiting: read more at once
		f.buf = f.buf[:len(f.buf)+n]
		f.lastData, f.atEOF = now, false
		if !f.gz && f.fpLen < s.cfg.fingerprintBytes {
			if ferr := s.fingerprint(f, f.readPos()); ferr != nil {
				return n, ferr
			}
		}
	}
	return n, err
}

// makeRoom makes at least fileMinRead bytes of room after f's data, moving
// the unconsumed bytes to the front or growing the buffer (to at most
// about max_line_bytes plus 64KiB: longer lines are cut before).
func (s *fileSource) makeRoom(f *fileState) {
	if f.buf == nil {
		f.buf = make([]byte, 0, 32<<10) // grown to fileBufSize for a backlog
	}
	if cap(f.buf)-len(f.buf) >= fileMinRead && !f.grow {
		return
	}
	if f.start > 0 {
		n := copy(f.buf, f.buf[f.start:])
		f.bufOff += int64(f.start)
		f.scanned -= f.start
		f.buf, f.start = f.buf[:n], 0
		if cap(f.buf)-n >= fileMinRead && (!f.grow || cap(f.buf) >= fileBufSize) {
			f.grow = false
			return
		}
	}
	// Grow, doubling: up to fileBufSize while reads fill the buffer,
	// beyond that only as a long line needs (it is cut at max_line_bytes).
	c := max(2*cap(f.buf), len(f.buf)+fileMinRead)
	if len(f.buf) < fileBufSize {
		c = min(c, max(fileBufSize, len(f.buf)+fileMinRead))
	} else {
		c = min(c, s.cfg.maxLine+2+fileMinRead)
	}
	f.grow = false
	nb := make([]byte, len(f.buf), c)
	copy(nb, f.buf)
	f.buf = nb
}

// openGz starts decompressing a .gz file, skipping what was read before.
func (s *fileSource) openGz(f *fileState) (*gzip.Reader, error) {
	if _, err := f.fd.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	zr, err := gzip.NewReader(f.fd)
	if err != nil {
		return nil, err
	}
	if skip := f.readPos(); skip > 0 {
		if _, err := io.CopyN(io.Discard, zr, skip); err != nil {
			return nil, err
		}
	}
	return zr, nil
}

// readFailed handles a read error: a plain file is closed and resumed by
// a later scan; a .gz file cut short is tried again if it grows, and
// given up (logged) otherwise.
func (s *fileSource) readFailed(f *fileState, err error, now time.Time) {
	if f.gz {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			fi, serr := f.fd.Stat()
			if serr == nil && fi.Size() != f.gzFailSize {
				f.closeFD()
				f.gzFailSize = fi.Size()
				s.gzSeen[f.key] = fileGzSighting{fi.Size(), fi.ModTime()}
				return
			}
		}
		s.log.Error("sources: file: cannot read compressed file; the rest of it is skipped", "path", f.path, "offset", f.readPos(), "err", err)
		s.finishGz(f, now)
		return
	}
	s.log.Warn("sources: file: read failed; closing it until the next scan", "path", f.path, "err", err)
	f.closeFD()
}

// finishGz hands on the end of a .gz file read whole and closes it; it
// is done once that is acknowledged.
func (s *fileSource) finishGz(f *fileState, now time.Time) {
	s.flushFile(f, now)
	f.finalPending, f.gzFinished = true, true
	s.touch(f)
	f.closeFD()
}

// lines hands on the whole lines in f's buffer, until the batch is full
// (unless force), cutting lines longer than max_line_bytes.
func (s *fileSource) lines(f *fileState, now time.Time, force bool) {
	maxLine := s.cfg.maxLine
	for f.start < len(f.buf) && (force || !s.full()) {
		data := f.buf[f.start:]
		if f.skipping {
			i := bytes.IndexByte(data, '\n')
			if i < 0 {
				f.start, f.scanned = len(f.buf), len(f.buf)
				return
			}
			f.start += i + 1
			f.scanned, f.skipping = f.start, false
			s.skipped(f, f.bufOff+int64(f.start))
			continue
		}
		from := max(f.scanned-f.start, 0)
		i := bytes.IndexByte(data[from:], '\n')
		if i < 0 {
			f.scanned = len(f.buf)
			if len(data) > maxLine+1 {
				// Cut: hand on the first max_line_bytes, skip the rest.
				s.emit(f, data[:maxLine], f.bufOff+int64(f.start), -1, fileFlagTruncated, now)
				f.start, f.scanned, f.skipping = len(f.buf), len(f.buf), true
			}
			return
		}
		i += from
		line, off := data[:i], f.bufOff+int64(f.start)
		f.start += i + 1
		f.scanned = f.start
		if n := len(line); n > 0 && line[n-1] == '\r' {
			line = line[:n-1]
		}
		var flags uint8
		if len(line) > maxLine {
			line, flags = line[:maxLine], fileFlagTruncated
		}
		s.emit(f, line, off, f.bufOff+int64(f.start), flags, now)
	}
}

// emit hands on a line that starts at off; next is the offset after it
// (-1 while the rest of a cut line is being skipped).
func (s *fileSource) emit(f *fileState, line []byte, off, next int64, flags uint8, now time.Time) {
	s.touch(f)
	if s.cfg.mlStart != nil {
		s.join(f, line, off, next, flags, now)
		return
	}
	if len(line) > 0 || flags != 0 {
		s.batch.add(f, line, off, flags, now)
	}
	if next >= 0 {
		f.consumed = next
	}
}

// skipped notes that the rest of a cut line ended before next.
func (s *fileSource) skipped(f *fileState, next int64) {
	s.touch(f)
	if s.cfg.mlStart != nil && f.rec.open {
		f.rec.end = next
		return
	}
	f.consumed = next
}

// join adds a line to f's multiline record: a start line (or a line when
// no record is open, or the record is at max_lines) hands on the open
// record and begins a new one; another line joins the open record.
func (s *fileSource) join(f *fileState, line []byte, off, next int64, flags uint8, now time.Time) {
	r := &f.rec
	if r.open && r.lines < s.cfg.mlMaxLines && !s.cfg.mlStart.Match(line) {
		if r.flags&fileFlagTruncated == 0 {
			if room := s.cfg.maxLine - len(r.buf); room < 1+len(line) {
				r.buf = append(r.buf, append([]byte{'\n'}, line...)[:max(room, 0)]...)
				r.flags |= fileFlagTruncated
			} else {
				r.buf = append(append(r.buf, '\n'), line...)
			}
		}
		r.lines++
		r.flags |= flags
		r.last = now
		if next >= 0 {
			r.end = next
		}
		return
	}
	if r.open {
		s.flushRecord(f, now)
	}
	if len(line) == 0 && flags == 0 {
		if next >= 0 {
			f.consumed = next
		}
		return
	}
	r.buf = append(r.buf[:0], line...)
	r.open, r.start, r.end, r.lines, r.flags, r.last = true, off, off, 1, flags, now
	if next >= 0 {
		r.end = next
	}
	f.consumed = off
}

// flushRecord hands on f's open multiline record.
func (s *fileSource) flushRecord(f *fileState, now time.Time) {
	r := &f.rec
	s.batch.add(f, r.buf, r.start, r.flags, now)
	r.open = false
	f.consumed = r.end
	s.touch(f)
}

// emitPartial hands on the held last line of f, which has no line break.
func (s *fileSource) emitPartial(f *fileState, now time.Time) {
	data := f.buf[f.start:]
	off := f.bufOff + int64(f.start)
	f.start, f.scanned = len(f.buf), len(f.buf)
	flags := uint8(fileFlagPartial)
	if n := len(data); n > 0 && data[n-1] == '\r' {
		data = data[:n-1]
	}
	if len(data) > s.cfg.maxLine {
		data, flags = data[:s.cfg.maxLine], flags|fileFlagTruncated
	}
	s.emit(f, data, off, f.readPos(), flags, now)
}

// flushFile hands on everything f holds: whole lines, the partial last
// line, the open record, past the batch size if need be (for a file whose
// data goes away: truncated, deleted, or a .gz file at its end).
func (s *fileSource) flushFile(f *fileState, now time.Time) {
	s.lines(f, now, true)
	if f.start < len(f.buf) && !f.skipping {
		s.emitPartial(f, now)
	}
	if f.rec.open {
		s.flushRecord(f, now)
	}
}

// truncated starts f again at offset 0 after a copytruncate: what it
// still holds of the old content is handed on first.
func (s *fileSource) truncated(f *fileState, now time.Time, why string) {
	s.flushFile(f, now)
	s.log.Info("sources: file: file truncated; reading it again from its beginning", "path", f.path, "why", why, "offset", f.readPos())
	f.rewind(0)
	f.registered, f.finalPending = 0, false
	f.fpData = f.fpData[:0]
	f.idFixed, f.batchSeq = false, 0 // new content, new identity: its offsets start again
	s.touch(f)
	s.mu.Lock()
	f.pending, f.committed, f.fpLen, f.fpSum, f.blocked = nil, 0, 0, 0, false
	s.dirty = true
	s.mu.Unlock()
}

// expire hands on partial lines and multiline records whose time is up,
// and closes files gone from the globs once read to their end and idle
// for close_after.
func (s *fileSource) expire(now time.Time) {
	for _, f := range s.open {
		if s.full() {
			break
		}
		if f.fd == nil || !f.atEOF {
			continue
		}
		if !f.skipping && f.start < len(f.buf) && now.Sub(f.lastData) >= s.cfg.partialTimeout {
			s.emitPartial(f, now)
		}
		if f.rec.open && now.Sub(f.rec.last) >= s.cfg.mlTimeout {
			s.flushRecord(f, now)
		}
		if !f.goneSince.IsZero() && now.Sub(f.goneSince) >= s.cfg.closeAfter && now.Sub(f.lastData) >= s.cfg.closeAfter {
			s.closeGone(f, now)
			continue
		}
		if f.start == len(f.buf) && cap(f.buf) > 0 && now.Sub(f.lastData) > time.Second {
			f.buf, f.start, f.scanned, f.bufOff = nil, 0, 0, f.readPos() // idle: let the buffer go
		}
	}
	s.prune()
}

// closeGone closes a file the globs no longer find. A deleted file's
// checkpoint is dropped: its inode may now be reused.
func (s *fileSource) closeGone(f *fileState, now time.Time) {
	s.flushFile(f, now)
	deleted := false
	if fi, err := f.fd.Stat(); err == nil {
		_, nlink := fileStatKey(fi, f.path)
		deleted = nlink == 0
	}
	f.closeFD()
	s.mu.Lock()
	if deleted {
		f.deleted = true
		if s.known[f.key] == f {
			delete(s.known, f.key)
			s.dirty = true
		}
	}
	s.mu.Unlock()
	s.log.Debug("sources: file: closed", "path", f.path, "deleted", deleted)
}

// fileLineBatch is the batch being built: the bytes of its records and of
// their header values in one buffer, and where each record is in it.
// Messages are made from it only when it is handed over, so the buffer
// can grow while it is built.
type fileLineBatch struct {
	buf     []byte
	spans   []fileLineSpan // reused
	first   time.Time      // when its first record was read
	seq     uint64         // number of the batch, from 1
	hint    int            // capacity for the next buffer
	idBytes int            // fingerprint_bytes: the longest prefix a file id covers
}

type fileLineSpan struct {
	val, valEnd   int
	off, offEnd   int
	path, pathEnd int
	id, idEnd     int
	flags         uint8
	t             time.Time
}

func (b *fileLineBatch) len() int { return len(b.spans) }

// add appends a record read from f at offset off.
func (b *fileLineBatch) add(f *fileState, value []byte, off int64, flags uint8, now time.Time) {
	if b.seq == 0 {
		b.seq = 1
	}
	if b.buf == nil {
		b.buf = make([]byte, 0, max(b.hint, 4<<10))
	}
	if len(b.spans) == 0 {
		b.first = now
	}
	if f.batchSeq != b.seq || !f.idFixed {
		// Once per file and batch (per record while the file's first
		// line is incomplete, which is rare: a partial or cut first line).
		f.batchSeq = b.seq
		f.pathStart = len(b.buf)
		b.buf = append(b.buf, f.path...)
		f.pathEnd = len(b.buf)
		f.setID(b.idBytes)
		f.idStart = len(b.buf)
		b.buf = append(b.buf, f.id[:]...)
		f.idEnd = len(b.buf)
	}
	sp := fileLineSpan{val: len(b.buf), path: f.pathStart, pathEnd: f.pathEnd, id: f.idStart, idEnd: f.idEnd, flags: flags, t: now}
	b.buf = append(b.buf, value...)
	sp.valEnd, sp.off = len(b.buf), len(b.buf)
	b.buf = strconv.AppendInt(b.buf, off, 10)
	sp.offEnd = len(b.buf)
	b.spans = append(b.spans, sp)
}

const fileHeaderKeys = FileHeader + FileIDHeader + OffsetHeader + TruncatedHeader + PartialHeader + "true"

// build makes the messages of the batch and starts the next one. The
// messages share the batch's buffer (each slice capped at its end) and
// one array of headers; they belong to the caller.
func (b *fileLineBatch) build() []*connectors.Message {
	n := len(b.spans)
	k := len(b.buf)
	b.buf = append(b.buf, fileHeaderKeys...)
	buf := b.buf
	piece := func(i, j int) []byte { return buf[i:j:j] }
	kFile := piece(k, k+len(FileHeader))
	k += len(FileHeader)
	kID := piece(k, k+len(FileIDHeader))
	k += len(FileIDHeader)
	kOff := piece(k, k+len(OffsetHeader))
	k += len(OffsetHeader)
	kTrunc := piece(k, k+len(TruncatedHeader))
	k += len(TruncatedHeader)
	kPart := piece(k, k+len(PartialHeader))
	k += len(PartialHeader)
	vTrue := piece(k, k+4)
	flagged := 0
	for i := range b.spans {
		if b.spans[i].flags&fileFlagTruncated != 0 {
			flagged++
		}
		if b.spans[i].flags&fileFlagPartial != 0 {
			flagged++
		}
	}
	msgs := make([]connectors.Message, n)
	out := make([]*connectors.Message, n)
	hdrs := make([]codecs.RecordHeader, 0, 3*n+flagged)
	for i := range b.spans {
		sp := &b.spans[i]
		h0 := len(hdrs)
		hdrs = append(hdrs,
			codecs.RecordHeader{Key: kFile, Value: piece(sp.path, sp.pathEnd)},
			codecs.RecordHeader{Key: kID, Value: piece(sp.id, sp.idEnd)},
			codecs.RecordHeader{Key: kOff, Value: piece(sp.off, sp.offEnd)})
		if sp.flags&fileFlagTruncated != 0 {
			hdrs = append(hdrs, codecs.RecordHeader{Key: kTrunc, Value: vTrue})
		}
		if sp.flags&fileFlagPartial != 0 {
			hdrs = append(hdrs, codecs.RecordHeader{Key: kPart, Value: vTrue})
		}
		m := &msgs[i]
		m.Value = piece(sp.val, sp.valEnd)
		m.Headers = hdrs[h0:len(hdrs):len(hdrs)]
		m.Time = sp.t
		out[i] = m
	}
	b.hint = min(len(buf)+len(buf)/4, 64<<20)
	b.buf = nil
	clear(b.spans) // drop the times' locations
	b.spans = b.spans[:0]
	b.seq++
	return out
}
