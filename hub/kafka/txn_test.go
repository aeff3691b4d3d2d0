package kafka

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhub/weir/hub"
)

// consumeAll reads topic from the start until nothing new arrives for a
// while, with the given isolation, and returns the values.
func consumeAll(t *testing.T, addr, topic string, iso kgo.IsolationLevel, want int) []string {
	t.Helper()
	cl := newClient(t, addr, kgo.ConsumeTopics(topic), kgo.FetchIsolationLevel(iso),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(200*time.Millisecond))
	defer cl.Close()
	var got []string
	deadline := time.Now().Add(10 * time.Second)
	quiet := 0
	for time.Now().Before(deadline) && quiet < 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		fs := cl.PollFetches(ctx)
		cancel()
		n := 0
		fs.EachError(func(_ string, _ int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("fetch: %v", err)
			}
		})
		fs.EachRecord(func(r *kgo.Record) { got = append(got, string(r.Value)); n++ })
		if n == 0 && len(got) >= want {
			quiet++
		}
	}
	return got
}

func produceTxn(t *testing.T, cl *kgo.Client, topic, prefix string, n int, commit bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := cl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		r := &kgo.Record{Topic: topic, Key: []byte(fmt.Sprint(i)), Value: fmt.Appendf(nil, "%s-%d", prefix, i)}
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatalf("transactional produce: %v", err)
		}
	}
	if err := cl.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
		t.Fatalf("ending the transaction (commit %v): %v", commit, err)
	}
}

// TestTransactionsFranzGo: franz-go's transactional producer commits and
// aborts; a read_committed consumer sees the committed records only, a
// read_uncommitted one all; an open transaction holds read_committed
// consumers and ListOffsets at its first offset until it times out and is
// aborted, which fences the producer; a second producer with the same
// transactional id fences the first.
func TestTransactionsFranzGo(t *testing.T) {
	b := startBroker(t, t.TempDir(), Options{})
	adm, _, ctx := adminClient(t, b.addr)
	const topic = "txn"
	if _, err := adm.CreateTopic(ctx, 3, 1, nil, topic); err != nil {
		t.Fatal(err)
	}
	p := newClient(t, b.addr, kgo.TransactionalID("t1"), kgo.DefaultProduceTopic(topic), kgo.TransactionTimeout(2*time.Second))
	produceTxn(t, p, topic, "c1", 20, true)
	produceTxn(t, p, topic, "a", 20, false)
	produceTxn(t, p, topic, "c2", 10, true)

	committed := consumeAll(t, b.addr, topic, kgo.ReadCommitted(), 30)
	sort.Strings(committed)
	if len(committed) != 30 {
		t.Fatalf("read_committed got %d records, want the 30 committed: %v", len(committed), committed)
	}
	for _, v := range committed {
		if v[0] != 'c' {
			t.Fatalf("read_committed got an aborted record %q", v)
		}
	}
	if all := consumeAll(t, b.addr, topic, kgo.ReadUncommitted(), 50); len(all) != 50 {
		t.Fatalf("read_uncommitted got %d records, want 50", len(all))
	}

	// An open transaction: read_committed stops before it.
	if err := p.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := p.ProduceSync(ctx, &kgo.Record{Topic: topic, Partition: 0, Value: []byte("open")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	lso, err := adm.ListCommittedOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	hw, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	if l, e := sumOffsets(lso), sumOffsets(hw); l != e-1 {
		t.Fatalf("ListOffsets read_committed sums to %d, read_uncommitted to %d: the open transaction is not held back", l, e)
	}
	desc, err := adm.DescribeTransactions(ctx, "t1")
	if err != nil {
		t.Fatal(err)
	}
	if d, ok := desc["t1"]; !ok || d.State != "Ongoing" {
		t.Fatalf("DescribeTransactions: %+v", desc)
	}
	if got := consumeAll(t, b.addr, topic, kgo.ReadCommitted(), 30); len(got) != 30 {
		t.Fatalf("read_committed with a transaction open got %d records, want 30", len(got))
	}

	// The timeout aborts it and fences the producer.
	deadline := time.Now().Add(10 * time.Second)
	for {
		d, err := adm.DescribeTransactions(ctx, "t1")
		if err != nil {
			t.Fatal(err)
		}
		if d["t1"].State == "CompleteAbort" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the transaction did not time out: %+v", d["t1"])
		}
		time.Sleep(100 * time.Millisecond)
	}
	err = p.EndTransaction(ctx, kgo.TryCommit)
	if err == nil {
		t.Fatal("committing a transaction that timed out succeeded")
	}
	lso, _ = adm.ListCommittedOffsets(ctx, topic)
	hw, _ = adm.ListEndOffsets(ctx, topic)
	if l, e := sumOffsets(lso), sumOffsets(hw); l != e {
		t.Fatalf("after the abort the last stable offsets sum to %d, the ends to %d", l, e)
	}
	if got := consumeAll(t, b.addr, topic, kgo.ReadCommitted(), 30); len(got) != 30 {
		t.Fatalf("read_committed after the timeout got %d records, want 30", len(got))
	}

	// Zombie fencing: a new incarnation of t1 fences the old one.
	old := newClient(t, b.addr, kgo.TransactionalID("t2"), kgo.DefaultProduceTopic(topic))
	if err := old.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := old.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte("zombie-1")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	young := newClient(t, b.addr, kgo.TransactionalID("t2"), kgo.DefaultProduceTopic(topic))
	produceTxn(t, young, topic, "c3", 5, true)
	err = old.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte("zombie-2")}).FirstErr()
	if err == nil {
		err = old.EndTransaction(ctx, kgo.TryCommit)
	}
	if !errors.Is(err, kerr.ProducerFenced) && !errors.Is(err, kerr.InvalidProducerEpoch) && !errors.Is(err, kerr.InvalidTxnState) {
		t.Fatalf("the zombie producer was not fenced: %v", err)
	}
	got := consumeAll(t, b.addr, topic, kgo.ReadCommitted(), 35)
	for _, v := range got {
		if v[0] == 'z' || v[0] == 'a' || v == "open" {
			t.Fatalf("read_committed got %q", v)
		}
	}
	if len(got) != 35 {
		t.Fatalf("read_committed got %d records, want 35", len(got))
	}
	lt, err := adm.ListTransactions(ctx, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(lt) != 2 {
		t.Fatalf("ListTransactions: %+v", lt)
	}
}

func sumOffsets(l kadm.ListedOffsets) int64 {
	var n int64
	l.Each(func(o kadm.ListedOffset) { n += o.Offset })
	return n
}

// TestGroupTransactSessionExactlyOnce: franz-go's consume-transform-produce
// (GroupTransactSession: a consumer group reading one topic, producing to
// another and committing its offsets in the same transactions) is stopped
// in the middle of a transaction and started again, then the hub is
// restarted and a third session finishes: the output, read with
// read_committed, holds every input record exactly once.
func TestGroupTransactSessionExactlyOnce(t *testing.T) {
	dir := t.TempDir()
	b := startBroker(t, dir, Options{})
	adm, _, ctx := adminClient(t, b.addr)
	if _, err := adm.CreateTopic(ctx, 2, 1, nil, "in"); err != nil {
		t.Fatal(err)
	}
	if _, err := adm.CreateTopic(ctx, 2, 1, nil, "out"); err != nil {
		t.Fatal(err)
	}
	const total = 300
	in := newClient(t, b.addr)
	for i := range total {
		if err := in.ProduceSync(ctx, &kgo.Record{Topic: "in", Key: []byte(fmt.Sprint(i)), Value: fmt.Appendf(nil, "r%03d", i)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	// run processes until stopAfter records are committed (or the input
	// is done), then, with crash, produces one more batch in a transaction
	// and abandons it.
	run := func(addr string, stopAfter int, crash bool) int {
		sess, err := kgo.NewGroupTransactSession(kgo.SeedBrokers(addr), kgo.TransactionalID("eos"), kgo.ConsumerGroup("eos-g"),
			kgo.ConsumeTopics("in"), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.TransactionTimeout(3*time.Second),
			kgo.FetchMaxWait(200*time.Millisecond), kgo.SessionTimeout(2*time.Second), kgo.HeartbeatInterval(500*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		defer sess.Close()
		done, idle := 0, 0
		for done < stopAfter && idle < 10 {
			pctx, cancel := context.WithTimeout(ctx, time.Second)
			fs := sess.PollRecords(pctx, 25)
			cancel()
			if fs.NumRecords() == 0 {
				idle++
				continue
			}
			idle = 0
			if err := sess.Begin(); err != nil {
				t.Fatal(err)
			}
			n := 0
			fs.EachRecord(func(r *kgo.Record) {
				n++
				sess.Produce(ctx, &kgo.Record{Topic: "out", Key: r.Key, Value: append([]byte("out-"), r.Value...)}, nil)
			})
			if crash && done+n >= stopAfter {
				if err := sess.Client().Flush(ctx); err != nil {
					t.Fatal(err)
				}
				return done // abandoned mid-transaction
			}
			committed, err := sess.End(ctx, kgo.TryCommit)
			if err != nil {
				t.Fatalf("ending a transaction: %v", err)
			}
			if committed {
				done += n
			}
		}
		return done
	}
	n1 := run(b.addr, 100, true)
	n2 := run(b.addr, 200, true)
	b.stop()
	b = startBroker(t, dir, Options{})
	n3 := run(b.addr, total, false)
	t.Logf("sessions committed %d, %d and %d records", n1, n2, n3)

	got := consumeAll(t, b.addr, "out", kgo.ReadCommitted(), total)
	seen := map[string]int{}
	for _, v := range got {
		seen[v]++
	}
	for i := range total {
		if v := fmt.Sprintf("out-r%03d", i); seen[v] != 1 {
			t.Errorf("%s is in the output %d times", v, seen[v])
		}
	}
	if len(got) != total {
		t.Errorf("read_committed output has %d records, want %d", len(got), total)
	}
	if all := consumeAll(t, b.addr, "out", kgo.ReadUncommitted(), total); len(all) <= total {
		t.Errorf("read_uncommitted output has %d records: the abandoned transactions left nothing to skip, the test proves little", len(all))
	}
}

// BenchmarkTransactionalProduce compares, in one run, franz-go producing
// 100 records at a time idempotently (one ProduceSync of 100) with the
// same records in a transaction each (begin, 100 records, commit). Each
// op is 100 records.
func BenchmarkTransactionalProduce(b *testing.B) {
	for _, fsync := range []string{"always", "interval"} {
		b.Run("fsync="+fsync, func(b *testing.B) { benchTransactional(b, fsync) })
	}
}

func benchTransactional(b *testing.B, fsync string) {
	h, err := hub.Open(hub.Options{DataDir: b.TempDir(), Defaults: hub.DatasetConfig{Fsync: fsync}})
	if err != nil {
		b.Fatal(err)
	}
	srv := NewServer(h, Options{})
	ln, err := srv.Listen("127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go srv.Serve(ln)
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		h.Close()
	}()
	br := struct{ addr string }{ln.Addr().String()}
	values := make([]*kgo.Record, 100)
	for i := range values {
		values[i] = &kgo.Record{Topic: "bench", Value: make([]byte, 100)}
	}
	ctx := context.Background()
	b.Run("idempotent", func(b *testing.B) {
		cl := newClient(b, br.addr, kgo.DefaultProduceTopic("bench"), kgo.AllowAutoTopicCreation())
		b.ReportAllocs()
		b.SetBytes(100 * 100)
		for b.Loop() {
			if err := cl.ProduceSync(ctx, cloneRecords(values)...).FirstErr(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("transactional", func(b *testing.B) {
		cl := newClient(b, br.addr, kgo.DefaultProduceTopic("bench"), kgo.TransactionalID("bench"), kgo.AllowAutoTopicCreation())
		b.ReportAllocs()
		b.SetBytes(100 * 100)
		for b.Loop() {
			if err := cl.BeginTransaction(); err != nil {
				b.Fatal(err)
			}
			if err := cl.ProduceSync(ctx, cloneRecords(values)...).FirstErr(); err != nil {
				b.Fatal(err)
			}
			if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func cloneRecords(rs []*kgo.Record) []*kgo.Record {
	out := make([]*kgo.Record, len(rs))
	for i, r := range rs {
		out[i] = &kgo.Record{Topic: r.Topic, Value: r.Value}
	}
	return out
}
