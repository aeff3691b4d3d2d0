package sinks

import (
	"os"
	"regexp"
	"testing"

	"github.com/weirhub/weir/connectors"
)

// TestDocListsEverySink keeps the table of doc.go in step with the
// registry: every sink registered by this package has a line, and every
// line names a registered sink.
func TestDocListsEverySink(t *testing.T) {
	b, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^//\t([a-z_]+) `).FindAllSubmatch(b, -1) {
		listed[string(m[1])] = true
	}
	reg := map[string]bool{}
	for _, name := range connectors.Default.Names(connectors.SinkKind) {
		reg[name] = true
		if !listed[name] {
			t.Errorf("doc.go does not list %q", name)
		}
	}
	for name := range listed {
		if !reg[name] {
			t.Errorf("doc.go lists %q, which is not registered", name)
		}
	}
}
