package codecs

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"
)

func decodeJSON(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("not JSON: %v: %s", err, b)
	}
	return m
}

func TestLogfmt(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want map[string]any
		err  string
	}{
		{in: `level=info msg="disk full" retry`, want: map[string]any{"level": "info", "msg": "disk full", "retry": true}},
		{in: `a=1  b=  c="" d="x \"q\" \\ \n"`, want: map[string]any{"a": "1", "b": "", "c": "", "d": "x \"q\" \\ \n"}},
		{in: "\tk=v\r\n", want: map[string]any{"k": "v"}},
		{in: `path=/a=b`, want: map[string]any{"path": "/a=b"}},
		{in: `bad="unclosed`, err: `byte 4: the quoted value of "bad" is not closed`},
		{in: `=v`, err: "byte 0: a pair without a key"},
		{in: "utf8=h\xffi", want: map[string]any{"utf8": "h\ufffdi"}},
		{in: ``, want: map[string]any{}},
	} {
		out, err := AppendLogfmtJSON([]byte("prefix"), []byte(tc.in))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: err %v, want %q", tc.in, err, tc.err)
			}
			if string(out) != "prefix" {
				t.Errorf("%q: a failed parse left %q in dst", tc.in, out)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		if !bytes.HasPrefix(out, []byte("prefix")) {
			t.Fatalf("dst prefix lost: %q", out)
		}
		if got := decodeJSON(t, out[len("prefix"):]); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%q: got %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestKV(t *testing.T) {
	out, err := AppendKVJSON(nil, []byte(`user:"ann smith";id:7;flag`), KVOptions{FieldSep: ';', ValueSep: ':', TrimQuotes: true})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"user": "ann smith", "id": "7", "flag": true}
	if got := decodeJSON(t, out); !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	// Without TrimQuotes quotes are part of the value.
	out, err = AppendKVJSON(nil, []byte(`a="b"`), KVOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := decodeJSON(t, out); got["a"] != `"b"` {
		t.Errorf("got %v", got)
	}
}

func TestAppendJSONString(t *testing.T) {
	for in, want := range map[string]string{
		"plain":        `"plain"`,
		"q\"b\\":       `"q\"b\\"`,
		"\x00\x1f\n\t": `"\u0000\u001f\n\t"`,
		"é€😀":          `"é€😀"`,
		"\xc3":         `"` + "\ufffd" + `"`,
	} {
		if got := string(AppendJSONString(nil, []byte(in))); got != want {
			t.Errorf("%q: got %s, want %s", in, got, want)
		}
		var s string
		if err := json.Unmarshal(AppendJSONString(nil, []byte(in)), &s); err != nil {
			t.Errorf("%q: not a JSON string: %v", in, err)
		}
	}
}

// The first three are what util-linux logger(1) sent on this machine
// (logger --rfc5424 / --rfc3164 -n 127.0.0.1, and --sd-id zoo@123 --sd-param).
var syslogCases = []struct {
	in   string
	want map[string]any
}{
	{`<13>1 2026-11-21T18:56:42.285429+00:00 vm myapp 30098 - [timeQuality tzKnown="1" isSynced="0"] hello "world" 5424`,
		map[string]any{"facility": 1.0, "severity": 5.0, "facility_name": "user", "severity_name": "notice", "rfc": 5424.0,
			"timestamp": "2026-11-21T18:56:42.285429Z", "host": "vm", "app": "myapp", "procid": "30098",
			"structured_data": map[string]any{"timeQuality": map[string]any{"tzKnown": "1", "isSynced": "0"}},
			"message":         `hello "world" 5424`}},
	{`<13>Nov 21 18:56:42 vm myapp[30099]: hello 3164`,
		map[string]any{"facility": 1.0, "severity": 5.0, "facility_name": "user", "severity_name": "notice", "rfc": 3164.0,
			"timestamp": "2026-11-21T18:56:42Z", "host": "vm", "app": "myapp", "procid": "30099", "message": "hello 3164"}},
	{`<156>1 2026-11-21T18:56:42.289961+00:00 vm root - - [timeQuality tzKnown="1" isSynced="0"][zoo@123 tiger="hungry"] with sd`,
		map[string]any{"facility": 19.0, "severity": 4.0, "facility_name": "local3", "severity_name": "warning", "rfc": 5424.0,
			"timestamp": "2026-11-21T18:56:42.289961Z", "host": "vm", "app": "root",
			"structured_data": map[string]any{"timeQuality": map[string]any{"tzKnown": "1", "isSynced": "0"}, "zoo@123": map[string]any{"tiger": "hungry"}},
			"message":         "with sd"}},
	// RFC 5424's own examples.
	{"<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - \xef\xbb\xbf'su root' failed for lonvick on /dev/pts/8",
		map[string]any{"facility": 4.0, "severity": 2.0, "facility_name": "auth", "severity_name": "crit", "rfc": 5424.0,
			"timestamp": "2003-10-11T22:14:15.003Z", "host": "mymachine.example.com", "app": "su", "msgid": "ID47",
			"message": "'su root' failed for lonvick on /dev/pts/8"}},
	{`<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - - %% It's time to make the do-nuts.`,
		map[string]any{"facility": 20.0, "severity": 5.0, "facility_name": "local4", "severity_name": "notice", "rfc": 5424.0,
			"timestamp": "2003-08-24T12:14:15.000003Z", "host": "192.0.2.1", "app": "myproc", "procid": "8710",
			"message": "%% It's time to make the do-nuts."}},
	{`<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"][examplePriority@32473 class="high"]`,
		map[string]any{"facility": 20.0, "severity": 5.0, "facility_name": "local4", "severity_name": "notice", "rfc": 5424.0,
			"timestamp": "2003-10-11T22:14:15.003Z", "host": "mymachine.example.com", "app": "evntslog", "msgid": "ID47",
			"structured_data": map[string]any{"exampleSDID@32473": map[string]any{"iut": "3", "eventSource": "Application", "eventID": "1011"},
				"examplePriority@32473": map[string]any{"class": "high"}},
			"message": ""}},
	// Escapes in SD values, a nil value, no timestamp.
	{`<14>1 - - - - - [a@1 q="x \"y\" \] \\ \n"] m`,
		map[string]any{"facility": 1.0, "severity": 6.0, "facility_name": "user", "severity_name": "info", "rfc": 5424.0,
			"structured_data": map[string]any{"a@1": map[string]any{"q": `x "y" ] \ \n`}}, "message": "m"}},
	// RFC 3164: no hostname, a tag without pid, a December message read in January.
	{`<38>Dec 31 23:59:59 sshd: Accepted key`,
		map[string]any{"facility": 4.0, "severity": 6.0, "facility_name": "auth", "severity_name": "info", "rfc": 3164.0,
			"timestamp": "2025-12-31T23:59:59Z", "app": "sshd", "message": "Accepted key"}},
	{`<0>Nov  1 00:00:00 host kernel: panic`,
		map[string]any{"facility": 0.0, "severity": 0.0, "facility_name": "kern", "severity_name": "emerg", "rfc": 3164.0,
			"timestamp": "2026-11-01T00:00:00Z", "host": "host", "app": "kernel", "message": "panic"}},
	// No timestamp at all: the whole rest is the message (after the tag).
	{"<30>just text\n",
		map[string]any{"facility": 3.0, "severity": 6.0, "facility_name": "daemon", "severity_name": "info", "rfc": 3164.0,
			"message": "just text"}},
}

func TestSyslog(t *testing.T) {
	var m SyslogMessage
	for _, tc := range syslogCases {
		now := time.Date(2026, 11, 21, 19, 0, 0, 0, time.UTC)
		if strings.Contains(tc.in, "Dec 31") {
			now = time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC)
		}
		if err := ParseSyslog([]byte(tc.in), now, time.UTC, &m); err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		if got := decodeJSON(t, AppendSyslogJSON(nil, &m)); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%q:\n got %v\nwant %v", tc.in, got, tc.want)
		}
	}
}

func TestSyslogZone(t *testing.T) {
	loc := time.FixedZone("X", 3600)
	var m SyslogMessage
	if err := ParseSyslog([]byte(`<13>Nov 21 18:56:42 vm app: x`), time.Date(2026, 11, 21, 19, 0, 0, 0, time.UTC), loc, &m); err != nil {
		t.Fatal(err)
	}
	if want := time.Date(2026, 11, 21, 17, 56, 42, 0, time.UTC); !m.Timestamp.Equal(want) {
		t.Errorf("timestamp %v, want %v", m.Timestamp, want)
	}
}

func TestSyslogErrors(t *testing.T) {
	for in, want := range map[string]string{
		"":                           "byte 0: no <PRI>",
		"hello":                      "byte 0: no <PRI>",
		"<>x":                        "not 1 to 3 digits",
		"<192>x":                     `priority "192" is not a number from 0 to 191`,
		"<01>x":                      `priority "01"`,
		"<1a>x":                      `priority "1a"`,
		"<13>1 ":                     "ends before TIMESTAMP",
		"<13>1 yesterday h a p m -":  `TIMESTAMP "yesterday" is not RFC 3339`,
		"<13>1 - h a p":              "ends before MSGID",
		"<13>1 - h a p m":            "ends before STRUCTURED-DATA",
		"<13>1 - h a p m x":          "STRUCTURED-DATA is neither - nor [",
		"<13>1 - h a p m [id":        "element [id] is not closed",
		"<13>1 - h a p m [id k]":     `a param of [id] is not name="value"`,
		"<13>1 - h a p m [id k=v]":   "the value of k in [id] is not quoted",
		"<13>1 - h a p m [id k=\"v]": "unterminated param value",
		"<13>1 - h a p m []":         "an empty SD-ID",
		"<13>1 - h a p m [id]x":      "no space between STRUCTURED-DATA and MSG",
		"<13>1 - h  p m -":           "APP-NAME is empty",
		"<13>1 - h a\x01 p m -":      "APP-NAME has a byte that is not printable ASCII",
		"<13>1 - h " + strings.Repeat("a", 49) + " p m -": "APP-NAME is 49 bytes, at most 48",
	} {
		var m SyslogMessage
		err := ParseSyslog([]byte(in), time.Now(), nil, &m)
		var se *SyslogError
		if !errors.As(err, &se) || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err %v, want a SyslogError with %q", in, err, want)
		}
	}
}

func TestSyslogFrames(t *testing.T) {
	in := "<13>newline one\n\r\n" + // newline framing, blank lines between
		"21 <13>1 - - - - - - a\nb" + // octet counting: the frame holds a newline
		"<14>last without newline"
	f := NewSyslogFrameReader(strings.NewReader(in), 100)
	var got []string
	for {
		b, err := f.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, string(b))
	}
	want := []string{"<13>newline one", "<13>1 - - - - - - a\nb", "<14>last without newline"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}

	for in, want := range map[string]error{
		"200 <13>x":                       ErrFrameTooLarge,
		"99999999999999999999 x":          ErrFrameTooLarge,
		"<13>" + strings.Repeat("x", 300): ErrFrameTooLarge,
		"10 <13>":                         io.ErrUnexpectedEOF,
		"12x <13>":                        nil, // not a number: an error of its own
	} {
		f := NewSyslogFrameReader(strings.NewReader(in), 100)
		_, err := f.Next()
		if err == nil || (want != nil && !errors.Is(err, want)) {
			t.Errorf("%.20q: err %v, want %v", in, err, want)
		}
	}
}

func BenchmarkSyslog5424(b *testing.B) {
	in := []byte(syslogCases[2].in)
	var m SyslogMessage
	var out []byte
	now := time.Now()
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		if err := ParseSyslog(in, now, time.UTC, &m); err != nil {
			b.Fatal(err)
		}
		out = AppendSyslogJSON(out[:0], &m)
	}
}

func BenchmarkSyslog3164(b *testing.B) {
	in := []byte(syslogCases[1].in)
	var m SyslogMessage
	var out []byte
	now := time.Now()
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		if err := ParseSyslog(in, now, time.UTC, &m); err != nil {
			b.Fatal(err)
		}
		out = AppendSyslogJSON(out[:0], &m)
	}
}

func BenchmarkLogfmt(b *testing.B) {
	in := []byte(`ts=2026-11-21T18:56:42Z level=info svc=checkout msg="order placed" order_id=81723 amount=12.50 user="ann smith" took=12ms`)
	var out []byte
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if out, err = AppendLogfmtJSON(out[:0], in); err != nil {
			b.Fatal(err)
		}
	}
}
