package kafka

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// BenchmarkTLS produces and fetches 1 KiB records over a plaintext and a
// TLS listener in the same run: the ratio is the cost of TLS, for fetch
// also of losing sendfile (a buffered copy through the TLS writer).
// Besides wall time it reports cpu-ns/op, the process's CPU time (client
// and broker: both sides' TLS) per record, which a busy machine disturbs
// much less than wall time.
//
//	go test ./hub/kafka -run '^$' -bench TLS -benchtime 20000x
func BenchmarkTLS(b *testing.B) {
	ca := newCA(b, "bench-ca")
	r, err := NewTLSReloader(tlsFiles(b, b.TempDir(), ca, nil), nil)
	if err != nil {
		b.Fatal(err)
	}
	value := make([]byte, 1024)
	for _, mode := range []string{"plaintext", "tls"} {
		opts := Options{}
		var copts []kgo.Opt
		if mode == "tls" {
			opts.Security.TLS = r.Config()
			copts = append(copts, kgo.DialTLSConfig(clientTLS(ca)))
		}
		br := startBroker(b, b.TempDir(), opts)
		topic := "bench-" + mode
		b.Run("produce/"+mode, func(b *testing.B) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			cl := newClient(b, br.addr, append(copts, kgo.DefaultProduceTopic(topic), kgo.AllowAutoTopicCreation(),
				kgo.ProducerLinger(time.Millisecond), kgo.MaxBufferedRecords(100000))...)
			b.SetBytes(int64(len(value)))
			b.ReportAllocs()
			b.ResetTimer()
			defer reportCPU(b)()
			for range b.N {
				cl.Produce(ctx, &kgo.Record{Value: value}, func(_ *kgo.Record, err error) {
					if err != nil {
						b.Error(err)
					}
				})
			}
			if err := cl.Flush(ctx); err != nil {
				b.Fatal(err)
			}
		})
		b.Run("fetch/"+mode, func(b *testing.B) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			// Make sure the topic holds at least b.N records.
			pcl := newClient(b, br.addr, append(copts, kgo.DefaultProduceTopic(topic+"-fetch"), kgo.AllowAutoTopicCreation(),
				kgo.ProducerLinger(time.Millisecond), kgo.MaxBufferedRecords(100000))...)
			for range b.N {
				pcl.Produce(ctx, &kgo.Record{Value: value}, nil)
			}
			if err := pcl.Flush(ctx); err != nil {
				b.Fatal(err)
			}
			cl := newClient(b, br.addr, append(copts, kgo.ConsumeTopics(topic+"-fetch"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
				kgo.FetchMaxBytes(64<<20))...)
			b.SetBytes(int64(len(value)))
			b.ReportAllocs()
			b.ResetTimer()
			defer reportCPU(b)()
			got := 0
			for got < b.N {
				fs := cl.PollFetches(ctx)
				if err := fs.Err(); err != nil {
					b.Fatal(fmt.Errorf("fetch: %w", err))
				}
				got += fs.NumRecords()
			}
		})
	}
}

// reportCPU starts counting the process's CPU time; the function it
// returns reports it per op as cpu-ns/op.
func reportCPU(b *testing.B) func() {
	start := cpuTime(b)
	return func() { b.ReportMetric(float64(cpuTime(b)-start)/float64(b.N), "cpu-ns/op") }
}
