package sources

import (
	"context"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/weirhub/weir/connectors"
)

// parseConfig decodes src against spec, failing the test on any problem.
func parseConfig(t testing.TB, spec *connectors.Spec, src string) *connectors.Config {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(src), &doc); err != nil {
		t.Fatalf("yaml %q: %v", src, err)
	}
	var node *yaml.Node
	if len(doc.Content) > 0 {
		node = doc.Content[0]
	}
	c, errs := connectors.ParseConfig(spec, node)
	if len(errs) > 0 {
		t.Fatalf("ParseConfig(%s, %q) = %v", spec.Name, src, errs)
	}
	return c
}

// findComponent finds the value of the first mapping key named name.
func findComponent(n *yaml.Node, name string) *yaml.Node {
	if n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == name {
				return n.Content[i+1]
			}
		}
	}
	for _, c := range n.Content {
		if f := findComponent(c, name); f != nil {
			return f
		}
	}
	return nil
}

// TestSpecs checks every source of the package is registered and that
// its example decodes and builds.
func TestSpecs(t *testing.T) {
	ctors := map[string]connectors.SourceConstructor{"stdin": newStdin, "generate": newGenerate, "http": newHTTP}
	for _, spec := range []*connectors.Spec{&stdinSpec, &generateSpec, &httpSpec} {
		t.Run(spec.Name, func(t *testing.T) {
			if _, ok := connectors.Default.Spec(connectors.SourceKind, spec.Name); !ok {
				t.Fatalf("source %q is not registered", spec.Name)
			}
			if spec.Summary == "" || spec.Example == "" {
				t.Fatalf("source %q lacks a summary or an example", spec.Name)
			}
			for _, f := range spec.Fields {
				if f.Doc == "" {
					t.Errorf("field %q has no doc", f.Name)
				}
			}
			var doc yaml.Node
			if err := yaml.Unmarshal([]byte(spec.Example), &doc); err != nil {
				t.Fatalf("example: %v", err)
			}
			node := findComponent(&doc, spec.Name)
			if node == nil {
				t.Fatalf("example does not use %s", spec.Name)
			}
			conf, errs := connectors.ParseConfig(spec, node)
			if len(errs) > 0 {
				t.Fatalf("example: %v", errs)
			}
			s, err := ctors[spec.Name](conf, connectors.Resources{})
			if err != nil {
				t.Fatalf("example: %v", err)
			}
			if err := s.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
		})
	}
}
