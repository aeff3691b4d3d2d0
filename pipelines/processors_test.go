package pipelines

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/weirhub/weir/codecs"
	"github.com/weirhub/weir/connectors"
)

// newProc builds a processor from YAML, with the pipeline's sink names.
func newProc(t *testing.T, name, conf string, sinks ...string) connectors.Processor {
	t.Helper()
	spec, ok := connectors.Default.Spec(connectors.ProcessorKind, name)
	if !ok {
		t.Fatalf("no processor %s", name)
	}
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(conf), &n); err != nil {
		t.Fatal(err)
	}
	c, errs := connectors.ParseConfig(spec, n.Content[0])
	if len(errs) > 0 {
		t.Fatalf("%s %s: %v", name, conf, errs)
	}
	p, err := connectors.Default.NewProcessor(name, c, connectors.Resources{Sinks: sinks})
	if err != nil {
		t.Fatalf("%s %s: %v", name, conf, err)
	}
	return p
}

// process runs values through a processor: the values that come out
// (synced), and the reasons of those that failed.
func process(t *testing.T, p connectors.Processor, in ...string) (out, failed []string) {
	t.Helper()
	batch := make([]*connectors.Message, len(in))
	for i, v := range in {
		batch[i] = &connectors.Message{Value: []byte(v), Key: []byte(fmt.Sprintf("k%d", i))}
	}
	res, err := p.Process(context.Background(), batch)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range res {
		if m.Err != nil {
			failed = append(failed, m.Err.Error())
			continue
		}
		m.Sync(nil)
		out = append(out, string(m.Value))
	}
	return out, failed
}

func TestProcessors(t *testing.T) {
	tests := []struct {
		name, proc, conf string
		in               []string
		out              []string
		failed           []string // substrings of the reasons
	}{
		{"parse json", "parse", "json", []string{`{"a":1}`, `nope`, `[1]`}, []string{`{"a":1}`}, []string{"parse json", "array"}},
		{"parse json field", "parse", "{format: json, field: msg, target: doc}", []string{`{"msg":"{\"x\":2}"}`},
			[]string{`{"msg":"{\"x\":2}","doc":{"x":2}}`}, nil},
		{"parse regex", "parse", `{format: regex, pattern: '^(?P<method>\S+) (?P<path>\S+) (?P<status>\d+)$'}`,
			[]string{`GET /a 200`, `garbage`}, []string{`{"method":"GET","path":"/a","status":"200"}`}, []string{"does not match"}},
		{"parse regex keep original", "parse", `{format: regex, pattern: '^(?P<level>\w+):', keep_original: line}`,
			[]string{`warn: disk`}, []string{`{"line":"warn: disk","level":"warn"}`}, nil},
		{"parse logfmt", "parse", "logfmt", []string{`level=info msg="disk full" retry`, `bad="open`},
			[]string{`{"level":"info","msg":"disk full","retry":true}`}, []string{"not closed"}},
		{"parse json keep", "parse", "{format: json, on_error: keep}", []string{`{"a":1}`, `plain "text"` + "\t", `[1]`, ``},
			[]string{`{"a":1}`, `{"message":"plain \"text\"\u0009"}`, `{"message":"[1]"}`, `{"message":""}`}, nil},
		{"parse regex keep", "parse", `{format: regex, pattern: '^(?P<level>[A-Z]+) ', on_error: keep}`, []string{`WARN disk`, `disk`, `{"level":"x"}`},
			[]string{`{"level":"WARN"}`, `{"message":"disk"}`, `{"level":"x"}`}, nil},
		{"parse field keep", "parse", `{format: json, field: msg, on_error: keep}`, []string{`{"msg":"{\"x\":2}"}`, `{"msg":"text"}`, `{"other":1}`},
			[]string{`{"msg":"{\"x\":2}","x":2}`, `{"msg":"text"}`, `{"other":1}`}, nil},
		{"parse kv", "parse", `{format: kv, field_separator: ";", value_separator: ":"}`, []string{`user:"ann";id:7`},
			[]string{`{"user":"ann","id":"7"}`}, nil},
		{"filter", "filter", `'level != "debug"'`, []string{`{"level":"info"}`, `{"level":"debug"}`, `{}`},
			[]string{`{"level":"info"}`, `{}`}, nil},
		{"filter numbers and or", "filter", `'status >= 500 || (status == 404 && path != "/favicon.ico")'`,
			[]string{`{"status":503}`, `{"status":404,"path":"/x"}`, `{"status":404,"path":"/favicon.ico"}`, `{"status":200}`},
			[]string{`{"status":503}`, `{"status":404,"path":"/x"}`}, nil},
		{"filter error", "filter", `'n > 1'`, []string{`{"n":"two"}`}, nil, []string{"evaluating"}},
		{"drop", "drop", `'path startsWith "/health"'`, []string{`{"path":"/healthz"}`, `{"path":"/api"}`}, []string{`{"path":"/api"}`}, nil},
		{"set", "set", `{env: '"prod"', s: 'ms / 1000.0', big: 'ms > 10', "http.code": '200'}`, []string{`{"ms":1500}`},
			[]string{`{"ms":1500,"env":"prod","s":1.5,"big":true,"http":{"code":200}}`}, nil},
		{"set on non-json", "set", `{a: '1'}`, []string{`text`}, nil, []string{"parse the record first"}},
		{"rename", "rename", `{a: b, "x.y": z}`, []string{`{"a":1,"x":{"y":2}}`}, []string{`{"x":{},"b":1,"z":2}`}, nil},
		{"delete", "delete", `[a, "x.y"]`, []string{`{"a":1,"x":{"y":2,"w":3},"c":4}`}, []string{`{"x":{"w":3},"c":4}`}, nil},
		{"timestamp", "timestamp", `{field: ts}`, []string{`{"ts":"2026-11-21T10:00:00Z"}`, `{"ts":"yesterday"}`, `{}`},
			[]string{`{"ts":"2026-11-21T10:00:00Z"}`}, []string{"timestamp", "no field"}},
		{"dedupe", "dedupe", `{field: id}`, []string{`{"id":1}`, `{"id":2}`, `{"id":1}`, `{"x":0}`}, []string{`{"id":1}`, `{"id":2}`, `{"x":0}`}, nil},
		{"sample all", "sample", `1`, []string{`a`, `b`}, []string{`a`, `b`}, nil},
		{"sample none", "sample", `0`, []string{`a`, `b`}, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newProc(t, tt.proc, tt.conf)
			out, failed := process(t, p, tt.in...)
			if len(out) != len(tt.out) {
				t.Fatalf("%s(%q) = %q, want %q (failed: %q)", tt.proc, tt.in, out, tt.out, failed)
			}
			for i := range out {
				if !sameValue([]byte(out[i]), []byte(tt.out[i])) {
					t.Errorf("%s(%q)[%d] = %s, want %s", tt.proc, tt.in, i, out[i], tt.out[i])
				}
			}
			if len(failed) != len(tt.failed) {
				t.Fatalf("%s(%q) failed %q, want %d failures", tt.proc, tt.in, failed, len(tt.failed))
			}
			for i := range failed {
				if !strings.Contains(failed[i], tt.failed[i]) {
					t.Errorf("failure %d: %q does not contain %q", i, failed[i], tt.failed[i])
				}
			}
		})
	}
}

func TestTimestampSetsTime(t *testing.T) {
	p := newProc(t, "timestamp", `{field: t, format: unix_ms}`)
	m := &connectors.Message{Value: []byte(`{"t":1700000000123}`)}
	if _, err := p.Process(context.Background(), []*connectors.Message{m}); err != nil || m.Err != nil {
		t.Fatal(err, m.Err)
	}
	if !m.Time.Equal(time.UnixMilli(1700000000123)) {
		t.Fatalf("time %v", m.Time)
	}
}

func TestRoute(t *testing.T) {
	p := newProc(t, "route", `
rules:
  - {when: 'level == "error"', to: [alerts]}
  - {key: 'eu.*.web', to: [eu]}
  - {key: 'logs.#', to: [archive, eu]}
default: [archive]`, "archive", "alerts", "eu")
	cases := []struct {
		key, value string
		want       uint64
	}{
		{"x", `{"level":"error"}`, 1 << 1},
		{"eu.west.web", `{"level":"info"}`, 1 << 2},
		{"eu.web", `{}`, 1 << 0},
		{"logs", `{}`, 1<<0 | 1<<2},
		{"logs.a.b.c", `{}`, 1<<0 | 1<<2},
		{"other", `{"level":"info"}`, 1 << 0},
	}
	for _, c := range cases {
		m := &connectors.Message{Key: []byte(c.key), Value: []byte(c.value)}
		p.Process(context.Background(), []*connectors.Message{m})
		if m.Routes != c.want || m.Err != nil {
			t.Errorf("route(key %q, %s) = %b (%v), want %b", c.key, c.value, m.Routes, m.Err, c.want)
		}
	}
}

func TestMatchTopic(t *testing.T) {
	tests := []struct {
		pattern, key string
		want         bool
	}{
		{"a.*.c", "a.b.c", true}, {"a.*.c", "a.c", false}, {"a.#", "a", true}, {"a.#", "a.b.c", true},
		{"#.c", "a.b.c", true}, {"#", "", true}, {"a.#.d", "a.b.c.d", true}, {"a.#.d", "a.b.c", false},
		{"*", "a.b", false}, {"a.b", "a.b", true},
	}
	for _, tt := range tests {
		if got := matchTopic(strings.Split(tt.pattern, "."), []byte(tt.key)); got != tt.want {
			t.Errorf("matchTopic(%q, %q) = %v, want %v", tt.pattern, tt.key, got, tt.want)
		}
	}
}

// TestFastPathAgreesWithExpr evaluates conditions with the fast path and
// with expr's VM over random records: the fast path must give the same
// answer, or step aside.
func TestFastPathAgreesWithExpr(t *testing.T) {
	conds := []string{
		`level == "debug"`, `level != "debug"`, `status >= 500`, `status < 300`, `n == 2`, `n != 2.5`,
		`flag == true`, `flag != false`, `missing == nil`, `level in ["a", "b", "debug"]`,
		`level == "x" || status > 100`, `not (status == 200) && level != "a"`, `"a" < level`, `http.code == 503`,
		`level == 3`, `status == "200"`,
	}
	values := []string{`"debug"`, `"info"`, `"a"`, `200`, `503`, `2`, `2.5`, `true`, `false`, `null`, `{"code":503}`, `[1]`}
	fields := []string{"level", "status", "n", "flag", "http"}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, src := range conds {
		e, err := CompileExpr(src)
		if err != nil {
			t.Fatal(err)
		}
		if e.fast == nil {
			t.Errorf("%q has no fast path", src)
			continue
		}
		decided := 0
		for range 300 {
			var b strings.Builder
			b.WriteByte('{')
			first := true
			for _, f := range fields {
				if rng.IntN(3) == 0 {
					continue
				}
				if !first {
					b.WriteByte(',')
				}
				first = false
				fmt.Fprintf(&b, "%q:%s", f, values[rng.IntN(len(values))])
			}
			b.WriteByte('}')
			m := &connectors.Message{Value: []byte(b.String())}
			fast, ok := e.fast(m)
			slowV, slowErr := e.Eval(m)
			if !ok {
				continue
			}
			decided++
			slow, isBool := slowV.(bool)
			if slowV == nil {
				slow, isBool = false, true
			}
			if slowErr != nil || !isBool || fast != slow {
				t.Errorf("%s on %s: fast %v, expr %v (%v)", src, b.String(), fast, slowV, slowErr)
			}
		}
		if decided == 0 {
			t.Errorf("%s: the fast path decided none of 300 records", src)
		}
	}
}

func TestExprHeaders(t *testing.T) {
	m := &connectors.Message{Value: []byte(`{"level":"warn"}`), Headers: []codecs.RecordHeader{
		{Key: []byte("weir.file"), Value: []byte("/var/log/app.log")}}}
	for src, want := range map[string]any{
		`_headers["weir.file"]`: "/var/log/app.log",
		`_headers["weir.file"] endsWith ".log" && level == "warn"`: true,
		`_headers["nope"]`: nil,
	} {
		e, err := CompileExpr(src)
		if err != nil {
			t.Fatal(err)
		}
		got, err := e.Eval(m)
		if err != nil || got != want {
			t.Errorf("%s = %v (%v), want %v", src, got, err, want)
		}
	}
	e, _ := CompileExpr(`_headers["weir.file"] == "/var/log/app.log"`)
	if ok, err := e.Bool(m); !ok || err != nil {
		t.Errorf("Bool: %v %v", ok, err)
	}
}
