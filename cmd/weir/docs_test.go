package main

import (
	"os"
	"regexp"
	"testing"

	"github.com/weirhub/weir/connectors"
)

// TestPackageDocsListEveryConnector keeps the tables of sources/doc.go
// and sinks/doc.go in step with the registry: every registered source and
// sink has a line, and every line names a registered one.
func TestPackageDocsListEveryConnector(t *testing.T) {
	for file, kind := range map[string]connectors.Kind{"../../sources/doc.go": connectors.SourceKind, "../../sinks/doc.go": connectors.SinkKind} {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		listed := map[string]bool{}
		for _, m := range regexp.MustCompile(`(?m)^//\t([a-z_]+) `).FindAllSubmatch(b, -1) {
			listed[string(m[1])] = true
		}
		registered := map[string]bool{}
		for _, name := range connectors.Default.Names(kind) {
			if name == "memory" {
				continue // test components
			}
			registered[name] = true
			if !listed[name] {
				t.Errorf("%s does not list the %s %q", file, kind, name)
			}
		}
		for name := range listed {
			if !registered[name] {
				t.Errorf("%s lists %q, which is not a registered %s", file, name, kind)
			}
		}
	}
}
