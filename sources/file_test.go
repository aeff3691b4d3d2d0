package sources

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/weirhub/weir/connectors"
)

// parseFileConf decodes a file source's YAML, failing the test on any problem.
func parseFileConf(t testing.TB, src string) *connectors.Config {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(src), &doc); err != nil {
		t.Fatalf("yaml %q: %v", src, err)
	}
	c, errs := connectors.ParseConfig(&fileSpec, doc.Content[0])
	if len(errs) > 0 {
		t.Fatalf("ParseConfig(file, %q) = %v", src, errs)
	}
	return c
}

// openFileSource builds a file source on the files matched by paths with
// fast timings; extra is more YAML fields (which may replace the timings).
func openFileSource(t testing.TB, state string, extra string, paths ...string) *fileSource {
	t.Helper()
	var b strings.Builder
	b.WriteString("paths: [")
	for i, p := range paths {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(strconv.Quote(p))
	}
	b.WriteString("]\n")
	for _, d := range []string{"glob_interval: 20ms", "poll_interval: 5ms", "batch_period: 20ms", "checkpoint_interval: 50ms", "close_after: 100ms"} {
		if key, _, _ := strings.Cut(d, ":"); !strings.Contains(extra, key+":") {
			b.WriteString(d + "\n")
		}
	}
	b.WriteString(extra)
	s, err := newFile(parseFileConf(t, b.String()), connectors.Resources{StateDir: state, Name: "sources.test"})
	if err != nil {
		t.Fatalf("newFile: %v", err)
	}
	fs := s.(*fileSource)
	if err := fs.Connect(context.Background()); err != nil {
		t.Fatalf("Connect: %v", err)
	}
	return fs
}

// fileRec is a record as a test sees it.
type fileRec struct {
	value, file    string
	id             string // weir.file.id
	offset         int64
	trunc, partial bool
}

func fileRecs(t testing.TB, msgs []*connectors.Message) []fileRec {
	t.Helper()
	out := make([]fileRec, len(msgs))
	for i, m := range msgs {
		off, err := strconv.ParseInt(string(m.Header(OffsetHeader)), 10, 64)
		if err != nil {
			t.Fatalf("record %q: offset header %q", m.Value, m.Header(OffsetHeader))
		}
		if m.Time.IsZero() {
			t.Fatalf("record %q has no time", m.Value)
		}
		out[i] = fileRec{value: string(m.Value), file: string(m.Header(FileHeader)), id: string(m.Header(FileIDHeader)), offset: off,
			trunc: string(m.Header(TruncatedHeader)) == "true", partial: string(m.Header(PartialHeader)) == "true"}
	}
	return out
}

// fileOneID checks that recs, all of one file, have one weir.file.id,
// and returns them without it, for comparing with records written out.
func fileOneID(t testing.TB, recs []fileRec) []fileRec {
	t.Helper()
	out := slices.Clone(recs)
	for i := range out {
		if out[i].id == "" || out[i].id != recs[0].id {
			t.Fatalf("record %q has weir.file.id %q, the first %q", out[i].value, out[i].id, recs[0].id)
		}
		out[i].id = ""
	}
	return out
}

// fileReadBatch reads one batch within d; nil if none came.
func fileReadBatch(t testing.TB, s *fileSource, d time.Duration) ([]fileRec, connectors.AckFunc) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	msgs, ack, err := s.Read(ctx)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return nil, nil
		}
		t.Fatalf("Read: %v", err)
	}
	return fileRecs(t, msgs), ack
}

// fileReadN reads and acknowledges batches until n records came or d passed.
func fileReadN(t testing.TB, s *fileSource, n int, d time.Duration) []fileRec {
	t.Helper()
	var out []fileRec
	deadline := time.Now().Add(d)
	for len(out) < n && time.Now().Before(deadline) {
		recs, ack := fileReadBatch(t, s, 100*time.Millisecond)
		if ack != nil {
			if err := ack(context.Background(), nil); err != nil {
				t.Fatalf("ack: %v", err)
			}
		}
		out = append(out, recs...)
	}
	return out
}

// fileExpectNothing checks that no record comes within d.
func fileExpectNothing(t testing.TB, s *fileSource, d time.Duration) {
	t.Helper()
	if recs, _ := fileReadBatch(t, s, d); len(recs) > 0 {
		t.Fatalf("unexpected records: %v", recs)
	}
}

func fileValues(recs []fileRec) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.value
	}
	return out
}

func fileWriteLines(t testing.TB, path, prefix string, from, to int) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var b []byte
	for i := from; i < to; i++ {
		b = fmt.Appendf(b, "%s-%05d\n", prefix, i)
	}
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
}

func fileAppend(t testing.TB, path, data string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(data); err != nil {
		t.Fatal(err)
	}
}

func fileLineNames(prefix string, from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, fmt.Sprintf("%s-%05d", prefix, i))
	}
	return out
}

func fileClose(t testing.TB, s *fileSource) {
	t.Helper()
	if err := s.Close(context.Background()); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// fileSorted returns values sorted, for comparing sets read from several files.
func fileSorted(v []string) []string { v = slices.Clone(v); slices.Sort(v); return v }

// TestFileConfigErrors: the spec and its example are checked with every
// component's in cmd/weir (TestComponentSpecs).
func TestFileConfigErrors(t *testing.T) {
	for _, bad := range []string{
		"paths: ['[']",
		"paths: [x]\nbatch_size: 0",
		"paths: [x]\nmultiline: {start: '('}",
		"paths: [x]\npoll_interval: 0s",
		"paths: [x]\nmax_line_bytes: 0",
	} {
		c, err := parseOrErr(t, &fileSpec, bad)
		if err == nil {
			_, err = newFile(c, connectors.Resources{})
		}
		if err == nil {
			t.Errorf("newFile(%q) = nil error, want one", bad)
		}
	}
}

func TestFileBasic(t *testing.T) {
	dir, state := t.TempDir(), t.TempDir()
	a, b := filepath.Join(dir, "a.log"), filepath.Join(dir, "b.log")
	fileWriteLines(t, a, "a", 0, 30)
	fileAppend(t, b, "b-00000\r\nb-00001\n\nb-00002\n")
	s := openFileSource(t, state, "batch_size: 7\n", filepath.Join(dir, "*.log"))
	recs := fileReadN(t, s, 33, 5*time.Second)
	want := append(fileLineNames("a", 0, 30), fileLineNames("b", 0, 3)...)
	if got := fileSorted(fileValues(recs)); !slices.Equal(got, fileSorted(want)) {
		t.Fatalf("read %v, want %v", got, want)
	}
	// Headers: the file and the offset of each line.
	for _, r := range recs {
		data, err := os.ReadFile(r.file)
		if err != nil {
			t.Fatalf("record %q: weir.file %q: %v", r.value, r.file, err)
		}
		if !bytes.HasPrefix(data[r.offset:], []byte(r.value)) || (r.offset > 0 && data[r.offset-1] != '\n') {
			t.Errorf("record %q: weir.offset %d does not point at it in %s", r.value, r.offset, r.file)
		}
	}
	// A new file is found while running; new lines in old files too.
	fileWriteLines(t, filepath.Join(dir, "c.log"), "c", 0, 5)
	fileWriteLines(t, a, "a", 30, 35)
	recs = fileReadN(t, s, 10, 5*time.Second)
	if got, want := fileSorted(fileValues(recs)), fileSorted(append(fileLineNames("c", 0, 5), fileLineNames("a", 30, 35)...)); !slices.Equal(got, want) {
		t.Fatalf("read %v, want %v", got, want)
	}
	fileExpectNothing(t, s, 100*time.Millisecond)
	fileClose(t, s)

	// Reopened: only what was written meanwhile.
	fileWriteLines(t, a, "a", 35, 40)
	fileWriteLines(t, b, "b", 3, 4)
	s = openFileSource(t, state, "", filepath.Join(dir, "*.log"))
	recs = fileReadN(t, s, 6, 5*time.Second)
	if got, want := fileSorted(fileValues(recs)), fileSorted(append(fileLineNames("a", 35, 40), "b-00003")); !slices.Equal(got, want) {
		t.Fatalf("after reopening: read %v, want %v", got, want)
	}
	fileExpectNothing(t, s, 100*time.Millisecond)
	fileClose(t, s)
}

func TestFileReadFromEnd(t *testing.T) {
	dir, state := t.TempDir(), t.TempDir()
	a := filepath.Join(dir, "a.log")
	fileWriteLines(t, a, "a", 0, 10)
	fileAppend(t, a, "a-half") // a partial last line: started after it
	s := openFileSource(t, state, "read_from: end\n", filepath.Join(dir, "*.log"))
	fileExpectNothing(t, s, 100*time.Millisecond)
	fileAppend(t, a, "-done\n")
	fileWriteLines(t, a, "a", 10, 12)
	fileWriteLines(t, filepath.Join(dir, "new.log"), "new", 0, 3) // appears later: from its beginning
	recs := fileReadN(t, s, 6, 5*time.Second)
	want := append([]string{"a-half-done"}, fileLineNames("a", 10, 12)...)
	want = append(want, fileLineNames("new", 0, 3)...)
	if got := fileSorted(fileValues(recs)); !slices.Equal(got, fileSorted(want)) {
		t.Fatalf("read %v, want %v", got, want)
	}
	fileClose(t, s)
	// Checkpointed files resume at their checkpoint, not at their end.
	fileWriteLines(t, a, "a", 12, 14)
	s = openFileSource(t, state, "read_from: end\n", filepath.Join(dir, "*.log"))
	defer fileClose(t, s)
	if got, want := fileValues(fileReadN(t, s, 2, 5*time.Second)), fileLineNames("a", 12, 14); !slices.Equal(got, want) {
		t.Fatalf("after reopening: read %v, want %v", got, want)
	}
}

// TestFileRestart closes the source with batches acknowledged, one not,
// and one acknowledged out of order: reopened, it reads again exactly
// the lines from the first batch not acknowledged.
func TestFileRestart(t *testing.T) {
	for _, tc := range []struct {
		name  string
		acked []int // batches acknowledged, in this order, of 6
		from  int   // first line read again
	}{
		{"in order", []int{0, 1, 2, 3}, 40},
		{"last unacked", []int{0, 1, 2, 3, 4}, 50},
		{"gap", []int{0, 1, 3, 4}, 20},
		{"reversed", []int{3, 2, 1, 0}, 40},
		{"failed", []int{0, 1, -2, 3}, 20}, // -2: batch 2 failed
		{"none", nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, state := t.TempDir(), t.TempDir()
			a := filepath.Join(dir, "a.log")
			fileWriteLines(t, a, "a", 0, 100)
			s := openFileSource(t, state, "batch_size: 10\n", a)
			var acks []connectors.AckFunc
			var got []string
			for range 6 {
				recs, ack := fileReadBatch(t, s, 5*time.Second)
				if len(recs) != 10 {
					t.Fatalf("batch of %d records, want 10", len(recs))
				}
				got = append(got, fileValues(recs)...)
				acks = append(acks, ack)
			}
			if !slices.Equal(got, fileLineNames("a", 0, 60)) {
				t.Fatalf("read %v", got)
			}
			for _, i := range tc.acked {
				var err error
				if i < 0 {
					i, err = -i, errors.New("store failed")
				}
				acks[i](context.Background(), err)
			}
			fileClose(t, s)
			s = openFileSource(t, state, "batch_size: 100\n", a)
			defer fileClose(t, s)
			if got, want := fileValues(fileReadN(t, s, 100-tc.from, 5*time.Second)), fileLineNames("a", tc.from, 100); !slices.Equal(got, want) {
				t.Fatalf("after reopening: read %v, want %v", got, want)
			}
			fileExpectNothing(t, s, 50*time.Millisecond)
		})
	}
}

func TestFileBackpressure(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "a.log")
	fileWriteLines(t, a, "a", 0, 100)
	s := openFileSource(t, t.TempDir(), "batch_size: 10\nmax_pending: 2\n", a)
	defer fileClose(t, s)
	_, ack1 := fileReadBatch(t, s, 5*time.Second)
	_, ack2 := fileReadBatch(t, s, 5*time.Second)
	if ack1 == nil || ack2 == nil {
		t.Fatal("no batches")
	}
	if recs, _ := fileReadBatch(t, s, 100*time.Millisecond); recs != nil {
		t.Fatalf("Read with 2 batches pending returned %d records; want it to wait", len(recs))
	}
	ack1(context.Background(), nil)
	if recs, _ := fileReadBatch(t, s, 5*time.Second); len(recs) != 10 || recs[0].value != "a-00020" {
		t.Fatalf("after an ack: %v", recs)
	}
	// The file source keeps nothing beyond its read buffer while waiting.
	if len(s.open) != 1 || cap(s.open[0].buf) > fileBufSize {
		t.Fatalf("buffers: %d open, cap %d", len(s.open), cap(s.open[0].buf))
	}
}

func TestFileLines(t *testing.T) {
	t.Run("truncate", func(t *testing.T) {
		dir := t.TempDir()
		a := filepath.Join(dir, "a.log")
		big := strings.Repeat("x", 300<<10) // longer than any read buffer
		fileAppend(t, a, "0123456789ABCDEF\nshort\n"+big+"\nafter\n"+"0123456789\r\n")
		s := openFileSource(t, t.TempDir(), "max_line_bytes: 10\n", a)
		defer fileClose(t, s)
		recs := fileOneID(t, fileReadN(t, s, 5, 5*time.Second))
		want := []fileRec{
			{value: "0123456789", file: a, offset: 0, trunc: true},
			{value: "short", file: a, offset: 17},
			{value: "xxxxxxxxxx", file: a, offset: 23, trunc: true},
			{value: "after", file: a, offset: 23 + 300<<10 + 1},
			{value: "0123456789", file: a, offset: 23 + 300<<10 + 7},
		}
		if !slices.Equal(recs, want) {
			t.Fatalf("read %+v, want %+v", recs, want)
		}
		if c := cap(s.open[0].buf); c > fileBufSize {
			t.Fatalf("read buffer grew to %d bytes", c)
		}
	})
	t.Run("partial", func(t *testing.T) {
		dir := t.TempDir()
		a := filepath.Join(dir, "a.log")
		fileAppend(t, a, "complete\npart")
		s := openFileSource(t, t.TempDir(), "partial_timeout: 300ms\n", a)
		defer fileClose(t, s)
		if got := fileOneID(t, fileReadN(t, s, 1, 5*time.Second)); !slices.Equal(got, []fileRec{{value: "complete", file: a}}) {
			t.Fatalf("read %+v", got)
		}
		fileAppend(t, a, "ial") // the line grows: still held
		start := time.Now()
		got := fileOneID(t, fileReadN(t, s, 1, 5*time.Second))
		if !slices.Equal(got, []fileRec{{value: "partial", file: a, offset: 9, partial: true}}) {
			t.Fatalf("read %+v", got)
		}
		if d := time.Since(start); d < 250*time.Millisecond {
			t.Fatalf("partial line handed on after %v, before partial_timeout", d)
		}
		fileAppend(t, a, " rest\nnext\n")
		if got := fileOneID(t, fileReadN(t, s, 2, 5*time.Second)); !slices.Equal(got, []fileRec{{value: " rest", file: a, offset: 16}, {value: "next", file: a, offset: 22}}) {
			t.Fatalf("read %+v", got)
		}
	})
	t.Run("multiline", func(t *testing.T) {
		dir := t.TempDir()
		a := filepath.Join(dir, "a.log")
		fileAppend(t, a, "  orphan\n"+
			"2026-01-01 first\n  at a\n\tat b\n"+
			"2026-01-01 second\n"+
			"2026-01-01 third\n  1\n  2\n  3\n  4\n"+
			"2026-01-01 last\n  at c\n")
		s := openFileSource(t, t.TempDir(), "multiline: {start: '^\\d{4}-', max_lines: 3, timeout: 200ms}\n", a)
		defer fileClose(t, s)
		got := fileValues(fileReadN(t, s, 6, 5*time.Second))
		want := []string{"  orphan", "2026-01-01 first\n  at a\n\tat b", "2026-01-01 second",
			"2026-01-01 third\n  1\n  2", "  3\n  4", "2026-01-01 last\n  at c"}
		if !slices.Equal(got, want) {
			t.Fatalf("read %q, want %q", got, want)
		}
	})
	t.Run("multiline restart", func(t *testing.T) {
		// An open record is not checkpointed: after a restart it is read
		// again whole.
		dir, state := t.TempDir(), t.TempDir()
		a := filepath.Join(dir, "a.log")
		fileAppend(t, a, "S one\n more\nS two\n more\n")
		conf := "multiline: {start: '^S', timeout: 1h}\n"
		s := openFileSource(t, state, conf, a)
		if got := fileValues(fileReadN(t, s, 1, 5*time.Second)); !slices.Equal(got, []string{"S one\n more"}) {
			t.Fatalf("read %q", got)
		}
		fileClose(t, s)
		fileAppend(t, a, " more\nS three\n")
		s = openFileSource(t, state, conf, a)
		defer fileClose(t, s)
		if got := fileValues(fileReadN(t, s, 1, 5*time.Second)); !slices.Equal(got, []string{"S two\n more\n more"}) {
			t.Fatalf("after reopening: read %q", got)
		}
	})
}

func fileGzip(t testing.TB, path, content string) {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	zw.Write([]byte(content))
	zw.Close()
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestFileGzip(t *testing.T) {
	dir, state := t.TempDir(), t.TempDir()
	fileWriteLines(t, filepath.Join(dir, "app.log"), "live", 0, 3)
	var b strings.Builder
	for i := range 2000 {
		fmt.Fprintf(&b, "old-%05d\n", i)
	}
	b.WriteString("old-last") // no line break at the end: handed on at the end of the file
	fileGzip(t, filepath.Join(dir, "app.log.1.gz"), b.String())
	pattern := filepath.Join(dir, "app.log*")

	s := openFileSource(t, state, "", pattern)
	if got := fileValues(fileReadN(t, s, 3, 5*time.Second)); !slices.Equal(got, fileLineNames("live", 0, 3)) {
		t.Fatalf("read %v", got)
	}
	fileExpectNothing(t, s, 200*time.Millisecond)
	fileClose(t, s)

	s = openFileSource(t, state, "include_compressed: true\n", pattern)
	recs := fileReadN(t, s, 2001, 5*time.Second)
	want := append(fileLineNames("old", 0, 2000), "old-last")
	if got := fileValues(recs); !slices.Equal(got, want) {
		t.Fatalf("read %d records, want %d: %v...", len(got), len(want), got[:min(len(got), 5)])
	}
	if last := recs[len(recs)-1]; !last.partial || last.offset != 2000*10 {
		t.Fatalf("last record %+v, want offset 20000 flagged partial", last)
	}
	fileExpectNothing(t, s, 200*time.Millisecond)
	fileClose(t, s)

	s = openFileSource(t, state, "include_compressed: true\n", pattern)
	defer fileClose(t, s)
	fileExpectNothing(t, s, 200*time.Millisecond) // done: not read again
}

func TestFileGlob(t *testing.T) {
	dir := t.TempDir()
	for _, p := range []string{"a.log", "x/b.log", "x/y/c.log", "x/y/z/d.log", "x/y/skip.log", "x/e.txt", "x/tmp/f.log"} {
		p = filepath.Join(dir, p)
		os.MkdirAll(filepath.Dir(p), 0o755)
		fileAppend(t, p, filepath.Base(p)+"\n")
	}
	s := openFileSource(t, t.TempDir(), fmt.Sprintf("exclude: [skip.*, %q]\n", filepath.Join(dir, "x", "tmp", "**")),
		filepath.Join(dir, "**", "*.log"))
	defer fileClose(t, s)
	got := fileSorted(fileValues(fileReadN(t, s, 4, 5*time.Second)))
	if want := []string{"a.log", "b.log", "c.log", "d.log"}; !slices.Equal(got, want) {
		t.Fatalf("read %v, want %v", got, want)
	}
	fileExpectNothing(t, s, 100*time.Millisecond)

	for _, tc := range []struct {
		pat, name string
		want      bool
	}{
		{"a/**/b", "a/b", true},
		{"a/**/b", "a/x/y/b", true},
		{"a/**", "a/x/y", true},
		{"a/**/*.log", "a/x.txt", false},
		{"a/*/b", "a/x/y/b", false},
		{"**/**/c", "a/b/c", true},
	} {
		if got := globMatch(globSplit(filepath.FromSlash(tc.pat)), strings.Split(filepath.FromSlash(tc.name), globSep)); got != tc.want {
			t.Errorf("matchSegments(%q, %q) = %v, want %v", tc.pat, tc.name, got, tc.want)
		}
	}
}

// TestFileDeleted checks that a deleted file is read to its end, then
// closed (its descriptor released) and its checkpoint dropped.
func TestFileDeleted(t *testing.T) {
	dir, state := t.TempDir(), t.TempDir()
	a := filepath.Join(dir, "a.log")
	fileWriteLines(t, a, "a", 0, 5)
	s := openFileSource(t, state, "", a)
	defer fileClose(t, s)
	if got := fileValues(fileReadN(t, s, 5, 5*time.Second)); !slices.Equal(got, fileLineNames("a", 0, 5)) {
		t.Fatalf("read %v", got)
	}
	w, err := os.OpenFile(a, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(a)
	w.WriteString("a-late\n") // written after the delete: still read
	w.Close()
	if got := fileValues(fileReadN(t, s, 1, 5*time.Second)); !slices.Equal(got, []string{"a-late"}) {
		t.Fatalf("read %v", got)
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		fileReadBatch(t, s, 20*time.Millisecond)
		s.mu.Lock()
		n := len(s.known)
		s.mu.Unlock()
		if len(s.open) == 0 && n == 0 {
			return
		}
	}
	t.Fatalf("deleted file still open (%d open)", len(s.open))
}

// TestFileCheckpointFormat checks what is written, and that a corrupt
// document is an error rather than a silent start from scratch.
func TestFileCheckpointFormat(t *testing.T) {
	dir, state := t.TempDir(), t.TempDir()
	a := filepath.Join(dir, "a.log")
	fileWriteLines(t, a, "a", 0, 200) // 1600 bytes: past fingerprint_bytes
	s := openFileSource(t, state, "", a)
	fileReadN(t, s, 200, 5*time.Second)
	fileClose(t, s)
	data, err := os.ReadFile(filepath.Join(state, fileCheckpointName))
	if err != nil {
		t.Fatal(err)
	}
	var doc fileCheckpoints
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Version != 1 || len(doc.Files) != 1 {
		t.Fatalf("checkpoints %s", data)
	}
	if e := doc.Files[0]; e.Path != a || e.Offset != 1600 || e.FPBytes != 1024 || e.Ino == 0 {
		t.Fatalf("checkpoint %+v", e)
	}
	if _, err := os.Stat(filepath.Join(state, fileCheckpointName+".tmp")); err == nil {
		t.Fatal("temporary file left behind")
	}
	os.WriteFile(filepath.Join(state, fileCheckpointName), data[:len(data)/2], 0o644)
	src, err := newFile(parseFileConf(t, "paths: ["+strconv.Quote(a)+"]"), connectors.Resources{StateDir: state})
	if err != nil {
		t.Fatal(err)
	}
	if err := src.(*fileSource).Connect(context.Background()); err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Fatalf("Connect with corrupt checkpoints: %v, want an error", err)
	}
	src.Close(context.Background())
}

// TestFileCloseWhileReading closes the source while Read waits.
func TestFileCloseWhileReading(t *testing.T) {
	dir := t.TempDir()
	s := openFileSource(t, t.TempDir(), "", filepath.Join(dir, "*.log"))
	var wg sync.WaitGroup
	wg.Add(1)
	var err error
	go func() {
		defer wg.Done()
		_, _, err = s.Read(context.Background())
	}()
	time.Sleep(50 * time.Millisecond)
	fileClose(t, s)
	wg.Wait()
	if !errors.Is(err, errFileClosed) {
		t.Fatalf("Read = %v, want errFileClosed", err)
	}
	fileClose(t, s) // twice is fine
}
