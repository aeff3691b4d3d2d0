package sources

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/weirhub/weir/connectors"
	"github.com/weirhub/weir/hub"
	"github.com/weirhub/weir/internal/brokertest"
)

func TestKafkaSourceConfigErrors(t *testing.T) {
	tests := []struct {
		src  string
		want string
	}{
		{"brokers: [h:1]\ntopics: []", `2:9: topics: needs at least one topic`},
		{"brokers: [h:1]\ntopics: ['a b']", `2:9: topics: "a b": a topic name has only letters`},
		{"brokers: [h:1]\ntopics: ['logs-(']\nregex: true", `2:9: topics: "logs-(": error parsing regexp`},
		{"brokers: [h]\ntopics: [t]", `1:10: brokers: "h" is not host:port`},
		{"brokers: [h:1]\ntopics: [t]\nmax_pending: 0", `3:14: max_pending: must be at least 1`},
		{"brokers: [h:1]\ntopics: [t]\nsession_timeout: 0s", `3:18: session_timeout: must be at least 1ms`},
		{"brokers: [h:1]\ntopics: [t]\nsasl: {mechanism: PLAIN}", `3:7: sasl: PLAIN needs a user`},
	}
	for _, tt := range tests {
		conf, err := parseOrErr(t, &kafkaSpec, tt.src)
		if err == nil {
			_, err = newKafka(conf, connectors.Resources{})
		}
		if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("newKafka(%q) = %v, want %s...", tt.src, err, tt.want)
		}
	}
}

// kafkaProduce writes n records like hubFill's to topic through a franz-go
// client with opts.
func kafkaProduce(t *testing.T, topic string, from, n int, opts ...kgo.Opt) {
	t.Helper()
	cl, err := kgo.NewClient(append(opts, kgo.AllowAutoTopicCreation())...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var recs []*kgo.Record
	for i := from; i < from+n; i++ {
		r := &kgo.Record{Topic: topic, Value: fmt.Appendf(nil, `{"id":%d}`, i), Timestamp: hubRecordTime(i),
			Headers: []kgo.RecordHeader{{Key: "h", Value: fmt.Appendf(nil, "v%d", i)}}}
		if i%2 == 0 {
			r.Key = fmt.Appendf(nil, "k%d", i%5)
		}
		recs = append(recs, r)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// TestKafkaSourceFromWeir consumes a topic of Weir's own Kafka server:
// every record arrives once with its key, headers and time, and the group's
// offsets are committed only once batches are acknowledged.
func TestKafkaSourceFromWeir(t *testing.T) {
	w := brokertest.StartWeir(t, hub.Options{})
	if _, err := w.Hub.CreateDataset("orders", hub.DatasetConfig{Partitions: 3}); err != nil {
		t.Fatal(err)
	}
	kafkaProduce(t, "orders", 0, 600, kgo.SeedBrokers(w.Addr))
	s := hubBuild(t, &kafkaSpec, newKafka, connectors.Resources{Name: "sources.orders"},
		fmt.Sprintf("brokers: [%s]\ntopics: [orders]\nmax_batch_records: 100\nmax_pending: 100", w.Addr))
	batches := hubReadN(t, s, 600, 20*time.Second)
	seen := map[int]bool{}
	for _, b := range batches {
		if len(b.msgs) > 100 {
			t.Errorf("batch of %d records; max_batch_records is 100", len(b.msgs))
		}
		for _, m := range b.msgs {
			id := hubCheck(t, m, "orders")
			if seen[id] {
				t.Errorf("record %d read twice", id)
			}
			seen[id] = true
		}
	}
	if got := hubCommitted(w.Hub, "sources.orders", "orders", 3); fmt.Sprint(got) != "[-1 -1 -1]" {
		t.Errorf("committed %v before any acknowledgement", got)
	}
	for _, b := range batches {
		if err := b.ack(context.Background(), nil); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := hubCommitted(w.Hub, "sources.orders", "orders", 3), hubHighWatermarks(t, w.Hub, "orders"); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("committed %v after every acknowledgement, want %v", got, want)
	}
}

// TestKafkaSourceResumes checks that what was not acknowledged, or came
// after a failed batch, is consumed again by the next member of the group,
// and what was acknowledged is not.
func TestKafkaSourceResumes(t *testing.T) {
	w := brokertest.StartWeir(t, hub.Options{})
	if _, err := w.Hub.CreateDataset("t", hub.DatasetConfig{Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	kafkaProduce(t, "t", 0, 50, kgo.SeedBrokers(w.Addr))
	conf := fmt.Sprintf("brokers: [%s]\ntopics: [t]\ngroup: g\nmax_batch_records: 10\nmax_pending: 5", w.Addr)
	s := hubBuild(t, &kafkaSpec, newKafka, connectors.Resources{}, conf)
	b := hubReadN(t, s, 50, 20*time.Second)
	if len(b) != 5 {
		t.Fatalf("read %d batches, want 5 of 10", len(b))
	}
	// Out of order: batch 1 waits for batch 0. Batch 3 fails: 4 is not
	// committed either.
	steps := []struct {
		batch int
		err   error
		want  int64
	}{{1, nil, -1}, {0, nil, 20}, {3, fmt.Errorf("stopped"), 20}, {4, nil, 20}, {2, nil, 20}}
	for _, st := range steps {
		b[st.batch].ack(context.Background(), st.err)
		if got := hubCommitted(w.Hub, "g", "t", 1)[0]; got != st.want {
			t.Fatalf("after acknowledging batch %d (err %v): committed %d, want %d", st.batch, st.err, got, st.want)
		}
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	again := hubBuild(t, &kafkaSpec, newKafka, connectors.Resources{}, conf)
	rb := hubReadN(t, again, 30, 20*time.Second)
	if first := rb[0].msgs[0].Offset; first != 20 {
		t.Errorf("the next member starts at offset %d, want 20", first)
	}
}

// TestKafkaSourceRebalance has a second member join while the first holds
// an unacknowledged batch: the rebalance waits for it to be acknowledged
// and committed, so that between them the members see every record once.
func TestKafkaSourceRebalance(t *testing.T) {
	w := brokertest.StartWeir(t, hub.Options{})
	if _, err := w.Hub.CreateDataset("shared", hub.DatasetConfig{Partitions: 4}); err != nil {
		t.Fatal(err)
	}
	const total = 800
	// Round robin over the partitions, so that each member has records.
	kafkaProduce(t, "shared", 0, total, kgo.SeedBrokers(w.Addr), kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	conf := fmt.Sprintf("brokers: [%s]\ntopics: [shared]\ngroup: g\nmax_batch_records: 20\nsession_timeout: 6s\nrebalance_timeout: 10s", w.Addr)
	a := hubBuild(t, &kafkaSpec, newKafka, connectors.Resources{}, conf)
	first := hubReadN(t, a, 1, 20*time.Second)[0]

	var mu sync.Mutex
	seen := map[int]int{}
	var perMember [2]int
	count := func(member int, msgs []*connectors.Message) {
		mu.Lock()
		defer mu.Unlock()
		perMember[member] += len(msgs)
		for _, m := range msgs {
			var id int
			fmt.Sscanf(string(m.Value), `{"id":%d}`, &id)
			seen[id]++
		}
	}
	done := func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) == total
	}
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Second)
	defer cancel()
	consume := func(member int, s connectors.Source) {
		for ctx.Err() == nil && !done() {
			rctx, rcancel := context.WithTimeout(ctx, 200*time.Millisecond)
			msgs, ack, err := s.Read(rctx)
			rcancel()
			if err != nil {
				continue
			}
			count(member, msgs)
			ack(ctx, nil)
		}
	}
	b := hubBuild(t, &kafkaSpec, newKafka, connectors.Resources{}, conf)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); consume(1, b) }()
	// b asks to join; the group waits for a, which learns of it at its next
	// heartbeat and holds the rebalance while its batch is unacknowledged.
	ks := a.(*kafkaSource)
	for wanted := false; !wanted; {
		if ctx.Err() != nil {
			t.Fatal("the first member was never asked to rebalance")
		}
		time.Sleep(20 * time.Millisecond)
		ks.mu.Lock()
		wanted = ks.wanted
		ks.mu.Unlock()
	}
	time.Sleep(200 * time.Millisecond)
	mu.Lock()
	early := perMember[1]
	mu.Unlock()
	if early != 0 {
		t.Errorf("the second member read %d records while the first held a batch", early)
	}
	count(0, first.msgs)
	if err := first.ack(ctx, nil); err != nil {
		t.Fatal(err)
	}
	consume(0, a)
	wg.Wait()
	if !done() {
		t.Fatalf("saw %d of %d records", len(seen), total)
	}
	dups := 0
	for _, n := range seen {
		dups += n - 1
	}
	if dups > 0 {
		t.Errorf("%d records seen twice; a rebalance should wait for acknowledged batches to be committed", dups)
	}
	got, want := hubCommitted(w.Hub, "g", "shared", 4), hubHighWatermarks(t, w.Hub, "shared")
	for i := range got {
		if got[i] != want[i] && !(got[i] == -1 && want[i] == 0) {
			t.Errorf("committed %v, want %v", got, want)
			break
		}
	}
	if perMember[0] == 0 || perMember[1] == 0 {
		t.Errorf("members read %v records: the second never got partitions", perMember)
	}
}

// TestKafkaSourceRegexLatest subscribes by pattern, from the latest
// offsets: records produced before the member joined are skipped.
func TestKafkaSourceRegexLatest(t *testing.T) {
	w := brokertest.StartWeir(t, hub.Options{})
	kafkaProduce(t, "logs-a", 0, 10, kgo.SeedBrokers(w.Addr))
	kafkaProduce(t, "other", 0, 10, kgo.SeedBrokers(w.Addr))
	s := hubBuild(t, &kafkaSpec, newKafka, connectors.Resources{},
		fmt.Sprintf("brokers: [%s]\ntopics: ['^logs-.*']\nregex: true\nstart: latest", w.Addr))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	got := make(chan []*connectors.Message, 1)
	go func() {
		msgs, ack, err := s.Read(ctx)
		if err == nil {
			ack(ctx, nil)
		}
		got <- msgs
	}()
	// Until the member has its partitions, new records may be skipped too:
	// keep producing.
	for i := 1000; ; i++ {
		select {
		case msgs := <-got:
			for _, m := range msgs {
				var id int
				fmt.Sscanf(string(m.Value), `{"id":%d}`, &id)
				if id < 1000 || m.Dataset != "logs-a" {
					t.Errorf("read %s from %s, produced before the member joined or not matching", m.Value, m.Dataset)
				}
			}
			if len(msgs) == 0 {
				t.Fatal("read nothing")
			}
			return
		case <-time.After(100 * time.Millisecond):
			kafkaProduce(t, "logs-a", i, 1, kgo.SeedBrokers(w.Addr))
		}
	}
}

// TestKafkaSourceSASLAndTLS consumes from kfake clusters that want SCRAM
// or TLS; wrong credentials fail Connect.
func TestKafkaSourceSASLAndTLS(t *testing.T) {
	t.Run("SCRAM-SHA-512", func(t *testing.T) {
		addr := brokertest.StartKfake(t, kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-512", "weir", "s3cret"), kfake.SeedTopics(2, "secure"))
		kafkaProduce(t, "secure", 0, 20, kgo.SeedBrokers(addr),
			kgo.SASL(scram.Auth{User: "weir", Pass: "s3cret"}.AsSha512Mechanism()))
		s := hubBuild(t, &kafkaSpec, newKafka, connectors.Resources{},
			fmt.Sprintf("brokers: [%s]\ntopics: [secure]\nsasl: {mechanism: SCRAM-SHA-512, user: weir, password: s3cret}", addr))
		for _, b := range hubReadN(t, s, 20, 20*time.Second) {
			if err := b.ack(context.Background(), nil); err != nil {
				t.Fatal(err)
			}
		}
		bad, err := newKafka(parseConfig(t, &kafkaSpec,
			fmt.Sprintf("brokers: [%s]\ntopics: [secure]\nsasl: {mechanism: SCRAM-SHA-512, user: weir, password: nope}", addr)), connectors.Resources{})
		if err != nil {
			t.Fatal(err)
		}
		defer bad.Close(context.Background())
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := bad.(connectors.Connector).Connect(ctx); err == nil {
			t.Error("Connect with a wrong password succeeded")
		}
	})
	t.Run("TLS", func(t *testing.T) {
		srvTLS, caFile := brokertest.TLS(t)
		addr := brokertest.StartKfake(t, kfake.TLS(srvTLS), kfake.SeedTopics(1, "secure"))
		kafkaProduce(t, "secure", 0, 20, kgo.SeedBrokers(addr), kgo.DialTLSConfig(brokertest.ClientTLS(t, caFile)))
		s := hubBuild(t, &kafkaSpec, newKafka, connectors.Resources{},
			fmt.Sprintf("brokers: [%s]\ntopics: [secure]\ntls: {ca_file: %s, server_name: localhost}", addr, caFile))
		if n := len(hubReadN(t, s, 20, 20*time.Second)); n == 0 {
			t.Fatal("read nothing")
		}
	})
	t.Run("unreachable", func(t *testing.T) {
		w := brokertest.StartWeir(t, hub.Options{})
		w.Stop()
		s, err := newKafka(parseConfig(t, &kafkaSpec, fmt.Sprintf("brokers: [%s]\ntopics: [t]\ndial_timeout: 500ms", w.Addr)), connectors.Resources{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close(context.Background())
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		if err := s.(connectors.Connector).Connect(ctx); err == nil {
			t.Error("Connect to a closed port succeeded")
		}
	})
}

// TestKafkaSourceLag: Lag counts the records past the last fetch of each
// partition, and reaches 0 once everything was read.
func TestKafkaSourceLag(t *testing.T) {
	w := brokertest.StartWeir(t, hub.Options{})
	if _, err := w.Hub.CreateDataset("lagged", hub.DatasetConfig{Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	for i := range 6 { // six batches
		kafkaProduce(t, "lagged", i*100, 100, kgo.SeedBrokers(w.Addr))
	}
	s := hubBuild(t, &kafkaSpec, newKafka, connectors.Resources{Name: "sources.lagged"},
		fmt.Sprintf("brokers: [%s]\ntopics: [lagged]\nmax_batch_records: 100\nfetch_max_bytes: 1KiB", w.Addr))
	l := s.(connectors.Lagger)
	if got := l.Lag(); got != 0 {
		t.Fatalf("Lag() = %d before any fetch, want 0", got)
	}
	ackAll := func(bs []hubBatch) {
		for _, b := range bs {
			if err := b.ack(context.Background(), nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	first := hubReadN(t, s, 100, 20*time.Second)
	if got := l.Lag(); got < 100 || got > 500 {
		t.Fatalf("Lag() = %d after reading the first batch of 600 records, want 100 to 500", got)
	}
	ackAll(first)
	total := 0
	for _, b := range first {
		total += len(b.msgs)
	}
	for total < 600 {
		bs := hubReadN(t, s, 1, 20*time.Second)
		for _, b := range bs {
			total += len(b.msgs)
		}
		ackAll(bs)
	}
	if got := l.Lag(); got != 0 {
		t.Fatalf("Lag() = %d after reading all, want 0", got)
	}
}
