package sources

import (
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/weirhub/weir/connectors"
)

// parseConfig decodes src against spec, failing the test on any problem.
func parseConfig(t testing.TB, spec *connectors.Spec, src string) *connectors.Config {
	t.Helper()
	c, err := parseOrErr(t, spec, src)
	if err != nil {
		t.Fatalf("ParseConfig(%s, %q) = %v", spec.Name, src, err)
	}
	return c
}

// parseOrErr decodes src against spec like parseConfig, but returns the
// first problem the spec itself finds (a field out of its bounds) as an
// error instead of failing the test, so that tables of config errors can
// hold both kinds: the spec's and the constructor's.
func parseOrErr(t testing.TB, spec *connectors.Spec, src string) (*connectors.Config, error) {
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
		return nil, errs[0]
	}
	return c, nil
}
