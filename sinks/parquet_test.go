package sinks

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/weirhub/weir/connectors"
	"github.com/weirhub/weir/internal/ducktest"
	"github.com/weirhub/weir/internal/objstore/s3test"
)

func newTestParquet(t *testing.T, state, src string) *parquetSink {
	t.Helper()
	s, err := newParquet(parseConfig(t, &parquetSpec, src), connectors.Resources{StateDir: state, Name: "pipelines.lake.parquet"})
	if err != nil {
		t.Fatal(err)
	}
	return s.(*parquetSink)
}

// lakeFiles lists the published files under dir, relative to it, leaving
// out the sink's hidden staging directory.
func lakeFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, e os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.IsDir() && strings.HasPrefix(e.Name(), ".weir-") {
			return filepath.SkipDir
		}
		if !e.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	slices.Sort(out)
	return out
}

var partName = regexp.MustCompile(`^date=\d{4}-\d{2}-\d{2}/part-\d+-\d+-\d+\.parquet$`)

func event(id int, day int, extra string) *connectors.Message {
	ts := time.Date(2026, 11, day, 10, 0, id%60, 0, time.UTC)
	v := fmt.Sprintf(`{"id":%d,"ts":%q,"amount":%d%s}`, id, ts.Format(time.RFC3339Nano), id*10, extra)
	return &connectors.Message{Value: []byte(v), Time: ts, Dataset: "events", Partition: int32(id % 2), Offset: int64(id / 2)}
}

// TestParquetSinkDuckDB writes events of two days, two partitions, with
// nested structs, lists, nulls, unicode and times with and without zones,
// and reads them back with DuckDB.
func TestParquetSinkDuckDB(t *testing.T) {
	dir := t.TempDir()
	s := newTestParquet(t, t.TempDir(), "path: "+dir+"/events/date={{ .date }}\nrotate: {rows: 30}")
	const n = 100
	var batch []*connectors.Message
	for i := range n {
		extra := ""
		switch i % 4 {
		case 0:
			extra = `,"user":{"name":"zoë ☃","tags":["a","b"]},"local":"2026-11-21T10:00:00"`
		case 1:
			extra = `,"user":{"name":null,"age":41},"ratio":0.5,"local":"2026-11-21 11:00:00+02:00"`
		case 2:
			extra = `,"ratio":2,"list":[1,2,null]`
		}
		// Alternate the days record by record: the path is evaluated per record.
		batch = append(batch, event(i, 21+i%2, extra))
	}
	ctx := context.Background()
	for i := 0; i < n; i += 10 {
		if err := s.Write(ctx, batch[i:i+10]); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	files := lakeFiles(t, filepath.Join(dir, "events"))
	if len(files) < 4 {
		t.Fatalf("files = %v, want at least 2 per day", files)
	}
	for _, f := range files {
		if !partName.MatchString(f) {
			t.Errorf("file %s is not date=YYYY-MM-DD/part-P-FIRST-LAST.parquet", f)
		}
	}
	glob := fmt.Sprintf("read_parquet('%s/events/*/*.parquet', hive_partitioning=true, union_by_name=true)", dir)
	if got := ducktest.Scalar(t, "select count(*) || '/' || count(distinct id) || '/' || sum(amount) from "+glob); got != "100/100/49500" {
		t.Errorf("count/distinct/sum = %s, want 100/100/49500", got)
	}
	// Every record is in the directory of its own day.
	if got := ducktest.Scalar(t, "select count(*) from "+glob+" where strftime(ts, '%Y-%m-%d') <> date::varchar"); got != "0" {
		t.Errorf("%s records are in another day's directory", got)
	}
	if got := ducktest.Scalar(t, "select count(*) from "+glob+" where date = '2026-11-22'"); got != "50" {
		t.Errorf("date=2026-11-22 has %s records, want 50", got)
	}
	r := ducktest.Query(t, "describe select * from "+glob)
	types := map[string]string{}
	for _, row := range r.Rows {
		types[fmt.Sprint(row["column_name"])] = fmt.Sprint(row["column_type"])
	}
	for col, want := range map[string]string{"id": "BIGINT", "ts": "TIMESTAMP WITH TIME ZONE", "amount": "BIGINT",
		"ratio": "DOUBLE", "list": "BIGINT[]", "user": `STRUCT("name" VARCHAR, tags VARCHAR[], age BIGINT)`, "local": "TIMESTAMP WITH TIME ZONE"} {
		if types[col] != want {
			t.Errorf("column %s is %s, want %s (all: %v)", col, types[col], want, types)
		}
	}
	r = ducktest.Query(t, "select id, epoch_us(ts) as us, epoch_us(local) as lus, \"user\".name as name, \"user\".tags as tags, list, ratio from "+glob+" where id in (0, 1, 2) order by id")
	if len(r.Rows) != 3 {
		t.Fatalf("rows = %v", r.Rows)
	}
	want0 := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC).UnixMicro()
	if us := fmt.Sprint(r.Rows[0]["us"]); us != fmt.Sprint(want0) {
		t.Errorf("ts of id 0 = %s µs, want %d", us, want0)
	}
	if lus := fmt.Sprint(r.Rows[0]["lus"]); lus != fmt.Sprint(want0) { // no zone: UTC
		t.Errorf("local of id 0 = %s, want %d", lus, want0)
	}
	if lus := fmt.Sprint(r.Rows[1]["lus"]); lus != fmt.Sprint(time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC).UnixMicro()) {
		t.Errorf("local of id 1 = %s, want 09:00 UTC", lus)
	}
	if r.Rows[0]["name"] != "zoë ☃" || fmt.Sprint(r.Rows[0]["tags"]) != "[a b]" || r.Rows[1]["name"] != nil {
		t.Errorf("user of ids 0, 1 = %v %v / %v", r.Rows[0]["name"], r.Rows[0]["tags"], r.Rows[1]["name"])
	}
	if fmt.Sprint(r.Rows[2]["list"]) != "[1 2 <nil>]" || fmt.Sprint(r.Rows[2]["ratio"]) != "2" || r.Rows[0]["ratio"] != nil {
		t.Errorf("list, ratio of id 2 = %v %v; ratio of 0 = %v", r.Rows[2]["list"], r.Rows[2]["ratio"], r.Rows[0]["ratio"])
	}
}

// TestParquetSinkDeadLetters checks that records that cannot be converted
// fail with the column and the reason, and the others are written.
func TestParquetSinkDeadLetters(t *testing.T) {
	dir := t.TempDir()
	s := newTestParquet(t, t.TempDir(), "path: "+dir+"/t\ncolumns:\n  - {name: id, type: int64, nullable: false}\n  - {name: at, type: timestamp}")
	msgs := messages(`{"id":1,"at":"2026-11-21T10:00:00Z","n":1}`, `not json`, `{"id":"two"}`, `{"at":1795255200}`,
		`{"id":5,"n":"five"}`, `{"id":6,"at":"noon"}`, `{"id":7,"n":7}`)
	err := s.Write(context.Background(), msgs)
	var we *connectors.WriteError
	if !errors.As(err, &we) {
		t.Fatalf("Write = %v, want a WriteError", err)
	}
	got := map[int]string{}
	for _, f := range we.Failures {
		if f.Retryable {
			t.Errorf("failure %d is retryable", f.Index)
		}
		got[f.Index] = f.Err.Error()
	}
	for i, want := range map[int]string{1: "not JSON", 2: "column id: is int64", 3: "column id: is not nullable", 4: "column n: is int64, got a JSON string", 5: `column at: is timestamp, got "noon"`} {
		if !strings.Contains(got[i], want) {
			t.Errorf("failure of record %d = %q, want it to say %q", i, got[i], want)
		}
	}
	if len(got) != 5 {
		t.Errorf("failures = %v, want 5", got)
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := ducktest.Scalar(t, fmt.Sprintf("select string_agg(id::varchar, ',' order by id) from '%s/t/*.parquet'", dir)); got != "1,7" {
		t.Errorf("ids written = %s, want 1,7", got)
	}
}

// TestParquetSinkHugeRecord writes a 10MiB record among small ones.
func TestParquetSinkHugeRecord(t *testing.T) {
	dir := t.TempDir()
	s := newTestParquet(t, t.TempDir(), "path: "+dir+"/h\nrow_group_bytes: 1MiB\nmemory_bytes: 4MiB")
	big := strings.Repeat("é", 5<<20)
	msgs := messages(`{"id":1,"s":"small"}`, `{"id":2,"s":"`+big+`"}`, `{"id":3,"s":"small"}`)
	if err := s.Write(context.Background(), msgs); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := ducktest.Scalar(t, fmt.Sprintf("select string_agg(id || ':' || strlen(s), ',' order by id) from '%s/h/*.parquet'", dir)); got != "1:5,2:10485760,3:5" {
		t.Errorf("ids:bytes = %s, want 1:5,2:10485760,3:5", got)
	}
}

// TestParquetSinkWidening checks that a schema change after a row group is
// on disk starts a new file with the wider schema, and that later records
// of the narrower kind do not start another.
func TestParquetSinkWidening(t *testing.T) {
	dir := t.TempDir()
	s := newTestParquet(t, t.TempDir(), "path: "+dir+"/w\nrow_group_bytes: 1\nmemory_bytes: 1KiB")
	ctx := context.Background()
	vals := []string{`{"a":1}`, `{"a":2}`, `{"a":2.5}`, `{"a":3,"b":"x"}`, `{"a":4}`, `{"a":5.5}`, `{"a":6}`}
	for i, v := range vals {
		if err := s.Write(ctx, []*connectors.Message{{Value: []byte(v), Dataset: "d", Offset: int64(i)}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	files := lakeFiles(t, filepath.Join(dir, "w"))
	if want := []string{"part-0-0-1.parquet", "part-0-2-2.parquet", "part-0-3-6.parquet"}; !slices.Equal(files, want) {
		t.Fatalf("files = %v, want %v", files, want)
	}
	if got := ducktest.Scalar(t, fmt.Sprintf("select sum(a) || '/' || count(b) from read_parquet('%s/w/*.parquet', union_by_name=true)", dir)); got != "24.0/1" {
		t.Errorf("sum(a)/count(b) = %s, want 24.0/1", got)
	}
}

// heldFrom is where a pipeline delivers again from after s crashes: the
// offset after the last record it acknowledged, or the first s holds in
// an unfinished file if lower (connectors.Holder).
func heldFrom(s connectors.Sink, acked int64) int64 {
	s.(connectors.Holder).Held(func(_ string, _ int32, o int64) { acked = min(acked, o) })
	return acked
}

// TestParquetSinkCrash stops a sink without Close (a crash: open files
// are lost), starts another on the same state, and delivers again from
// the offset the pipeline committed (no further than the first record the
// sink held) and from earlier: every record is in exactly one file, and
// no record was written anywhere but in its file.
func TestParquetSinkCrash(t *testing.T) {
	dir, state := t.TempDir(), t.TempDir()
	conf := "path: " + dir + "/c/date={{ .date }}\nrotate: {rows: 25, interval: 0}"
	ctx := context.Background()
	const n = 200
	all := make([]*connectors.Message, n)
	for i := range all {
		all[i] = event(i, 21+i/50%2, "")
		all[i].Partition, all[i].Offset = 0, int64(i)
	}
	s := newTestParquet(t, state, conf)
	if err := s.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	acked := 0
	for ; acked < 120; acked += 8 {
		if err := s.Write(ctx, all[acked:acked+8]); err != nil {
			t.Fatal(err)
		}
	}
	// The crash: s is dropped with its open files, after a write that
	// returned but was not committed (delivered again below).
	s.Write(ctx, all[acked:acked+3])
	before := len(lakeFiles(t, filepath.Join(dir, "c")))
	if before == 0 {
		t.Fatal("no file published before the crash")
	}
	from := heldFrom(s, int64(acked+3))
	if from >= int64(acked) {
		t.Fatalf("the sink holds nothing below %d, with records in an open file", from)
	}
	if _, err := os.Stat(filepath.Join(state, "spool")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a spool directory was made (err %v): records are written twice", err)
	}
	s2 := newTestParquet(t, state, conf)
	if err := s2.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	// Delivered again from the commit, and from before it, as after a
	// rebalance.
	for i := int(from) - 3; i < n; i += 9 {
		if err := s2.Write(ctx, all[i:min(i+9, n)]); err != nil {
			t.Fatal(err)
		}
	}
	if err := s2.Close(ctx); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(filepath.Join(state, "spool"))
	if len(entries) != 0 {
		t.Errorf("spools left after Close: %v", entries)
	}
	for _, f := range lakeFiles(t, filepath.Join(dir, "c")) {
		if !partName.MatchString(f) {
			t.Errorf("file %s is not date=YYYY-MM-DD/part-P-FIRST-LAST.parquet", f)
		}
	}
	if got := ducktest.Scalar(t, fmt.Sprintf("select count(*) || '/' || count(distinct id) from '%s/c/*/*.parquet'", dir)); got != fmt.Sprintf("%d/%d", n, n) {
		t.Errorf("count/distinct = %s, want %d/%d", got, n, n)
	}
}

// TestParquetSinkRelativePath checks paths relative to the working
// directory, as in the examples.
func TestParquetSinkRelativePath(t *testing.T) {
	t.Chdir(t.TempDir())
	for _, path := range []string{"./lake/date={{ .date }}", "lake/date={{ .date }}", "date={{ .date }}"} {
		s := newTestParquet(t, t.TempDir(), "path: "+path)
		if err := s.Write(context.Background(), []*connectors.Message{event(0, 21, "")}); err != nil {
			t.Fatalf("path %s: Write = %v", path, err)
		}
		if err := s.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		dir := strings.TrimSuffix(strings.TrimPrefix(path, "./"), "date={{ .date }}")
		if _, err := os.Stat(dir + "date=2026-11-21/part-0-0-0.parquet"); err != nil {
			t.Errorf("path %s: %v", path, err)
		}
		os.RemoveAll("lake")
		os.RemoveAll("date=2026-11-21")
	}
}

// TestParquetSinkIdleRotation checks that a file of a partition that gets
// no more records is finished by rotate.interval.
func TestParquetSinkIdleRotation(t *testing.T) {
	dir := t.TempDir()
	s := newTestParquet(t, t.TempDir(), "path: "+dir+"/i/date={{ .date }}\nrotate: {interval: 50ms}")
	defer s.Close(context.Background())
	if err := s.Write(context.Background(), []*connectors.Message{event(1, 21, "")}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(lakeFiles(t, filepath.Join(dir, "i"))) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the idle file was not finished within 5s of a 50ms interval")
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.mu.Lock()
	open := len(s.writers)
	s.mu.Unlock()
	if open != 0 {
		t.Errorf("%d writers still open after the idle file was finished", open)
	}
}

// TestParquetSinkMemoryBound checks that buffered rows stay within
// memory_bytes whatever the number of open files.
func TestParquetSinkMemoryBound(t *testing.T) {
	dir := t.TempDir()
	s := newTestParquet(t, t.TempDir(), "path: "+dir+`/m/{{ .field "k" }}`+"\nrow_group_bytes: 64KiB\nmemory_bytes: 256KiB")
	ctx := context.Background()
	pad := strings.Repeat("x", 500)
	for i := range 4000 {
		m := &connectors.Message{Value: fmt.Appendf(nil, `{"k":"k%d","i":%d,"pad":%q}`, i%16, i, pad), Dataset: "d", Offset: int64(i)}
		if err := s.Write(ctx, []*connectors.Message{m}); err != nil {
			t.Fatal(err)
		}
		if s.buffered > 256<<10 {
			t.Fatalf("after %d records %d bytes are buffered, more than memory_bytes", i+1, s.buffered)
		}
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if got := ducktest.Scalar(t, fmt.Sprintf("select count(distinct i) from '%s/m/*/*.parquet'", dir)); got != "4000" {
		t.Errorf("distinct i = %s, want 4000", got)
	}
}

// TestParquetSinkS3 writes to a real S3 server (versitygw) and reads the
// objects back with DuckDB, after a crash and a restart.
func TestParquetSinkS3(t *testing.T) {
	srv := s3test.Start(t)
	o := srv.Options("")
	conf := fmt.Sprintf("path: s3://%s/lake/events/date={{ .date }}\nrotate: {rows: 20}\ns3: {endpoint: %q, access_key: %q, secret_key: %q, insecure: true}",
		srv.Bucket, o.Endpoint, o.AccessKey, o.SecretKey)
	ctx := context.Background()
	state := t.TempDir()
	s := newTestParquet(t, state, conf)
	var all []*connectors.Message
	for i := range 100 {
		m := event(i, 21+i%2, "")
		m.Partition, m.Offset = 0, int64(i)
		all = append(all, m)
	}
	if err := s.Write(ctx, all[:50]); err != nil {
		t.Fatal(err)
	}
	// A crash (no Close), and a restart that gets the rest from the
	// pipeline's commit, and from before it.
	from := heldFrom(s, 50)
	s = newTestParquet(t, state, conf)
	if err := s.Write(ctx, all[max(from-5, 0):]); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	local := t.TempDir()
	n := 0
	for obj := range srv.Client.ListObjects(ctx, srv.Bucket, minio.ListObjectsOptions{Prefix: "lake/", Recursive: true}) {
		if obj.Err != nil {
			t.Fatal(obj.Err)
		}
		rel := strings.TrimPrefix(obj.Key, "lake/events/")
		if !partName.MatchString(rel) {
			t.Errorf("object %s is not lake/events/date=YYYY-MM-DD/part-P-FIRST-LAST.parquet", obj.Key)
		}
		if err := srv.Client.FGetObject(ctx, srv.Bucket, obj.Key, filepath.Join(local, rel), minio.GetObjectOptions{}); err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n < 4 {
		t.Fatalf("%d objects, want at least 4", n)
	}
	if got := ducktest.Scalar(t, fmt.Sprintf("select count(*) || '/' || count(distinct id) from read_parquet('%s/*/*.parquet', hive_partitioning=true)", local)); got != "100/100" {
		t.Errorf("count/distinct = %s, want 100/100", got)
	}
}

// TestParquetSinkHeld: the sink holds the first record of each file not
// yet renamed into place, a finished file releases its records, and
// Flush finishes every file.
func TestParquetSinkHeld(t *testing.T) {
	dir := t.TempDir()
	s := newTestParquet(t, t.TempDir(), "path: "+dir+"/h\nrotate: {rows: 10, interval: 0}")
	ctx := context.Background()
	var all []*connectors.Message
	for i := range 25 {
		m := event(i, 21, "")
		m.Partition, m.Offset = 3, int64(100+i)
		all = append(all, m)
	}
	held := func() map[string]int64 {
		got := map[string]int64{}
		s.Held(func(ds string, p int32, o int64) { got[fmt.Sprintf("%s/%d", ds, p)] = o })
		return got
	}
	if err := s.Write(ctx, all[:5]); err != nil {
		t.Fatal(err)
	}
	if got := held(); len(got) != 1 || got[all[0].Dataset+"/3"] != 100 {
		t.Fatalf("Held after 5 records = %v, want {%s/3: 100}", got, all[0].Dataset)
	}
	if err := s.Write(ctx, all[5:25]); err != nil { // two files of 10 finished
		t.Fatal(err)
	}
	if got := held(); got[all[0].Dataset+"/3"] != 120 {
		t.Fatalf("Held after 25 records, 20 in finished files = %v, want 120", got)
	}
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got := held(); len(got) != 0 {
		t.Fatalf("Held after Flush = %v, want nothing", got)
	}
	if files := lakeFiles(t, filepath.Join(dir, "h")); len(files) != 3 {
		t.Fatalf("files %v, want 3", files)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestParquetSinkLegacySpool: a spool that an earlier version left (its
// records committed by the pipeline) is written into a file at the start.
func TestParquetSinkLegacySpool(t *testing.T) {
	dir, state := t.TempDir(), t.TempDir()
	if err := os.MkdirAll(filepath.Join(state, "spool"), 0o755); err != nil {
		t.Fatal(err)
	}
	sp := appendSpoolHeader(nil, dir+"/l", "events", 0)
	for i := range 7 {
		sp = appendSpoolRecord(sp, int64(i), event(i, 21, "").Value)
	}
	sp = append(sp, 0, 0, 0, 40, 1, 2) // a torn last frame
	if err := os.WriteFile(filepath.Join(state, "spool", "1-1.spool"), sp, 0o644); err != nil {
		t.Fatal(err)
	}
	s := newTestParquet(t, state, "path: "+dir+"/l")
	if err := s.Connect(context.Background()); err != nil {
		t.Fatal(err)
	}
	if files := lakeFiles(t, filepath.Join(dir, "l")); len(files) != 1 || files[0] != "part-0-0-6.parquet" {
		t.Fatalf("files %v, want [part-0-0-6.parquet]", files)
	}
	if entries, _ := os.ReadDir(filepath.Join(state, "spool")); len(entries) != 0 {
		t.Errorf("spool left: %v", entries)
	}
	if got := ducktest.Scalar(t, fmt.Sprintf("select count(distinct id) from '%s/l/*.parquet'", dir)); got != "7" {
		t.Errorf("distinct ids = %s, want 7", got)
	}
	s.Close(context.Background())
}
