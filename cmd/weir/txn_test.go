package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestServeKill9WithOpenTransactions: `weir serve` is killed with SIGKILL
// while a transaction is open (its records stored, no marker); after the
// restart the committed transaction is whole, the open one is aborted when
// its timeout passes (the transaction log kept its partitions), the
// aborted one before it stays aborted (rebuilt from the markers in the
// log), and a read_committed consumer sees the committed records only.
func TestServeKill9WithOpenTransactions(t *testing.T) {
	dir := t.TempDir()
	p := startServe(t, dir, "--fsync", "always")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl := mustClient(t, p.addr, kgo.TransactionalID("crash"), kgo.DefaultProduceTopic("tx"), kgo.TransactionTimeout(2*time.Second))
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, 3, 1, nil, "tx"); err != nil {
		t.Fatal(err)
	}
	txn := func(prefix string, n int, end bool) {
		if err := cl.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		for i := range n {
			if err := cl.ProduceSync(ctx, &kgo.Record{Key: []byte(fmt.Sprint(i)), Value: fmt.Appendf(nil, "%s-%d", prefix, i)}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
		if end {
			if err := cl.EndTransaction(ctx, kgo.TransactionEndTry(prefix == "committed")); err != nil {
				t.Fatal(err)
			}
		}
	}
	txn("aborted", 20, true)
	txn("committed", 30, true)
	txn("open", 30, false)
	p.kill9(t)
	cl.Close()

	p = startServe(t, dir, "--fsync", "always")
	adm := kadm.NewClient(mustClient(t, p.addr))
	deadline := time.Now().Add(20 * time.Second)
	for {
		d, err := adm.DescribeTransactions(ctx, "crash")
		if err != nil {
			t.Fatal(err)
		}
		if d["crash"].State == "CompleteAbort" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the open transaction was not aborted after the restart: %+v\n%s", d["crash"], p.output())
		}
		time.Sleep(100 * time.Millisecond)
	}
	read := func(iso kgo.IsolationLevel) []string {
		c := mustClient(t, p.addr, kgo.ConsumeTopics("tx"), kgo.FetchIsolationLevel(iso), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
		var got []string
		for idle := 0; idle < 3; {
			pctx, pcancel := context.WithTimeout(ctx, 700*time.Millisecond)
			fs := c.PollFetches(pctx)
			pcancel()
			if fs.NumRecords() == 0 {
				idle++
			}
			fs.EachRecord(func(r *kgo.Record) { got = append(got, string(r.Value)) })
		}
		c.Close()
		return got
	}
	got := read(kgo.ReadCommitted())
	if len(got) != 30 {
		t.Fatalf("read_committed after the crash got %d records, want the 30 committed: %v", len(got), got)
	}
	for _, v := range got {
		if !strings.HasPrefix(v, "committed") {
			t.Fatalf("read_committed got %q, of a transaction aborted before the crash or open at it", v)
		}
	}
	if all := read(kgo.ReadUncommitted()); len(all) != 80 {
		t.Fatalf("read_uncommitted got %d records, want 80", len(all))
	}
}
