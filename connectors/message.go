package connectors

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/valyala/fastjson"

	"github.com/weirhub/weir/codecs"
)

// Message is one record in a pipeline. Its Value is the payload as bytes;
// after a parse processor it is a JSON object, and Fields gives a parsed,
// editable view of it without a map per record. A Message belongs to one
// goroutine at a time, except that the sinks of a pipeline read the same
// messages at once: sinks must not modify them.
type Message struct {
	Key     []byte
	Value   []byte
	Headers []codecs.RecordHeader
	Time    time.Time

	// Origin, for messages read from a dataset.
	Dataset   string
	Partition int32
	Offset    int64

	// Original is the value as the message entered the pipeline, before
	// processors changed it: what goes to the dead-letter dataset.
	Original []byte

	// Routes selects the pipeline sinks the message goes to, one bit per
	// sink in declaration order; 0 means all of them. The route
	// processor sets it.
	Routes uint64

	// Err, when set by a processor, sends the message to the dead-letter
	// dataset with this reason instead of on to the sinks.
	Err error

	doc *doc
	// object is the Value Sync last left from the parsed view: an object
	// whose structure the parser checked or Sync wrote (KnownJSONObject).
	object []byte
}

// Fail marks the message as failed with a reason; see Err.
func (m *Message) Fail(format string, args ...any) {
	m.Err = fmt.Errorf(format, args...)
}

// doc is a parsed JSON object with the memory to edit it, pooled.
type doc struct {
	p     fastjson.Parser
	a     fastjson.Arena
	v     *fastjson.Value
	dirty bool
	// appendOnly says every edit so far added a new top-level field:
	// Sync then copies the original bytes and appends the new fields
	// instead of serializing the whole object again.
	appendOnly bool
	base       int // top-level fields at parse time
}

var docs = sync.Pool{New: func() any { return new(doc) }}

// ErrNotObject is returned by Fields for a value that is not a JSON object.
var ErrNotObject = errors.New("connectors: value is not a JSON object")

// Fields parses the value as a JSON object, once, and returns the parsed
// view; edits through it show in Value after Sync. A value that is not a
// JSON object is an error wrapping ErrNotObject with the parser's reason.
func (m *Message) Fields() (*fastjson.Object, error) {
	if m.doc != nil {
		return m.doc.v.GetObject(), nil
	}
	value := m.Value
	if !utf8.Valid(value) {
		// Bytes that are not UTF-8 can only sit inside strings of valid
		// JSON: replace them, as codecs.AppendJSONString does, so the
		// record (even left as it came) is valid JSON downstream.
		value = bytes.ToValidUTF8(value, []byte("\uFFFD"))
	}
	d := docs.Get().(*doc)
	v, err := d.p.ParseBytes(value)
	if err == nil && v.Type() != fastjson.TypeObject {
		err = fmt.Errorf("found a JSON %s", v.Type())
	}
	if err != nil {
		docs.Put(d)
		return nil, fmt.Errorf("%w: %v", ErrNotObject, err)
	}
	m.Value = value
	d.v, d.dirty, d.appendOnly = v, false, true
	d.base = v.GetObject().Len()
	m.doc = d
	return v.GetObject(), nil
}

// Get returns the field at a dotted path ("http.status") of a parsed
// message, or nil. It parses the value first if needed.
func (m *Message) Get(path ...string) *fastjson.Value {
	if _, err := m.Fields(); err != nil {
		return nil
	}
	return m.doc.v.Get(path...)
}

// Arena is where edits of the parsed view allocate their values; it lives
// as long as the parse.
func (m *Message) Arena() *fastjson.Arena {
	if m.doc == nil {
		return nil
	}
	return &m.doc.a
}

// Set sets a top-level field of a parsed message to v (built with Arena)
// and marks the message changed.
func (m *Message) Set(key string, v *fastjson.Value) error {
	o, err := m.Fields()
	if err != nil {
		return err
	}
	if m.doc.appendOnly && o.Get(key) != nil {
		m.doc.appendOnly = false
	}
	o.Set(key, v)
	m.doc.dirty = true
	return nil
}

// Del deletes a top-level field of a parsed message.
func (m *Message) Del(key string) error {
	o, err := m.Fields()
	if err != nil {
		return err
	}
	o.Del(key)
	m.doc.dirty = true
	m.doc.appendOnly = false
	return nil
}

// Changed marks the parsed view as edited, for edits made through the
// *fastjson.Object Fields returned.
func (m *Message) Changed() {
	if m.doc != nil {
		m.doc.dirty = true
		m.doc.appendOnly = false
	}
}

// Sync writes edits of the parsed view back into Value, appending to buf
// (which it returns) so that callers can reuse memory.
func (m *Message) Sync(buf []byte) []byte {
	if m.doc == nil {
		return buf
	}
	if !m.doc.dirty {
		m.object = m.Value
		return buf
	}
	start := len(buf)
	if end := lastBrace(m.Value); m.doc.appendOnly && end > 0 {
		// Only new fields: the original bytes up to the closing brace,
		// then the new fields.
		buf = append(buf, m.Value[:end]...)
		i := 0
		sep := m.doc.base > 0
		m.doc.v.GetObject().Visit(func(k []byte, v *fastjson.Value) {
			if i++; i <= m.doc.base {
				return
			}
			if sep {
				buf = append(buf, ',')
			}
			sep = true
			buf = codecs.AppendJSONString(buf, k)
			buf = append(buf, ':')
			buf = AppendJSON(buf, v)
		})
		buf = append(buf, '}')
	} else {
		buf = AppendJSON(buf, m.doc.v)
	}
	m.Value = buf[start:len(buf):len(buf)]
	m.object = m.Value
	m.doc.dirty = false
	return buf
}

// KnownJSONObject reports whether Value is known to be exactly one valid
// JSON object. It knows the values Sync last left from a parsed view (the
// value parsed, or written again with its edits) and not replaced since:
// their structure the parser checked or Sync wrote, so one pass over their
// tokens, cheaper than validating, decides. Sinks that must refuse
// anything but objects validate fully only what it does not know; false
// means unknown, not invalid.
func (m *Message) KnownJSONObject() bool {
	if len(m.Value) == 0 || len(m.object) != len(m.Value) || &m.object[0] != &m.Value[0] {
		return false
	}
	return jsonTokens(m.Value)
}

// jsonTokens reports whether the tokens of b are valid JSON, for bytes
// whose structure (braces, brackets, commas, colons) is known to be right:
// read by fastjson's parser, which checks structure but is lenient about
// tokens (it takes control characters and any escape in strings, numbers
// such as 01, 1.2.3, +1 or NaN, and Infinity), or written from its parsed
// view. It is conservative: a string with an escape, or whitespace other
// than spaces, makes it false (the caller then validates fully), which
// keeps it one cheap pass over the bytes.
func jsonTokens(b []byte) bool {
	for i := 0; i < len(b); {
		switch c := b[i]; {
		case c == '"':
			i++
			// Eight bytes at a time while none is a quote, a backslash or a
			// control character.
			for ; i+8 <= len(b); i += 8 {
				x := binary.LittleEndian.Uint64(b[i:])
				if swarLess(x, 0x20)|swarZero(x^(swarLo*'"'))|swarZero(x^(swarLo*'\\')) != 0 {
					break
				}
			}
			for ; i < len(b) && b[i] != '"'; i++ {
				if b[i] < 0x20 || b[i] == '\\' {
					return false
				}
			}
			i++ // the closing quote
		case c == '-' || c >= '0' && c <= '9':
			end, _, ok := codecs.ScanJSONNumber(b, i) // 01, 1.2.3, 1e5e5 do not match: one token to the parser
			if !ok {
				return false
			}
			i = end
		case c == 't':
			if !bytes.HasPrefix(b[i:], []byte("true")) {
				return false
			}
			i += 4
		case c == 'f':
			if !bytes.HasPrefix(b[i:], []byte("false")) {
				return false
			}
			i += 5
		case c == 'n':
			if !bytes.HasPrefix(b[i:], []byte("null")) {
				return false // nan
			}
			i += 4
		case c == '{' || c == '}' || c == '[' || c == ']' || c == ',' || c == ':' || c == ' ':
			i++
		default:
			return false // +1, .5, NaN, Infinity, tabs and line breaks
		}
	}
	return true
}

// swarLo has 1 in every byte, swarHi the top bit of every byte.
const (
	swarLo = 0x0101010101010101
	swarHi = 0x8080808080808080
)

// swarLess is not zero if and only if a byte of x is less than n (at most
// 0x80); swarZero if and only if a byte of x is zero.
func swarLess(x uint64, n byte) uint64 { return (x - swarLo*uint64(n)) &^ x & swarHi }

func swarZero(x uint64) uint64 { return (x - swarLo) &^ x & swarHi }

// lastBrace is the index of an object's closing brace, or -1.
func lastBrace(b []byte) int {
	for i := len(b) - 1; i >= 0; i-- {
		switch b[i] {
		case ' ', '\t', '\r', '\n':
			continue
		case '}':
			return i
		}
		return -1
	}
	return -1
}

// AppendJSON appends v as JSON. Its strings and keys go through
// codecs.AppendJSONString, so what is written is valid JSON and valid UTF-8
// (fastjson's own MarshalTo writes bytes that are not UTF-8 as they are,
// and quotes strings with special characters the Go way: \a, \x80).
func AppendJSON(dst []byte, v *fastjson.Value) []byte {
	switch v.Type() {
	case fastjson.TypeString:
		return codecs.AppendJSONString(dst, v.GetStringBytes())
	case fastjson.TypeObject:
		dst = append(dst, '{')
		first := true
		v.GetObject().Visit(func(k []byte, fv *fastjson.Value) {
			if !first {
				dst = append(dst, ',')
			}
			first = false
			dst = codecs.AppendJSONString(dst, k)
			dst = append(dst, ':')
			dst = AppendJSON(dst, fv)
		})
		return append(dst, '}')
	case fastjson.TypeArray:
		dst = append(dst, '[')
		for i, e := range v.GetArray() {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = AppendJSON(dst, e)
		}
		return append(dst, ']')
	}
	return v.MarshalTo(dst) // numbers, true, false, null
}

// Release returns the parsed view's memory; the message keeps its Value
// (call Sync first to keep edits).
func (m *Message) Release() {
	if m.doc != nil {
		m.doc.a.Reset()
		m.doc.v = nil
		docs.Put(m.doc)
		m.doc = nil
	}
}

// Parsed reports whether the message has a parsed view.
func (m *Message) Parsed() bool { return m.doc != nil }

// String renders a field value as text: strings without quotes, other
// JSON as written.
func String(v *fastjson.Value) string {
	if v == nil {
		return ""
	}
	if v.Type() == fastjson.TypeString {
		return string(v.GetStringBytes())
	}
	return string(AppendJSON(nil, v))
}

// AppendText appends a field value as text, like String, without
// allocating.
func AppendText(dst []byte, v *fastjson.Value) []byte {
	if v == nil {
		return dst
	}
	if v.Type() == fastjson.TypeString {
		return append(dst, v.GetStringBytes()...)
	}
	return AppendJSON(dst, v)
}

// Header returns the value of the first header named key, or nil.
func (m *Message) Header(key string) []byte {
	for _, h := range m.Headers {
		if string(h.Key) == key {
			return h.Value
		}
	}
	return nil
}

// SetHeader sets (replaces or adds) a header.
func (m *Message) SetHeader(key string, value []byte) {
	for i := range m.Headers {
		if string(m.Headers[i].Key) == key {
			m.Headers[i].Value = value
			return
		}
	}
	m.Headers = append(m.Headers, codecs.RecordHeader{Key: []byte(key), Value: value})
}

// Origin describes where the message came from, for errors and dead
// letters.
func (m *Message) Origin() string {
	if m.Dataset == "" {
		return "(not from a dataset)"
	}
	return m.Dataset + "/" + strconv.Itoa(int(m.Partition)) + "@" + strconv.FormatInt(m.Offset, 10)
}

// FieldReader reads fields of messages it does not own, parsing each
// value with a parser of its own: what sinks use, since the sinks of a
// pipeline read the same messages at once and must not parse into them
// (Fields, Get and Set change the message). A FieldReader is used by one
// goroutine; a value it returns is valid until its next call.
type FieldReader struct {
	p    fastjson.Parser
	last []byte
	v    *fastjson.Value
}

// Get returns the field at path of m's JSON value, or nil when the value
// is not a JSON object or has no such field.
func (r *FieldReader) Get(m *Message, path ...string) *fastjson.Value {
	if r.v == nil || len(r.last) != len(m.Value) || (len(m.Value) > 0 && &r.last[0] != &m.Value[0]) {
		v, err := r.p.ParseBytes(m.Value)
		if err != nil || v.Type() != fastjson.TypeObject {
			r.v, r.last = nil, nil
			return nil
		}
		r.v, r.last = v, m.Value
	}
	return r.v.Get(path...)
}
