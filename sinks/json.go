package sinks

import (
	"github.com/valyala/fastjson"

	"github.com/weirhub/weir/connectors"
)

// JSON helpers the sinks share: checking the values they must write as
// JSON objects. Text is appended as JSON with codecs.AppendJSONString.

// isJSONObject reports whether b is exactly one valid JSON object,
// whitespace around it allowed. (A hand-written validator measured only
// about 20% faster than fastjson's on 270-byte records; not worth its
// code.)
func isJSONObject(b []byte) bool {
	i := 0
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	return i < len(b) && b[i] == '{' && fastjson.ValidateBytes(b) == nil
}

// isObjectValue is isJSONObject(m.Value), without validating again a
// value Sync wrote from a parsed view and checked (KnownJSONObject).
func isObjectValue(m *connectors.Message) bool {
	return m.KnownJSONObject() || isJSONObject(m.Value)
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// appendCompactLine appends valid JSON b with its surrounding whitespace
// removed and line breaks inside it (which valid JSON has only between
// tokens) turned into spaces, so that it stays on one line.
func appendCompactLine(dst, b []byte) []byte {
	start, end := 0, len(b)
	for start < end && isSpace(b[start]) {
		start++
	}
	for end > start && isSpace(b[end-1]) {
		end--
	}
	n := len(dst)
	dst = append(dst, b[start:end]...)
	for i := n; i < len(dst); i++ {
		if dst[i] == '\n' || dst[i] == '\r' {
			dst[i] = ' '
		}
	}
	return dst
}
