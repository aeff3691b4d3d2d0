package lint

import (
	"encoding/json"
	"io"
	"os/exec"
	"path"
	"strings"
	"testing"
)

const module = "github.com/weirhub/weir"

// allowed lists, for each top-level package (its sub-packages share the
// rule), the Weir packages it may import. "*" allows any. A package that
// matches no rule fails the test: give it one here. sources and sinks may
// not import each other; internal/kafkaconf holds the Kafka connection
// settings their kafka connectors share with hub/kafkaclient, the one
// hub.Client over a Kafka cluster (which hub itself may not import);
// internal/objstore the object stores the parquet sink writes to.
var allowed = map[string][]string{
	"codecs":          {},
	"log":             {"codecs"},
	"hub":             {"log", "codecs", "internal/atomicfile", "internal/objstore"},
	"hub/kafka":       {"hub", "log", "codecs", "internal/auth", "internal/tlsfiles", "internal/tlstest"},
	"hub/kafkaclient": {"hub", "codecs", "internal/kafkaconf"},
	"hub/http":        {"hub", "log", "codecs", "internal/httpauth", "internal/tlsfiles", "internal/tlstest"},
	"connectors":      {"hub", "codecs"},
	"sources":         {"connectors", "hub", "hub/kafkaclient", "codecs", "internal/kafkaconf", "internal/ackq", "internal/atomicfile", "internal/httpauth", "internal/tlsfiles", "internal/tlstest"},
	"sinks":           {"connectors", "hub", "hub/kafkaclient", "codecs", "internal/kafkaconf", "internal/objstore"},
	"pipelines":       {"connectors", "hub", "hub/kafkaclient", "codecs", "internal/kafkaconf"},
	"cmd":             {"*"},
	"internal":        {"*"},
}

// never may be imported by no Weir package. (benchmarks is a module of
// its own, so the product cannot import it at all.)
var never = []string{"cmd"}

type pkg struct {
	ImportPath   string
	Imports      []string
	TestImports  []string
	XTestImports []string
}

// rel is a Weir import path relative to the module, or "" for others.
func rel(importPath string) string {
	if importPath == module {
		return "."
	}
	r, ok := strings.CutPrefix(importPath, module+"/")
	if !ok {
		return ""
	}
	return r
}

// ruleFor finds the longest rule that is the package or a parent of it.
func ruleFor(p string) (string, []string, bool) {
	for q := p; q != "." && q != ""; q = path.Dir(q) {
		if r, ok := allowed[q]; ok {
			return q, r, true
		}
	}
	return "", nil, false
}

func within(p, q string) bool { return p == q || strings.HasPrefix(p, q+"/") }

func TestImportLayers(t *testing.T) {
	out, err := exec.Command("go", "list", "-json", module+"/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	var n int
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		n++
		me := rel(p.ImportPath)
		rule, deps, found := ruleFor(me)
		if !found {
			t.Errorf("package %s has no layering rule in allowed; add one following the layering in doc.go", me)
			continue
		}
		for _, imp := range p.Imports { // production imports only; tests may reach further
			dep := rel(imp)
			if dep == "" {
				// STYLE.md: core packages import no metrics library;
				// the Prometheus adapter lives in cmd.
				if strings.HasPrefix(imp, "github.com/prometheus/") && !within(me, "cmd") {
					t.Errorf("%s imports %s: only cmd may import a metrics library", me, imp)
				}
				continue
			}
			for _, nv := range never {
				if within(dep, nv) && !within(me, nv) {
					t.Errorf("%s imports %s: nothing may import %s", me, dep, nv)
				}
			}
			if !layerAllows(rule, deps, dep) {
				t.Errorf("%s imports %s, against the layering in doc.go (it may import %v)", me, dep, deps)
			}
		}
	}
	if n == 0 {
		t.Fatal("go list found no packages")
	}
}

// layerAllows reports whether a package under rule may import dep: within
// its own tree (but not into a sub-tree with a rule of its own), or a
// package its rule permits.
func layerAllows(rule string, deps []string, dep string) bool {
	if depRule, _, _ := ruleFor(dep); depRule == rule {
		return true
	}
	return permits(deps, dep)
}

func permits(allowedDeps []string, dep string) bool {
	for _, a := range allowedDeps {
		if a == "*" || within(dep, a) {
			return true
		}
	}
	return false
}

// TestRulesCatchUpwardImports checks the checker: an upward import is
// reported, a downward one is not.
func TestRulesCatchUpwardImports(t *testing.T) {
	tests := []struct {
		from, to string
		ok       bool
	}{
		{"log", "codecs", true},
		{"codecs", "log", false},
		{"log", "hub", false},
		{"hub/kafka", "hub", true},
		{"sinks/elasticsearch", "sources", false},
		{"sinks/file", "connectors", true},
		{"pipelines", "sources/file", false},
		{"hub", "hub/kafka", false},
		{"sources/file", "sources", true},
		{"sinks", "internal/kafkaconf", true},
		{"sinks", "internal/kafkatest", false},
	}
	for _, tt := range tests {
		rule, deps, found := ruleFor(tt.from)
		if !found {
			t.Fatalf("no rule for %s", tt.from)
		}
		got := layerAllows(rule, deps, tt.to)
		if got != tt.ok {
			t.Errorf("%s -> %s allowed = %v, want %v", tt.from, tt.to, got, tt.ok)
		}
	}
}
