package codecs

import (
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// The payload decoders read bytes from the network (syslog) and from any
// log line (logfmt, kv). Whatever they accept they must render as valid
// JSON; whatever they reject they reject with an error, never a panic.
// Seeds: testdata/fuzz/Fuzz{Logfmt,Syslog,SyslogFrames}/ plus the cases of
// the unit tests.

func FuzzLogfmt(f *testing.F) {
	for _, s := range []string{`level=info msg="disk full" retry`, `a="x \"q\" \\"`, `k=v=w  =x`, `q="open`, "u=\xff\xfe"} {
		f.Add([]byte(s), byte(' '), byte('='))
	}
	f.Add([]byte(`user:"ann";id:7`), byte(';'), byte(':'))
	f.Fuzz(func(t *testing.T, line []byte, fsep, vsep byte) {
		if fsep == vsep {
			return
		}
		checkJSON := func(what string, out []byte, err error) {
			if err == nil && !json.Valid(out) {
				t.Fatalf("%s of %q is not JSON: %s", what, line, out)
			}
		}
		out, err := AppendLogfmtJSON(nil, line)
		checkJSON("logfmt", out, err)
		out, err = AppendKVJSON(nil, line, KVOptions{FieldSep: fsep, ValueSep: vsep, TrimQuotes: true})
		checkJSON("kv", out, err)
	})
}

func FuzzSyslog(f *testing.F) {
	for _, c := range syslogCases {
		f.Add([]byte(c.in))
	}
	f.Add([]byte(`<13>1 - h a p m [id k="v\"]`))
	f.Add([]byte("<191>Feb 29 12:00:00 h t[: x"))
	now := time.Date(2026, 11, 21, 19, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, b []byte) {
		var m SyslogMessage
		err := ParseSyslog(b, now, time.UTC, &m)
		if err != nil {
			if _, ok := err.(*SyslogError); !ok {
				t.Fatalf("%q: error %v is not a *SyslogError", b, err)
			}
			return
		}
		if m.Facility < 0 || m.Facility > 23 || m.Severity < 0 || m.Severity > 7 {
			t.Fatalf("%q: facility %d severity %d", b, m.Facility, m.Severity)
		}
		out := AppendSyslogJSON(nil, &m)
		if !json.Valid(out) || !utf8.Valid(out) {
			t.Fatalf("%q: not JSON: %s", b, out)
		}
	})
}

func FuzzSyslogFrames(f *testing.F) {
	f.Add([]byte("<13>a\n21 <13>1 - - - - - - a\nb<14>c"))
	f.Add([]byte("5 <1>ab\n\n\r3 <1>"))
	f.Add([]byte("999999999999 x"))
	f.Fuzz(func(t *testing.T, b []byte) {
		fr := NewSyslogFrameReader(strings.NewReader(string(b)), 64)
		for i := 0; ; i++ {
			frame, err := fr.Next()
			if err != nil {
				if err != io.EOF && i > len(b) {
					t.Fatalf("%d frames from %d bytes", i, len(b))
				}
				return
			}
			if len(frame) > 64 {
				t.Fatalf("a frame of %d bytes over the limit of 64", len(frame))
			}
			if i > len(b) {
				t.Fatalf("%d frames from %d bytes", i, len(b))
			}
		}
	})
}
