package sinks

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/weirhub/weir/connectors"
)

// parquetBenchEvents are events shaped like make bench-analytics's: ids,
// an RFC 3339 time, ints, a float, a bool, low- and high-cardinality
// strings, a list and a struct, all of one day.
func parquetBenchEvents(n int) []*connectors.Message {
	pages := []string{"/", "/search", "/cart", "/checkout", "/p/item", "/account", "/help"}
	countries := []string{"FR", "DE", "US", "JP", "BR", "IN", "GB"}
	base := time.Date(2026, 11, 21, 0, 0, 0, 0, time.UTC)
	out := make([]*connectors.Message, n)
	for i := range out {
		ts := base.Add(time.Duration(i) * 7 * time.Millisecond)
		v := fmt.Appendf(nil, `{"id":%d,"ts":%q,"user_id":%d,"session":"s-%08x","event":"view","page":%q,"status":%d,"latency_ms":%.3f,"ok":%v,"tags":["web","%s"],"geo":{"country":%q,"city_id":%d}}`,
			i, ts.Format("2006-01-02T15:04:05.000Z"), i*7919%100000, uint32(i*2654435761), pages[i%7], []int{200, 200, 200, 304, 404, 500}[i%6],
			float64(i%30000)/100, i%10 != 0, countries[i%7], countries[(i/7)%7], i%5000)
		out[i] = &connectors.Message{Value: v, Time: ts, Dataset: "events", Offset: int64(i)}
	}
	return out
}

// BenchmarkParquetSinkWrite measures the whole sink: JSON to Arrow, row
// groups, Parquet pages with zstd, the spool, and the file published at
// Close. Bytes are the records' JSON.
func BenchmarkParquetSinkWrite(b *testing.B) {
	const n = 100_000
	msgs := parquetBenchEvents(n)
	var size int64
	for _, m := range msgs {
		size += int64(len(m.Value))
	}
	ctx := context.Background()
	b.SetBytes(size)
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		dir, state := b.TempDir(), b.TempDir()
		s, err := newParquet(parseConfig(b, &parquetSpec, "path: "+dir+"/date={{ .date }}"), connectors.Resources{StateDir: state, Name: "bench"})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		for i := 0; i < n; i += 4096 { // about a 1MiB pipeline batch
			if err := s.Write(ctx, msgs[i:min(i+4096, n)]); err != nil {
				b.Fatal(err)
			}
		}
		if err := s.Close(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
}
