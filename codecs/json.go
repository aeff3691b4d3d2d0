package codecs

import "unicode/utf8"

// AppendJSONString appends s as a JSON string: quotes, backslashes and
// control characters escaped, and every byte that is not part of valid
// UTF-8 replaced by U+FFFD (as its UTF-8 bytes, as bytes.ToValidUTF8
// would), so the output is valid JSON
// and valid UTF-8 whatever s holds. It is the one JSON string escaper of
// Weir: every JSON writer (payload codecs, parse processors, sinks, the
// parsed message view) goes through it.
func AppendJSONString(dst, s []byte) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0 // s[start:i] is still to be copied as it is
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRune(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, "\ufffd"...)
			i++
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// ValidJSON reports whether b is one JSON value, white space around it
// allowed: the same answer as encoding/json's Valid for every input
// (nesting deeper than 10,000 levels is invalid, bytes that are not
// UTF-8 inside strings are accepted), without its state machine's call
// per byte, and without allocating for values nested less than 64 deep.
// The subscriptions ask it of every value they encode (a JSON value
// stays JSON).
func ValidJSON(b []byte) bool {
	var small [64]byte
	open := small[:0] // the containers around i: '{' or '['
	i := skipSpace(b, 0)
	for {
		// A value starts at i.
		if i >= len(b) {
			return false
		}
		switch c := b[i]; c {
		case '{', '[':
			if len(open) == maxJSONDepth {
				return false
			}
			open = append(open, c)
			i = skipSpace(b, i+1)
			if i < len(b) && b[i] == c+2 { // '}' or ']'
				open = open[:len(open)-1]
				i++
				break
			}
			if c == '{' {
				if i = jsonKey(b, i); i < 0 {
					return false
				}
			}
			continue
		case '"':
			i = jsonStringEnd(b, i+1)
		case 't':
			i = literalEnd(b, i, "true")
		case 'f':
			i = literalEnd(b, i, "false")
		case 'n':
			i = literalEnd(b, i, "null")
		default:
			if end, _, ok := ScanJSONNumber(b, i); ok {
				i = end
			} else {
				i = -1
			}
		}
		if i < 0 {
			return false
		}
		// After a value: close containers until a comma or the end.
		for {
			i = skipSpace(b, i)
			if len(open) == 0 {
				return i == len(b)
			}
			if i >= len(b) {
				return false
			}
			top := open[len(open)-1]
			if b[i] == top+2 {
				open = open[:len(open)-1]
				i++
				continue
			}
			if b[i] != ',' {
				return false
			}
			i = skipSpace(b, i+1)
			if top == '{' {
				if i = jsonKey(b, i); i < 0 {
					return false
				}
			}
			break
		}
	}
}

// maxJSONDepth is encoding/json's limit on nesting.
const maxJSONDepth = 10000

// jsonKey checks an object's key and colon at i, and returns where its
// value starts; -1 if they are not there.
func jsonKey(b []byte, i int) int {
	if i >= len(b) || b[i] != '"' {
		return -1
	}
	if i = jsonStringEnd(b, i+1); i < 0 {
		return -1
	}
	i = skipSpace(b, i)
	if i >= len(b) || b[i] != ':' {
		return -1
	}
	return skipSpace(b, i+1)
}

// jsonStringEnd returns the index after the closing quote of a string
// whose contents start at i; -1 if it is not a valid string.
func jsonStringEnd(b []byte, i int) int {
	for i < len(b) {
		c := b[i]
		switch {
		case c == '"':
			return i + 1
		case c == '\\':
			if i+1 >= len(b) {
				return -1
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(b) {
					return -1
				}
				for _, h := range b[i+2 : i+6] {
					if !('0' <= h && h <= '9' || 'a' <= h && h <= 'f' || 'A' <= h && h <= 'F') {
						return -1
					}
				}
				i += 6
			default:
				return -1
			}
		case c < 0x20:
			return -1
		default:
			i++
		}
	}
	return -1
}

func skipSpace(s []byte, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\n' || s[i] == '\t' || s[i] == '\r') {
		i++
	}
	return i
}

func hasLit(s []byte, i int, lit string) bool {
	return len(s)-i >= len(lit) && string(s[i:i+len(lit)]) == lit
}

// literalEnd returns the index after lit at b[i:], or -1 if it is not there.
func literalEnd(b []byte, i int, lit string) int {
	if !hasLit(b, i, lit) {
		return -1
	}
	return i + len(lit)
}

// ScanJSONNumber matches a number in strict JSON syntax at s[i:] and returns
// its end and whether it is an integer (no fraction, no exponent). A
// number followed by a character fastjson would take as part of it (it
// reads any run of digits, signs, dots and exponents) does not match:
// the Arrow scan, ValidJSON and connectors' KnownJSONObject share it.
func ScanJSONNumber(s []byte, i int) (end int, integer, ok bool) {
	j := i
	if j < len(s) && s[j] == '-' {
		j++
	}
	if j < len(s) && s[j] == '0' {
		j++
	} else if j = digits(s, j); j < 0 {
		return 0, false, false
	}
	integer = true
	if j < len(s) && s[j] == '.' {
		integer = false
		if j = digits(s, j+1); j < 0 {
			return 0, false, false
		}
	}
	if j < len(s) && (s[j] == 'e' || s[j] == 'E') {
		integer = false
		j++
		if j < len(s) && (s[j] == '+' || s[j] == '-') {
			j++
		}
		if j = digits(s, j); j < 0 {
			return 0, false, false
		}
	}
	if j < len(s) {
		switch c := s[j]; {
		case c >= '0' && c <= '9', c == '.', c == '-', c == '+', c == 'e', c == 'E':
			return 0, false, false
		}
	}
	return j, integer, true
}

// digits returns the end of the run of one or more digits at s[i:], or -1
// if there is none.
func digits(s []byte, i int) int {
	j := i
	for j < len(s) && s[j] >= '0' && s[j] <= '9' {
		j++
	}
	if j == i {
		return -1
	}
	return j
}
