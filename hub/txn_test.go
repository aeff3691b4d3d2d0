package hub

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weirhub/weir/codecs"
)

func txnBatch(t testing.TB, pid int64, epoch int16, seq int32, values ...string) []byte {
	t.Helper()
	b := codecs.Builder{Attributes: codecs.AttrTransactional}
	b.SetProducer(pid, epoch, seq)
	for _, v := range values {
		b.Append(time.Now().UnixMilli(), nil, []byte(v), nil)
	}
	out, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Clone(out)
}

// TestTransactionReplay: a transaction whose PrepareCommit reached the
// transaction log but none of whose markers did (a crash in between) is
// completed at the next open: markers written, offsets committed. An open
// transaction survives a restart and is aborted, fencing its producer,
// once its timeout passes on the hub's clock.
func TestTransactionReplay(t *testing.T) {
	dir := t.TempDir()
	var now atomic.Int64
	now.Store(time.Now().UnixMilli())
	opts := testOptions(dir)
	opts.Now = func() time.Time { return time.UnixMilli(now.Load()) }
	opts.TxnCheckInterval = time.Hour // the test aborts by hand
	h := openHub(t, opts)
	ds, _ := h.CreateDataset("d", DatasetConfig{Partitions: 1})
	p, _ := ds.Partition(0)
	pid, epoch, err := h.InitTransactionalProducer("x", time.Minute, -1, -1)
	if err != nil {
		t.Fatal(err)
	}
	tp := TopicPartition{Topic: "d", Partition: 0}
	if _, err := p.Produce(txnBatch(t, pid, epoch, 0, "early"), true); !errors.Is(err, ErrInvalidTxnState) {
		t.Fatalf("a transactional batch before AddPartitionsToTxn: %v", err)
	}
	if err := h.AddPartitionsToTxn("x", pid, epoch, []TopicPartition{tp}); err != nil {
		t.Fatal(err)
	}
	if err := h.AddOffsetsToTxn("x", pid, epoch, "g"); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Produce(txnBatch(t, pid, epoch, 0, "a", "b"), true); err != nil {
		t.Fatal(err)
	}
	if err := h.TxnOffsetCommit("x", pid, epoch, "g", map[TopicPartition]CommittedOffset{tp: {Offset: 42}}); err != nil {
		t.Fatal(err)
	}
	if lso, hw := p.LastStableOffset(), p.HighWatermark(); lso != 0 || hw != 2 {
		t.Fatalf("LSO %d, HW %d with the transaction open; want 0, 2", lso, hw)
	}
	d := h.DescribeTransactions([]string{"x"})["x"]
	h.Close()

	// The crash: PrepareCommit is logged, then nothing.
	d.State = TxnPrepareCommit
	d.Offsets = []TxnOffset{{Group: "g", Topic: "d", Partition: 0, Offset: 42}}
	line, _ := json.Marshal(d)
	f, err := os.OpenFile(filepath.Join(dir, "transactions", "state.log"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(append(line, '\n'))
	f.Close()

	h = openHub(t, opts)
	ds, _ = h.Dataset("d")
	p, _ = ds.Partition(0)
	if st := h.DescribeTransactions([]string{"x"})["x"].State; st != TxnCompleteCommit {
		t.Fatalf("after reopening, the prepared commit is %s", st)
	}
	if lso, hw := p.LastStableOffset(), p.HighWatermark(); lso != 3 || hw != 3 {
		t.Fatalf("LSO %d, HW %d after the commit marker; want 3, 3", lso, hw)
	}
	if off := h.FetchOffsets("g", nil)[tp].Offset; off != 42 {
		t.Fatalf("the transaction's group offset is %d, want 42", off)
	}

	// An open transaction across a restart, then its timeout.
	if err := h.AddPartitionsToTxn("x", pid, epoch, []TopicPartition{tp}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Produce(txnBatch(t, pid, epoch, 2, "c"), true); err != nil {
		t.Fatal(err)
	}
	h.Close()
	h = openHub(t, opts)
	defer h.Close()
	ds, _ = h.Dataset("d")
	p, _ = ds.Partition(0)
	if lso := p.LastStableOffset(); lso != 3 {
		t.Fatalf("LSO %d after a restart with the transaction open; want 3", lso)
	}
	if n := h.AbortExpiredTransactions(); n != 0 {
		t.Fatalf("aborted %d transactions before their timeout", n)
	}
	now.Add(time.Minute.Milliseconds() + 1)
	if n := h.AbortExpiredTransactions(); n != 1 {
		t.Fatalf("aborted %d transactions after the timeout, want 1", n)
	}
	if lso, hw := p.LastStableOffset(), p.HighWatermark(); lso != 5 || hw != 5 {
		t.Fatalf("LSO %d, HW %d after the abort; want 5, 5", lso, hw)
	}
	if ab := p.AbortedTxns(0, 5); len(ab) != 1 || ab[0].FirstOffset != 3 || ab[0].ProducerID != pid {
		t.Fatalf("aborted transactions %+v", ab)
	}
	if err := h.EndTxn("x", pid, epoch, true); !errors.Is(err, ErrProducerFenced) {
		t.Fatalf("committing after the timeout: %v", err)
	}
	if _, err := p.Produce(txnBatch(t, pid, epoch, 3, "zombie"), true); !errors.Is(err, ErrInvalidProducerEpoch) {
		t.Fatalf("producing after the timeout: %v", err)
	}
	// A new incarnation gets the next epoch after the fencing one.
	if pid2, e2, err := h.InitTransactionalProducer("x", time.Minute, -1, -1); err != nil || pid2 != pid || e2 != epoch+2 {
		t.Fatalf("InitTransactionalProducer = %d, %d, %v; want %d, %d", pid2, e2, err, pid, epoch+2)
	}
}

// TestTransactionReconcile: the coordinator syncs decisions only, so a
// crash can lose the line that added a partition to a transaction. At
// open the partitions' own state finds such a transaction: it is aborted
// there when the coordinator does not know it as open, and rejoins it
// when it does.
func TestTransactionReconcile(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions(dir)
	h := openHub(t, opts)
	ds, _ := h.CreateDataset("d", DatasetConfig{Partitions: 2})
	p0, _ := ds.Partition(0)
	pid, epoch, err := h.InitTransactionalProducer("x", time.Minute, -1, -1)
	if err != nil {
		t.Fatal(err)
	}
	initial := h.DescribeTransactions([]string{"x"})["x"]
	tp0, tp1 := TopicPartition{Topic: "d", Partition: 0}, TopicPartition{Topic: "d", Partition: 1}
	if err := h.AddPartitionsToTxn("x", pid, epoch, []TopicPartition{tp0}); err != nil {
		t.Fatal(err)
	}
	if _, err := p0.Produce(txnBatch(t, pid, epoch, 0, "a", "b"), true); err != nil {
		t.Fatal(err)
	}
	h.Close()
	// The crash lost the AddPartitionsToTxn line.
	line, _ := json.Marshal(initial)
	if err := os.WriteFile(filepath.Join(dir, "transactions", "state.log"), append(line, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
	h = openHub(t, opts)
	ds, _ = h.Dataset("d")
	p0, _ = ds.Partition(0)
	if lso, hw := p0.LastStableOffset(), p0.HighWatermark(); lso != 3 || hw != 3 {
		t.Fatalf("LSO %d, HW %d: the transaction the coordinator lost is not aborted; want 3, 3", lso, hw)
	}
	if ab := p0.AbortedTxns(0, 3); len(ab) != 1 {
		t.Fatalf("aborted transactions %+v", ab)
	}

	// Open in two partitions, the second's line lost: it rejoins.
	pid, epoch, _ = h.InitTransactionalProducer("x", time.Minute, pid, epoch)
	p1, _ := ds.Partition(1)
	if err := h.AddPartitionsToTxn("x", pid, epoch, []TopicPartition{tp0}); err != nil {
		t.Fatal(err)
	}
	ongoing := h.DescribeTransactions([]string{"x"})["x"]
	if err := h.AddPartitionsToTxn("x", pid, epoch, []TopicPartition{tp1}); err != nil {
		t.Fatal(err)
	}
	p0.Produce(txnBatch(t, pid, epoch, 0, "c"), true)
	if _, err := p1.Produce(txnBatch(t, pid, epoch, 0, "d"), true); err != nil {
		t.Fatal(err)
	}
	h.Close()
	line, _ = json.Marshal(ongoing)
	if err := os.WriteFile(filepath.Join(dir, "transactions", "state.log"), append(line, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
	h = openHub(t, opts)
	defer h.Close()
	if d := h.DescribeTransactions([]string{"x"})["x"]; d.State != TxnOngoing || len(d.Partitions) != 2 {
		t.Fatalf("after reopening: %+v; want Ongoing in both partitions", d)
	}
	if err := h.EndTxn("x", pid, epoch, true); err != nil {
		t.Fatal(err)
	}
	ds, _ = h.Dataset("d")
	p1, _ = ds.Partition(1)
	if lso, hw := p1.LastStableOffset(), p1.HighWatermark(); lso != 2 || hw != 2 {
		t.Fatalf("partition 1: LSO %d, HW %d after the commit; want 2, 2", lso, hw)
	}
}

// TestTransactionCheckBack: with transaction.check_url, a transaction past
// its timeout is POSTed there and ended by the answer: commit (its records
// become visible, its staged offsets committed), abort, or unknown (asked
// again after another timeout, then aborted after the limit). Ids without
// the prefix are aborted as before.
func TestTransactionCheckBack(t *testing.T) {
	var mu sync.Mutex
	asked := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req checkRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || len(req.Partitions) != 1 {
			http.Error(w, "bad request", 400)
			return
		}
		mu.Lock()
		asked[req.TransactionalID]++
		mu.Unlock()
		switch req.TransactionalID {
		case "cb-commit":
			fmt.Fprint(w, `{"action": "commit"}`)
		case "cb-abort":
			fmt.Fprint(w, "abort")
		default:
			fmt.Fprint(w, "unknown")
		}
	}))
	defer srv.Close()
	var now atomic.Int64
	now.Store(time.Now().UnixMilli())
	opts := testOptions(t.TempDir())
	opts.Now = func() time.Time { return time.UnixMilli(now.Load()) }
	opts.TxnCheckInterval = time.Hour
	opts.TxnCheckURL, opts.TxnCheckPrefix, opts.TxnCheckLimit = srv.URL, "cb-", 3
	h := openHub(t, opts)
	defer h.Close()
	ds, _ := h.CreateDataset("d", DatasetConfig{Partitions: 4})
	ids := []string{"cb-commit", "cb-abort", "cb-unknown", "plain"}
	for i, id := range ids {
		pid, epoch, err := h.InitTransactionalProducer(id, time.Second, -1, -1)
		if err != nil {
			t.Fatal(err)
		}
		tp := TopicPartition{Topic: "d", Partition: int32(i)}
		if err := h.AddPartitionsToTxn(id, pid, epoch, []TopicPartition{tp}); err != nil {
			t.Fatal(err)
		}
		if err := h.AddOffsetsToTxn(id, pid, epoch, "g"); err != nil {
			t.Fatal(err)
		}
		if err := h.TxnOffsetCommit(id, pid, epoch, "g", map[TopicPartition]CommittedOffset{tp: {Offset: 7}}); err != nil {
			t.Fatal(err)
		}
		p, _ := ds.Partition(int32(i))
		if _, err := p.Produce(txnBatch(t, pid, epoch, 0, id), true); err != nil {
			t.Fatal(err)
		}
	}
	state := func(id string) string { return h.DescribeTransactions([]string{id})[id].State }
	now.Add(1001)
	if n := h.AbortExpiredTransactions(); n != 3 {
		t.Fatalf("ended %d transactions, want 3 (commit, abort, plain)", n)
	}
	want := map[string]string{"cb-commit": TxnCompleteCommit, "cb-abort": TxnCompleteAbort, "cb-unknown": TxnOngoing, "plain": TxnCompleteAbort}
	for id, st := range want {
		if got := state(id); got != st {
			t.Errorf("%s is %s, want %s", id, got, st)
		}
	}
	p0, _ := ds.Partition(0)
	if lso, hw := p0.LastStableOffset(), p0.HighWatermark(); lso != hw || len(p0.AbortedTxns(0, hw)) != 0 {
		t.Fatalf("the committed transaction: LSO %d, HW %d, aborted %v", lso, hw, p0.AbortedTxns(0, hw))
	}
	if off := h.FetchOffsets("g", nil)[TopicPartition{Topic: "d", Partition: 0}].Offset; off != 7 {
		t.Fatalf("the check-back commit committed offset %d, want 7", off)
	}
	if _, ok := h.FetchOffsets("g", nil)[TopicPartition{Topic: "d", Partition: 1}]; ok {
		t.Fatal("the aborted transaction's offset was committed")
	}
	// unknown: asked again after each timeout, aborted after the third.
	for range 2 {
		h.AbortExpiredTransactions() // not yet past the new timeout
		now.Add(1001)
		h.AbortExpiredTransactions()
	}
	if got := state("cb-unknown"); got != TxnCompleteAbort {
		t.Fatalf("cb-unknown is %s after the limit, want %s", got, TxnCompleteAbort)
	}
	mu.Lock()
	defer mu.Unlock()
	if asked["cb-unknown"] != 3 || asked["cb-commit"] != 1 || asked["plain"] != 0 {
		t.Fatalf("check-backs: %v", asked)
	}
}

// TestTxnOffsetsSurviveRestart: offsets staged in an open transaction are
// kept with it across a restart of the hub and committed with it.
func TestTxnOffsetsSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions(dir)
	h := openHub(t, opts)
	ds, _ := h.CreateDataset("d", DatasetConfig{Partitions: 1})
	p, _ := ds.Partition(0)
	pid, epoch, _ := h.InitTransactionalProducer("x", time.Minute, -1, -1)
	tp := TopicPartition{Topic: "d", Partition: 0}
	if err := h.AddPartitionsToTxn("x", pid, epoch, []TopicPartition{tp}); err != nil {
		t.Fatal(err)
	}
	if err := h.AddOffsetsToTxn("x", pid, epoch, "g"); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Produce(txnBatch(t, pid, epoch, 0, "a"), true); err != nil {
		t.Fatal(err)
	}
	if err := h.TxnOffsetCommit("x", pid, epoch, "g", map[TopicPartition]CommittedOffset{{Topic: "in", Partition: 3}: {Offset: 99}}); err != nil {
		t.Fatal(err)
	}
	h.Close()
	h = openHub(t, opts)
	defer h.Close()
	if err := h.EndTxn("x", pid, epoch, true); err != nil {
		t.Fatal(err)
	}
	if off := h.FetchOffsets("g", nil)[TopicPartition{Topic: "in", Partition: 3}].Offset; off != 99 {
		t.Fatalf("offset committed with the transaction after a restart: %d, want 99", off)
	}
}
