package sinks

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"text/template"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/valyala/fastjson"

	"github.com/weirhub/weir/connectors"
)

func TestPathTemplate(t *testing.T) {
	ts := time.Date(2026, 11, 21, 7, 30, 0, 0, time.FixedZone("X", -9*3600)) // 16:30 UTC
	tests := []struct {
		tmpl string
		m    connectors.Message
		want string
	}{
		{"/a/b.log", connectors.Message{}, "/a/b.log"},
		{"/a/{{ .date }}/{{.hour}}.log", connectors.Message{Time: ts}, "/a/2026-11-21/16.log"},
		{"{{ .year }}/{{ .month }}/{{ .day }}", connectors.Message{Time: ts}, "2026/11/21"},
		{"/d/{{ .dataset }}-{{ .partition }}", connectors.Message{Dataset: "access", Partition: 3}, "/d/access-3"},
		{"/d/{{ .dataset }}", connectors.Message{}, "/d/_"},
		{"/k/{{ .key }}", connectors.Message{Key: []byte("web/01")}, "/k/web_01"},
		{`/h/{{ .field "host" }}.log`, connectors.Message{Value: []byte(`{"host":"web-3"}`)}, "/h/web-3.log"},
		{`/h/{{ .field "http.status" }}`, connectors.Message{Value: []byte(`{"http":{"status":503}}`)}, "/h/503"},
		{`/h/{{ .field "host" }}`, connectors.Message{Value: []byte(`{"host":"../../etc"}`)}, "/h/.._.._etc"},
		{`/h/{{ .field "host" }}`, connectors.Message{Value: []byte(`{"host":".."}`)}, "/h/_"},
		{`/h/{{ .field "host" }}`, connectors.Message{Value: []byte(`{"host":"a\nb"}`)}, "/h/a_b"},
		{`/h/{{ .field "host" }}`, connectors.Message{Value: []byte(`not json`)}, "/h/_"},
		{`/h/{{ .field "host" }}-{{ .field "n" }}`, connectors.Message{Value: []byte(`{"host":"x","n":1.5}`)}, "/h/x-1.5"},
		{`/h/{{ .field "missing" }}`, connectors.Message{Value: []byte(`{"host":"x"}`)}, "/h/_"},
	}
	var p fastjson.Parser
	for _, tt := range tests {
		tmpl, err := parsePathTemplate(tt.tmpl)
		if err != nil {
			t.Fatalf("parsePathTemplate(%q): %v", tt.tmpl, err)
		}
		if got := string(tmpl.appendPath(nil, &tt.m, &p)); got != tt.want {
			t.Errorf("appendPath(%q, %q) = %q, want %q", tt.tmpl, tt.m.Value, got, tt.want)
		}
		if tt.m.Parsed() {
			t.Errorf("appendPath(%q) parsed the message itself", tt.tmpl)
		}
	}
}

func TestPathTemplateHourCache(t *testing.T) {
	tmpl, _ := parsePathTemplate("{{ .date }}T{{ .hour }}")
	var p fastjson.Parser
	for _, ts := range []time.Time{
		time.Date(2026, 11, 21, 23, 59, 0, 0, time.UTC), time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC),
		time.Date(2026, 11, 21, 23, 0, 0, 0, time.UTC), time.Date(1969, 12, 31, 23, 30, 0, 0, time.UTC),
		time.Date(1970, 1, 1, 0, 30, 0, 0, time.UTC),
	} {
		want := ts.Format("2006-01-02T15")
		if got := string(tmpl.appendPath(nil, &connectors.Message{Time: ts}, &p)); got != want {
			t.Errorf("appendPath(%v) = %q, want %q", ts, got, want)
		}
	}
}

func TestSplitSequenceName(t *testing.T) {
	tests := []struct{ in, stem, ext string }{
		{"access-2026-11-21.ndjson.zst", "access-2026-11-21", ".ndjson.zst"},
		{"access.log.gz", "access", ".log.gz"},
		{"app.log", "app", ".log"},
		{"events", "events", ""},
		{"events.gz", "events", ".gz"},
		{"web-1.2026-11-21", "web-1.2026-11-21", ""}, // "-" is not in an extension
		{".hidden", ".hidden", ""},
	}
	for _, tt := range tests {
		if stem, ext := splitSequenceName(tt.in); stem != tt.stem || ext != tt.ext {
			t.Errorf("splitSequenceName(%q) = %q, %q, want %q, %q", tt.in, stem, ext, tt.stem, tt.ext)
		}
	}
}

// newTestFile builds a file sink from YAML, closed at the end of the test.
func newTestFile(t *testing.T, src string) *fileSink {
	t.Helper()
	s, err := newFile(parseConfig(t, &fileSpec, src), connectors.Resources{})
	if err != nil {
		t.Fatalf("newFile(%q): %v", src, err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return s.(*fileSink)
}

// readAll returns a file's content, decompressed by its suffix. A torn
// compressed stream gives what could be decoded and the error.
func readAll(t *testing.T, path string) (string, error) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var r io.Reader = f
	switch {
	case strings.HasSuffix(path, ".gz"):
		zr, err := gzip.NewReader(f)
		if err != nil {
			return "", err
		}
		r = zr
	case strings.HasSuffix(path, ".zst"):
		zr, err := zstd.NewReader(f, zstd.WithDecoderConcurrency(1))
		if err != nil {
			t.Fatal(err)
		}
		defer zr.Close()
		r = zr
	}
	b, err := io.ReadAll(r)
	return string(b), err
}

// files lists a directory's file names, sorted.
func files(t *testing.T, dir string) []string {
	t.Helper()
	var names []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			names = append(names, rel)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(names)
	return names
}

func TestFileSinkFormats(t *testing.T) {
	values := []string{`{"a":1}`, "{\"b\":\n2}", `{"c":"x"}`}
	tests := []struct {
		name, conf string
		file       string
		want       string
	}{
		{"lines", "format: lines", "out.log", "{\"a\":1}\n{\"b\":\n2}\n{\"c\":\"x\"}\n"},
		{"ndjson", "format: ndjson", "out.ndjson", "{\"a\":1}\n{\"b\": 2}\n{\"c\":\"x\"}\n"},
		{"gzip by suffix", "format: ndjson", "out.ndjson.gz", "{\"a\":1}\n{\"b\": 2}\n{\"c\":\"x\"}\n"},
		{"zstd by suffix", "format: ndjson", "out.ndjson.zst", "{\"a\":1}\n{\"b\": 2}\n{\"c\":\"x\"}\n"},
		{"zstd named", "compression: zstd", "out.zst", "{\"a\":1}\n{\"b\":\n2}\n{\"c\":\"x\"}\n"},
		{"none named", "compression: none", "out.gz", "{\"a\":1}\n{\"b\":\n2}\n{\"c\":\"x\"}\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			s := newTestFile(t, "path: "+filepath.Join(dir, tt.file)+"\n"+tt.conf)
			for _, v := range values { // a batch each
				if err := s.Write(context.Background(), messages(v)); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			got, err := readAll(t, filepath.Join(dir, tt.file))
			if tt.name == "none named" {
				b, rerr := os.ReadFile(filepath.Join(dir, tt.file))
				got, err = string(b), rerr
			}
			if err != nil || got != tt.want {
				t.Errorf("file sink %s wrote %q (%v), want %q", tt.name, got, err, tt.want)
			}
		})
	}
}

// TestFileSinkNDJSONParsedValues: values a pipeline parsed and wrote back
// (Sync, then Release, as the pipeline does before its sinks) are taken
// without a second validation only when they are valid JSON: fastjson's
// parser takes NaN and 01, which the file must not get, and a value
// replaced after the Sync is checked again.
func TestFileSinkNDJSONParsedValues(t *testing.T) {
	dir := t.TempDir()
	s := newTestFile(t, "path: "+dir+"/out.ndjson\nformat: ndjson")
	msgs := messages(`{"ok":1}`, `{"a":NaN}`, `{"a":01}`, `{"ok":2}`, `{"ok":3}`)
	for _, m := range msgs {
		if _, err := m.Fields(); err != nil {
			t.Fatal(err)
		}
		m.Set("env", m.Arena().NewString("prod"))
		m.Sync(nil)
		m.Release()
	}
	if !msgs[0].KnownJSONObject() || msgs[1].KnownJSONObject() {
		t.Fatalf("known: %v %v, want true false", msgs[0].KnownJSONObject(), msgs[1].KnownJSONObject())
	}
	msgs[4].Value = []byte(`not json`)
	err := s.Write(context.Background(), msgs)
	var we *connectors.WriteError
	if !errors.As(err, &we) {
		t.Fatalf("Write = %v, want a *connectors.WriteError", err)
	}
	var idx []int
	for _, f := range we.Failures {
		idx = append(idx, f.Index)
	}
	if !slices.Equal(idx, []int{1, 2, 4}) {
		t.Errorf("failed indexes = %v, want [1 2 4]", idx)
	}
	s.Close(context.Background())
	if got, _ := readAll(t, dir+"/out.ndjson"); got != "{\"ok\":1,\"env\":\"prod\"}\n{\"ok\":2,\"env\":\"prod\"}\n" {
		t.Errorf("file = %q", got)
	}
}

func TestFileSinkNDJSONRejects(t *testing.T) {
	dir := t.TempDir()
	s := newTestFile(t, "path: "+dir+"/out.ndjson\nformat: ndjson")
	err := s.Write(context.Background(), messages(`{"ok":1}`, `not json`, `[1]`, `{"ok":2}`, `{"broken":`))
	var we *connectors.WriteError
	if !errors.As(err, &we) {
		t.Fatalf("Write = %v, want a *connectors.WriteError", err)
	}
	var idx []int
	for _, f := range we.Failures {
		idx = append(idx, f.Index)
		if f.Retryable || !errors.Is(f.Err, errNotJSONObject) {
			t.Errorf("failure %d = %+v, want not retryable, errNotJSONObject", f.Index, f)
		}
	}
	if !slices.Equal(idx, []int{1, 2, 4}) {
		t.Errorf("failed indexes = %v, want [1 2 4]", idx)
	}
	s.Close(context.Background())
	if got, _ := readAll(t, dir+"/out.ndjson"); got != "{\"ok\":1}\n{\"ok\":2}\n" {
		t.Errorf("file = %q", got)
	}
}

func TestFileSinkRotateSize(t *testing.T) {
	for _, ext := range []string{".ndjson", ".ndjson.gz", ".ndjson.zst"} {
		t.Run(ext, func(t *testing.T) {
			dir := t.TempDir()
			s := newTestFile(t, "path: "+dir+"/access-{{ .date }}"+ext+"\nrotate: {size: 2KiB}")
			recs := accessRecords(205)
			var want strings.Builder
			for i := 0; i < len(recs); i += 10 {
				var batch []*connectors.Message
				for _, r := range recs[i:min(i+10, len(recs))] {
					batch = append(batch, &connectors.Message{Value: r, Time: time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)})
					want.Write(r)
					want.WriteByte('\n')
				}
				if err := s.Write(context.Background(), batch); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			names := files(t, dir)
			if len(names) < 3 {
				t.Fatalf("files = %v, want several rotations", names)
			}
			// Sequence files in order, then the active one.
			active := "access-2026-11-21" + ext
			if names[len(names)-1] != active {
				t.Fatalf("files = %v, want the active %s last", names, active)
			}
			var got strings.Builder
			for i, n := range names {
				if i < len(names)-1 {
					if wantName := "access-2026-11-21." + sixDigits(i+1) + ext; n != wantName {
						t.Errorf("file %d = %s, want %s", i, n, wantName)
					}
					if fi, _ := os.Stat(filepath.Join(dir, n)); ext == ".ndjson" && fi.Size() > 2048+300 {
						t.Errorf("%s has %d bytes, want about 2KiB", n, fi.Size())
					}
				}
				c, err := readAll(t, filepath.Join(dir, n))
				if err != nil {
					t.Errorf("%s: %v", n, err)
				}
				got.WriteString(c)
			}
			if got.String() != want.String() {
				t.Errorf("the files hold %d bytes, want the %d written, in order", got.Len(), want.Len())
			}
		})
	}
}

func sixDigits(n int) string { return strings.Repeat("0", 6-len(itoa(n))) + itoa(n) }

func TestFileSinkRotateInterval(t *testing.T) {
	dir := t.TempDir()
	s := newTestFile(t, "path: "+dir+"/a.log\nrotate: {interval: 1h}")
	now := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	s.now = func() time.Time { return now }
	write := func(v string) {
		t.Helper()
		if err := s.Write(context.Background(), messages(v)); err != nil {
			t.Fatal(err)
		}
	}
	write("one")
	now = now.Add(59 * time.Minute)
	write("two")
	now = now.Add(time.Minute)
	write("three") // the file is an hour old: rotated first
	now = now.Add(2 * time.Hour)
	s.mu.Lock()
	s.rotateAged() // what the timer does
	s.mu.Unlock()
	if got, want := files(t, dir), []string{"a.000001.log", "a.000002.log"}; !slices.Equal(got, want) {
		t.Fatalf("files = %v, want %v", got, want)
	}
	for name, want := range map[string]string{"a.000001.log": "one\ntwo\n", "a.000002.log": "three\n"} {
		if got, _ := readAll(t, filepath.Join(dir, name)); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
}

func TestFileSinkRotateTimer(t *testing.T) {
	dir := t.TempDir()
	s := newTestFile(t, "path: "+dir+"/a.log.zst\nrotate: {interval: 50ms}")
	if err := s.Write(context.Background(), messages("one")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !slices.Equal(files(t, dir), []string{"a.000001.log.zst"}) {
		if time.Now().After(deadline) {
			t.Fatalf("files = %v, want the file rotated by the timer", files(t, dir))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got, err := readAll(t, dir+"/a.000001.log.zst"); got != "one\n" || err != nil {
		t.Errorf("rotated file = %q, %v", got, err)
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestFileSinkFanOut(t *testing.T) {
	dir := t.TempDir()
	s := newTestFile(t, `path: '`+dir+`/{{ .field "host" }}/{{ .date }}.log.gz'`+"\nmax_open_files: 2")
	var want = map[string]string{}
	for round := range 3 {
		for _, host := range []string{"a", "b", "c"} { // three files, two open at most
			v := `{"host":"` + host + `","round":` + itoa(round) + `}`
			if err := s.Write(context.Background(), messages(v)); err != nil {
				t.Fatal(err)
			}
			want[host] += v + "\n"
			if len(s.files) > 2 {
				t.Fatalf("%d files open, want at most 2", len(s.files))
			}
		}
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, n := range files(t, dir) {
		c, err := readAll(t, filepath.Join(dir, n))
		if err != nil {
			t.Errorf("%s: %v", n, err)
		}
		got[filepath.Dir(n)] += c
	}
	for host := range want {
		if got[host] != want[host] {
			t.Errorf("host %s: files hold %q, want %q", host, got[host], want[host])
		}
	}
	// Evicted files were closed in place and moved aside when reopened.
	if names := files(t, dir); !slices.Contains(names, "a/2026-11-21.000001.log.gz") || !slices.Contains(names, "a/2026-11-21.log.gz") {
		t.Errorf("files = %v", names)
	}
}

func TestFileSinkMovesAsideExisting(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(dir+"/a.log", []byte("old\n"), 0o644)
	os.WriteFile(dir+"/a.000007.log", []byte("older\n"), 0o644)
	s := newTestFile(t, "path: "+dir+"/a.log")
	if err := s.Write(context.Background(), messages("new")); err != nil {
		t.Fatal(err)
	}
	s.Close(context.Background())
	want := map[string]string{"a.000007.log": "older\n", "a.000008.log": "old\n", "a.log": "new\n"}
	if got := files(t, dir); len(got) != len(want) {
		t.Fatalf("files = %v", got)
	}
	for n, w := range want {
		if got, _ := readAll(t, filepath.Join(dir, n)); got != w {
			t.Errorf("%s = %q, want %q", n, got, w)
		}
	}
}

// TestFileSinkCrash checks what a crash leaves: every rotated file is a
// whole compressed stream, and the active file decodes up to the last
// completed write.
func TestFileSinkCrash(t *testing.T) {
	for _, ext := range []string{".gz", ".zst"} {
		t.Run(ext, func(t *testing.T) {
			dir := t.TempDir()
			s := newTestFile(t, "path: "+dir+"/a.ndjson"+ext+"\nrotate: {size: 4KiB}\nfsync: batch")
			recs := accessRecords(100)
			var want strings.Builder
			for i := 0; i < len(recs); i += 5 {
				var batch []*connectors.Message
				for _, r := range recs[i : i+5] {
					batch = append(batch, &connectors.Message{Value: r})
					want.Write(r)
					want.WriteByte('\n')
				}
				if err := s.Write(context.Background(), batch); err != nil {
					t.Fatal(err)
				}
			}
			// "Crash": read the directory as it is, without Close.
			names := files(t, dir)
			var got strings.Builder
			for i, n := range names {
				c, err := readAll(t, filepath.Join(dir, n))
				if n == "a.ndjson"+ext {
					if i != len(names)-1 {
						t.Fatalf("files = %v", names)
					}
				} else if err != nil {
					t.Errorf("closed file %s: %v", n, err)
				}
				got.WriteString(c)
			}
			if got.String() != want.String() {
				t.Errorf("after a crash the files hold %d bytes, want all %d written", got.Len(), want.Len())
			}
		})
	}
}

func TestFileSinkMode(t *testing.T) {
	dir := t.TempDir()
	s := newTestFile(t, "path: "+dir+"/sub/a.log\nmode: '0600'")
	if err := s.Write(context.Background(), messages("x")); err != nil {
		t.Fatal(err)
	}
	s.Close(context.Background())
	fi, err := os.Stat(dir + "/sub/a.log")
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("mode = %v, %v, want 0600", fi.Mode().Perm(), err)
	}
}

func TestFileSinkClose(t *testing.T) {
	dir := t.TempDir()
	s := newTestFile(t, "path: "+dir+"/a.log.zst")
	if err := s.Close(context.Background()); err != nil {
		t.Fatalf("Close before any write = %v", err)
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatalf("second Close = %v", err)
	}
	if err := s.Write(context.Background(), messages("x")); !errors.Is(err, errSinkClosed) {
		t.Fatalf("Write after Close = %v, want errSinkClosed", err)
	}
}

func TestFileSinkWriteError(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(dir+"/blocker", nil, 0o644)
	s := newTestFile(t, "path: "+dir+"/blocker/a.log")
	if err := s.Write(context.Background(), messages("x")); err == nil {
		t.Fatal("Write under a file = nil, want an error")
	}
}

// BenchmarkFileSinkNDJSON writes 270-byte JSON records in batches of
// 1000, each checked to be a JSON object, uncompressed, with zstd and
// with gzip.
func BenchmarkFileSinkNDJSON(b *testing.B) {
	for _, comp := range []string{"none", "zstd", "gzip"} {
		b.Run(comp, func(b *testing.B) { benchmarkFileSink(b, "ndjson", comp) })
	}
}

// BenchmarkFileSinkLines is BenchmarkFileSinkNDJSON without the check:
// the cost of the writing alone.
func BenchmarkFileSinkLines(b *testing.B) {
	for _, comp := range []string{"none", "zstd"} {
		b.Run(comp, func(b *testing.B) { benchmarkFileSink(b, "lines", comp) })
	}
}

func benchmarkFileSink(b *testing.B, format, comp string) {
	recs := accessRecords(1000)
	size := 0
	batch := make([]*connectors.Message, len(recs))
	ts := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	for i, r := range recs {
		size += len(r)
		batch[i] = &connectors.Message{Value: r, Time: ts}
	}
	dir := b.TempDir()
	s, err := newFile(parseConfig(b, &fileSpec, "path: '"+dir+"/access-{{ .date }}.ndjson'\nformat: "+format+
		"\ncompression: "+comp+"\nrotate: {size: 1GiB}"), connectors.Resources{})
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(size / len(recs)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += len(batch) {
		if err := s.Write(context.Background(), batch[:min(len(batch), b.N-i)]); err != nil {
			b.Fatal(err)
		}
	}
	if err := s.Close(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkPathTemplate compares the path template with text/template.
func BenchmarkPathTemplate(b *testing.B) {
	m := &connectors.Message{Value: accessRecords(1)[0], Time: time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC), Dataset: "access"}
	b.Run("date", func(b *testing.B) {
		tmpl, _ := parsePathTemplate("/archive/{{ .dataset }}/access-{{ .date }}.ndjson.zst")
		var p fastjson.Parser
		var buf []byte
		b.ReportAllocs()
		for b.Loop() {
			buf = tmpl.appendPath(buf[:0], m, &p)
		}
	})
	b.Run("field", func(b *testing.B) {
		tmpl, _ := parsePathTemplate(`/archive/{{ .field "host" }}/access-{{ .date }}.ndjson.zst`)
		var p fastjson.Parser
		var buf []byte
		b.ReportAllocs()
		for b.Loop() {
			buf = tmpl.appendPath(buf[:0], m, &p)
		}
	})
	b.Run("text/template", func(b *testing.B) {
		tmpl := template.Must(template.New("p").Parse("/archive/{{ .dataset }}/access-{{ .date }}.ndjson.zst"))
		var buf bytes.Buffer
		b.ReportAllocs()
		for b.Loop() {
			buf.Reset()
			tmpl.Execute(&buf, map[string]string{"dataset": m.Dataset, "date": m.Time.UTC().Format("2006-01-02")})
		}
	})
}

func TestFileSinkHours(t *testing.T) {
	dir := t.TempDir()
	s := newTestFile(t, "path: '"+dir+"/{{ .date }}/{{ .hour }}.log'")
	var batch []*connectors.Message
	for i := range 6 {
		ts := time.Date(2026, 11, 21, 10+i%2, i, 0, 0, time.UTC) // 10:00, 11:01, 10:02, ...
		batch = append(batch, &connectors.Message{Value: []byte(itoa(i)), Time: ts})
	}
	batch = append(batch, &connectors.Message{Value: []byte("next day"), Time: time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)})
	if err := s.Write(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	s.Close(context.Background())
	want := map[string]string{"2026-11-21/10.log": "0\n2\n4\n", "2026-11-21/11.log": "1\n3\n5\n", "2026-11-22/10.log": "next day\n"}
	if got := files(t, dir); len(got) != len(want) {
		t.Fatalf("files = %v", got)
	}
	for n, w := range want {
		if got, _ := readAll(t, filepath.Join(dir, n)); got != w {
			t.Errorf("%s = %q, want %q", n, got, w)
		}
	}
}

// fullDisk writes part of what it is given, then fails as a full disk
// does.
type fullDisk struct{ f *os.File }

func (d fullDisk) Write(p []byte) (int, error) {
	n, _ := d.f.Write(p[:len(p)/2])
	return n, syscall.ENOSPC
}

// TestFileSinkFullDiskNoTornLines: a write that fails halfway (a full
// disk) is transient, leaves no torn line and no rotated or empty file;
// the retry completes the file (issue 10 item 3).
func TestFileSinkFullDiskNoTornLines(t *testing.T) {
	for _, fsync := range []string{"rotate", "batch"} {
		t.Run(fsync, func(t *testing.T) {
			dir := t.TempDir()
			s := newTestFile(t, "{path: "+dir+"/out.ndjson, rotate: {size: 200}, fsync: "+fsync+"}")
			ctx := context.Background()
			if err := s.Write(ctx, messages(`{"n":1}`, `{"n":2}`)); err != nil {
				t.Fatal(err)
			}
			w := s.files[dir+"/out.ndjson"]
			w.cw.w = fullDisk{w.f}
			var batch []string
			for i := range 40 {
				batch = append(batch, `{"n":"`+strings.Repeat("x", i)+`"}`)
			}
			for range 3 {
				err := s.Write(ctx, messages(batch...))
				if err == nil || errors.Is(err, connectors.ErrPermanent) || !errors.Is(err, syscall.ENOSPC) {
					t.Fatalf("Write on a full disk = %v, want a transient error wrapping ENOSPC", err)
				}
			}
			if got := files(t, dir); !slices.Equal(got, []string{"out.ndjson"}) {
				t.Fatalf("files after failed writes: %v, want only out.ndjson (no rotation on a failed write)", got)
			}
			if got, _ := readAll(t, dir+"/out.ndjson"); got != "{\"n\":1}\n{\"n\":2}\n" {
				t.Fatalf("out.ndjson after failed writes = %q, want the first batch whole", got)
			}
			w.cw.w = w.f // space again
			if err := s.Write(ctx, messages(batch...)); err != nil {
				t.Fatal(err)
			}
			s.Close(ctx)
			lines := 0
			for _, name := range files(t, dir) {
				got, err := readAll(t, filepath.Join(dir, name))
				if err != nil || got == "" {
					t.Fatalf("%s: %q, %v: want complete lines", name, got, err)
				}
				for _, l := range strings.Split(strings.TrimSuffix(got, "\n"), "\n") {
					if fastjson.Validate(l) != nil {
						t.Fatalf("%s has a torn line %q", name, l)
					}
					lines++
				}
			}
			if lines != 42 {
				t.Fatalf("%d lines in all, want 42", lines)
			}
		})
	}
}
