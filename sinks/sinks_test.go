package sinks

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

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

// TestConfigErrors checks that constructors report problems at the
// field's line and column.
func TestConfigErrors(t *testing.T) {
	tests := []struct {
		spec *connectors.Spec
		ctor connectors.SinkConstructor
		src  string
		want string
	}{
		{&fileSpec, newFile, "path: /tmp/x\nmode: rwx", `2:7: mode: "rwx" is not a file mode`},
		{&fileSpec, newFile, "path: /tmp/x\nmode: '01777'", `2:7: mode: "01777" is not a file mode`},
		{&fileSpec, newFile, "path: '/tmp/{{ .nope }}'", `1:7: path: {{ .nope }} at byte 5`},
		{&fileSpec, newFile, "path: '/tmp/{{ .date'", `1:7: path: unclosed {{ at byte 5`},
		{&fileSpec, newFile, "path: '/tmp/{{ .field host }}'", `1:7: path: {{ .field host }} at byte 5: .field wants a quoted field name`},
		{&fileSpec, newFile, "path: /tmp/x\nmax_open_files: 0", `2:17: max_open_files: must be at least 1`},
		{&httpSpec, newHTTP, "url: ftp://x", `1:6: url: "ftp://x" is not an http`},
		{&httpSpec, newHTTP, "url: http://x\ntoken: t\nuser: u", `2:8: token: use either token or user`},
		{&httpSpec, newHTTP, "url: http://x\nmax_batch_bytes: 0", `2:18: max_batch_bytes: must be at least 1B, not 0`},
	}
	for _, tt := range tests {
		c, err := parseOrErr(t, tt.spec, tt.src)
		if err == nil {
			_, err = tt.ctor(c, connectors.Resources{})
		}
		if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("%s(%q) = %v, want %s...", tt.spec.Name, tt.src, err, tt.want)
		}
	}
}

// accessRecords makes n varied JSON access-log records of about 270
// bytes, like the generate source's.
func accessRecords(n int) [][]byte {
	r := rand.New(rand.NewPCG(1, 2))
	methods := []string{"GET", "GET", "GET", "POST", "PUT", "DELETE"}
	paths := []string{"/api/v1/orders/", "/api/v1/users/", "/api/v1/products/", "/static/app/"}
	levels := []string{"info", "info", "debug", "warn"}
	out := make([][]byte, n)
	ts := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	for i := range out {
		ts = ts.Add(time.Duration(r.IntN(5)) * time.Millisecond)
		b := fmt.Appendf(nil, `{"ts":"%s","level":"%s","host":"web-%02d","method":"%s","path":"%s%d","status":%d,"latency_ms":%.1f,"bytes":%d,"ua":"Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0","ip":"10.%d.%d.%d","trace":"%016x"}`,
			ts.Format("2006-01-02T15:04:05.000Z"), levels[r.IntN(len(levels))], 1+r.IntN(12), methods[r.IntN(len(methods))],
			paths[r.IntN(len(paths))], r.IntN(100000), 200+100*r.IntN(4), r.ExpFloat64()*20, r.IntN(20000),
			r.IntN(256), r.IntN(256), r.IntN(256), r.Uint64())
		out[i] = b
	}
	return out
}

func messages(values ...string) []*connectors.Message {
	out := make([]*connectors.Message, len(values))
	for i, v := range values {
		out[i] = &connectors.Message{Value: []byte(v), Time: time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC),
			Dataset: "access", Offset: int64(i)}
	}
	return out
}

func itoa(i int) string { return strconv.Itoa(i) }
