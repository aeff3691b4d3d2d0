package sinks

import (
	"github.com/weirhub/weir/connectors"

	"encoding/json"
	"strings"
	"testing"
)

func TestIsJSONObject(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{`{}`, true},
		{" \t\r\n{ } \n", true},
		{`{"a":1,"b":[true,false,null,-0.5e+10,"x\"\\\/\b\f\n\r\t\u00e9"],"c":{"d":{}}}`, true},
		{"{\"a\":\"é ☃ \xff\"}", true}, // bytes of strings are not checked for UTF-8
		{`{"a":1E3,"b":0,"c":-12.25E-2}`, true},
		{``, false},
		{`[]`, false},
		{`"x"`, false},
		{`{`, false},
		{`{"a"}`, false},
		{`{"a":}`, false},
		{`{"a":1,}`, false},
		{`{,}`, false},
		{`{"a":1}{}`, false},
		{`{"a":1} x`, false},
		{`{a:1}`, false},
		{`{"a":01}`, false},
		{`{"a":1.}`, false},
		{`{"a":.5}`, false},
		{`{"a":1e}`, false},
		{`{"a":-}`, false},
		{`{"a":tru}`, false},
		{`{"a":nul}`, false},
		{`{"a":"\x"}`, false},
		{`{"a":"\u12"}`, false},
		{`{"a":"\u12g4"}`, false},
		{"{\"a\":\"tab\there\"}", false},
		{`{"a":"unterminated}`, false},
		{`{"a":[1,]}`, false},
		{`{"a":[1 2]}`, false},
		{`{"a":NaN}`, false},
		{`{"a":1}` + "\x00", false},
		{strings.Repeat(`{"a":`, 500) + "1" + strings.Repeat("}", 500), true},
	}
	for _, tt := range tests {
		if got := isJSONObject([]byte(tt.in)); got != tt.want {
			t.Errorf("isJSONObject(%.60q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func BenchmarkIsJSONObject(b *testing.B) {
	recs := accessRecords(1000)
	size := 0
	for _, r := range recs {
		size += len(r)
	}
	b.Run("isJSONObject", func(b *testing.B) {
		b.SetBytes(int64(size / len(recs)))
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if !isJSONObject(recs[i%len(recs)]) {
				b.Fatal("invalid")
			}
		}
	})
	// The records as a pipeline hands them over after parse and set
	// (Sync, Release): only their tokens are checked.
	msgs := make([]*connectors.Message, len(recs))
	for i, r := range recs {
		m := &connectors.Message{Value: r}
		if _, err := m.Fields(); err != nil {
			b.Fatal(err)
		}
		m.Set("env", m.Arena().NewString("prod"))
		m.Sync(nil)
		m.Release()
		msgs[i] = m
	}
	b.Run("isObjectValue/synced", func(b *testing.B) {
		b.SetBytes(int64(size / len(recs)))
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if !isObjectValue(msgs[i%len(msgs)]) {
				b.Fatal("invalid")
			}
		}
	})
	b.Run("encoding/json", func(b *testing.B) {
		b.SetBytes(int64(size / len(recs)))
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if !json.Valid(recs[i%len(recs)]) {
				b.Fatal("invalid")
			}
		}
	})
}
