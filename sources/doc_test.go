package sources

import (
	"os"
	"regexp"
	"testing"

	"github.com/weirhub/weir/connectors"
)

// TestDocListsEverySource keeps the table of doc.go in step with the
// registry: every source registered by this package has a line, and
// every line names a registered source.
func TestDocListsEverySource(t *testing.T) {
	checkDocTable(t, "doc.go", connectors.Default.Names(connectors.SourceKind))
}

func checkDocTable(t *testing.T, file string, registered []string) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^//\t([a-z_]+) `).FindAllSubmatch(b, -1) {
		listed[string(m[1])] = true
	}
	reg := map[string]bool{}
	for _, name := range registered {
		reg[name] = true
		if !listed[name] {
			t.Errorf("%s does not list %q", file, name)
		}
	}
	for name := range listed {
		if !reg[name] {
			t.Errorf("%s lists %q, which is not registered", file, name)
		}
	}
}
