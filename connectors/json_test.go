package connectors

import (
	"encoding/json"
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
