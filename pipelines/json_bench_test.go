package pipelines

import (
	"bytes"
	"context"
	"strconv"
	"testing"

	"github.com/weirhub/weir/connectors"
)

// benchRecord is a web access log record of the size the pipeline
// benchmark uses (~270 bytes).
var benchRecord = []byte(`{"ts":"2026-11-21T10:00:00.123Z","level":"info","host":"web-03","method":"GET","path":"/api/v1/orders/12345","status":200,"latency_ms":12.5,"bytes":5123,"ua":"Mozilla/5.0 (X11; Linux x86_64)","ip":"10.1.2.3","trace":"a1b2c3d4e5f6"}`)

// BenchmarkProcessors runs the pipeline benchmark's processors — parse,
// filter, set — through the real processor chain, 1000 records a batch.
func BenchmarkProcessors(b *testing.B) {
	t := &testing.T{}
	procs := []namedProc{
		{name: "parse", Processor: newProcB(b, t, "parse", "json")},
		{name: "filter", Processor: newProcB(b, t, "filter", `'level != "debug"'`)},
		{name: "set", Processor: newProcB(b, t, "set", `{env: '"prod"', latency_s: 'latency_ms / 1000.0'}`)},
	}
	const n = 1000
	msgs := make([]connectors.Message, n)
	ptrs := make([]*connectors.Message, n)
	vals := make([][]byte, n)
	for i := range vals {
		level := "info"
		if i%4 == 0 {
			level = "debug"
		}
		vals[i] = bytes.Replace(benchRecord, []byte(`"level":"info"`), []byte(`"level":"`+level+`"`), 1)
		vals[i] = bytes.Replace(vals[i], []byte(`"status":200`), []byte(`"status":`+strconv.Itoa(200+i%5)), 1)
	}
	b.SetBytes(int64(n * len(benchRecord)))
	b.ReportAllocs()
	var buf []byte
	var failed []failure
	for b.Loop() {
		for i := range msgs {
			msgs[i] = connectors.Message{Value: vals[i]}
			ptrs[i] = &msgs[i]
		}
		live, f, err := runProcessors(context.Background(), procs, ptrs, failed[:0])
		if err != nil || len(f) != 0 {
			b.Fatal(err, len(f))
		}
		buf = buf[:0]
		for _, m := range live {
			buf = m.Sync(buf)
			m.Release()
		}
	}
	b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "records/s")
}

func newProcB(b *testing.B, t *testing.T, name, conf string) connectors.Processor {
	defer func() {
		if t.Failed() {
			b.Fatalf("building %s", name)
		}
	}()
	return newProc(t, name, conf)
}
