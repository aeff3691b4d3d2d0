package codecs

import (
	"errors"
	"fmt"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/array"
)

// arrowFastSeeds are records for the fast path's differential tests:
// shapes it takes and shapes it leaves to the slow path.
var arrowFastSeeds = []string{
	`{"id":1,"ts":"2026-11-21T10:00:00.123Z","user":"u-1","latency_ms":12.5,"ok":true,"tags":["web","eu"],"geo":{"country":"FR","city_id":3}}`,
	`{"id":2,"ts":"2026-11-21T10:00:01Z","user":"u-\"2\"\\/\n\t\u00e9\u4e2d","latency_ms":-0.5e3,"ok":false,"tags":[],"geo":{}}`,
	` { "id" : 3 , "ts" : null , "tags" : [ "a" , null ] , "geo" : { "city_id" : 7 } } `,
	`{"id":4,"user":"\ud83d\ude00","s":"x\qy","u":"\u12"}`,
	`{"id":5.0,"latency_ms":1,"ok":1}`, `{"id":1e3}`, `{"id":-0,"latency_ms":0.1E-2}`, `{"id":01}`, `{"id":1.}`, `{"id":-}`,
	`{"id":99999999999999999999}`, `{"id":1.2.3}`, `{"latency_ms":NaN}`, `{"latency_ms":-inf}`,
	`{"id":1,"id":2}`, `{"geo":{"country":"FR","country":"DE"}}`, `{"new":1}`, `{"new":null,"geo":{"new":null}}`,
	`{"ts":"not a time"}`, `{"ts":1732000000}`, `{"ts":1732000000123}`, "{\"user\":\"a\xffb\"}", "{\"k\xfe\":1}",
	`{"a\"b":1}`, `{"tags":"x"}`, `{"geo":[1]}`, `{"ok":tru}`, `{"ok":true}x`, `{"id":1,}`, `{"id" 1}`, `[1]`, `"x"`, `{}`, ``, `{"id":nul}`,
	`{"j":{"x":[1,{"y":null}]},"d":"2026-11-21 10:00:00","dm":"2026-11-21T10:00:00+02:00","n":17,"s":42}`,
	`{"j":1,"d":1732000000.5,"dm":1732000000123,"n":null,"s":true}`, `{"s":-1.5e2,"n":1}`, `{"d":"x"}`, `{"s":[1]}`,
	`{"skip":{"a":[1,"x\"y",{"b":null}],"c":true},"id":8}`, `{"skip":[1,2,}`, `{"skip":"a\ud800"}`,
	`{"l":[[1,2],[],[3,null]],"m":[{"a":1},{"b":"x"},{}]}`, `{"l":[[1.5]],"m":[{"a":"x"}]}`, `{"l":[["a"]]}`,
}

// arrowFastOptions are the option sets the differential tests run with.
var arrowFastOptions = []ArrowOptions{
	{},
	{Columns: []ArrowColumn{{Name: "id", Type: "int64"}, {Name: "j", Type: "json", Nullable: true}, {Name: "d", Type: "timestamp", Nullable: true},
		{Name: "dm", Type: "timestamp_ms", Nullable: true}, {Name: "n", Type: "int64", Nullable: false}, {Name: "s", Type: "string", Nullable: true}}},
	{Columns: []ArrowColumn{{Name: "id", Type: "int64", Nullable: true}, {Name: "s", Type: "string", Nullable: true}, {Name: "d", Type: "timestamp", Nullable: true}}, NoInfer: true},
	{Columns: []ArrowColumn{{Name: "id", Type: "int64"}, {Name: "d", Type: "timestamp", Nullable: true},
		{Name: "dm", Type: "timestamp_ms", Nullable: true}, {Name: "n", Type: "int64", Nullable: false}, {Name: "s", Type: "string", Nullable: true}}},
}

// sameAppend feeds rows to a builder on the fast path and one on the slow
// path alone, in both lock states, and fails unless both answer every
// Append alike and build equal batches.
func sameAppend(t *testing.T, opts ArrowOptions, rows [][]byte, lockAt int) {
	t.Helper()
	fast, err := NewArrowBuilder(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer fast.Release()
	slow, _ := NewArrowBuilder(opts)
	defer slow.Release()
	slow.slowOnly = true
	errText := func(err error) string {
		var ce *ArrowConvertError
		switch {
		case err == nil:
			return "ok"
		case errors.As(err, &ce):
			return "convert: " + ce.Column + ": " + ce.Reason
		case errors.Is(err, ErrArrowSchemaLocked):
			return "locked"
		}
		return "other: " + err.Error()
	}
	compare := func(what string) {
		t.Helper()
		if fast.Size() != slow.Size() || fast.Len() != slow.Len() {
			t.Fatalf("%s: fast path Size %d Len %d, slow path %d %d", what, fast.Size(), fast.Len(), slow.Size(), slow.Len())
		}
		fr, sr := fast.NewRecordBatch(), slow.NewRecordBatch()
		defer fr.Release()
		defer sr.Release()
		if !fr.Schema().Equal(sr.Schema()) || !array.RecordApproxEqual(fr, sr, array.WithNaNsEqual(true), array.WithAbsTolerance(0)) {
			t.Fatalf("%s: fast path built\n%v\nslow path\n%v", what, fr, sr)
		}
		for i, c := range fr.Columns() {
			if v, ok := c.(interface{ ValidateFull() error }); ok {
				if err := v.ValidateFull(); err != nil {
					t.Fatalf("%s: column %s: %v", what, fr.ColumnName(i), err)
				}
			}
		}
	}
	for i, r := range rows {
		if i == lockAt {
			compare("before locking")
			fast.Lock()
			slow.Lock()
		}
		fe, se := errText(fast.Append(r)), errText(slow.Append(r))
		if fe != se {
			t.Fatalf("Append(%q): fast path %s, slow path %s", r, fe, se)
		}
	}
	compare("at the end")
}

// TestArrowFastPathSameAsSlow checks that the one-pass fast path of
// Append takes and refuses the same records as the fastjson path, with
// the same errors, and builds the same batches.
func TestArrowFastPathSameAsSlow(t *testing.T) {
	var rows [][]byte
	for _, s := range arrowFastSeeds {
		rows = append(rows, []byte(s))
	}
	rows = append(rows, benchEvents(50)...)
	for i, opts := range arrowFastOptions {
		for _, lockAt := range []int{-1, 1, len(rows) / 2} {
			t.Run(fmt.Sprintf("opts=%d/lock=%d", i, lockAt), func(t *testing.T) {
				sameAppend(t, opts, rows, lockAt)
				// Every seed after a settled schema, one by one.
				for _, s := range arrowFastSeeds {
					sameAppend(t, opts, append(append([][]byte{}, rows[:3]...), []byte(s)), 3)
				}
			})
		}
	}
}

// FuzzArrowFastPath is TestArrowFastPathSameAsSlow on fuzzed records:
// a settled schema, then a record of any shape, locked or not.
func FuzzArrowFastPath(f *testing.F) {
	for _, s := range arrowFastSeeds {
		f.Add([]byte(s), uint8(0), false)
		f.Add([]byte(s), uint8(1), true)
	}
	f.Fuzz(func(t *testing.T, rec []byte, opts uint8, lock bool) {
		rows := [][]byte{[]byte(arrowFastSeeds[0]), []byte(arrowFastSeeds[1]), []byte(arrowFastSeeds[len(arrowFastSeeds)-3]), rec, rec}
		lockAt := -1
		if lock {
			lockAt = 3
		}
		sameAppend(t, arrowFastOptions[int(opts)%len(arrowFastOptions)], rows, lockAt)
	})
}

// TestArrowFastPathTaken checks that records of a settled schema,
// escapes included, do take the fast path.
func TestArrowFastPathTaken(t *testing.T) {
	b, _ := NewArrowBuilder(ArrowOptions{})
	defer b.Release()
	for _, s := range append(benchEvents(2), []byte(arrowFastSeeds[0]), []byte(arrowFastSeeds[1]), []byte(arrowFastSeeds[2])) {
		if err := b.Append(s); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range append(benchEvents(3), []byte(arrowFastSeeds[0]), []byte(arrowFastSeeds[1]), []byte(arrowFastSeeds[2])) {
		if !b.scanRecord(r) {
			t.Errorf("scanRecord(%s) = false, want the fast path", r)
		}
	}
}

// TestArrowJSONColumnSlowPath checks that a builder with a declared json
// column goes straight to fastjson, whose text the column takes, instead
// of scanning every record first for nothing.
func TestArrowJSONColumnSlowPath(t *testing.T) {
	for _, typ := range []string{"json", "string"} {
		b, err := NewArrowBuilder(ArrowOptions{Columns: []ArrowColumn{{Name: "j", Type: typ, Nullable: true}}})
		if err != nil {
			t.Fatal(err)
		}
		if b.slowOnly != (typ == "json") {
			t.Errorf("a declared %s column: slowOnly = %v", typ, b.slowOnly)
		}
		b.Release()
	}
}
