package codecs

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"
)

// SyslogMessage is a parsed syslog message. Its byte slices alias the
// input of ParseSyslog.
type SyslogMessage struct {
	RFC                int // 3164 or 5424
	Priority           int
	Facility, Severity int
	Version            int // 1 for RFC 5424, 0 for RFC 3164
	Timestamp          time.Time
	HasTimestamp       bool
	Hostname           []byte
	AppName            []byte
	ProcID             []byte
	MsgID              []byte
	StructuredData     []SDElement
	Message            []byte
}

// SDElement is one [ID name="value" ...] element of RFC 5424 structured
// data.
type SDElement struct {
	ID     []byte
	Params []SDParam
}

// SDParam is one name="value" of an SDElement; Value is unescaped.
type SDParam struct {
	Name, Value []byte
}

// SyslogError is a malformed message: what is wrong and at which byte.
type SyslogError struct {
	Pos    int
	Reason string
}

func (e *SyslogError) Error() string { return fmt.Sprintf("syslog: byte %d: %s", e.Pos, e.Reason) }

func syslogErr(pos int, format string, args ...any) error {
	return &SyslogError{Pos: pos, Reason: fmt.Sprintf(format, args...)}
}

// ParseSyslog parses an RFC 5424 or RFC 3164 message into m (reusing its
// slices). RFC 3164 timestamps carry no year and often no zone: the year is
// now's (December messages read in January belong to the year before) and
// the zone loc. A message without a <PRI> header, with a priority over 191,
// or with broken RFC 5424 fields is an error saying where.
func ParseSyslog(b []byte, now time.Time, loc *time.Location, m *SyslogMessage) error {
	sd := m.StructuredData[:0]
	*m = SyslogMessage{StructuredData: sd}
	if loc == nil {
		loc = time.UTC
	}
	if len(b) < 3 || b[0] != '<' {
		return syslogErr(0, "no <PRI> at the start")
	}
	end := bytes.IndexByte(b[:min(len(b), 5)], '>')
	if end < 2 {
		return syslogErr(1, "the <PRI> is not 1 to 3 digits closed by '>'")
	}
	pri, err := strconv.Atoi(string(b[1:end]))
	if err != nil || pri < 0 || pri > 191 || (end > 2 && b[1] == '0') {
		return syslogErr(1, "priority %q is not a number from 0 to 191", b[1:end])
	}
	m.Priority, m.Facility, m.Severity = pri, pri/8, pri%8
	p := end + 1
	if len(b) > p+1 && b[p] == '1' && b[p+1] == ' ' {
		return parse5424(b, p+2, m)
	}
	return parse3164(b, p, now, loc, m)
}

// field5424 reads a space-terminated header field at p.
func field5424(b []byte, p int, name string, maxLen int) ([]byte, int, error) {
	if p >= len(b) {
		return nil, p, syslogErr(p, "the message ends before %s", name)
	}
	sp := bytes.IndexByte(b[p:], ' ')
	if sp < 0 {
		sp = len(b) - p
	}
	v := b[p : p+sp]
	if len(v) == 0 {
		return nil, p, syslogErr(p, "%s is empty (use - for none)", name)
	}
	if len(v) > maxLen {
		return nil, p, syslogErr(p, "%s is %d bytes, at most %d", name, len(v), maxLen)
	}
	for i, c := range v {
		if c < 33 || c > 126 {
			return nil, p, syslogErr(p+i, "%s has a byte that is not printable ASCII", name)
		}
	}
	next := p + sp
	if next < len(b) {
		next++
	}
	if len(v) == 1 && v[0] == '-' {
		return nil, next, nil
	}
	return v, next, nil
}

func parse5424(b []byte, p int, m *SyslogMessage) error {
	m.RFC, m.Version = 5424, 1
	ts, p2, err := field5424(b, p, "TIMESTAMP", 48)
	if err != nil {
		return err
	}
	if ts != nil {
		t, err := time.Parse(time.RFC3339Nano, string(ts))
		if err != nil {
			return syslogErr(p, "TIMESTAMP %q is not RFC 3339", ts)
		}
		m.Timestamp, m.HasTimestamp = t, true
	}
	p = p2
	if m.Hostname, p, err = field5424(b, p, "HOSTNAME", 255); err != nil {
		return err
	}
	if m.AppName, p, err = field5424(b, p, "APP-NAME", 48); err != nil {
		return err
	}
	if m.ProcID, p, err = field5424(b, p, "PROCID", 128); err != nil {
		return err
	}
	if m.MsgID, p, err = field5424(b, p, "MSGID", 32); err != nil {
		return err
	}
	if p >= len(b) {
		return syslogErr(p, "the message ends before STRUCTURED-DATA")
	}
	if b[p] == '-' {
		p++
	} else {
		if b[p] != '[' {
			return syslogErr(p, "STRUCTURED-DATA is neither - nor [")
		}
		if p, err = parseSD(b, p, m); err != nil {
			return err
		}
	}
	if p < len(b) {
		if b[p] != ' ' {
			return syslogErr(p, "no space between STRUCTURED-DATA and MSG")
		}
		p++
	}
	msg := b[p:]
	msg = bytes.TrimPrefix(msg, []byte("\xef\xbb\xbf")) // the BOM of a UTF-8 MSG
	m.Message = trimEOL(msg)
	return nil
}

func parseSD(b []byte, p int, m *SyslogMessage) (int, error) {
	for p < len(b) && b[p] == '[' {
		p++
		start := p
		for p < len(b) && b[p] != ' ' && b[p] != ']' {
			if b[p] == '=' || b[p] == '"' {
				return p, syslogErr(p, "SD-ID has %q", b[p])
			}
			p++
		}
		if p == start {
			return p, syslogErr(p, "an empty SD-ID")
		}
		el := SDElement{ID: b[start:p]}
		if k := len(m.StructuredData); k < cap(m.StructuredData) {
			el.Params = m.StructuredData[:k+1][k].Params[:0] // reuse the last call's
		}
		for p < len(b) && b[p] == ' ' {
			p++
			ns := p
			for p < len(b) && b[p] != '=' && b[p] != ' ' && b[p] != ']' {
				p++
			}
			if p >= len(b) || b[p] != '=' || p == ns {
				return p, syslogErr(p, "a param of [%s] is not name=\"value\"", el.ID)
			}
			name := b[ns:p]
			p++
			if p >= len(b) || b[p] != '"' {
				return p, syslogErr(p, "the value of %s in [%s] is not quoted", name, el.ID)
			}
			p++
			vs := p
			escaped := false
			for p < len(b) && b[p] != '"' {
				if b[p] == '\\' && p+1 < len(b) {
					escaped = true
					p++
				}
				p++
			}
			if p >= len(b) {
				return p, syslogErr(vs, "unterminated param value of %s in [%s]", name, el.ID)
			}
			val := b[vs:p]
			if escaped {
				val = unescapeSD(val)
			}
			p++
			el.Params = append(el.Params, SDParam{Name: name, Value: val})
		}
		if p >= len(b) || b[p] != ']' {
			return p, syslogErr(p, "element [%s] is not closed by ]", el.ID)
		}
		p++
		m.StructuredData = append(m.StructuredData, el)
	}
	return p, nil
}

// unescapeSD removes the backslash of \" \\ \] (others are kept, as the RFC
// says).
func unescapeSD(v []byte) []byte {
	out := make([]byte, 0, len(v))
	for i := 0; i < len(v); i++ {
		if v[i] == '\\' && i+1 < len(v) && (v[i+1] == '"' || v[i+1] == '\\' || v[i+1] == ']') {
			i++
		}
		out = append(out, v[i])
	}
	return out
}

var months = [...]string{"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"}

func parse3164(b []byte, p int, now time.Time, loc *time.Location, m *SyslogMessage) error {
	m.RFC = 3164
	rest := b[p:]
	// "Mmm dd hh:mm:ss " (day space-padded)
	if len(rest) >= 16 && rest[3] == ' ' && rest[6] == ' ' && rest[9] == ':' && rest[12] == ':' && rest[15] == ' ' {
		mon := -1
		for i, name := range months {
			if string(rest[:3]) == name {
				mon = i
			}
		}
		day, derr := strconv.Atoi(string(bytes.TrimSpace(rest[4:6])))
		hh, herr := strconv.Atoi(string(rest[7:9]))
		mm, merr := strconv.Atoi(string(rest[10:12]))
		ss, serr := strconv.Atoi(string(rest[13:15]))
		if mon >= 0 && derr == nil && herr == nil && merr == nil && serr == nil && day >= 1 && day <= 31 && hh < 24 && mm < 60 && ss < 61 {
			year := now.In(loc).Year()
			t := time.Date(year, time.Month(mon+1), day, hh, mm, ss, 0, loc)
			if t.After(now.Add(31 * 24 * time.Hour)) { // a December message read in January
				t = t.AddDate(-1, 0, 0)
			}
			m.Timestamp, m.HasTimestamp = t, true
			p += 16
		}
	} else if sp := bytes.IndexByte(rest, ' '); sp >= 19 && sp <= 35 && rest[4] == '-' && rest[10] == 'T' {
		// Some daemons send an ISO timestamp instead.
		if t, err := time.Parse(time.RFC3339Nano, string(rest[:sp])); err == nil {
			m.Timestamp, m.HasTimestamp = t, true
			p += sp + 1
		}
	}
	rest = b[p:]
	// HOSTNAME, unless the next word is already the tag ("app[12]:" or
	// "app:").
	if sp := bytes.IndexByte(rest, ' '); sp > 0 && m.HasTimestamp {
		word := rest[:sp]
		if word[len(word)-1] != ':' && bytes.IndexByte(word, '[') < 0 {
			m.Hostname = word
			p += sp + 1
			rest = b[p:]
		}
	}
	// TAG[PID]: MSG
	tagEnd := -1
	for i, c := range rest {
		if c == ':' || c == '[' || c == ' ' {
			tagEnd = i
			break
		}
		if i >= 48 {
			break
		}
	}
	if tagEnd > 0 && (rest[tagEnd] == ':' || rest[tagEnd] == '[') {
		m.AppName = rest[:tagEnd]
		i := tagEnd
		if rest[i] == '[' {
			if close := bytes.IndexByte(rest[i:], ']'); close > 0 {
				m.ProcID = rest[i+1 : i+close]
				i += close + 1
			}
		}
		if i < len(rest) && rest[i] == ':' {
			i++
		}
		if i < len(rest) && rest[i] == ' ' {
			i++
		}
		rest = rest[i:]
	}
	m.Message = trimEOL(rest)
	return nil
}

func trimEOL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r' || b[len(b)-1] == 0) {
		b = b[:len(b)-1]
	}
	return b
}

var facilityNames = [...]string{"kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron",
	"authpriv", "ftp", "ntp", "security", "console", "clock", "local0", "local1", "local2", "local3", "local4",
	"local5", "local6", "local7"}

var severityNames = [...]string{"emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"}

// AppendSyslogJSON appends m as a JSON object: facility, severity and their
// names, host, app, procid, msgid, structured_data (an object of objects),
// message, timestamp (RFC 3339, UTC) and rfc. Absent fields are left out.
func AppendSyslogJSON(dst []byte, m *SyslogMessage) []byte {
	dst = append(dst, `{"facility":`...)
	dst = strconv.AppendInt(dst, int64(m.Facility), 10)
	dst = append(dst, `,"severity":`...)
	dst = strconv.AppendInt(dst, int64(m.Severity), 10)
	dst = append(dst, `,"facility_name":"`...)
	dst = append(dst, facilityNames[m.Facility]...)
	dst = append(dst, `","severity_name":"`...)
	dst = append(dst, severityNames[m.Severity]...)
	dst = append(dst, `","rfc":`...)
	dst = strconv.AppendInt(dst, int64(m.RFC), 10)
	if m.HasTimestamp {
		dst = append(dst, `,"timestamp":"`...)
		dst = m.Timestamp.UTC().AppendFormat(dst, time.RFC3339Nano)
		dst = append(dst, '"')
	}
	dst = appendJSONField(dst, "host", m.Hostname)
	dst = appendJSONField(dst, "app", m.AppName)
	dst = appendJSONField(dst, "procid", m.ProcID)
	dst = appendJSONField(dst, "msgid", m.MsgID)
	if len(m.StructuredData) > 0 {
		dst = append(dst, `,"structured_data":{`...)
		for i, el := range m.StructuredData {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = AppendJSONString(dst, el.ID)
			dst = append(dst, ':', '{')
			for j, prm := range el.Params {
				if j > 0 {
					dst = append(dst, ',')
				}
				dst = AppendJSONString(dst, prm.Name)
				dst = append(dst, ':')
				dst = AppendJSONString(dst, prm.Value)
			}
			dst = append(dst, '}')
		}
		dst = append(dst, '}')
	}
	dst = append(dst, `,"message":`...)
	dst = AppendJSONString(dst, m.Message)
	return append(dst, '}')
}

// appendJSONField appends ,"key":"v" unless v is nil (an absent field).
func appendJSONField(dst []byte, key string, v []byte) []byte {
	if v == nil {
		return dst
	}
	dst = append(dst, ',', '"')
	dst = append(dst, key...)
	dst = append(dst, '"', ':')
	return AppendJSONString(dst, v)
}

// ErrFrameTooLarge is returned by SyslogFrameReader for a frame over its
// limit.
var ErrFrameTooLarge = errors.New("codecs: syslog frame too large")

// SyslogFrameReader splits a syslog stream (TCP) into messages, frame by
// frame: octet counting ("123 <PRI>...", RFC 6587) when a frame starts with
// a digit, newline framing otherwise. A frame is valid until the next call.
type SyslogFrameReader struct {
	r   *bufio.Reader
	max int
	buf []byte
}

// NewSyslogFrameReader reads frames of at most maxFrame bytes from r.
func NewSyslogFrameReader(r io.Reader, maxFrame int) *SyslogFrameReader {
	if maxFrame <= 0 {
		maxFrame = 64 << 10
	}
	return &SyslogFrameReader{r: bufio.NewReaderSize(r, 64<<10), max: maxFrame}
}

// Next returns the next frame, or io.EOF at a clean end. A frame over the
// limit is an error wrapping ErrFrameTooLarge (the stream cannot be
// resynchronised after it: close the connection).
func (f *SyslogFrameReader) Next() ([]byte, error) {
	for {
		c, err := f.r.ReadByte()
		if err != nil {
			return nil, err
		}
		if c == '\n' || c == '\r' {
			continue // empty lines between frames
		}
		if c >= '1' && c <= '9' {
			n := int(c - '0')
			for {
				d, err := f.r.ReadByte()
				if err != nil {
					return nil, io.ErrUnexpectedEOF
				}
				if d == ' ' {
					break
				}
				if d < '0' || d > '9' {
					return nil, fmt.Errorf("codecs: syslog octet count is not a number (byte %q)", d)
				}
				if n = n*10 + int(d-'0'); n > f.max {
					return nil, fmt.Errorf("%w: an octet count over the limit of %d bytes", ErrFrameTooLarge, f.max)
				}
			}
			if n > f.max {
				return nil, fmt.Errorf("%w: %d bytes, the limit is %d", ErrFrameTooLarge, n, f.max)
			}
			if cap(f.buf) < n {
				f.buf = make([]byte, n)
			}
			f.buf = f.buf[:n]
			if _, err := io.ReadFull(f.r, f.buf); err != nil {
				return nil, io.ErrUnexpectedEOF
			}
			return f.buf, nil
		}
		f.buf = append(f.buf[:0], c)
		for {
			line, err := f.r.ReadSlice('\n')
			f.buf = append(f.buf, line...)
			if len(f.buf) > f.max {
				return nil, fmt.Errorf("%w: over %d bytes without a newline", ErrFrameTooLarge, f.max)
			}
			if err == nil {
				return trimEOL(f.buf), nil
			}
			if err == bufio.ErrBufferFull {
				continue
			}
			if err == io.EOF && len(f.buf) > 0 {
				return trimEOL(f.buf), nil
			}
			return nil, err
		}
	}
}
