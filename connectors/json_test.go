package connectors

import (
	"encoding/json"
	"math"
	"testing"
	"unicode/utf8"
)

// TestInvalidUTF8BecomesValidJSON: a JSON record whose strings hold bytes
// that are not UTF-8 (a Latin-1 log line) or characters fastjson would
// quote the Go way comes out of the parsed view as valid JSON and valid
// UTF-8, left as it came or edited (issue 18, item 8: 200 such NDJSON
// lines were all rejected by Python's json).
func TestInvalidUTF8BecomesValidJSON(t *testing.T) {
	in := "{\"msg\":\"caf\xe9 \xff\",\"ctl\":\"q\\\"\\u0007\\u000b\",\"n\":1.5,\"a\":[\"\xfe\",true,null]}"
	valid := func(what string, b []byte) {
		t.Helper()
		if !utf8.Valid(b) || !json.Valid(b) {
			t.Errorf("%s = %q: not valid UTF-8 JSON", what, b)
		}
	}
	m := &Message{Value: []byte(in)}
	if _, err := m.Fields(); err != nil {
		t.Fatal(err)
	}
	m.Sync(nil)
	valid("the parsed value, unedited", m.Value)
	m.Set("added", m.Arena().NewString("x\xe9"))
	m.Sync(nil)
	valid("the value with a new field", m.Value)
	m.Del("n")
	m.Sync(nil)
	out := m.Value
	valid("the value rewritten", out)
	var got map[string]any
	json.Unmarshal(out, &got)
	if got["msg"] != "caf\uFFFD \uFFFD" || got["ctl"] != "q\"\a\v" || got["added"] != "x\uFFFD" {
		t.Errorf("rewritten value %s", out)
	}
	if s := String(m.Get("a")); !utf8.ValidString(s) || !json.Valid([]byte(s)) {
		t.Errorf("String of an array = %q", s)
	}
	// A value that is not JSON is left alone (it goes to dead letters as
	// it came).
	bad := &Message{Value: []byte("caf\xe9")}
	if _, err := bad.Fields(); err == nil || string(bad.Value) != "caf\xe9" {
		t.Errorf("Fields of a Latin-1 line: %v, value now %q", err, bad.Value)
	}
}

// TestKnownJSONObject: Sync marks the values it checked as JSON objects, so
// that sinks skip validating them again, and only values that are valid:
// fastjson's parser takes numbers and strings that JSON does not (NaN,
// 01, 1.2.3, control characters, any escape), which must stay unknown.
func TestKnownJSONObject(t *testing.T) {
	for _, tt := range []struct {
		in        string
		want      bool
		rewritten bool // known once written again from the parsed view
	}{
		{`{"ts":"2026-11-21T00:00:00.000Z","level":"info","status":200,"latency_ms":12.5,"ok":true,"user":null}`, true, false},
		{`{"a":[1,-2.5e+3,0,0.5,1E-7,true,false,null,{"b":"c"},[]],"e":{}}`, true, false},
		{`{ "a" : 1 , "b" : [ 2 ] }`, true, false},
		{`{"a":NaN}`, false, false},
		{`{"a":nan}`, false, false},
		{`{"a":-Inf}`, false, false},
		{`{"a":01}`, false, false},
		{`{"a":1.2.3}`, false, false},
		{`{"a":+1}`, false, false},
		{`{"a":1e}`, false, false},
		{`{"a":1.}`, false, false},
		{`{"a":1e5e5}`, false, false},
		{"{\"a\":\"x\ty\"}", false, false}, // a raw tab in a string
		{`{"a":"\q"}`, false, false},       // a bad escape
		{`{"a":"x\"y"}`, false, false},     // valid, but escapes are left to full validation
		{"{\n\"a\":1}", false, true},       // valid, but only spaces are taken as whitespace
		{"{\"k\x01\":1}", false, false},    // a control character in a key
	} {
		for _, edit := range []string{"none", "append", "rewrite"} {
			m := &Message{Value: []byte(tt.in)}
			if _, err := m.Fields(); err != nil {
				t.Fatalf("%s: %v", tt.in, err)
			}
			switch edit {
			case "append":
				m.Set("env", m.Arena().NewString("prod"))
			case "rewrite":
				m.Del("zz")
			}
			m.Sync(nil)
			m.Release()
			got := m.KnownJSONObject()
			if got && !json.Valid(m.Value) {
				t.Errorf("%s (%s): known as a JSON object, but %q is not valid JSON", tt.in, edit, m.Value)
			}
			if want := tt.want || edit == "rewrite" && tt.rewritten; got != want {
				t.Errorf("%s (%s): KnownJSONObject = %v, want %v", tt.in, edit, got, want)
			}
		}
	}

	m := &Message{Value: []byte(`{"a":1}`)}
	if m.KnownJSONObject() {
		t.Error("a value never parsed is known")
	}
	m.Fields()
	m.Sync(nil)
	if !m.KnownJSONObject() {
		t.Fatal("a parsed object is not known")
	}
	m.Value = []byte(`{"a":1}`)
	if m.KnownJSONObject() {
		t.Error("a replaced value is still known")
	}
	m = &Message{Value: []byte(`{"a":1}`)}
	m.Fields()
	m.Set("f", m.Arena().NewNumberFloat64(math.NaN()))
	m.Sync(nil)
	if m.KnownJSONObject() {
		t.Errorf("%s with a NaN field is known", m.Value)
	}
}

// FuzzKnownJSONObject: a value Sync marks as known is valid JSON.
func FuzzKnownJSONObject(f *testing.F) {
	f.Add(`{"a":1,"b":[true,null,"x"]}`)
	f.Add(`{"a":01}`)
	f.Add(`{"a":-0.5e+2}`)
	f.Fuzz(func(t *testing.T, in string) {
		m := &Message{Value: []byte(in)}
		if _, err := m.Fields(); err != nil {
			return
		}
		m.Sync(nil)
		if m.KnownJSONObject() && !json.Valid(m.Value) {
			t.Fatalf("%q: known as a JSON object, but not valid JSON", in)
		}
		m.Set("added", m.Arena().NewString("v"))
		m.Sync(nil)
		if m.KnownJSONObject() && !json.Valid(m.Value) {
			t.Fatalf("%q: known as a JSON object, but %q is not valid JSON", in, m.Value)
		}
	})
}
