package connectors

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

var testSpec = Spec{
	Name: "thing", Kind: SinkKind, Summary: "A thing for tests.", Scalar: "path",
	Fields: []Field{
		{Name: "path", Type: TypeString, Required: true, Doc: "where"},
		{Name: "count", Type: TypeInt, Default: 10},
		{Name: "ratio", Type: TypeFloat, Default: 0.5},
		{Name: "sync", Type: TypeBool},
		{Name: "every", Type: TypeDuration, Default: "1s"},
		{Name: "max", Type: TypeSize, Default: "1MiB"},
		{Name: "tags", Type: TypeStrings},
		{Name: "env", Type: TypeStringMap},
		{Name: "mode", Type: TypeString, Default: "a", Enum: []string{"a", "b"}},
		{Name: "batching", Type: TypeObject, Fields: []Field{{Name: "count", Type: TypeInt, Default: 100}}},
		{Name: "rules", Type: TypeObjects, Fields: []Field{{Name: "when", Type: TypeExpr, Required: true}}},
	},
}

func parse(t *testing.T, src string) (*Config, []ConfigError) {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(src), &doc); err != nil {
		t.Fatal(err)
	}
	return ParseConfig(&testSpec, doc.Content[0])
}

func TestParseConfigValues(t *testing.T) {
	c, errs := parse(t, `
path: /tmp/x
count: 3
sync: true
every: 7d
max: 10GiB
tags: one
env: {a: "1", b: x}
batching: {count: 5}
rules:
  - when: 'a > 1'
  - when: b
`)
	if len(errs) > 0 {
		t.Fatalf("errors: %v", errs)
	}
	if c.String("path") != "/tmp/x" || c.Int("count") != 3 || c.Float("ratio") != 0.5 || !c.Bool("sync") {
		t.Fatalf("scalars: %v %v %v %v", c.String("path"), c.Int("count"), c.Float("ratio"), c.Bool("sync"))
	}
	if c.Duration("every") != 7*24*time.Hour || c.Size("max") != 10<<30 || c.Strings("tags")[0] != "one" {
		t.Fatalf("every %v max %v tags %v", c.Duration("every"), c.Size("max"), c.Strings("tags"))
	}
	if c.StringMap("env")["b"] != "x" || c.Object("batching").Int("count") != 5 || len(c.Objects("rules")) != 2 || c.Objects("rules")[1].String("when") != "b" {
		t.Fatalf("nested: %v", c.values)
	}
	if c.String("mode") != "a" || !c.Has("path") || c.Has("mode") {
		t.Fatalf("defaults / Has")
	}
	if got := c.Keys("env"); len(got) != 2 || got[0] != "a" {
		t.Fatalf("Keys = %v", got)
	}
	// The shorthand sets the scalar field.
	c, errs = parse(t, `/var/log/x`)
	if len(errs) > 0 || c.String("path") != "/var/log/x" || c.Object("batching").Int("count") != 100 {
		t.Fatalf("shorthand: %v %v", errs, c.values)
	}
}

func TestParseConfigErrors(t *testing.T) {
	_, errs := parse(t, `
count: many
pth: x
every: soon
max: huge
mode: c
env: [a]
rules:
  - {}
  - when: 1
    then: 2
batching: {count: 1.5}
`)
	want := []string{
		`2:8: field "count" wants an integer, got "many"`,
		`3:1: unknown field "pth" of sink thing (did you mean "path"?)`,
		`4:8: field "every" wants a duration like 500ms, 30s, 12h or 7d, got "soon"`,
		`5:6: field "max" wants a size like 1048576, 512KiB or 10GiB, got "huge"`,
		`6:7: field "mode" is "c"; it must be one of a, b`,
		`7:6: field "env" wants a mapping of names to strings, got a list`,
		`9:5: item of thing.rules needs field "when"`,
		`11:5: unknown field "then" of item of thing.rules`,
		`12:19: field "count" wants an integer, got "1.5"`,
		`2:1: sink thing needs field "path" (where)`,
	}
	var got []string
	for _, e := range errs {
		got = append(got, e.Error())
	}
	if len(got) != len(want) {
		t.Fatalf("got %d errors:\n%s\nwant %d:\n%s", len(got), strings.Join(got, "\n"), len(want), strings.Join(want, "\n"))
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("error %d:\n got %s\nwant %s", i, got[i], want[i])
		}
	}
	_, errs = parse(t, `[1, 2]`)
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "wants a mapping") {
		// a list is not a scalar shorthand for a string field
		if len(errs) == 0 {
			t.Fatalf("a list config was accepted")
		}
	}
}

func TestRegistry(t *testing.T) {
	r := NewRegistry()
	ctor := func(*Config, Resources) (Sink, error) { return nil, nil }
	if err := r.RegisterSink(testSpec, ctor); err != nil {
		t.Fatal(err)
	}
	if err := r.RegisterSink(testSpec, ctor); err == nil {
		t.Fatal("a duplicate name was accepted")
	}
	if err := r.RegisterSource(Spec{Name: "thing"}, func(*Config, Resources) (Source, error) { return nil, nil }); err != nil {
		t.Fatalf("the same name of another kind: %v", err)
	}
	if names := r.Names(SinkKind); len(names) != 1 || names[0] != "thing" {
		t.Fatalf("Names = %v", names)
	}
	if _, err := r.NewSink("nope", nil, Resources{}); err == nil || !strings.Contains(err.Error(), `unknown sink "nope"`) {
		t.Fatalf("unknown sink: %v", err)
	}
	s, _ := r.Spec(SinkKind, "thing")
	b, err := json.Marshal(s.JSONSchema())
	if err != nil || !strings.Contains(string(b), `"required":["path"]`) {
		t.Fatalf("schema: %s %v", b, err)
	}
	if md := s.Markdown(); !strings.Contains(md, "| `batching.count` | int | `100` |") {
		t.Fatalf("markdown:\n%s", md)
	}
}

func TestMessageFields(t *testing.T) {
	m := &Message{Value: []byte(`{"level":"info","n":3,"http":{"status":503}}`)}
	if s := String(m.Get("level")); s != "info" {
		t.Fatalf("level = %q", s)
	}
	if m.Get("http", "status").GetInt() != 503 {
		t.Fatal("nested get")
	}
	if err := m.Set("env", m.Arena().NewString("prod")); err != nil {
		t.Fatal(err)
	}
	m.Del("n")
	buf := m.Sync(nil)
	if string(m.Value) != `{"level":"info","http":{"status":503},"env":"prod"}` || len(buf) == 0 {
		t.Fatalf("after edits: %s", m.Value)
	}
	m.Release()
	bad := &Message{Value: []byte(`not json`)}
	if _, err := bad.Fields(); err == nil {
		t.Fatal("non-JSON parsed")
	}
	arr := &Message{Value: []byte(`[1,2]`)}
	if _, err := arr.Fields(); err == nil || !strings.Contains(err.Error(), "array") {
		t.Fatalf("array: %v", err)
	}
	var we error = &WriteError{Failures: []Failure{{Index: 2, Err: context.Canceled}}}
	if !strings.Contains(we.Error(), "message 2") {
		t.Fatal(we)
	}
}

func TestSyncAppendsNewFieldsToTheOriginalBytes(t *testing.T) {
	tests := []struct {
		in   string
		set  map[string]string // key -> JSON
		want string
	}{
		{`{"a": 1 }`, map[string]string{"b": `"x"`}, `{"a": 1 ,"b":"x"}`},
		{`{}`, map[string]string{"b": `2`}, `{"b":2}`},
		{`{"a":1}`, map[string]string{"a": `3`}, `{"a":3}`},                           // an existing field: rewritten
		{`{"q\"k":1}`, map[string]string{"n\"ew": `true`}, `{"q\"k":1,"n\"ew":true}`}, // keys escaped
	}
	for _, tt := range tests {
		m := &Message{Value: []byte(tt.in)}
		for k, v := range tt.set {
			var p fastjsonParser
			x, _ := p.Parse(v)
			if err := m.Set(k, copyInto(m, x)); err != nil {
				t.Fatal(err)
			}
		}
		m.Sync(nil)
		if string(m.Value) != tt.want {
			t.Errorf("Set(%s, %v) then Sync = %s, want %s", tt.in, tt.set, m.Value, tt.want)
		}
		m.Release()
	}
}

func TestFieldReaderDoesNotTouchTheMessage(t *testing.T) {
	m := &Message{Value: []byte(`{"a":{"b":"x"},"n":2}`)}
	var r FieldReader
	if s := String(r.Get(m, "a", "b")); s != "x" {
		t.Fatalf("a.b = %q", s)
	}
	if r.Get(m, "n").GetInt() != 2 || m.Parsed() {
		t.Fatal("FieldReader parsed into the message")
	}
	other := &Message{Value: []byte(`{"n":3}`)}
	if r.Get(other, "n").GetInt() != 3 {
		t.Fatal("FieldReader kept the previous message")
	}
	if r.Get(&Message{Value: []byte(`nope`)}, "n") != nil {
		t.Fatal("a non-JSON value gave a field")
	}
}
