// Package jsonlibs compares JSON libraries on the pipeline benchmark's
// per-record job; it is how Weir's processors came to use fastjson. It
// lives here, in the benchmarks module, so that the libraries it only
// compares are not dependencies of Weir itself.
package jsonlibs

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"
	"github.com/valyala/fastjson"
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
