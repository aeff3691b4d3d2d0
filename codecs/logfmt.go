package codecs

import (
	"bytes"
	"fmt"
)

// Payload codecs turn the text of a record into fields. Each renders its
// fields as a JSON object appended to a caller's buffer, so that a record
// becomes JSON once and is then handled like any other.

// KVOptions configure key=value parsing.
type KVOptions struct {
	FieldSep   byte // between pairs; default ' '
	ValueSep   byte // between a key and its value; default '='
	TrimQuotes bool // values in double quotes lose them (with \" and \\ unescaped)
}

// pairScanner steps through the key=value pairs of a line (`level=info
// msg="disk full" retry`): a bare key has a nil value, a quoted value is
// unescaped (\" \\ \n \t) into scratch when it has escapes. An iterator
// rather than a callback, so that the JSON writer allocates nothing per
// line. A quote that is not closed is an error naming its byte position.
type pairScanner struct {
	line       []byte
	i          int
	fsep, vsep byte
	unquote    bool
	scratch    []byte // unescaped quoted values
}

func (ps *pairScanner) isSep(c byte) bool {
	return c == ps.fsep || (ps.fsep == ' ' && (c == '\t' || c == '\r' || c == '\n'))
}

// next returns the next pair, ok false at the end of the line. A bare key
// has a nil value.
func (ps *pairScanner) next() (key, value []byte, quoted, ok bool, err error) {
	line, i, n := ps.line, ps.i, len(ps.line)
	defer func() { ps.i = i }()
	for i < n && ps.isSep(line[i]) {
		i++
	}
	if i >= n {
		return nil, nil, false, false, nil
	}
	ks := i
	for i < n && line[i] != ps.vsep && !ps.isSep(line[i]) {
		i++
	}
	key = line[ks:i]
	if len(key) == 0 {
		return nil, nil, false, false, fmt.Errorf("codecs: byte %d: a pair without a key", ks)
	}
	if i >= n || line[i] != ps.vsep {
		return key, nil, false, true, nil
	}
	i++ // the value separator
	if i < n && line[i] == '"' && ps.unquote {
		start := i
		i++
		// Without escapes the value is a slice of the line; else it is
		// unescaped into scratch.
		if q := bytes.IndexByte(line[i:], '"'); q >= 0 && bytes.IndexByte(line[i:i+q], '\\') < 0 {
			i += q + 1
			return key, line[start+1 : i-1 : i-1], true, true, nil
		}
		buf := ps.scratch[:0]
		for i < n {
			c := line[i]
			if c == '\\' && i+1 < n {
				switch e := line[i+1]; e {
				case 'n':
					buf = append(buf, '\n')
				case 't':
					buf = append(buf, '\t')
				case 'r':
					buf = append(buf, '\r')
				default:
					buf = append(buf, e)
				}
				i += 2
				continue
			}
			if c == '"' {
				i++
				ps.scratch = buf
				if buf == nil {
					buf = line[start+1 : start+1] // empty, not nil: "" is not a bare key
				}
				return key, buf, true, true, nil
			}
			buf = append(buf, c)
			i++
		}
		ps.scratch = buf
		return nil, nil, false, false, fmt.Errorf("codecs: byte %d: the quoted value of %q is not closed", start, key)
	}
	vs := i
	for i < n && !ps.isSep(line[i]) {
		i++
	}
	return key, line[vs:i:i], false, true, nil
}

// AppendLogfmtJSON appends a logfmt line as a JSON object of strings (a
// bare key is true). Keys that repeat are all written; JSON readers keep
// the last.
func AppendLogfmtJSON(dst, line []byte) ([]byte, error) {
	return appendPairsJSON(dst, line, ' ', '=', true)
}

// AppendKVJSON appends a key=value line with the given separators as a JSON
// object of strings.
func AppendKVJSON(dst, line []byte, o KVOptions) ([]byte, error) {
	if o.FieldSep == 0 {
		o.FieldSep = ' '
	}
	if o.ValueSep == 0 {
		o.ValueSep = '='
	}
	return appendPairsJSON(dst, line, o.FieldSep, o.ValueSep, o.TrimQuotes)
}

func appendPairsJSON(dst, line []byte, fsep, vsep byte, unquote bool) ([]byte, error) {
	start := len(dst)
	dst = append(dst, '{')
	ps := pairScanner{line: line, fsep: fsep, vsep: vsep, unquote: unquote}
	for first := true; ; first = false {
		k, v, quoted, ok, err := ps.next()
		if err != nil {
			return dst[:start], err
		}
		if !ok {
			return append(dst, '}'), nil
		}
		if !first {
			dst = append(dst, ',')
		}
		dst = AppendJSONString(dst, k)
		dst = append(dst, ':')
		if v == nil && !quoted {
			dst = append(dst, "true"...)
		} else {
			dst = AppendJSONString(dst, v)
		}
	}
}
