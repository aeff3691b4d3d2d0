package pipelines

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"testing"

	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"
	"github.com/valyala/fastjson"

	"github.com/weirhub/weir/connectors"
)

// benchRecord is a web access log record of the size the pipeline
// benchmark uses (~270 bytes).
var benchRecord = []byte(`{"ts":"2026-11-21T10:00:00.123Z","level":"info","host":"web-03","method":"GET","path":"/api/v1/orders/12345","status":200,"latency_ms":12.5,"bytes":5123,"ua":"Mozilla/5.0 (X11; Linux x86_64)","ip":"10.1.2.3","trace":"a1b2c3d4e5f6"}`)

// BenchmarkJSONLibraries does the pipeline benchmark's per-record job —
// parse, drop debug, add two fields, serialize — with the candidate JSON
// libraries. It is how fastjson was chosen: it parses into reusable memory
// (no allocation per record) and edits in place.
func BenchmarkJSONLibraries(b *testing.B) {
	b.Run("encoding-json-map", func(b *testing.B) {
		b.SetBytes(int64(len(benchRecord)))
		b.ReportAllocs()
		for b.Loop() {
			var m map[string]any
			if err := json.Unmarshal(benchRecord, &m); err != nil {
				b.Fatal(err)
			}
			if m["level"] == "debug" {
				continue
			}
			m["env"] = "prod"
			m["latency_s"] = m["latency_ms"].(float64) / 1000
			if _, err := json.Marshal(m); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("gjson-sjson", func(b *testing.B) {
		b.SetBytes(int64(len(benchRecord)))
		b.ReportAllocs()
		buf := make([]byte, 0, 1024)
		for b.Loop() {
			if !gjson.ValidBytes(benchRecord) {
				b.Fatal("invalid")
			}
			if gjson.GetBytes(benchRecord, "level").String() == "debug" {
				continue
			}
			lat := gjson.GetBytes(benchRecord, "latency_ms").Float()
			buf = append(buf[:0], benchRecord...)
			buf, _ = sjson.SetBytesOptions(buf, "env", "prod", &sjson.Options{ReplaceInPlace: true})
			buf, _ = sjson.SetBytesOptions(buf, "latency_s", lat/1000, &sjson.Options{ReplaceInPlace: true})
		}
	})
	b.Run("fastjson", func(b *testing.B) {
		b.SetBytes(int64(len(benchRecord)))
		b.ReportAllocs()
		var p fastjson.Parser
		var a fastjson.Arena
		buf := make([]byte, 0, 1024)
		for b.Loop() {
			v, err := p.ParseBytes(benchRecord)
			if err != nil {
				b.Fatal(err)
			}
			if bytes.Equal(v.GetStringBytes("level"), []byte("debug")) {
				continue
			}
			a.Reset()
			o := v.GetObject()
			o.Set("env", a.NewString("prod"))
			o.Set("latency_s", a.NewNumberFloat64(v.GetFloat64("latency_ms")/1000))
			buf = v.MarshalTo(buf[:0])
		}
	})
}

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
			b.Fatal(fmt.Sprintf("building %s", name))
		}
	}()
	return newProc(t, name, conf)
}
