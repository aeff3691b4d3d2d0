package pipelines

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/weirhub/weir/connectors"
)

// TestCase is a unit test of a pipeline's (or a source's) processors and
// routes, run by `weir test`: given input records, the records each sink
// gets and the ones dead-lettered.
//
//	tests:
//	  drops-debug:
//	    pipeline: archive
//	    input:
//	      - '{"level":"debug"}'
//	      - {key: web-1, value: '{"level":"info"}'}
//	    output:                  # what every sink gets; or sink name -> list
//	      - '{"level":"info","env":"prod"}'
//	    dead_letters:
//	      - {value: 'not json', error: 'not a JSON object'}
type TestCase struct {
	Name        string
	Pipeline    string
	Source      string
	Input       []TestRecord
	Output      map[string][]TestRecord // sink name, or "*" for every sink
	DeadLetters []TestRecord            // Error holds a substring of the reason
	pos         pos
}

// TestRecord is a record of a test: a value, and optionally a key,
// headers and (for dead letters) part of the expected error.
type TestRecord struct {
	Key     *string
	Value   string
	Headers map[string]string
	Error   string
}

var testFields = []connectors.Field{
	{Name: "pipeline", Type: connectors.TypeString, Doc: "The pipeline whose processors and routes are tested."},
	{Name: "source", Type: connectors.TypeString, Doc: "Or the source whose processors are tested."},
	{Name: "input", Type: connectors.TypeAny, Required: true, Doc: "Records in: a value string, or {key, value, headers}."},
	{Name: "output", Type: connectors.TypeAny, Doc: "Records out: a list (every sink), or sink name to list."},
	{Name: "dead_letters", Type: connectors.TypeAny, Doc: "Records dead-lettered: {value, error} with part of the reason."},
}

var recordFields = []connectors.Field{
	{Name: "key", Type: connectors.TypeString},
	{Name: "value", Type: connectors.TypeString, Required: true},
	{Name: "headers", Type: connectors.TypeStringMap},
	{Name: "error", Type: connectors.TypeString},
}

func (l *loader) tests(n *yaml.Node, cfg *Config) []*TestCase {
	var out []*TestCase
	l.mapping(n, "test", func(k, v *yaml.Node) {
		c := l.parse("test "+k.Value, testFields, v)
		tc := &TestCase{Name: k.Value, Pipeline: c.String("pipeline"), Source: c.String("source"), pos: pos{k.Line, k.Column}}
		switch {
		case (tc.Pipeline == "") == (tc.Source == ""):
			l.errAt(k, "test %s needs pipeline: or source: (one of them)", k.Value)
		case tc.Pipeline != "" && findPipeline(cfg, tc.Pipeline) == nil:
			l.errAt(c.Node("pipeline"), "test %s: no pipeline %q", k.Value, tc.Pipeline)
		case tc.Source != "" && findSource(cfg, tc.Source) == nil:
			l.errAt(c.Node("source"), "test %s: no source %q", k.Value, tc.Source)
		}
		tc.Input = l.testRecords(c.Node("input"), "input of test "+k.Value)
		tc.DeadLetters = l.testRecords(c.Node("dead_letters"), "dead_letters of test "+k.Value)
		tc.Output = map[string][]TestRecord{}
		if o := c.Node("output"); o != nil {
			if o.Kind == yaml.MappingNode {
				l.mapping(o, "sink", func(sk, sv *yaml.Node) {
					if p := findPipeline(cfg, tc.Pipeline); p != nil && findSink(p, sk.Value) == nil {
						l.errAt(sk, "test %s: pipeline %s has no sink %q", k.Value, tc.Pipeline, sk.Value)
					}
					tc.Output[sk.Value] = l.testRecords(sv, "output of test "+k.Value)
				})
			} else {
				tc.Output["*"] = l.testRecords(o, "output of test "+k.Value)
			}
		}
		out = append(out, tc)
	})
	return out
}

func (l *loader) testRecords(n *yaml.Node, what string) []TestRecord {
	if n == nil || (n.Kind == yaml.ScalarNode && n.Tag == "!!null") {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		l.errAt(n, "%s must be a list of records", what)
		return nil
	}
	var out []TestRecord
	for _, item := range n.Content {
		if item.Kind == yaml.ScalarNode {
			out = append(out, TestRecord{Value: item.Value})
			continue
		}
		c := l.parse("record of "+what, recordFields, item)
		r := TestRecord{Value: c.String("value"), Headers: c.StringMap("headers"), Error: c.String("error")}
		if c.Has("key") {
			k := c.String("key")
			r.Key = &k
		}
		out = append(out, r)
	}
	return out
}

func findPipeline(cfg *Config, name string) *PipelineConfig {
	for _, p := range cfg.Pipelines {
		if p.Name == name {
			return p
		}
	}
	return nil
}

func findSource(cfg *Config, name string) *SourceConfig {
	for _, s := range cfg.Sources {
		if s.Name == name {
			return s
		}
	}
	return nil
}

func findSink(p *PipelineConfig, name string) *SinkConfig {
	for _, s := range p.To {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// TestResult is the outcome of one TestCase: no Failures means it passed.
type TestResult struct {
	Name     string
	Failures []string
}

// RunTests runs the file's tests with fresh processors from reg (default
// connectors.Default).
func RunTests(cfg *Config, reg *connectors.Registry) []TestResult {
	if reg == nil {
		reg = connectors.Default
	}
	var results []TestResult
	for _, tc := range cfg.Tests {
		res := TestResult{Name: tc.Name}
		fail := func(format string, args ...any) { res.Failures = append(res.Failures, fmt.Sprintf(format, args...)) }
		var procCfgs []*ProcessorConfig
		var sinks []string
		if p := findPipeline(cfg, tc.Pipeline); p != nil {
			procCfgs = p.Processors
			for _, s := range p.To {
				sinks = append(sinks, s.Name)
			}
		} else if s := findSource(cfg, tc.Source); s != nil {
			procCfgs = s.Processors
			sinks = []string{"dataset " + s.To}
		}
		var procs []namedProc
		for _, pc := range procCfgs {
			p, err := reg.NewProcessor(pc.Type, pc.Conf, connectors.Resources{Sinks: sinks})
			if err != nil {
				fail("processor %s: %v", pc.Type, err)
				continue
			}
			procs = append(procs, namedProc{name: pc.Type, Processor: p})
		}
		if len(res.Failures) > 0 {
			results = append(results, res)
			continue
		}
		batch := make([]*connectors.Message, len(tc.Input))
		for i, in := range tc.Input {
			m := &connectors.Message{Value: []byte(in.Value), Original: []byte(in.Value), Dataset: "test", Offset: int64(i)}
			if in.Key != nil {
				m.Key = []byte(*in.Key)
			}
			for k, v := range in.Headers {
				m.SetHeader(k, []byte(v))
			}
			batch[i] = m
		}
		live, failed, err := runProcessors(context.Background(), procs, batch, nil)
		if err != nil {
			fail("%v", err)
			results = append(results, res)
			continue
		}
		for _, m := range live {
			m.Sync(nil) // edits into Value; a value a processor replaced stays
			m.Value = append([]byte(nil), m.Value...)
		}
		for sink, want := range tc.Output {
			idx := -1
			for i, s := range sinks {
				if s == sink {
					idx = i
				}
			}
			var got []*connectors.Message
			for _, m := range live {
				if sink == "*" || m.Routes == 0 || (idx >= 0 && m.Routes&(1<<idx) != 0) {
					got = append(got, m)
				}
			}
			label := "output"
			if sink != "*" {
				label = "output of sink " + sink
			}
			compareRecords(label, got, nil, want, fail)
		}
		if tc.DeadLetters != nil || len(failed) > 0 {
			var got []*connectors.Message
			var reasons []string
			for _, f := range failed {
				f.m.Value = f.m.Original
				got = append(got, f.m)
				reasons = append(reasons, f.stage+": "+f.err.Error())
			}
			compareRecords("dead_letters", got, reasons, tc.DeadLetters, fail)
			for i := range min(len(failed), len(tc.DeadLetters)) {
				if w := tc.DeadLetters[i].Error; w != "" && !strings.Contains(failed[i].err.Error(), w) {
					fail("dead letter %d: reason %q does not contain %q", i+1, failed[i].err.Error(), w)
				}
			}
		}
		results = append(results, res)
	}
	return results
}

// compareRecords checks got against want; reasons, when given, say why
// each got record was dead-lettered, and are shown with it.
func compareRecords(label string, got []*connectors.Message, reasons []string, want []TestRecord, fail func(string, ...any)) {
	if len(got) != len(want) {
		var vals []string
		for i, m := range got {
			v := string(m.Value)
			if i < len(reasons) {
				v += "\n        reason: " + reasons[i]
			}
			vals = append(vals, v)
		}
		fail("%s: got %d records, want %d; got:\n      %s", label, len(got), len(want), strings.Join(vals, "\n      "))
		return
	}
	for i, w := range want {
		m := got[i]
		if !sameValue(m.Value, []byte(w.Value)) {
			why := ""
			if i < len(reasons) {
				why = "\n      reason: " + reasons[i]
			}
			fail("%s record %d:\n      got  %s\n      want %s%s", label, i+1, m.Value, w.Value, why)
		}
		if w.Key != nil && string(m.Key) != *w.Key {
			fail("%s record %d: key %q, want %q", label, i+1, m.Key, *w.Key)
		}
		for k, v := range w.Headers {
			if string(m.Header(k)) != v {
				fail("%s record %d: header %s = %q, want %q", label, i+1, k, m.Header(k), v)
			}
		}
	}
}

// sameValue compares JSON by meaning (field order and spacing aside) and
// anything else byte for byte.
func sameValue(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) == nil && json.Unmarshal(b, &y) == nil {
		return reflect.DeepEqual(x, y)
	}
	return string(a) == string(b)
}
