package codecs

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
)

func buildRows(t *testing.T, b *ArrowBuilder, rows ...string) arrow.RecordBatch {
	t.Helper()
	for _, r := range rows {
		if err := b.Append([]byte(r)); err != nil {
			t.Fatalf("Append(%s) = %v", r, err)
		}
	}
	return b.NewRecordBatch()
}

func TestArrowInferAndWiden(t *testing.T) {
	b, err := NewArrowBuilder(ArrowOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Release()
	rec := buildRows(t, b,
		`{"id":1,"n":2,"ok":true,"ts":"2026-11-21T10:00:00Z","tags":["a"],"u":{"x":1}}`,
		`{"id":2,"n":2.5,"msg":"héllo ☃","ts":"2026-11-21T10:00:01.5+01:00","u":{"y":"z"}}`,
		`{"id":3,"n":null,"tags":[],"extra":null,"id":99}`,
	)
	defer rec.Release()
	want := "id:int64 n:float64 ok:bool ts:timestamp[us, tz=UTC] tags:list<item: utf8, nullable> u:struct<x: int64 nullable, y: utf8 nullable> msg:utf8"
	var got []string
	for _, f := range rec.Schema().Fields() {
		got = append(got, f.Name+":"+f.Type.String())
	}
	if g := strings.Join(got, " "); g != want {
		t.Fatalf("schema = %s, want %s", g, want)
	}
	if rec.NumRows() != 3 {
		t.Fatalf("rows = %d, want 3", rec.NumRows())
	}
	ids := rec.Column(0).(*array.Int64)
	if ids.Value(0) != 1 || ids.Value(2) != 3 { // a repeated key: the first wins
		t.Errorf("ids = %v", ids)
	}
	n := rec.Column(1).(*array.Float64)
	if n.Value(0) != 2 || n.Value(1) != 2.5 || !n.IsNull(2) {
		t.Errorf("n = %v, want [2 2.5 (null)]", n)
	}
	ts := rec.Column(3).(*array.Timestamp)
	if ts.Value(1) != arrow.Timestamp(1795251601500000) || !ts.IsNull(2) {
		t.Errorf("ts = %v", ts)
	}
	if s := rec.Column(6).(*array.String); s.Value(1) != "héllo ☃" {
		t.Errorf("msg = %q", s.Value(1))
	}
	u := rec.Column(5).(*array.Struct)
	if u.Field(0).(*array.Int64).Value(0) != 1 || !u.Field(0).IsNull(1) || u.Field(1).(*array.String).Value(1) != "z" {
		t.Errorf("u = %v", u)
	}
}

func TestArrowLockedRefusesWidening(t *testing.T) {
	b, _ := NewArrowBuilder(ArrowOptions{})
	defer b.Release()
	rec := buildRows(t, b, `{"a":1}`)
	rec.Release()
	b.Lock()
	v := b.SchemaVersion()
	for _, r := range []string{`{"a":1.5}`, `{"b":"x"}`} {
		if err := b.Append([]byte(r)); !errors.Is(err, ErrArrowSchemaLocked) {
			t.Errorf("locked Append(%s) = %v, want ErrArrowSchemaLocked", r, err)
		}
	}
	if err := b.Append([]byte(`{"a":2,"z":null}`)); err != nil {
		t.Fatalf("locked Append of a fitting row = %v", err)
	}
	if b.SchemaVersion() != v || b.Len() != 1 {
		t.Fatalf("version %d len %d, want %d 1", b.SchemaVersion(), b.Len(), v)
	}
	rec = b.NewRecordBatch()
	rec.Release()
	b.Unlock()
	if err := b.Append([]byte(`{"a":1.5}`)); err != nil {
		t.Fatal(err)
	}
	if got := b.Schema().Field(0).Type; got != arrow.PrimitiveTypes.Float64 {
		t.Fatalf("after unlock a is %v, want float64", got)
	}
}

func TestArrowDeclaredAndErrors(t *testing.T) {
	b, err := NewArrowBuilder(ArrowOptions{Columns: []ArrowColumn{
		{Name: "id", Type: "int64"},
		{Name: "at", Type: "timestamp_ms", Nullable: true},
		{Name: "s", Type: "string", Nullable: true},
		{Name: "raw", Type: "json", Nullable: true},
	}, NoInfer: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Release()
	for _, c := range []struct{ in, col string }{
		{`not json`, ""},
		{`[1]`, ""},
		{`{"at":"2026-11-21T10:00:00Z"}`, "id"},
		{`{"id":null}`, "id"},
		{`{"id":1.5}`, "id"},
		{`{"id":"7"}`, "id"},
		{`{"id":1,"at":"yesterday"}`, "at"},
	} {
		err := b.Append([]byte(c.in))
		var ce *ArrowConvertError
		if !errors.As(err, &ce) || ce.Column != c.col {
			t.Errorf("Append(%s) = %v, want a convert error in column %q", c.in, err, c.col)
		}
	}
	rec := buildRows(t, b,
		`{"id":1,"at":1795255200000,"s":42,"raw":{"a":[1,2]},"other":true}`,
		`{"id":2,"at":"2026-11-21 10:00:00","s":"x"}`)
	defer rec.Release()
	if rec.NumCols() != 4 || rec.NumRows() != 2 {
		t.Fatalf("got %d columns %d rows, want 4 and 2", rec.NumCols(), rec.NumRows())
	}
	if s := rec.Column(2).(*array.String).Value(0); s != "42" {
		t.Errorf("s = %q, want 42", s)
	}
	if s := rec.Column(3).(*array.String).Value(0); s != `{"a":[1,2]}` {
		t.Errorf("raw = %q", s)
	}
	at := rec.Column(1).(*array.Timestamp)
	if at.Value(0) != 1795255200000 || at.Value(1) != 1795255200000 {
		t.Errorf("at = %v", at)
	}
}

func TestArrowConflictingTypes(t *testing.T) {
	b, _ := NewArrowBuilder(ArrowOptions{})
	defer b.Release()
	if err := b.Append([]byte(`{"a":1,"t":"2026-11-21T10:00:00Z"}`)); err != nil {
		t.Fatal(err)
	}
	var ce *ArrowConvertError
	if err := b.Append([]byte(`{"a":"x"}`)); !errors.As(err, &ce) || ce.Column != "a" {
		t.Fatalf("Append of a string into an int column = %v", err)
	}
	// An inferred timestamp widens to a string.
	if err := b.Append([]byte(`{"t":"soon"}`)); err != nil {
		t.Fatal(err)
	}
	rec := b.NewRecordBatch()
	defer rec.Release()
	if rec.NumRows() != 2 || rec.Column(1).(*array.String).Value(0) != "2026-11-21T10:00:00Z" {
		t.Fatalf("got %v", rec)
	}
}

func benchEvents(n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = fmt.Appendf(nil, `{"id":%d,"ts":"2026-11-21T10:%02d:%02d.123Z","user":"user-%d","path":"/api/v1/items/%d","status":%d,"latency_ms":%d.%d,"ok":%v,"tags":["web","eu-west-1"],"geo":{"country":"FR","city":"Paris"}}`,
			i, i/60%60, i%60, i%1000, i%5000, 200+i%5*100, i%300, i%10, i%7 != 0)
	}
	return out
}

// BenchmarkArrowAppend converts rows into batches with the schema settled,
// with Go's allocator and with the ArrowPool the parquet sink uses, on
// Append's one-pass fast path and on its fastjson path alone (slow).
func BenchmarkArrowAppend(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		for _, alloc := range []string{"go", "pool"} {
			for _, path := range []string{"fast", "slow"} {
				b.Run(fmt.Sprintf("rows=%d/alloc=%s/path=%s", n, alloc, path), func(b *testing.B) {
					benchArrowAppend(b, n, alloc == "pool", path == "slow")
				})
			}
		}
	}
}

func benchArrowAppend(b *testing.B, n int, pool, slow bool) {
	rows := benchEvents(n)
	var size int64
	for _, r := range rows {
		size += int64(len(r))
	}
	var opts ArrowOptions
	if pool {
		opts.Allocator = NewArrowPool(64 << 20)
	}
	ab, _ := NewArrowBuilder(opts)
	defer ab.Release()
	ab.slowOnly = slow
	for _, r := range rows { // the schema settles
		ab.Append(r)
	}
	ab.NewRecordBatch().Release()
	ab.Lock()
	b.SetBytes(size)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		for _, r := range rows {
			if err := ab.Append(r); err != nil {
				b.Fatal(err)
			}
		}
		ab.NewRecordBatch().Release()
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
}

// FuzzArrowAppend feeds two JSON values of any shape, in both lock states:
// Append either takes a value or refuses it with an error, never panics,
// and every batch it builds has columns of equal length (a record that
// failed half-way would break that).
func FuzzArrowAppend(f *testing.F) {
	for _, s := range [][2]string{
		{`{"a":1,"b":[1,2],"c":{"d":"x"}}`, `{"a":1.5,"b":[1.5,null],"c":{"e":true}}`},
		{`{"t":"2026-11-21T10:00:00Z"}`, `{"t":"later","t":3}`},
		{`{"l":[[1],[2,3]],"s":{"x":{"y":null}}}`, `{"l":[["a"]],"s":{"x":1}}`},
		{`{"a":[]}`, `{"a":{}}`}, {`[1]`, `"x"`}, {`{"a":1,"a":"x"}`, `{}`},
	} {
		f.Add([]byte(s[0]), []byte(s[1]), false)
		f.Add([]byte(s[0]), []byte(s[1]), true)
	}
	f.Fuzz(func(t *testing.T, a, b []byte, lock bool) {
		ab, err := NewArrowBuilder(ArrowOptions{Columns: []ArrowColumn{{Name: "id", Type: "int64", Nullable: true}, {Name: "t", Type: "timestamp", Nullable: true}}})
		if err != nil {
			t.Fatal(err)
		}
		defer ab.Release()
		appended := 0
		for i, v := range [][]byte{a, b, a, b} {
			if lock && i == 2 {
				ab.NewRecordBatch().Release()
				appended = 0
				ab.Lock()
			}
			if ab.Append(v) == nil {
				appended++
			}
		}
		rec := ab.NewRecordBatch()
		defer rec.Release()
		if int(rec.NumRows()) != appended {
			t.Fatalf("batch has %d rows, want %d", rec.NumRows(), appended)
		}
		for i, c := range rec.Columns() {
			if c.Len() != appended {
				t.Fatalf("column %s has %d values, want %d", rec.ColumnName(i), c.Len(), appended)
			}
			if v, ok := c.(interface{ ValidateFull() error }); ok {
				if err := v.ValidateFull(); err != nil {
					t.Fatalf("column %s: %v", rec.ColumnName(i), err)
				}
			}
		}
	})
}

// TestArrowInvalidUTF8 checks that strings and keys that are not UTF-8
// (JSON parsers let them through) become valid UTF-8, as Arrow and
// Parquet require, and that an empty key gets a name.
func TestArrowInvalidUTF8(t *testing.T) {
	b, _ := NewArrowBuilder(ArrowOptions{})
	defer b.Release()
	rec := buildRows(t, b, "{\"\":\"a\xffb\",\"k\xfe\":[\"\xc3\"]}")
	defer rec.Release()
	if got := rec.Schema().Field(0).Name + "|" + rec.Schema().Field(1).Name; got != "_|k\uFFFD" {
		t.Errorf("names = %q, want _ and k\\uFFFD", got)
	}
	if s := rec.Column(0).(*array.String).Value(0); s != "a\uFFFDb" {
		t.Errorf("value = %q, want a\\uFFFDb", s)
	}
	for i, c := range rec.Columns() {
		if err := c.(interface{ ValidateFull() error }).ValidateFull(); err != nil {
			t.Errorf("column %d: %v", i, err)
		}
	}
}

// TestParseTimeFast checks that the fast path of parseJSONTime accepts
// only what the time.Parse layouts accept, as the same instant, on shapes
// and on every one-byte change of them.
func TestParseTimeFast(t *testing.T) {
	seeds := []string{
		"2026-11-21T10:00:00Z", "2026-11-21T10:00:00.123Z", "2026-11-21 10:00:00.123456789Z",
		"2026-11-21T10:00:00+02:00", "2026-11-21T10:00:00.5-07:30", "2026-11-21T10:00:00",
		"2026-11-21 23:59:59.999999", "2024-02-29T00:00:00Z", "2023-02-29T00:00:00Z", "2026-04-31T00:00:00Z",
		"2026-13-01T00:00:00Z", "2026-11-21T24:00:00Z", "2026-11-21T10:60:00Z", "2026-11-21T10:00:60Z",
		"2026-11-21T10:00:00.1234567891Z", "2026-11-21T10:00:00.Z", "2026-11-21T10:00:00+24:00",
		"2026-11-21T10:00:00-00:00", "0000-01-01T00:00:00Z", "2026-11-21T10:00:00z", "2026-11-21T10:00:00 ",
	}
	check := func(s string) {
		t.Helper()
		ft, fok := parseTimeFast([]byte(s))
		if !fok {
			return // the slow path decides
		}
		st, sok := parseTimeLayouts([]byte(s))
		if !sok || !ft.Equal(st) {
			t.Errorf("parseTimeFast(%q) = %v, true; time.Parse layouts: %v, %v", s, ft, st, sok)
		}
	}
	for _, s := range seeds {
		check(s)
		for i := range len(s) {
			for _, c := range []byte("09:-+.TZ 5") {
				b := []byte(s)
				b[i] = c
				check(string(b))
			}
		}
	}
	for _, s := range seeds[:7] {
		if _, ok := parseTimeFast([]byte(s)); !ok {
			t.Errorf("parseTimeFast(%q) is not taken by the fast path", s)
		}
	}
}
