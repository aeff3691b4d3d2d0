package codecs

import (
	"bytes"
	"math"
	"unicode/utf8"
	"unsafe"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/valyala/fastjson/fastfloat"
)

// The fast path of ArrowBuilder.Append: one pass over the record's bytes
// that checks every value against its column and converts it, noting the
// results as tokens; only when the whole record fits the schema as it is
// are the tokens appended to the builders (commit), so a record that does
// not fit leaves nothing to roll back. Anything the fast path does not
// know for certain (a new field, a value that needs a wider column or is
// an error, an escape other than the plain ones, a key with an escape,
// invalid UTF-8, a duplicate key, a declared json column) makes it give
// up, and Append takes the slow path, which parses the record with
// fastjson and decides. The fast path accepts a subset of what fastjson
// accepts and converts it to the same values: numbers in strict JSON
// syntax, read with the same fastfloat functions, strings unescaped the
// same way.

// Kinds of scanTok.
const (
	tokNull uint8 = iota
	tokBool
	tokInt   // also a time, converted to its unit
	tokFloat // bits in i
	tokStr   // value[off:end], or b.unesc[off:end] when esc
	tokList  // n elements follow
	tokStruct
)

// scanTok is one value the scan found: a column and what goes into it.
type scanTok struct {
	c    *column
	kind uint8
	esc  bool
	n    int32 // tokList: the elements; tokStruct: the index after its fields
	off  int32
	end  int32
	i    int64
}

// The most token and unescaped-string room a builder keeps between
// records (about 1 MiB each).
const (
	maxKeptToks  = 1 << 15
	maxKeptUnesc = 1 << 20
)

// maxScanDepth bounds the nesting of values the scan skips (fields left
// out by NoInfer); deeper ones take the slow path.
const maxScanDepth = 64

// nextElem reads what follows a value in an array or object: its closing
// byte (done) or a comma, and returns the index after it.
func nextElem(s []byte, i int, closing byte) (next int, done, ok bool) {
	i = skipSpace(s, i)
	if i < len(s) && s[i] == closing {
		return i + 1, true, true
	}
	if i < len(s) && s[i] == ',' {
		return i + 1, false, true
	}
	return 0, false, false
}

func hexVal(c byte) (rune, bool) {
	switch {
	case c >= '0' && c <= '9':
		return rune(c - '0'), true
	case c >= 'a' && c <= 'f':
		return rune(c-'a') + 10, true
	case c >= 'A' && c <= 'F':
		return rune(c-'A') + 10, true
	}
	return 0, false
}

// scanString reads the string whose opening quote is s[i]. Without
// escapes it is s[off:end]; with them it is unescaped into b.unesc[off:end]
// (esc). An escape fastjson would keep as it is (an unknown one, a
// surrogate) is not taken (ok false).
func (b *ArrowBuilder) scanString(s []byte, i int) (off, end, next int, esc, ok bool) {
	i++
	n := bytes.IndexByte(s[i:], '"')
	if n < 0 {
		return 0, 0, 0, false, false
	}
	bs := bytes.IndexByte(s[i:i+n], '\\')
	if bs < 0 {
		return i, i + n, i + n + 1, false, true
	}
	off = len(b.unesc)
	u := append(b.unesc, s[i:i+bs]...)
	j := i + bs
	for {
		if j >= len(s) {
			return 0, 0, 0, false, false
		}
		c := s[j]
		if c == '"' {
			break
		}
		if c != '\\' {
			u = append(u, c)
			j++
			continue
		}
		if j+1 >= len(s) {
			return 0, 0, 0, false, false
		}
		switch s[j+1] {
		case '"', '\\', '/':
			u = append(u, s[j+1])
		case 'b':
			u = append(u, '\b')
		case 'f':
			u = append(u, '\f')
		case 'n':
			u = append(u, '\n')
		case 'r':
			u = append(u, '\r')
		case 't':
			u = append(u, '\t')
		case 'u':
			if j+6 > len(s) {
				return 0, 0, 0, false, false
			}
			var r rune
			for _, h := range s[j+2 : j+6] {
				v, ok := hexVal(h)
				if !ok {
					return 0, 0, 0, false, false
				}
				r = r<<4 | v
			}
			if r >= 0xd800 && r < 0xe000 {
				return 0, 0, 0, false, false // surrogates: the slow path pairs them as fastjson does
			}
			u = utf8.AppendRune(u, r)
			j += 4
		default:
			return 0, 0, 0, false, false
		}
		j += 2
	}
	b.unesc = u
	return off, len(u), j + 1, true, true
}

// skipValue checks a value that goes into no column (a field NoInfer
// leaves out) and returns its end.
func (b *ArrowBuilder) skipValue(s []byte, i, depth int) (int, bool) {
	if i >= len(s) || depth > maxScanDepth {
		return 0, false
	}
	switch c := s[i]; {
	case c == 'n':
		return i + 4, hasLit(s, i, "null")
	case c == 't':
		return i + 4, hasLit(s, i, "true")
	case c == 'f':
		return i + 5, hasLit(s, i, "false")
	case c == '"':
		mark := len(b.unesc)
		_, _, next, _, ok := b.scanString(s, i)
		b.unesc = b.unesc[:mark]
		return next, ok
	case c == '[':
		i = skipSpace(s, i+1)
		if i < len(s) && s[i] == ']' {
			return i + 1, true
		}
		for {
			var ok, done bool
			if i, ok = b.skipValue(s, skipSpace(s, i), depth+1); ok {
				i, done, ok = nextElem(s, i, ']')
			}
			if !ok || done {
				return i, ok
			}
		}
	case c == '{':
		i = skipSpace(s, i+1)
		if i < len(s) && s[i] == '}' {
			return i + 1, true
		}
		for {
			i = skipSpace(s, i)
			if i >= len(s) || s[i] != '"' {
				return 0, false
			}
			var ok bool
			if i, ok = b.skipValue(s, i, depth+1); !ok {
				return 0, false
			}
			if i = skipSpace(s, i); i >= len(s) || s[i] != ':' {
				return 0, false
			}
			var done bool
			if i, ok = b.skipValue(s, skipSpace(s, i+1), depth+1); ok {
				i, done, ok = nextElem(s, i, '}')
			}
			if !ok || done {
				return i, ok
			}
		}
	default:
		end, _, ok := ScanJSONNumber(s, i)
		return end, ok
	}
}

// scanRecord scans a record for the fast path; false means the slow path
// decides.
func (b *ArrowBuilder) scanRecord(value []byte) bool {
	if cap(b.toks) > maxKeptToks || cap(b.unesc) > maxKeptUnesc {
		b.toks, b.unesc = nil, nil // a huge record keeps no huge buffers
	}
	b.toks, b.unesc = b.toks[:0], b.unesc[:0]
	i := skipSpace(value, 0)
	if i >= len(value) || value[i] != '{' {
		return false
	}
	b.scans++
	stamp := b.scans
	i, ok := b.scanObject(&b.root, value, i+1, stamp, true)
	if !ok || skipSpace(value, i) != len(value) {
		return false
	}
	for _, f := range b.root.fields {
		if f.declared && !f.nullable && f.scanned != stamp {
			return false
		}
	}
	return true
}

// scanObject scans the fields of an object into struct column c, from
// after its opening brace.
func (b *ArrowBuilder) scanObject(c *column, s []byte, i int, stamp uint64, top bool) (int, bool) {
	i = skipSpace(s, i)
	if i < len(s) && s[i] == '}' {
		return i + 1, true
	}
	c.cursor = 0
	for {
		i = skipSpace(s, i)
		if i >= len(s) || s[i] != '"' {
			return 0, false
		}
		// Objects usually list their keys in the same order: the field
		// after the last one found is tried first, on the raw bytes.
		var f *column
		k := i + 1
		if cur := c.cursor; cur < len(c.fields) && c.fields[cur].plainKey {
			fk := c.fields[cur].key
			if e := k + len(fk); e < len(s) && s[e] == '"' && string(s[k:e]) == fk {
				f, c.cursor, k = c.fields[cur], cur+1, e
			}
		}
		if f == nil {
			for k < len(s) && s[k] != '"' && s[k] != '\\' {
				k++
			}
			if k >= len(s) || s[k] != '"' {
				return 0, false // a key with an escape: the slow path
			}
			f = c.lookup(s[i+1 : k])
		}
		if i = skipSpace(s, k+1); i >= len(s) || s[i] != ':' {
			return 0, false
		}
		i = skipSpace(s, i+1)
		var ok bool
		if f != nil {
			if f.scanned == stamp {
				return 0, false // a duplicate key
			}
			f.scanned = stamp
			i, ok = b.scanValue(f, s, i)
		} else if top && b.noInfer || hasLit(s, i, "null") {
			i, ok = b.skipValue(s, i, 0)
		}
		var done bool
		if ok {
			i, done, ok = nextElem(s, i, '}')
		}
		if !ok || done {
			return i, ok
		}
	}
}

// scanValue scans the value at s[i] into column c.
func (b *ArrowBuilder) scanValue(c *column, s []byte, i int) (int, bool) {
	if i >= len(s) {
		return 0, false
	}
	ch := s[i]
	if ch == 'n' {
		if !c.nullable || !hasLit(s, i, "null") {
			return 0, false
		}
		b.toks = append(b.toks, scanTok{c: c, kind: tokNull})
		return i + 4, true
	}
	switch c.kind {
	case kindBool:
		if ch == 't' && hasLit(s, i, "true") {
			b.toks = append(b.toks, scanTok{c: c, kind: tokBool, i: 1})
			return i + 4, true
		}
		if ch == 'f' && hasLit(s, i, "false") {
			b.toks = append(b.toks, scanTok{c: c, kind: tokBool})
			return i + 5, true
		}
	case kindInt:
		end, integer, ok := ScanJSONNumber(s, i)
		if !ok || !integer {
			return 0, false
		}
		n, err := fastfloat.ParseInt64(b2s(s[i:end]))
		if err != nil {
			return 0, false
		}
		b.toks = append(b.toks, scanTok{c: c, kind: tokInt, i: n})
		return end, true
	case kindFloat:
		end, _, ok := ScanJSONNumber(s, i)
		if !ok {
			return 0, false
		}
		f := fastfloat.ParseBestEffort(b2s(s[i:end]))
		b.toks = append(b.toks, scanTok{c: c, kind: tokFloat, i: int64(math.Float64bits(f))})
		return end, true
	case kindString:
		switch {
		case ch == '"':
			off, end, next, esc, ok := b.scanString(s, i)
			if !ok {
				return 0, false
			}
			str := s[off:end]
			if esc {
				str = b.unesc[off:end]
			}
			if !utf8.Valid(str) {
				return 0, false // the slow path replaces what is not UTF-8
			}
			b.toks = append(b.toks, scanTok{c: c, kind: tokStr, esc: esc, off: int32(off), end: int32(end)})
			return next, true
		case !c.declared:
		case ch == 't' && hasLit(s, i, "true"):
			b.toks = append(b.toks, scanTok{c: c, kind: tokStr, off: int32(i), end: int32(i + 4)})
			return i + 4, true
		case ch == 'f' && hasLit(s, i, "false"):
			b.toks = append(b.toks, scanTok{c: c, kind: tokStr, off: int32(i), end: int32(i + 5)})
			return i + 5, true
		default: // a declared string takes a number as its text
			end, _, ok := ScanJSONNumber(s, i)
			if !ok {
				return 0, false
			}
			b.toks = append(b.toks, scanTok{c: c, kind: tokStr, off: int32(i), end: int32(end)})
			return end, true
		}
	case kindTime, kindTimeMs:
		var next int
		var ts int64
		switch {
		case ch == '"':
			mark := len(b.unesc)
			off, end, n, esc, ok := b.scanString(s, i)
			if !ok {
				return 0, false
			}
			str := s[off:end]
			if esc {
				str = b.unesc[off:end]
			}
			t, ok := parseJSONTime(str)
			b.unesc = b.unesc[:mark]
			if !ok {
				return 0, false
			}
			next, ts = n, t.UnixMicro()
			if c.kind == kindTimeMs {
				ts = t.UnixMilli()
			}
		case c.declared:
			end, _, ok := ScanJSONNumber(s, i)
			if !ok {
				return 0, false
			}
			t := epochTime(fastfloat.ParseBestEffort(b2s(s[i:end])))
			next, ts = end, t.UnixMicro()
			if c.kind == kindTimeMs {
				ts = t.UnixMilli()
			}
		default:
			return 0, false
		}
		b.toks = append(b.toks, scanTok{c: c, kind: tokInt, i: ts})
		return next, true
	case kindList:
		if ch != '[' {
			return 0, false
		}
		at := len(b.toks)
		b.toks = append(b.toks, scanTok{c: c, kind: tokList})
		i = skipSpace(s, i+1)
		if i < len(s) && s[i] == ']' {
			return i + 1, true
		}
		for {
			var ok, done bool
			if i, ok = b.scanValue(c.elem, s, skipSpace(s, i)); ok {
				b.toks[at].n++
				i, done, ok = nextElem(s, i, ']')
			}
			if !ok || done {
				return i, ok
			}
		}
	case kindStruct:
		if ch != '{' {
			return 0, false
		}
		at := len(b.toks)
		b.toks = append(b.toks, scanTok{c: c, kind: tokStruct})
		b.scans++
		next, ok := b.scanObject(c, s, i+1, b.scans, false)
		if !ok {
			return 0, false
		}
		b.toks[at].n = int32(len(b.toks))
		return next, true
	}
	return 0, false
}

// commit appends the tokens of a record the scan took, as appendRow does.
func (b *ArrowBuilder) commit(value []byte) {
	b.row++
	row := b.row
	for i := 0; i < len(b.toks); {
		b.toks[i].c.seen = row
		i = b.commitValue(value, i)
	}
	for _, f := range b.root.fields {
		if f.seen != row {
			f.b.AppendNull()
		}
	}
	b.rows++
}

// commitValue appends token i and returns the index of the next token
// at its level.
func (b *ArrowBuilder) commitValue(value []byte, i int) int {
	t := &b.toks[i]
	c := t.c
	switch t.kind {
	case tokNull:
		c.b.AppendNull()
	case tokBool:
		c.b.(*array.BooleanBuilder).Append(t.i != 0)
		b.size++
	case tokInt:
		switch bl := c.b.(type) {
		case *array.Int64Builder:
			bl.Append(t.i)
		case *array.TimestampBuilder:
			bl.Append(arrow.Timestamp(t.i))
		}
		b.size += 8
	case tokFloat:
		c.b.(*array.Float64Builder).Append(math.Float64frombits(uint64(t.i)))
		b.size += 8
	case tokStr:
		s := value[t.off:t.end]
		if t.esc {
			s = b.unesc[t.off:t.end]
		}
		c.b.(*array.StringBuilder).BinaryBuilder.Append(s)
		b.size += int64(len(s)) + 4
	case tokList:
		c.b.(*array.ListBuilder).Append(true)
		j := i + 1
		for range t.n {
			j = b.commitValue(value, j)
		}
		b.size += 4
		return j
	case tokStruct:
		c.b.(*array.StructBuilder).Append(true)
		b.row++
		row := b.row
		end := int(t.n)
		j := i + 1
		for j < end {
			b.toks[j].c.seen = row
			j = b.commitValue(value, j)
		}
		for _, f := range c.fields {
			if f.seen != row {
				f.b.AppendNull()
			}
		}
		return j
	}
	return i + 1
}

// b2s is s as a string without a copy, for parsers that take strings;
// they keep no reference to it.
func b2s(s []byte) string { return unsafe.String(unsafe.SliceData(s), len(s)) }
