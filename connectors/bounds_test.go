package connectors

import (
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

var boundedFields = []Field{
	{Name: "count", Type: TypeInt, Default: 10, Min: 1, Max: 100, Doc: "Records."},
	{Name: "bytes", Type: TypeSize, Default: "1MiB", Min: "1KiB", Doc: "Bytes."},
	{Name: "wait", Type: TypeDuration, Default: "1s", Min: "1ms", Doc: "Wait."},
	{Name: "ratio", Type: TypeFloat, Default: 0.5, Min: 0.0, Max: 1.0, Doc: "Ratio."},
}

func TestFieldBounds(t *testing.T) {
	for _, tc := range []struct {
		yaml, err string
	}{
		{"count: 1\nbytes: 1KiB\nwait: 1ms\nratio: 1", ""},
		{"count: 100", ""},
		{"count: 0", `1:8: count: must be from 1 to 100, not 0`},
		{"count: 101", `1:8: count: must be from 1 to 100, not 101`},
		{"bytes: 512", `1:8: bytes: must be at least 1KiB, not 512`},
		{"wait: 0s", `1:7: wait: must be at least 1ms, not 0s`},
		{"ratio: 1.5", `1:8: ratio: must be from 0 to 1, not 1.5`},
	} {
		var n yaml.Node
		if err := yaml.Unmarshal([]byte(tc.yaml), &n); err != nil {
			t.Fatal(err)
		}
		_, errs := ParseFields("test", "t", boundedFields, n.Content[0])
		got := ""
		if len(errs) > 0 {
			got = errs[0].Error()
		}
		if got != tc.err {
			t.Errorf("ParseFields(%q) = %q, want %q", tc.yaml, got, tc.err)
		}
	}
	if err := CheckFields(boundedFields); err != nil {
		t.Errorf("CheckFields: %v", err)
	}
	for _, bad := range [][]Field{
		{{Name: "n", Type: TypeInt, Default: 0, Min: 1}},
		{{Name: "d", Type: TypeDuration, Min: "soon"}},
		{{Name: "o", Type: TypeObject, Fields: []Field{{Name: "s", Type: TypeSize, Max: "lots"}}}},
	} {
		if err := CheckFields(bad); err == nil {
			t.Errorf("CheckFields(%+v) = nil, want an error", bad)
		}
	}
	reg := NewRegistry()
	if err := reg.RegisterProcessor(Spec{Name: "p", Fields: []Field{{Name: "n", Type: TypeInt, Default: 0, Min: 1}}}, nil); err == nil {
		t.Error("registering a spec whose default is out of bounds succeeded")
	}
}

func TestFieldBoundsInDocs(t *testing.T) {
	s := Spec{Name: "b", Kind: ProcessorKind, Summary: "Bounded.", Fields: boundedFields}
	md := s.Markdown()
	for _, want := range []string{"Records. From 1 to 100.", "Bytes. At least 1KiB.", "Wait. At least 1ms."} {
		if !strings.Contains(md, want) {
			t.Errorf("Markdown lacks %q:\n%s", want, md)
		}
	}
	props := s.JSONSchema()["properties"].(map[string]any)
	count := props["count"].(map[string]any)
	if count["minimum"] != 1.0 || count["maximum"] != 100.0 {
		t.Errorf("count schema %v, want minimum 1 and maximum 100", count)
	}
	size := props["bytes"].(map[string]any)["anyOf"].([]any)[0].(map[string]any)
	if size["minimum"] != 1024.0 {
		t.Errorf("bytes schema %v, want minimum 1024 on the integer form", size)
	}
}
