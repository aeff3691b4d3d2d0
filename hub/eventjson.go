package hub

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"strconv"
	"unicode/utf8"

	"github.com/weirhub/weir/codecs"
)

// AppendEventJSON appends e as one JSON object, the data of a
// subscription event and the body of the broadcast sinks: "key", "value"
// (records only), "partition", "offset", "time" (milliseconds) and
// "headers" for records and deletes; with withMeta, also its "type" and
// its token as "id" (a WebSocket message, a webhook or Redis event, where
// no SSE fields carry them). A JSON value stays JSON, other UTF-8 is a
// string, anything else base64 with "value_encoding":"base64" (the same
// for keys, with "key_encoding"); the JSON has no newlines.
func AppendEventJSON(dst []byte, e *Event, withMeta bool) []byte {
	if e.JSON != nil && (e.Type == EventRecord || e.Type == EventDelete) {
		if !withMeta {
			return append(dst, e.JSON...)
		}
		dst = append(dst, `{"type":`...)
		dst = appendString(dst, e.Type)
		dst = append(dst, `,"id":`...)
		dst = appendString(dst, e.Token)
		dst = append(dst, ',')
		return append(dst, e.JSON[1:]...)
	}
	dst = append(dst, '{')
	if withMeta {
		dst = append(dst, `"type":`...)
		dst = appendString(dst, e.Type)
		dst = append(dst, `,"id":`...)
		dst = appendString(dst, e.Token)
		if e.Type != EventRecord && e.Type != EventDelete {
			return append(dst, '}')
		}
		dst = append(dst, ',')
	} else if e.Type != EventRecord && e.Type != EventDelete {
		dst = append(dst, `"type":`...)
		dst = appendString(dst, e.Type)
		return append(dst, '}')
	}
	dst = append(dst, `"key":`...)
	dst = appendBytes(dst, e.Key, false, "key_encoding")
	if e.Type == EventRecord {
		dst = append(dst, `,"value":`...)
		dst = appendBytes(dst, e.Value, true, "value_encoding")
	}
	dst = append(dst, `,"partition":`...)
	dst = strconv.AppendInt(dst, int64(e.Partition), 10)
	dst = append(dst, `,"offset":`...)
	dst = strconv.AppendInt(dst, e.Offset, 10)
	dst = append(dst, `,"time":`...)
	dst = strconv.AppendInt(dst, e.Time, 10)
	if len(e.Headers) > 0 {
		dst = append(dst, `,"headers":{`...)
		for i, hd := range e.Headers {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendString(dst, string(hd.Key))
			dst = append(dst, ':')
			if hd.Value == nil {
				dst = append(dst, "null"...)
			} else {
				dst = appendString(dst, string(hd.Value))
			}
		}
		dst = append(dst, '}')
	}
	return append(dst, '}')
}

// appendBytes appends b as JSON when jsonOK and it is JSON, as a string
// when it is UTF-8, else as base64 followed by ,"<flag>":"base64"; nil is
// null.
func appendBytes(dst, b []byte, jsonOK bool, flag string) []byte {
	switch {
	case b == nil:
		return append(dst, "null"...)
	case jsonOK && codecs.ValidJSON(b):
		return appendCompact(dst, b)
	case utf8.Valid(b):
		return appendString(dst, string(b))
	}
	dst = append(dst, '"')
	dst = base64.StdEncoding.AppendEncode(dst, b)
	dst = append(dst, `","`...)
	dst = append(dst, flag...)
	return append(dst, `":"base64"`...)
}

// appendCompact appends JSON without its newlines, which would end an SSE
// data line.
func appendCompact(dst, b []byte) []byte {
	if bytes.IndexByte(b, '\n') < 0 && bytes.IndexByte(b, '\r') < 0 {
		return append(dst, b...)
	}
	buf := bytes.NewBuffer(dst)
	if err := json.Compact(buf, b); err != nil {
		return codecs.AppendJSONString(dst, b)
	}
	return buf.Bytes()
}

func appendString(dst []byte, s string) []byte {
	return codecs.AppendJSONString(dst, []byte(s))
}
