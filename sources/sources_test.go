package sources

import (
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
