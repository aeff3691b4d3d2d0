package main

import (
	"context"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/weirhub/weir/connectors"
)

// TestComponentSpecs checks every component linked into weir: its summary,
// doc, example and every field's doc are written, and its example decodes
// and builds. One test over the registry, so a new connector is covered
// by registering it.
func TestComponentSpecs(t *testing.T) {
	kinds := map[connectors.Kind]string{connectors.SourceKind: "source", connectors.ProcessorKind: "processor", connectors.SinkKind: "sink"}
	for kind, what := range kinds {
		specs := connectors.Default.Specs(kind)
		if len(specs) == 0 {
			t.Fatalf("no %ss registered", what)
		}
		for _, spec := range specs {
			t.Run(what+"/"+spec.Name, func(t *testing.T) {
				if spec.Summary == "" || spec.Example == "" {
					t.Fatalf("%s %q lacks a summary or an example", what, spec.Name)
				}
				if spec.Doc == "" && kind != connectors.ProcessorKind {
					t.Fatalf("%s %q lacks a doc", what, spec.Name)
				}
				var check func(prefix string, fs []connectors.Field)
				check = func(prefix string, fs []connectors.Field) {
					for _, f := range fs {
						if f.Doc == "" {
							t.Errorf("field %s%s has no doc", prefix, f.Name)
						}
						check(prefix+f.Name+".", f.Fields)
					}
				}
				check("", spec.Fields)
				var doc yaml.Node
				if err := yaml.Unmarshal([]byte(spec.Example), &doc); err != nil {
					t.Fatalf("example: %v", err)
				}
				node := findComponent(&doc, spec.Name)
				if node == nil {
					t.Fatalf("the example does not use %s", spec.Name)
				}
				conf, errs := connectors.ParseConfig(&spec, node)
				if len(errs) > 0 {
					t.Fatalf("example: %v", errs)
				}
				// The sinks a processor's example routes to are the pipeline's.
				res := connectors.Resources{Name: what + "s.example", StateDir: t.TempDir(), Sinks: []string{"alerts", "archive", "eu_archive"}}
				var c any
				var err error
				switch kind {
				case connectors.SourceKind:
					c, err = connectors.Default.NewSource(spec.Name, conf, res)
				case connectors.ProcessorKind:
					c, err = connectors.Default.NewProcessor(spec.Name, conf, res)
				case connectors.SinkKind:
					c, err = connectors.Default.NewSink(spec.Name, conf, res)
				}
				if err != nil {
					t.Fatalf("example: %v", err)
				}
				if cl, ok := c.(interface{ Close(context.Context) error }); ok {
					if err := cl.Close(context.Background()); err != nil {
						t.Fatal(err)
					}
				}
			})
		}
	}
}

// findComponent finds the value of the first mapping key named name; in a
// sequence item (processors: [- filter: ...]) that is the component.
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

// TestListUnknownComponent: `weir list sinks nosuch` is an error listing
// the known sinks, with the closest name as a suggestion.
func TestListUnknownComponent(t *testing.T) {
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"list", "sinks", "nosuch"}, []string{`no sink named "nosuch"`, "elasticsearch", "file", "stdout"}},
		{[]string{"list", "sinks", "fil"}, []string{`did you mean "file"?`}},
		{[]string{"list", "sources", "stdn"}, []string{`no source named "stdn"`, `did you mean "stdin"?`, "generate"}},
		{[]string{"list", "processors", "filtr"}, []string{`did you mean "filter"?`, "parse"}},
	} {
		_, err := run(t, c.args...)
		if err == nil {
			t.Errorf("weir %v: no error", c.args)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("weir %v: %q does not contain %q", c.args, err, w)
			}
		}
	}
	if out, err := run(t, "list", "sinks", "file"); err != nil || !strings.Contains(out, "file") {
		t.Errorf("weir list sinks file = %q, %v", out, err)
	}
}

// TestFieldBoundsInSpecs: the range checks of the connectors live in
// their field specs (connectors.Field Min/Max), so that `weir list` and
// the JSON Schema show them and validation comes from them (issue 17
// item 4).
func TestFieldBoundsInSpecs(t *testing.T) {
	for _, tt := range []struct {
		kind            connectors.Kind
		component, path string
		want            string
	}{
		{connectors.SourceKind, "syslog", "max_message_bytes", "at least 480B"},
		{connectors.SourceKind, "syslog", "max_connections", "at least 1"},
		{connectors.SourceKind, "syslog", "idle_timeout", "at least 1ms"},
		{connectors.SourceKind, "syslog", "batch_size", "at least 1"},
		{connectors.SourceKind, "syslog", "batch_period", "at least 1ms"},
		{connectors.SourceKind, "syslog", "max_pending", "at least 1"},
		{connectors.SourceKind, "http", "max_body_bytes", "at least 1B"},
		{connectors.SourceKind, "http", "max_pending", "at least 1"},
		{connectors.SourceKind, "http", "ack_timeout", "at least 1ms"},
		{connectors.SourceKind, "generate", "count", "at least 0"},
		{connectors.SourceKind, "generate", "duration", "at least 0s"},
		{connectors.SourceKind, "generate", "batch_size", "at least 1"},
		{connectors.SourceKind, "file", "glob_interval", "at least 1ms"},
		{connectors.SourceKind, "file", "poll_interval", "at least 1ms"},
		{connectors.SourceKind, "file", "partial_timeout", "at least 1ms"},
		{connectors.SourceKind, "file", "batch_period", "at least 1ms"},
		{connectors.SourceKind, "file", "checkpoint_interval", "at least 0s"},
		{connectors.SourceKind, "file", "close_after", "at least 0s"},
		{connectors.SourceKind, "file", "fingerprint_bytes", "from 1B to 1MiB"},
		{connectors.SourceKind, "file", "max_line_bytes", "from 1B to 1GiB"},
		{connectors.SourceKind, "file", "batch_size", "at least 1"},
		{connectors.SourceKind, "file", "max_pending", "at least 1"},
		{connectors.SourceKind, "file", "multiline.max_lines", "at least 1"},
		{connectors.SourceKind, "file", "multiline.timeout", "at least 1ms"},
		{connectors.SinkKind, "file", "max_open_files", "at least 1"},
		{connectors.SinkKind, "http", "timeout", "at least 1ms"},
		{connectors.SinkKind, "http", "max_batch_bytes", "at least 1B"},
		{connectors.SinkKind, "elasticsearch", "flush_bytes", "at least 1B"},
		{connectors.SinkKind, "elasticsearch", "workers", "at least 1"},
		{connectors.SinkKind, "elasticsearch", "timeout", "at least 1ms"},
		{connectors.ProcessorKind, "dedupe", "max_keys", "at least 1"},
	} {
		spec, ok := connectors.Default.Spec(tt.kind, tt.component)
		if !ok {
			t.Errorf("no %v %s", tt.kind, tt.component)
			continue
		}
		fields := spec.Fields
		var f *connectors.Field
		for _, name := range strings.Split(tt.path, ".") {
			f = nil
			for i := range fields {
				if fields[i].Name == name {
					f = &fields[i]
				}
			}
			if f == nil {
				break
			}
			fields = f.Fields
		}
		if f == nil {
			t.Errorf("%s has no field %s", tt.component, tt.path)
			continue
		}
		if got := f.BoundsText(); got != tt.want {
			t.Errorf("%s %s bounds %q, want %q", tt.component, tt.path, got, tt.want)
		}
	}
}
