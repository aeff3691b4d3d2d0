package kafkaclient

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/weirhub/weir/codecs"
	"github.com/weirhub/weir/hub"
	"github.com/weirhub/weir/internal/brokertest"
	"github.com/weirhub/weir/internal/hubtest"
	"github.com/weirhub/weir/internal/kafkaconf"
)

func newClient(t testing.TB, conn kafkaconf.Conn) *Client {
	t.Helper()
	c, err := New(Options{Conn: conn})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestProduceResults produces through Weir's Kafka server: one result per
// record with its partition and offset, batches compressed with lz4 by
// default, a record too large failing alone as hub.ErrBatchTooLarge.
func TestProduceResults(t *testing.T) {
	w := brokertest.StartWeir(t, hub.Options{})
	if _, err := w.Hub.CreateDataset("r", hub.DatasetConfig{Partitions: 3}); err != nil {
		t.Fatal(err)
	}
	c := newClient(t, kafkaconf.Conn{Brokers: []string{w.Addr}})
	var recs []hub.Record
	for i := range 60 {
		recs = append(recs, hub.Record{Key: fmt.Appendf(nil, "k%d", i%7), Value: fmt.Appendf(nil, "value %d", i),
			Headers: []codecs.RecordHeader{{Key: []byte("h"), Value: []byte("v")}}})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rs := c.Produce(ctx, "r", recs, hub.ProduceOptions{})
	if len(rs) != len(recs) {
		t.Fatalf("%d results for %d records", len(rs), len(recs))
	}
	next := map[int32]int64{}
	for i, r := range rs {
		if r.Err != nil {
			t.Fatalf("record %d: %v", i, r.Err)
		}
		if want := hub.PartitionForKey(recs[i].Key, 3); r.Partition != want {
			t.Errorf("record %d partition %d, want %d", i, r.Partition, want)
		}
		if r.Offset != next[r.Partition] {
			t.Errorf("record %d offset %d, want %d", i, r.Offset, next[r.Partition])
		}
		next[r.Partition] = r.Offset + 1
	}
	ds, _ := w.Hub.Dataset("r")
	for p := range int32(3) {
		part, _ := ds.Partition(p)
		part.Log().ScanHeaders(0, func(h *codecs.Header) bool {
			if h.Compression() != codecs.LZ4 {
				t.Errorf("partition %d: a batch compressed with %v, want lz4", p, h.Compression())
			}
			return true
		})
	}
	big := []hub.Record{{Value: []byte("small")}, {Value: bytes.Repeat([]byte("x"), 2<<20)}}
	rs = c.Produce(ctx, "r", big, hub.ProduceOptions{})
	if rs[0].Err != nil {
		t.Errorf("small record: %v", rs[0].Err)
	}
	if !errors.Is(rs[1].Err, hub.ErrBatchTooLarge) || !hub.RecordAtFault(rs[1].Err) {
		t.Errorf("a record of 2 MiB = %v, want hub.ErrBatchTooLarge", rs[1].Err)
	}
	// The caller's batch limit holds too.
	rs = c.Produce(ctx, "r", []hub.Record{{Value: []byte("small")}, {Value: bytes.Repeat([]byte("y"), 8<<10)}},
		hub.ProduceOptions{MaxBatchBytes: 4 << 10})
	if rs[0].Err != nil || !errors.Is(rs[1].Err, hub.ErrBatchTooLarge) {
		t.Errorf("with MaxBatchBytes 4KiB: %v and %v, want nil and hub.ErrBatchTooLarge", rs[0].Err, rs[1].Err)
	}
}

// TestAssignmentIsCurrent checks that a group member's Assignment drops
// the partitions a rebalance gave to another member, even those it had
// fetched from.
func TestAssignmentIsCurrent(t *testing.T) {
	w := brokertest.StartWeir(t, hub.Options{})
	if _, err := w.Hub.CreateDataset("in", hub.DatasetConfig{Partitions: 4}); err != nil {
		t.Fatal(err)
	}
	c := newClient(t, kafkaconf.Conn{Brokers: []string{w.Addr}})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var recs []hub.Record
	for i := range 40 {
		recs = append(recs, hub.Record{Key: fmt.Appendf(nil, "%d", i), Value: []byte("v")})
	}
	if err := c.Produce(ctx, "in", recs, hub.ProduceOptions{}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	opts := hub.ConsumeOptions{Datasets: []string{"in"}, Group: "g", MaxWait: 100 * time.Millisecond, SessionTimeout: 6 * time.Second}
	a, err := c.Consume(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close(context.Background())
	fetched := map[int32]bool{}
	for len(fetched) < 4 && ctx.Err() == nil {
		fs, err := a.Poll(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range fs {
			fetched[f.Partition] = true
		}
	}
	if got := a.Assignment(); len(got) != 4 {
		t.Fatalf("alone in the group: Assignment %v, want 4 partitions", got)
	}
	b, err := c.Consume(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	bctx, bstop := context.WithCancel(ctx)
	wg.Go(func() {
		for bctx.Err() == nil {
			b.Poll(bctx)
		}
	})
	defer func() {
		bstop()
		wg.Wait()
		b.Close(context.Background())
	}()
	for ctx.Err() == nil && len(a.Assignment()) != 2 {
		if _, err := a.Poll(ctx); err != nil && ctx.Err() == nil {
			t.Fatal(err)
		}
	}
	if got := a.Assignment(); len(got) != 2 {
		t.Fatalf("after a second member joined: Assignment %v, want 2 partitions", got)
	}
	for tp := range a.Lag() {
		if !contains(a.Assignment(), tp) {
			t.Errorf("Lag reports %v, which is not assigned", tp)
		}
	}
}

func contains(tps []hub.TopicPartition, tp hub.TopicPartition) bool {
	for _, x := range tps {
		if x == tp {
			return true
		}
	}
	return false
}

// TestSASLAndTLS reaches clusters that want SCRAM or TLS through the
// connection settings the kafka connectors use; wrong credentials fail
// as hub.ErrUnavailable.
func TestSASLAndTLS(t *testing.T) {
	roundTrip := func(t *testing.T, conn kafkaconf.Conn) {
		t.Helper()
		c := newClient(t, conn)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		recs := []hub.Record{{Value: []byte("one")}, {Value: []byte("two")}}
		if err := c.Produce(ctx, "secure", recs, hub.ProduceOptions{}).FirstErr(); err != nil {
			t.Fatal(err)
		}
		cons, err := c.Consume(ctx, hub.ConsumeOptions{Datasets: []string{"secure"}, Broadcast: true, MaxWait: 50 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		defer cons.Close(context.Background())
		n := 0
		for n < 2 && ctx.Err() == nil {
			fs, err := cons.Poll(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range fs {
				n += len(f.Records)
			}
		}
		if n != 2 {
			t.Fatalf("read %d records back, want 2", n)
		}
	}
	t.Run("SCRAM-SHA-256", func(t *testing.T) {
		addr := brokertest.StartKfake(t, kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-256", "weir", "s3cret"), kfake.SeedTopics(1, "secure"))
		roundTrip(t, kafkaconf.Conn{Brokers: []string{addr}, Mechanism: kafkaconf.ScramSHA256, User: "weir", Password: "s3cret"})
		c := newClient(t, kafkaconf.Conn{Brokers: []string{addr}, Mechanism: kafkaconf.ScramSHA256, User: "weir", Password: "nope"})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := c.Partitions(ctx, "secure"); !errors.Is(err, hub.ErrUnavailable) {
			t.Errorf("Partitions with a wrong password = %v, want hub.ErrUnavailable", err)
		}
	})
	t.Run("TLS", func(t *testing.T) {
		srvTLS, caFile := brokertest.TLS(t)
		addr := brokertest.StartKfake(t, kfake.TLS(srvTLS), kfake.SeedTopics(1, "secure"))
		roundTrip(t, kafkaconf.Conn{Brokers: []string{addr}, TLS: true, CAFile: caFile, ServerName: "localhost"})
	})
}

// BenchmarkProduce produces 1,000 records of 200 bytes to Weir's Kafka
// server, as a pipeline's source does with hub.kafka: the records go to
// franz-go as they are, encoded once.
func BenchmarkProduce(b *testing.B) {
	w := brokertest.StartWeir(b, hub.Options{})
	if _, err := w.Hub.CreateDataset("bench", hub.DatasetConfig{Partitions: 4, RetentionBytes: 64 << 20, SegmentBytes: 16 << 20}); err != nil {
		b.Fatal(err)
	}
	none := codecs.None
	c, err := New(Options{Conn: kafkaconf.Conn{Brokers: []string{w.Addr}}, Compression: &none})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	recs := make([]hub.Record, 1000)
	for i := range recs {
		recs[i] = hub.Record{Key: fmt.Appendf(nil, "key-%d", i), Value: bytes.Repeat([]byte{'a' + byte(i%26)}, 200),
			Headers: []codecs.RecordHeader{{Key: []byte("source"), Value: []byte("bench")}}}
	}
	ctx := context.Background()
	if err := c.Produce(ctx, "bench", recs, hub.ProduceOptions{}).FirstErr(); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(recs) * 200))
	for b.Loop() {
		if err := c.Produce(ctx, "bench", recs, hub.ProduceOptions{}).FirstErr(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(recs))/b.Elapsed().Seconds(), "records/s")
}

// TestPollBoundsDecodedBytes checks that MaxPollBytes bounds the keys and
// values a Poll returns, not only the compressed bytes fetched: the rest
// of a fetch comes with the next Polls, in order, none lost.
func TestPollBoundsDecodedBytes(t *testing.T) {
	w := brokertest.StartWeir(t, hub.Options{})
	if _, err := w.Hub.CreateDataset("text", hub.DatasetConfig{Partitions: 1, Compression: "lz4"}); err != nil {
		t.Fatal(err)
	}
	c := newClient(t, kafkaconf.Conn{Brokers: []string{w.Addr}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var recs []hub.Record
	for i := range 2000 {
		recs = append(recs, hub.Record{Value: bytes.Repeat(fmt.Appendf(nil, "line %04d ", i), 100)[:1000]})
	}
	if err := c.Produce(ctx, "text", recs, hub.ProduceOptions{}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	const limit = 64 << 10
	cons, err := c.Consume(ctx, hub.ConsumeOptions{Datasets: []string{"text"}, Broadcast: true, MaxPollBytes: limit, MaxWait: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close(context.Background())
	next := int64(0)
	for next < 2000 && ctx.Err() == nil {
		fs, err := cons.Poll(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got := 0
		for _, f := range fs {
			for _, r := range f.Records {
				if r.Offset != next {
					t.Fatalf("offset %d, want %d", r.Offset, next)
				}
				next++
				got += len(r.Value)
			}
		}
		if got > limit+1000 {
			t.Fatalf("a Poll returned %d bytes of values, want at most MaxPollBytes (%d) and one record", got, limit)
		}
	}
	if next != 2000 {
		t.Fatalf("read %d records, want 2000", next)
	}
}

// TestRetentionSkipIsCounted: a group whose committed offset fell below
// the log start (retention deleted records it had not read) reads on from
// the log start, as Kafka clients do on OFFSET_OUT_OF_RANGE, and counts
// the records skipped like the in-process consumer, so that a pipeline
// over hub: {kafka} reports them too (issue 10 item 1). A gap above the
// log start, as the next poll of a live partition has none, counts
// nothing.
func TestRetentionSkipIsCounted(t *testing.T) {
	w := brokertest.StartWeir(t, hub.Options{})
	ds, err := w.Hub.CreateDataset("in", hub.DatasetConfig{Partitions: 1, SegmentBytes: 4096})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tp := hub.TopicPartition{Topic: "in", Partition: 0}
	start := hubtest.LoseToRetention(t, w.Hub, "in", "g", 400, 10, 300)
	part, _ := ds.Partition(0)
	local := hub.NewLocalClient(w.Hub)
	c := newClient(t, kafkaconf.Conn{Brokers: []string{w.Addr}})
	cons, err := c.Consume(ctx, hub.ConsumeOptions{Datasets: []string{"in"}, Group: "g", MaxWait: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close(context.Background())
	sr, ok := cons.(interface {
		TakeSkipped() map[hub.TopicPartition]int64
	})
	if !ok {
		t.Fatalf("%T does not report skipped records", cons)
	}
	var got int64
	skipped := map[hub.TopicPartition]int64{}
	for got < 400-start && ctx.Err() == nil {
		fs, err := cons.Poll(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range fs {
			if len(f.Records) > 0 && got == 0 && f.Records[0].Offset != start {
				t.Fatalf("first record at %d, want the log start %d", f.Records[0].Offset, start)
			}
			got += int64(len(f.Records))
		}
		for tp, n := range sr.TakeSkipped() {
			skipped[tp] += n
		}
	}
	if got != 400-start {
		t.Fatalf("read %d records, want the %d left", got, 400-start)
	}
	if skipped[tp] != start-10 || len(skipped) != 1 {
		t.Fatalf("skipped %v, want %d on in/0 (offsets 10 to %d)", skipped, start-10, start)
	}

	// While consuming: retention passes the position. kgo fetches ahead
	// in the background, so how many of the new records it read before
	// they were deleted varies; every offset is either read or counted.
	for i := 400; i < 800; i++ {
		if err := local.Produce(ctx, "in", []hub.Record{{Value: fmt.Appendf(nil, `{"i":%d,"pad":"0123456789012345678901234567890123456789"}`, i)}}, hub.ProduceOptions{}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := part.Log().DeleteBefore(700); err != nil {
		t.Fatal(err)
	}
	got, skipped = 0, map[hub.TopicPartition]int64{}
	for last := int64(399); last < 799 && ctx.Err() == nil; {
		fs, err := cons.Poll(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range fs {
			for _, r := range f.Records {
				if r.Offset <= last {
					t.Fatalf("offset %d again after %d", r.Offset, last)
				}
				last = r.Offset
			}
			got += int64(len(f.Records))
		}
		for tp, n := range sr.TakeSkipped() {
			skipped[tp] += n
		}
	}
	if got+skipped[tp] != 400 {
		t.Fatalf("after retention passed the position: read %d, skipped %v; want them to add up to 400", got, skipped)
	}
	t.Logf("read %d, skipped %d", got, skipped[tp])
}

// TestCorruptBatch: a stored batch the client cannot decode (a garbled
// zstd payload under a valid CRC) is reported as a *hub.CorruptBatchError
// with the offsets it covers, like the in-process consumer's: every poll
// by default, so that a pipeline fails its drain instead of retrying for
// ever; once with SkipCorrupt, which then reads on after it (issue 18).
func TestCorruptBatch(t *testing.T) {
	w := brokertest.StartWeir(t, hub.Options{})
	ds, err := w.Hub.CreateDataset("in", hub.DatasetConfig{Partitions: 1})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	local := hub.NewLocalClient(w.Hub)
	if err := local.Produce(ctx, "in", []hub.Record{{Value: []byte("a")}, {Value: []byte("b")}}, hub.ProduceOptions{}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	part, _ := ds.Partition(0)
	base, last := hubtest.AppendCorruptBatch(t, part, 5)
	if err := local.Produce(ctx, "in", []hub.Record{{Value: []byte("c")}}, hub.ProduceOptions{}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	c := newClient(t, kafkaconf.Conn{Brokers: []string{w.Addr}})
	for _, skip := range []bool{false, true} {
		cons, err := c.Consume(ctx, hub.ConsumeOptions{Datasets: []string{"in"}, Group: fmt.Sprintf("g-%v", skip), MaxWait: 50 * time.Millisecond, SkipCorrupt: skip})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		var corrupt []*hub.CorruptBatchError
		for range 20 {
			fs, err := cons.Poll(ctx)
			var cbe *hub.CorruptBatchError
			switch {
			case errors.As(err, &cbe):
				if !errors.Is(err, hub.ErrCorruptBatch) {
					t.Fatalf("%v is not hub.ErrCorruptBatch", err)
				}
				corrupt = append(corrupt, cbe)
			case err != nil:
				t.Fatalf("skip %v: %v", skip, err)
			}
			for _, f := range fs {
				for _, r := range f.Records {
					got = append(got, string(r.Value))
				}
			}
			if !skip && len(corrupt) == 3 || skip && len(got) == 3 {
				break
			}
		}
		cons.Close(context.Background())
		if len(corrupt) == 0 || corrupt[0].Dataset != "in" || corrupt[0].Partition != 0 || corrupt[0].Batch.BaseOffset != base || corrupt[0].Batch.LastOffset != last {
			t.Fatalf("skip %v: corrupt batches reported %v, want in/0 offsets %d to %d", skip, corrupt, base, last)
		}
		want := "a b"
		if skip {
			want = "a b c"
			if len(corrupt) != 1 {
				t.Fatalf("with SkipCorrupt the batch was reported %d times, want once", len(corrupt))
			}
		} else if len(corrupt) != 3 {
			t.Fatalf("without SkipCorrupt the batch was reported %d times in 20 polls, want every poll", len(corrupt))
		}
		if strings.Join(got, " ") != want {
			t.Fatalf("skip %v: read %q, want %s", skip, got, want)
		}
	}
}
