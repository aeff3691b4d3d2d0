package sinks

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/elastic/go-elasticsearch/v8/esutil"

	"github.com/weirhub/weir/connectors"
	"github.com/weirhub/weir/internal/zinctest"
)

// The Elasticsearch benchmarks send the same 270-byte JSON documents, with
// the same daily index and ids <dataset>-<partition>-<offset>, three ways:
//
//	BenchmarkElasticsearchSink               the sink's Write, batches of
//	                                         esBenchBatch records (the 1MiB
//	                                         of the pipeline's default batching)
//	BenchmarkElasticsearchSinkViaBulkIndexer the design the sink did not take:
//	                                         Write driving an esutil.BulkIndexer
//	                                         and waiting for its callbacks
//	BenchmarkBareBulkIndexer                 a bare esutil.BulkIndexer loop: Add
//	                                         b.N documents, then Close
//
// each against two servers: "stub", an in-process server that answers every
// document created without looking at it (so that the client's cost
// shows), and "zincsearch", a real one (internal/zinctest), fresh for each
// benchmark. Both sides use 2 workers and 5MiB requests, no compression
// unless the sub-benchmark says gzip (ZincSearch reads no gzip). One
// iteration is one document.

// esBenchDoc is a 270-byte log event.
var esBenchDoc = func() []byte {
	d := []byte(`{"@timestamp":"2026-11-21T22:00:00.000Z","host":"web-03","service":"checkout","level":"info","method":"GET","path":"/api/v1/orders/12345","status":200,"bytes":5123,"duration_ms":12.5,"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","msg":"`)
	d = append(d, bytes.Repeat([]byte("x"), 270-len(d)-2)...)
	return append(d, `"}`...)
}()

// esBenchBatch is how many documents one Write gets: 1MiB, the default of
// a pipeline sink's batching.bytes.
const esBenchBatch = 1 << 20 / 270

// esBenchSeq numbers documents across benchmark runs, so that every run
// creates new documents rather than overwriting.
var esBenchSeq atomic.Int64

var esBenchFlush = os.Getenv("ESFLUSH")

type esBenchTarget struct {
	name, url, user, password string
	gzip                      bool
}

// esBenchTargets runs bench against the stub (plain and gzip) and a
// fresh ZincSearch.
func esBenchTargets(b *testing.B, bench func(*testing.B, esBenchTarget)) {
	if len(esBenchDoc) != 270 {
		b.Fatalf("esBenchDoc has %d bytes", len(esBenchDoc))
	}
	stub := newESStub(b)
	stub.quiet = true
	b.Run("stub", func(b *testing.B) { bench(b, esBenchTarget{url: stub.URL()}) })
	b.Run("stub-gzip", func(b *testing.B) { bench(b, esBenchTarget{url: stub.URL(), gzip: true}) })
	zs := zinctest.Start(b)
	b.Run("zincsearch", func(b *testing.B) {
		bench(b, esBenchTarget{name: "zincsearch", url: zs.URL, user: zs.User, password: zs.Password})
	})
}

func (t esBenchTarget) sinkConf(extra string) string {
	comp := "none"
	if t.gzip {
		comp = "gzip"
	}
	return fmt.Sprintf(`{urls: [%q], username: %q, password: %q, index: "bench-{{ .date }}", compression: %s, workers: 2, flush_bytes: %s%s}`,
		t.url, t.user, t.password, comp, esBenchFlush, extra)
}

// esBenchMessages makes a batch of the benchmark document.
func esBenchMessages() []*connectors.Message {
	batch := make([]*connectors.Message, esBenchBatch)
	for i := range batch {
		batch[i] = &connectors.Message{Value: esBenchDoc, Time: esDay, Dataset: "web"}
	}
	return batch
}

// esBenchWrites calls write with batches of new documents until b.N are
// written.
func esBenchWrites(b *testing.B, write func([]*connectors.Message) error) {
	batch := esBenchMessages()
	b.SetBytes(int64(len(esBenchDoc)))
	b.ReportAllocs()
	start := time.Now()
	b.ResetTimer()
	for done := 0; done < b.N; {
		n := min(len(batch), b.N-done)
		for _, m := range batch[:n] {
			m.Offset = esBenchSeq.Add(1)
		}
		if err := write(batch[:n]); err != nil {
			b.Fatalf("Write = %v", err)
		}
		done += n
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "docs/s")
}

func BenchmarkElasticsearchSink(b *testing.B) {
	esBenchTargets(b, func(b *testing.B, t esBenchTarget) {
		s := newESSink(b, t.sinkConf(""))
		if err := s.Connect(context.Background()); err != nil {
			b.Fatal(err)
		}
		esBenchWrites(b, func(batch []*connectors.Message) error { return s.Write(context.Background(), batch) })
	})
}

func BenchmarkElasticsearchSinkViaBulkIndexer(b *testing.B) {
	esBenchTargets(b, func(b *testing.B, t esBenchTarget) {
		s := newESSink(b, t.sinkConf(""))
		bi := newBIWriter(b, s, t)
		esBenchWrites(b, bi.Write)
	})
}

func BenchmarkBareBulkIndexer(b *testing.B) {
	esBenchTargets(b, func(b *testing.B, t esBenchTarget) {
		client := esBenchClient(b, t)
		bi, err := esutil.NewBulkIndexer(esutil.BulkIndexerConfig{Client: client, NumWorkers: 2, FlushBytes: 5 << 20, FlushInterval: 30 * time.Second})
		if err != nil {
			b.Fatal(err)
		}
		var failed atomic.Int64
		onFailure := func(context.Context, esutil.BulkIndexerItem, esutil.BulkIndexerResponseItem, error) { failed.Add(1) }
		ctx := context.Background()
		b.SetBytes(int64(len(esBenchDoc)))
		b.ReportAllocs()
		start := time.Now()
		b.ResetTimer()
		for range b.N {
			err := bi.Add(ctx, esutil.BulkIndexerItem{
				Action:     "index",
				Index:      "bench-2026-11-21",
				DocumentID: "web-0-" + strconv.FormatInt(esBenchSeq.Add(1), 10),
				Body:       bytes.NewReader(esBenchDoc),
				OnFailure:  onFailure,
			})
			if err != nil {
				b.Fatal(err)
			}
		}
		if err := bi.Close(ctx); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "docs/s")
		if st := bi.Stats(); failed.Load() > 0 || st.NumFlushed != uint64(b.N) {
			b.Fatalf("%d documents failed, %d of %d flushed", failed.Load(), st.NumFlushed, b.N)
		}
	})
}

func esBenchClient(b *testing.B, t esBenchTarget) *elasticsearch.Client {
	client, err := elasticsearch.NewClient(elasticsearch.Config{Addresses: []string{t.url}, Username: t.user, Password: t.password,
		CompressRequestBody: t.gzip, PoolCompressor: true})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := client.Info(); err != nil { // the product check
		b.Fatal(err)
	}
	return client
}

// biWriter is the alternative design of the sink's Write: add every
// record to an esutil.BulkIndexer, Flush, and collect the outcome from
// the per-item callbacks. It encodes index names and ids with the sink.
type biWriter struct {
	s  *esSink
	bi esutil.BulkIndexer
}

func newBIWriter(b *testing.B, s *esSink, t esBenchTarget) *biWriter {
	bi, err := esutil.NewBulkIndexer(esutil.BulkIndexerConfig{Client: esBenchClient(b, t), NumWorkers: 2, FlushBytes: 5 << 20, FlushInterval: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { bi.Close(context.Background()) })
	return &biWriter{s: s, bi: bi}
}

func (w *biWriter) Write(batch []*connectors.Message) error {
	ctx := context.Background()
	failures := make([]error, len(batch))
	for i, m := range batch {
		idx, err := w.s.index.render(nil, m, &w.s.fields)
		if err != nil {
			return err
		}
		id, _, err := w.s.docID(m)
		if err != nil {
			return err
		}
		err = w.bi.Add(ctx, esutil.BulkIndexerItem{
			Action:     "index",
			Index:      string(idx),
			DocumentID: string(id),
			Body:       bytes.NewReader(m.Value),
			OnFailure: func(_ context.Context, _ esutil.BulkIndexerItem, r esutil.BulkIndexerResponseItem, err error) {
				if err == nil {
					err = fmt.Errorf("%d %s: %s", r.Status, r.Error.Type, r.Error.Reason)
				}
				failures[i] = err
			},
		})
		if err != nil {
			return err
		}
	}
	if err := w.bi.Flush(ctx); err != nil {
		return err
	}
	for _, err := range failures {
		if err != nil {
			return err
		}
	}
	return nil
}
