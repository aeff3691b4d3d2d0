package codecs

import (
	"encoding/json"
	"strings"
	"testing"
)

// validJSONCases are inputs on which ValidJSON must answer as
// encoding/json's Valid does (the fuzz test's seeds too).
var validJSONCases = []string{
	``, ` `, `null`, ` null `, `nul`, `nulll`, `true`, `tru`, `false`, `falsey`, `0`, `-0`, `01`, `-`, `1.`, `1.5`,
	`.5`, `1e5`, `1E+5`, `1e-5`, `1e`, `1e+`, `-1.5e10`, `+1`, `123abc`, `""`, `"a"`, `"a`, `"\"`, `"\\"`, `"\/"`,
	`"\b\f\n\r\t"`, `"\u00e9"`, `"\u00E9"`, `"\u00g9"`, `"\u00"`, `"\x"`, "\"a\x01b\"", "\"a\x7fb\"", "\"\xff\xfe\"",
	"\"é\"", `[]`, `[ ]`, `[1]`, `[1,]`, `[,1]`, `[1 2]`, `[[[]]]`, `[[[]]`, `{}`, `{ }`, `{"a":1}`, `{"a" : 1 }`,
	`{"a":}`, `{"a"}`, `{a:1}`, `{"a":1,}`, `{"a":1,"b":[true,false,null,{"c":"d"}]}`, `{"a":1}}`, `{"a":1]`,
	`[1}`, `{"a":1} x`, "\t\r\n{}\n", "{}\v", `{"t":1700000000000000000,"n":12}` + strings.Repeat(" ", 60),
	`[1,2,3] [4]`, `"a" "b"`, `{"":""}`, `{"\u0000":0}`, `[-]`, `[-1,-0.0,0e0]`, `[1.e5]`,
}

func TestValidJSON(t *testing.T) {
	for _, c := range validJSONCases {
		if got, want := ValidJSON([]byte(c)), json.Valid([]byte(c)); got != want {
			t.Errorf("ValidJSON(%q) = %v, encoding/json says %v", c, got, want)
		}
	}
	// Nesting: encoding/json takes 10,000 levels, not one more.
	for _, depth := range []int{63, 64, 65, 10000, 10001} {
		for _, s := range []string{
			strings.Repeat("[", depth) + strings.Repeat("]", depth),
			strings.Repeat(`{"a":`, depth-1) + "{}" + strings.Repeat("}", depth-1),
		} {
			if got, want := ValidJSON([]byte(s)), json.Valid([]byte(s)); got != want {
				t.Errorf("ValidJSON of %d levels = %v, encoding/json says %v", depth, got, want)
			}
		}
	}
	if n := testing.AllocsPerRun(100, func() { ValidJSON([]byte(`{"a":[1,2,{"b":"c"}]}`)) }); n != 0 {
		t.Errorf("ValidJSON allocates %v times", n)
	}
}

func FuzzValidJSON(f *testing.F) {
	for _, c := range validJSONCases {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := ValidJSON(b), json.Valid(b); got != want {
			t.Fatalf("ValidJSON(%q) = %v, encoding/json says %v", b, got, want)
		}
	})
}

// BenchmarkValidJSON checks the 100-byte values of BenchmarkBroadcast
// (and a string that is not JSON) with ValidJSON and encoding/json's Valid.
func BenchmarkValidJSON(b *testing.B) {
	values := map[string][]byte{
		"object": []byte(`{"t":1700000000000000000,"n":123456}` + strings.Repeat(" ", 64)),
		"nested": []byte(`{"user":{"id":42,"name":"Ann \u00e9","tags":["a","b"],"score":-1.5e3,"ok":true}}`),
		"text":   []byte(`user 42 logged in from 10.0.0.1 at 2024-01-01T00:00:00Z, session 9f8e7d6c5b4a`),
	}
	for name, v := range values {
		b.Run(name+"/ValidJSON", func(b *testing.B) {
			b.SetBytes(int64(len(v)))
			b.ReportAllocs()
			for b.Loop() {
				ValidJSON(v)
			}
		})
		b.Run(name+"/encoding-json", func(b *testing.B) {
			b.SetBytes(int64(len(v)))
			b.ReportAllocs()
			for b.Loop() {
				json.Valid(v)
			}
		})
	}
}
