package codecs

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/valyala/fastjson"
)

// ArrowColumn declares one column of an Arrow schema by name, type and
// nullability. Type is one of ArrowColumnTypes.
type ArrowColumn struct {
	Name     string
	Type     string
	Nullable bool
}

// ArrowColumnTypes are the types a declared column may have: bool, int64,
// float64, string, timestamp (microseconds, UTC), timestamp_ms
// (milliseconds, UTC) and json (the value's JSON text, whatever its type).
var ArrowColumnTypes = []string{"bool", "int64", "float64", "string", "timestamp", "timestamp_ms", "json"}

// ArrowOptions configure an ArrowBuilder. The zero value infers every
// column from the records.
type ArrowOptions struct {
	// Columns are declared columns, in this order before the inferred
	// ones; a declared column wins over inference and never widens.
	Columns []ArrowColumn
	// NoInfer leaves out fields that are not declared, instead of
	// inferring columns for them. Default false.
	NoInfer bool
	// Allocator allocates the Arrow buffers; default the Go allocator.
	Allocator memory.Allocator
}

// ArrowConvertError is a record that cannot be converted: Column (a
// dotted path, "" for the record itself) says where and Reason why.
type ArrowConvertError struct {
	Column string
	Reason string
}

func (e *ArrowConvertError) Error() string {
	if e.Column == "" {
		return "codecs: arrow: " + e.Reason
	}
	return fmt.Sprintf("codecs: arrow: column %s: %s", e.Column, e.Reason)
}

// ErrArrowSchemaLocked is returned by ArrowBuilder.Append for a record that
// needs a wider schema while the schema is locked. Nothing was appended.
var ErrArrowSchemaLocked = errors.New("codecs: arrow: the record needs a wider schema than the locked one")

type colKind uint8

const (
	kindBool colKind = iota
	kindInt
	kindFloat
	kindString
	kindTime   // microseconds, UTC
	kindTimeMs // milliseconds, UTC
	kindJSON
	kindList
	kindStruct
)

var kindNames = [...]string{"bool", "int64", "float64", "string", "timestamp", "timestamp_ms", "json", "list", "struct"}

// column is one node of the schema tree, with the builder it appends to.
type column struct {
	name     string // full dotted path, for errors
	field    string // the name in its struct: key, as valid UTF-8 and not empty
	key      string // the JSON key
	kind     colKind
	nullable bool
	declared bool
	elem     *column            // kindList
	fields   []*column          // kindStruct
	index    map[string]*column // kindStruct: fields by name
	b        array.Builder
	pos      int    // index in the parent's fields
	cursor   int    // kindStruct: where the next key is expected
	seen     uint64 // row stamp of the last append, to fill in nulls
	checked  uint64 // stamp of the last check that found it
	scanned  uint64 // stamp of the object the fast path last found it in
	plainKey bool   // key has no backslash or quote: its JSON text is itself
	lastLen  int    // values in the last batch (noteLen)
	lastData int    // kindString, kindJSON: bytes of them
}

func (c *column) dataType() arrow.DataType {
	switch c.kind {
	case kindBool:
		return arrow.FixedWidthTypes.Boolean
	case kindInt:
		return arrow.PrimitiveTypes.Int64
	case kindFloat:
		return arrow.PrimitiveTypes.Float64
	case kindString, kindJSON:
		return arrow.BinaryTypes.String
	case kindTime:
		return &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"}
	case kindTimeMs:
		return &arrow.TimestampType{Unit: arrow.Millisecond, TimeZone: "UTC"}
	case kindList:
		return arrow.ListOf(c.elem.dataType())
	default:
		return arrow.StructOf(c.arrowFields()...)
	}
}

func (c *column) arrowFields() []arrow.Field {
	fs := make([]arrow.Field, len(c.fields))
	for i, f := range c.fields {
		fs[i] = arrow.Field{Name: f.field, Type: f.dataType(), Nullable: f.nullable}
	}
	return fs
}

func (c *column) add(f *column) {
	if c.index == nil {
		c.index = map[string]*column{}
	}
	f.pos = len(c.fields)
	c.fields = append(c.fields, f)
	if f.key == "" {
		f.key = f.field
	}
	f.plainKey = !strings.ContainsAny(f.key, `\"`)
	c.index[f.key] = f
	f.field = strings.ToValidUTF8(f.field, "\uFFFD")
	if f.field == "" {
		f.field = "_"
	}
}

// lookup finds the field named k. Objects usually list their keys in the
// same order, so the field after the last one found is tried before the
// map.
func (c *column) lookup(k []byte) *column {
	if i := c.cursor; i < len(c.fields) && c.fields[i].key == string(k) {
		c.cursor = i + 1
		return c.fields[i]
	}
	f := c.index[string(k)]
	if f != nil {
		c.cursor = f.pos + 1
	}
	return f
}

// ArrowBuilder converts JSON objects into Arrow record batches, one row
// per object, inferring or checking the schema as it goes. It is not safe
// for concurrent use.
//
// While the schema is unlocked, a record that needs a wider schema (a new
// field, a float in an integer column, a string that is not a time in an
// inferred timestamp column) widens it, and the rows already buffered are
// converted again from their JSON. While it is locked (see Lock), such a
// record is refused with ErrArrowSchemaLocked, so that every batch of a
// Parquet file has the file's schema. The schema only ever grows.
type ArrowBuilder struct {
	mem     memory.Allocator
	root    column
	noInfer bool
	locked  bool
	rb      *array.RecordBuilder
	schema  *arrow.Schema
	version int
	dirty   bool // the schema tree changed since rb was built
	reserve bool // reserve room like the last batch's at the next row

	p       fastjson.Parser
	rows    int
	row     uint64
	checks  uint64
	size    int64
	raw     []byte // rows of the open batch, while unlocked
	ends    []int
	scratch []byte

	// The fast path (arrowscan.go).
	toks     []scanTok
	unesc    []byte
	scans    uint64
	slowOnly bool // a declared json column (the fast path leaves those to fastjson's text), or tests
}

// NewArrowBuilder returns a builder with the declared columns of opts.
func NewArrowBuilder(opts ArrowOptions) (*ArrowBuilder, error) {
	b := &ArrowBuilder{mem: opts.Allocator, noInfer: opts.NoInfer}
	if b.mem == nil {
		b.mem = memory.DefaultAllocator
	}
	b.root.kind = kindStruct
	for _, d := range opts.Columns {
		if d.Name == "" {
			return nil, errors.New("codecs: arrow: a declared column has no name")
		}
		if b.root.index[d.Name] != nil {
			return nil, fmt.Errorf("codecs: arrow: column %q is declared twice", d.Name)
		}
		k := -1
		for i, n := range kindNames[:kindJSON+1] {
			if strings.EqualFold(d.Type, n) {
				k = i
			}
		}
		switch strings.ToLower(d.Type) {
		case "int":
			k = int(kindInt)
		case "float", "double":
			k = int(kindFloat)
		}
		if k < 0 {
			return nil, fmt.Errorf("codecs: arrow: column %q: type %q is not one of %s", d.Name, d.Type, strings.Join(ArrowColumnTypes, ", "))
		}
		b.root.add(&column{name: d.Name, field: d.Name, kind: colKind(k), nullable: d.Nullable, declared: true})
		b.slowOnly = b.slowOnly || colKind(k) == kindJSON
	}
	b.dirty = true
	return b, nil
}

// Lock fixes the schema (see ArrowBuilder); Unlock lets it widen again.
func (b *ArrowBuilder) Lock() { b.locked, b.raw, b.ends = true, nil, nil }

// Unlock lets the schema widen again; it must be called with no rows
// buffered (Len is 0), as it keeps no JSON of earlier rows.
func (b *ArrowBuilder) Unlock() { b.locked = false }

// Len is the number of rows buffered.
func (b *ArrowBuilder) Len() int { return b.rows }

// Size estimates the bytes the buffered rows take in Arrow memory (values
// and offsets, not validity bits), plus their JSON while unlocked.
func (b *ArrowBuilder) Size() int64 { return b.size + int64(len(b.raw)) }

// SchemaVersion counts the schema's widenings; equal versions mean equal
// schemas.
func (b *ArrowBuilder) SchemaVersion() int { return b.version }

// Schema returns the current schema (nil before the first column is
// known).
func (b *ArrowBuilder) Schema() *arrow.Schema {
	b.build()
	return b.schema
}

// Release frees the builders' memory.
func (b *ArrowBuilder) Release() {
	if b.rb != nil {
		b.rb.Release()
		b.rb = nil
	}
	b.dirty = true
}

// Append converts one JSON object into a row. A value that is not a JSON
// object, or does not fit a declared column, is an *ArrowConvertError; a
// value that needs a wider schema while it is locked is
// ErrArrowSchemaLocked. Either way nothing was appended.
func (b *ArrowBuilder) Append(value []byte) error {
	if !b.slowOnly && b.scanRecord(value) {
		b.build()
		b.reserveLast()
		b.commit(value)
		b.keepRaw(value)
		return nil
	}
	v, err := b.p.ParseBytes(value)
	if err != nil {
		return &ArrowConvertError{Reason: "not JSON: " + err.Error()}
	}
	if v.Type() != fastjson.TypeObject {
		return &ArrowConvertError{Reason: "not a JSON object but a JSON " + v.Type().String()}
	}
	widen, err := b.check(&b.root, v, true)
	if err != nil {
		return err
	}
	if widen {
		if b.locked {
			return ErrArrowSchemaLocked
		}
		if err := b.widen(&b.root, v); err != nil {
			return err
		}
		b.dirty, b.version = true, b.version+1
		if err := b.replay(); err != nil {
			return err
		}
		// replay parsed other values with b.p: parse this one again.
		if v, err = b.p.ParseBytes(value); err != nil {
			return &ArrowConvertError{Reason: "not JSON: " + err.Error()}
		}
	}
	b.build()
	b.reserveLast()
	b.appendRow(v)
	b.keepRaw(value)
	return nil
}

// reserveLast reserves, before the first row of a batch, as much room as
// the last batch took, so that the builders grow no buffer by copying it
// (and the pool gives back the last batch's).
func (b *ArrowBuilder) reserveLast() {
	if b.rows == 0 && b.reserve {
		b.reserve = false
		for _, c := range b.root.fields {
			reserveLike(c)
		}
	}
}

// keepRaw keeps the JSON of a row appended while unlocked, for replay.
func (b *ArrowBuilder) keepRaw(value []byte) {
	if !b.locked {
		b.raw = append(b.raw, value...)
		b.ends = append(b.ends, len(b.raw))
	}
}

// replay converts the buffered rows again into builders of the widened
// schema.
func (b *ArrowBuilder) replay() error {
	if b.rb != nil {
		b.rb.Release()
		b.rb = nil
	}
	b.rows, b.size = 0, 0
	b.build()
	start := 0
	for _, end := range b.ends {
		v, err := b.p.ParseBytes(b.raw[start:end])
		if err != nil {
			return fmt.Errorf("codecs: arrow: a buffered row no longer parses: %w", err)
		}
		b.appendRow(v)
		start = end
	}
	return nil
}

// NewRecordBatch returns the buffered rows as a record batch and starts a
// new one with the same schema. The caller releases the batch.
func (b *ArrowBuilder) NewRecordBatch() arrow.RecordBatch {
	b.build()
	for _, c := range b.root.fields {
		noteLen(c)
	}
	b.reserve = b.rows > 0
	rec := b.rb.NewRecordBatch()
	b.rows, b.size = 0, 0
	b.raw, b.ends = b.raw[:0], b.ends[:0]
	return rec
}

// build makes the record builder for the current schema if it changed.
func (b *ArrowBuilder) build() {
	if !b.dirty {
		return
	}
	b.dirty = false
	if b.rb != nil {
		b.rb.Release()
	}
	b.schema = arrow.NewSchema(b.root.arrowFields(), nil)
	b.rb = array.NewRecordBuilder(b.mem, b.schema)
	for i, c := range b.root.fields {
		bind(c, b.rb.Field(i))
	}
}

// noteLen notes the length of c's builders before they are emptied into
// a batch, for reserveLike.
func noteLen(c *column) {
	c.lastLen = c.b.Len()
	if bb, ok := c.b.(*array.StringBuilder); ok {
		c.lastData = bb.DataLen()
	}
	if c.elem != nil {
		noteLen(c.elem)
	}
	for _, f := range c.fields {
		noteLen(f)
	}
}

// reserveLike reserves in c's builders the room noteLen saw, plus a
// sixteenth.
func reserveLike(c *column) {
	if c.lastLen > 0 {
		c.b.Reserve(c.lastLen + c.lastLen/16)
	}
	if bb, ok := c.b.(*array.StringBuilder); ok && c.lastData > 0 {
		bb.ReserveData(c.lastData + c.lastData/16)
	}
	if c.elem != nil {
		reserveLike(c.elem)
	}
	for _, f := range c.fields {
		reserveLike(f)
	}
}

func bind(c *column, bl array.Builder) {
	c.b = bl
	switch c.kind {
	case kindList:
		bind(c.elem, bl.(*array.ListBuilder).ValueBuilder())
	case kindStruct:
		sb := bl.(*array.StructBuilder)
		for i, f := range c.fields {
			bind(f, sb.FieldBuilder(i))
		}
	}
}

func typeName(v *fastjson.Value) string { return "JSON " + v.Type().String() }

func (b *ArrowBuilder) mismatch(c *column, v *fastjson.Value) error {
	return &ArrowConvertError{Column: c.name, Reason: fmt.Sprintf("is %s, got a %s", kindNames[c.kind], typeName(v))}
}

// check reports whether v fits column c as it is (false), needs it wider
// (true), or cannot go into it (an error).
func (b *ArrowBuilder) check(c *column, v *fastjson.Value, top bool) (bool, error) {
	t := v.Type()
	if t == fastjson.TypeNull {
		if !c.nullable && !top {
			return false, &ArrowConvertError{Column: c.name, Reason: "is not nullable, got null"}
		}
		return false, nil
	}
	switch c.kind {
	case kindBool:
		if t == fastjson.TypeTrue || t == fastjson.TypeFalse {
			return false, nil
		}
	case kindInt:
		if t == fastjson.TypeNumber {
			if _, err := v.Int64(); err == nil {
				return false, nil
			}
			if c.declared {
				return false, &ArrowConvertError{Column: c.name, Reason: "is int64, got " + string(v.MarshalTo(b.scratch[:0]))}
			}
			return true, nil
		}
	case kindFloat:
		if t == fastjson.TypeNumber {
			return false, nil
		}
	case kindString:
		if t == fastjson.TypeString || c.declared && (t == fastjson.TypeNumber || t == fastjson.TypeTrue || t == fastjson.TypeFalse) {
			return false, nil
		}
	case kindJSON:
		return false, nil
	case kindTime, kindTimeMs:
		switch t {
		case fastjson.TypeString:
			if _, ok := parseJSONTime(v.GetStringBytes()); ok {
				return false, nil
			}
			if c.declared {
				return false, &ArrowConvertError{Column: c.name, Reason: fmt.Sprintf("is %s, got %q, which is not an RFC 3339 time", kindNames[c.kind], v.GetStringBytes())}
			}
			return true, nil // becomes a string column
		case fastjson.TypeNumber:
			if c.declared {
				return false, nil
			}
		}
	case kindList:
		if t == fastjson.TypeArray {
			widen := false
			for _, e := range v.GetArray() {
				w, err := b.check(c.elem, e, false)
				if err != nil {
					return false, err
				}
				widen = widen || w
			}
			return widen, nil
		}
	case kindStruct:
		if t == fastjson.TypeObject {
			widen := false
			var err error
			if top {
				b.checks++
			}
			c.cursor = 0
			v.GetObject().Visit(func(k []byte, fv *fastjson.Value) {
				if err != nil {
					return
				}
				f := c.lookup(k)
				if top && f != nil {
					f.checked = b.checks
				}
				if f == nil {
					if fv.Type() != fastjson.TypeNull && !(top && b.noInfer) {
						widen = true
					}
					return
				}
				var w bool
				w, err = b.check(f, fv, false)
				widen = widen || w
			})
			if err == nil && top {
				for _, f := range c.fields {
					if f.declared && !f.nullable && f.checked != b.checks {
						return false, &ArrowConvertError{Column: f.name, Reason: "is not nullable, and the record has no such field"}
					}
				}
			}
			return widen, err
		}
	}
	return false, b.mismatch(c, v)
}

// widen makes c wide enough for v, which check said it needs.
func (b *ArrowBuilder) widen(c *column, v *fastjson.Value) error {
	switch t := v.Type(); {
	case t == fastjson.TypeNull:
	case c.kind == kindInt && t == fastjson.TypeNumber:
		if _, err := v.Int64(); err != nil {
			c.kind = kindFloat
		}
	case (c.kind == kindTime || c.kind == kindTimeMs) && t == fastjson.TypeString:
		if _, ok := parseJSONTime(v.GetStringBytes()); !ok {
			c.kind = kindString
		}
	case c.kind == kindList && t == fastjson.TypeArray:
		for _, e := range v.GetArray() {
			if err := b.widen(c.elem, e); err != nil {
				return err
			}
		}
	case c.kind == kindStruct && t == fastjson.TypeObject:
		var err error
		top := c == &b.root
		v.GetObject().Visit(func(k []byte, fv *fastjson.Value) {
			if err != nil {
				return
			}
			if f := c.index[string(k)]; f != nil {
				err = b.widen(f, fv)
				return
			}
			if top && b.noInfer {
				return
			}
			name := string(k)
			if !top {
				name = c.name + "." + name
			}
			var f *column
			if f, err = b.infer(name, string(k), fv); f != nil {
				c.add(f)
			}
		})
		return err
	}
	return nil
}

// infer returns a column for v, or nil when v says nothing of its type
// (null, an empty list or object).
func (b *ArrowBuilder) infer(name, field string, v *fastjson.Value) (*column, error) {
	c := &column{name: name, field: field, nullable: true}
	switch v.Type() {
	case fastjson.TypeNull:
		return nil, nil
	case fastjson.TypeTrue, fastjson.TypeFalse:
		c.kind = kindBool
	case fastjson.TypeNumber:
		c.kind = kindInt
		if _, err := v.Int64(); err != nil {
			c.kind = kindFloat
		}
	case fastjson.TypeString:
		c.kind = kindString
		if _, ok := parseJSONTime(v.GetStringBytes()); ok {
			c.kind = kindTime
		}
	case fastjson.TypeArray:
		c.kind = kindList
		for _, e := range v.GetArray() {
			if c.elem == nil {
				var err error
				if c.elem, err = b.infer(name+"[]", "element", e); err != nil {
					return nil, err
				}
				continue
			}
			w, err := b.check(c.elem, e, false)
			if err != nil {
				return nil, err
			}
			if w {
				if err := b.widen(c.elem, e); err != nil {
					return nil, err
				}
			}
		}
		if c.elem == nil {
			return nil, nil
		}
	case fastjson.TypeObject:
		c.kind = kindStruct
		if err := b.widen(c, v); err != nil {
			return nil, err
		}
		if len(c.fields) == 0 {
			return nil, nil
		}
	}
	return c, nil
}

// appendRow appends a top-level object that check accepted.
func (b *ArrowBuilder) appendRow(v *fastjson.Value) {
	b.row++
	row := b.row
	b.root.cursor = 0
	v.GetObject().Visit(func(k []byte, fv *fastjson.Value) {
		if f := b.root.lookup(k); f != nil && f.seen != row {
			f.seen = row
			b.appendValue(f, fv)
		}
	})
	for _, f := range b.root.fields {
		if f.seen != row {
			f.b.AppendNull()
		}
	}
	b.rows++
}

// appendValue appends v, which check accepted, to c's builder.
func (b *ArrowBuilder) appendValue(c *column, v *fastjson.Value) {
	t := v.Type()
	if t == fastjson.TypeNull {
		c.b.AppendNull()
		return
	}
	switch c.kind {
	case kindBool:
		c.b.(*array.BooleanBuilder).Append(t == fastjson.TypeTrue)
		b.size++
	case kindInt:
		n, _ := v.Int64()
		c.b.(*array.Int64Builder).Append(n)
		b.size += 8
	case kindFloat:
		c.b.(*array.Float64Builder).Append(v.GetFloat64())
		b.size += 8
	case kindString, kindJSON:
		var s []byte
		if t == fastjson.TypeString && c.kind == kindString {
			s = v.GetStringBytes()
			if !utf8.Valid(s) { // Arrow and Parquet strings are UTF-8
				b.scratch = append(b.scratch[:0], bytes.ToValidUTF8(s, []byte("\uFFFD"))...)
				s = b.scratch
			}
		} else {
			b.scratch = v.MarshalTo(b.scratch[:0])
			if !utf8.Valid(b.scratch) {
				b.scratch = bytes.ToValidUTF8(b.scratch, []byte("\uFFFD"))
			}
			s = b.scratch
		}
		c.b.(*array.StringBuilder).BinaryBuilder.Append(s)
		b.size += int64(len(s)) + 4
	case kindTime, kindTimeMs:
		var ts time.Time
		if t == fastjson.TypeString {
			ts, _ = parseJSONTime(v.GetStringBytes())
		} else {
			ts = epochTime(v.GetFloat64())
		}
		if c.kind == kindTime {
			c.b.(*array.TimestampBuilder).Append(arrow.Timestamp(ts.UnixMicro()))
		} else {
			c.b.(*array.TimestampBuilder).Append(arrow.Timestamp(ts.UnixMilli()))
		}
		b.size += 8
	case kindList:
		c.b.(*array.ListBuilder).Append(true)
		for _, e := range v.GetArray() {
			b.appendValue(c.elem, e)
		}
		b.size += 4
	case kindStruct:
		c.b.(*array.StructBuilder).Append(true)
		b.row++
		row := b.row
		c.cursor = 0
		v.GetObject().Visit(func(k []byte, fv *fastjson.Value) {
			if f := c.lookup(k); f != nil && f.seen != row {
				f.seen = row
				b.appendValue(f, fv)
			}
		})
		for _, f := range c.fields {
			if f.seen != row {
				f.b.AppendNull()
			}
		}
	}
}

// epochTime reads a number as seconds, milliseconds, microseconds or
// nanoseconds since 1970, by its magnitude.
func epochTime(f float64) time.Time {
	a := math.Abs(f)
	switch {
	case a < 1e11:
		return time.Unix(0, int64(f*1e9)).UTC()
	case a < 1e14:
		return time.UnixMicro(int64(f * 1e3)).UTC()
	case a < 1e17:
		return time.UnixMicro(int64(f)).UTC()
	default:
		return time.Unix(0, int64(f)).UTC()
	}
}

var timeLayouts = []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999", "2006-01-02 15:04:05.999999999Z07:00", "2006-01-02 15:04:05.999999999"}

// parseJSONTime parses an RFC 3339 time, or one without a zone (UTC), with
// 'T' or a space between date and time.
func parseJSONTime(s []byte) (time.Time, bool) {
	if len(s) < 19 || len(s) > 40 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != ' ') {
		return time.Time{}, false
	}
	if t, ok := parseTimeFast(s); ok {
		return t, true
	}
	return parseTimeLayouts(s)
}

// digits2 reads two ASCII digits; ok is false if either is not one.
func digits2(s []byte) (int, bool) {
	a, b := s[0]-'0', s[1]-'0'
	return int(a)*10 + int(b), a <= 9 && b <= 9
}

// parseTimeFast parses the usual shapes of parseJSONTime without
// time.Parse: YYYY-MM-DD, 'T' or ' ', hh:mm:ss, an optional fraction of 1
// to 9 digits, then Z, ±hh:mm or nothing (UTC). It accepts only what
// time.Parse accepts with timeLayouts and returns the same instant;
// anything else (ok false) goes to parseTimeLayouts.
func parseTimeFast(s []byte) (time.Time, bool) {
	if len(s) < 19 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != ' ') {
		return time.Time{}, false
	}
	y1, ok1 := digits2(s[0:])
	y2, ok2 := digits2(s[2:])
	mo, ok3 := digits2(s[5:])
	d, ok4 := digits2(s[8:])
	h, ok5 := digits2(s[11:])
	mi, ok6 := digits2(s[14:])
	sec, ok7 := digits2(s[17:])
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6 && ok7) || s[13] != ':' || s[16] != ':' {
		return time.Time{}, false
	}
	y := y1*100 + y2
	if mo < 1 || mo > 12 || d < 1 || d > daysIn(time.Month(mo), y) || h > 23 || mi > 59 || sec > 59 {
		return time.Time{}, false
	}
	rest := s[19:]
	ns := 0
	if len(rest) > 0 && rest[0] == '.' {
		n := 1
		for n < len(rest) && rest[n] >= '0' && rest[n] <= '9' {
			n++
		}
		if n == 1 || n > 10 {
			return time.Time{}, false
		}
		for i := 1; i < 10; i++ {
			ns *= 10
			if i < n {
				ns += int(rest[i] - '0')
			}
		}
		rest = rest[n:]
	}
	off := 0
	switch {
	case len(rest) == 0:
	case len(rest) == 1 && rest[0] == 'Z':
	case len(rest) == 6 && (rest[0] == '+' || rest[0] == '-') && rest[3] == ':':
		oh, ok1 := digits2(rest[1:])
		om, ok2 := digits2(rest[4:])
		if !ok1 || !ok2 || oh > 23 || om > 59 {
			return time.Time{}, false
		}
		off = (oh*60 + om) * 60
		if rest[0] == '-' {
			off = -off
		}
	default:
		return time.Time{}, false
	}
	t := time.Date(y, time.Month(mo), d, h, mi, sec, ns, time.UTC)
	if off != 0 {
		t = t.Add(-time.Duration(off) * time.Second)
	}
	return t, true
}

func daysIn(m time.Month, y int) int {
	switch m {
	case time.February:
		if y%4 == 0 && (y%100 != 0 || y%400 == 0) {
			return 29
		}
		return 28
	case time.April, time.June, time.September, time.November:
		return 30
	}
	return 31
}

// parseTimeLayouts is parseJSONTime's slow path, through time.Parse.
func parseTimeLayouts(s []byte) (time.Time, bool) {
	str := string(s) // small; the fast path is a stack copy
	for _, l := range timeLayouts {
		if t, err := time.Parse(l, str); err == nil {
			return t.UTC(), true
		}
	}
	return time.Time{}, false
}
