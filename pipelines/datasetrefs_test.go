package pipelines

import (
	"strings"
	"testing"

	"github.com/weirhub/weir/connectors"
)

// TestDatasetFieldsChecked checks datasets named in component fields marked
// Dataset (like the dataset source's from and the dataset sink's dataset):
// undeclared ones are reported like a pipeline's from, templates are left
// alone, and a component reading what it writes is a loop.
func TestDatasetFieldsChecked(t *testing.T) {
	reg := connectors.NewRegistry()
	noSource := func(*connectors.Config, connectors.Resources) (connectors.Source, error) { return nil, nil }
	noSink := func(*connectors.Config, connectors.Resources) (connectors.Sink, error) { return nil, nil }
	if err := reg.RegisterSource(connectors.Spec{Name: "copy", Scalar: "from", Fields: []connectors.Field{
		{Name: "from", Type: connectors.TypeStrings, Required: true, Dataset: true}}}, noSource); err != nil {
		t.Fatal(err)
	}
	if err := reg.RegisterSink(connectors.Spec{Name: "into", Scalar: "dataset", Fields: []connectors.Field{
		{Name: "dataset", Type: connectors.TypeString, Required: true, Dataset: true}}}, noSink); err != nil {
		t.Fatal(err)
	}
	src := `datasets:
  a: {}
  b: {}
sources:
  ok: {copy: a, to: b}
  typo: {copy: [a, bb], to: b}
  loop: {copy: {from: [b]}, to: b}
pipelines:
  p:
    from: a
    to:
      - into: b
      - into: 'b-{{ .field "x" }}'
      - into: nope
      - into: a
`
	_, err := Load("f.yaml", []byte(src), LoadOptions{Registry: reg, Env: func(string) (string, bool) { return "", false }})
	want := []string{
		`f.yaml:6:16: source typo reads dataset "bb", which is not declared under datasets (did you mean "b"?)`,
		`f.yaml:7:23: source loop reads dataset "b", which it also writes to: every record would come back`,
		`f.yaml:14:15: sink into-3 of pipeline p writes to dataset "nope", which is not declared under datasets`,
		`f.yaml:15:15: sink into-4 of pipeline p writes to dataset "a", which the pipeline reads: every record would come back`,
	}
	if err == nil {
		t.Fatal("Load found no problem")
	}
	got := err.Error()
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("problems:\n%s\nlack %s", got, w)
		}
	}
	if n := strings.Count(got, "\n") + 1; n != len(want) {
		t.Errorf("%d problems, want %d:\n%s", n, len(want), got)
	}
}
