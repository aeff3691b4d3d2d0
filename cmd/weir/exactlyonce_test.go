package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhub/weir/hub"
)

// prefillSized writes n records {"id":i,"pad":"xx..."} of about size
// bytes spread over a dataset's partitions: with larger records, a
// pipeline's poll (about 1 MiB) holds fewer.
func prefillSized(t *testing.T, dir, dataset string, partitions int32, n, size int) {
	t.Helper()
	h, err := hub.Open(hub.Options{DataDir: dir, Defaults: hub.DatasetConfig{Fsync: "never"}})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if _, err := h.CreateDataset(dataset, hub.DatasetConfig{Partitions: partitions}); err != nil {
		t.Fatal(err)
	}
	c := hub.NewLocalClient(h)
	pad := strings.Repeat("x", size)
	for start := 0; start < n; start += 1000 {
		var recs []hub.Record
		for i := start; i < min(start+1000, n); i++ {
			recs = append(recs, hub.Record{Key: []byte(fmt.Sprint(i % 97)), Value: fmt.Appendf(nil, `{"id":%d,"pad":"%s"}`, i, pad)})
		}
		if err := c.Produce(context.Background(), dataset, recs, hub.ProduceOptions{}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
}

// eoHub is where an exactly-once test's pipeline runs: the in-process hub
// of `weir run` (serve is nil) or a `weir serve` reached over Kafka.
type eoHub struct {
	t     *testing.T
	data  string
	serve *weirProcess
	adm   *kadm.Client // of serve
}

// openTxn reports whether the transactional id has an open transaction
// that wrote to some partition.
func (e *eoHub) openTxn(id string) bool {
	e.t.Helper()
	if e.serve != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		d, err := e.adm.DescribeTransactions(ctx, id)
		if err != nil {
			e.t.Fatal(err)
		}
		return d[id].State == hub.TxnOngoing && len(d[id].Topics) > 0
	}
	h, err := hub.Open(hub.Options{DataDir: e.data})
	if err != nil {
		e.t.Fatal(err)
	}
	defer h.Close()
	d := h.DescribeTransactions([]string{id})[id]
	return d.State == hub.TxnOngoing && len(d.Partitions) > 0
}

// waitOpenTxn waits, over Kafka, until the transactional id has an open
// transaction that wrote records.
func (e *eoHub) waitOpenTxn(id string, logs *strings.Builder) {
	e.t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for !e.openTxn(id) {
		if time.Now().After(deadline) {
			e.t.Fatalf("no transaction of %s opened in 90s:\n%s", id, logs.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitProgress waits until the group's committed offsets sum to more
// than before.
func (e *eoHub) waitProgress(group string, before int64, logs *strings.Builder) {
	e.t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for e.committed(group) <= before {
		if time.Now().After(deadline) {
			e.t.Fatalf("nothing committed in 90s:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// committed sums the group's committed offsets.
func (e *eoHub) committed(group string) int64 {
	e.t.Helper()
	var sum int64
	if e.serve != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		offs, err := e.adm.FetchOffsets(ctx, group)
		if err != nil {
			e.t.Fatal(err)
		}
		offs.Each(func(o kadm.OffsetResponse) { sum += max(o.At, 0) })
		return sum
	}
	h, err := hub.Open(hub.Options{DataDir: e.data})
	if err != nil {
		e.t.Fatal(err)
	}
	defer h.Close()
	for _, o := range h.FetchOffsets(group, nil) {
		sum += o.Offset
	}
	return sum
}

// segmentBytes is the size of the log segments under dir.
func segmentBytes(dir string) int64 {
	var n int64
	filepath.Walk(dir, func(path string, info os.FileInfo, err error) error {
		if err == nil && info.Mode().IsRegular() && strings.HasSuffix(path, ".log") {
			n += info.Size()
		}
		return nil
	})
	return n
}

// TestRunExactlyOnceKill9 kills `weir run` with SIGKILL again and again
// while an exactly-once pipeline copies a dataset into another, then lets a
// last run finish. Read with read_committed (franz-go, through `weir
// serve` on the same directory), the output holds every input record
// exactly once: what a killed run wrote without committing was aborted
// when the next run fenced its transactional id. WEIR_RUN_CRASHES sets the
// least number of kills (default 6); the test kills until two landed
// inside a transaction (at most 40).
func TestRunExactlyOnceKill9(t *testing.T) {
	testExactlyOnceKill9(t, false)
}

// TestRunExactlyOnceOverKafkaKill9 is TestRunExactlyOnceKill9 with the
// pipeline reaching `weir serve` through hub.kafka: franz-go's
// transactional producer, offsets sent in the transaction with the
// consumer's generation, read_committed consumers.
func TestRunExactlyOnceOverKafkaKill9(t *testing.T) {
	testExactlyOnceKill9(t, true)
}

func testExactlyOnceKill9(t *testing.T, overKafka bool) {
	kills := crashKills(6)
	if overKafka {
		kills = crashKills(3)
	}
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	const n = 30000
	prefillSized(t, data, "in", 3, n, 900)
	e := &eoHub{t: t, data: data}
	hubConf := "data_dir: " + data
	if overKafka {
		e.serve = startServe(t, data)
		e.adm = kadm.NewClient(mustClient(t, e.serve.addr))
		hubConf = fmt.Sprintf(`kafka: {brokers: ["%s"]}`, e.serve.addr)
	}
	file := filepath.Join(dir, "p.yaml")
	os.WriteFile(file, []byte(fmt.Sprintf(`
hub: {%s}
datasets:
  in: {partitions: 3}
  out: {partitions: 2, fsync: always}
pipelines:
  copy:
    from: in
    processing: exactly_once
    processors: [{parse: json}, {set: {seen: 'true'}}, {rate_limit: {rate: 5000, burst: 500}}]
    to:
      - dataset: out
        batching: {count: 500, bytes: 64KiB, period: 20ms}
`, hubConf)), 0o644)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	midTxn := 0
	// Past the first kills, go on until two landed inside a transaction,
	// but stop before the copy could finish: the last run must have work.
	for k := 0; k < kills || midTxn < 2 && k < 40 && e.committed("copy") < n*3/4; k++ {
		var before int64
		if e.serve != nil {
			before = e.committed("copy")
		}
		cmd := weirCmd(t, nil, "run", file, "--stats-every", "0", "--log-level", "warn")
		var logs strings.Builder
		cmd.Stderr = &logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		if e.serve == nil && k < kills {
			// A kill at a random moment of the copy, not an ordering of events.
			time.Sleep(time.Duration(150+rng.IntN(300)) * time.Millisecond)
		} else if e.serve == nil {
			// Past the random kills (a fast machine spends most of the copy
			// waiting for the rate limit, outside any transaction), aim: kill
			// as soon as the output grows, when the run has written records
			// of a transaction that it has not committed yet.
			outLogs := filepath.Join(data, "datasets", "out")
			start := segmentBytes(outLogs)
			for deadline := time.Now().Add(90 * time.Second); segmentBytes(outLogs) <= start; time.Sleep(time.Millisecond) {
				if time.Now().After(deadline) {
					cmd.Process.Kill()
					cmd.Wait()
					t.Fatalf("kill %d: nothing written to out in 90s:\n%s", k, logs.String())
				}
			}
		} else {
			// Over Kafka a restarted run waits for the killed member's
			// session to expire (10s) before it is assigned anything, so
			// each kill is aimed: after the run committed a transaction,
			// once the next one has written records.
			e.waitProgress("copy", before, &logs)
			e.waitOpenTxn("weir-copy-copy", &logs)
		}
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Exited() {
			t.Fatalf("kill %d: weir run exited on its own (%v) before the kill:\n%s", k, cmd.ProcessState, logs.String())
		}
		if e.openTxn("weir-copy-copy") {
			midTxn++
		}
		kills = max(kills, k+1)
	}
	if midTxn == 0 {
		t.Fatalf("none of %d kills landed inside a transaction", kills)
	}
	// The kills must have landed mid-copy for the test to mean anything.
	if done := e.committed("copy"); done == 0 || done == n {
		t.Fatalf("%d of %d records committed before the last run: the kills did not interrupt the copy", done, n)
	} else {
		t.Logf("%d of %d records committed across the killed runs", done, n)
	}
	// Over Kafka the last run joins while the killed member still holds
	// the partitions: it waits for their assignment, then drains.
	cmd := weirCmd(t, nil, "run", file, "--until-drained", "--stats-every", "0", "--log-level", "warn")
	if outb, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the last run failed: %v\n%s", err, outb)
	}

	if e.serve == nil {
		e.serve = startServe(t, data)
	}
	read := func(iso kgo.IsolationLevel) map[int]int {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		c := mustClient(t, e.serve.addr, kgo.ConsumeTopics("out"), kgo.FetchIsolationLevel(iso), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
		defer c.Close()
		ids := map[int]int{}
		for idle := 0; idle < 3; {
			pctx, pcancel := context.WithTimeout(ctx, time.Second)
			fs := c.PollFetches(pctx)
			pcancel()
			if ctx.Err() != nil {
				t.Fatal("reading the output took over 2 minutes")
			}
			if fs.NumRecords() == 0 {
				idle++
			}
			fs.EachRecord(func(r *kgo.Record) {
				var v struct {
					ID   *int
					Seen bool
				}
				if err := json.Unmarshal(r.Value, &v); err != nil || v.ID == nil || !v.Seen {
					t.Fatalf("output record %q is not a processed input record", r.Value)
				}
				ids[*v.ID]++
			})
		}
		return ids
	}
	ids := read(kgo.ReadCommitted())
	for i := range n {
		if c := ids[i]; c != 1 {
			t.Fatalf("read_committed: record %d is in the output %d times after %d kills, want exactly once", i, c, kills)
		}
	}
	if len(ids) != n {
		t.Fatalf("read_committed: %d distinct records in the output, want %d", len(ids), n)
	}
	all := read(kgo.ReadUncommitted())
	stored := 0
	for _, c := range all {
		stored += c
	}
	t.Logf("%d kills, %d inside a transaction: read_committed sees each of %d records once; %d records stored in all (%d of aborted transactions)", kills, midTxn, n, stored, stored-n)
}

// TestLintExactlyOnce: a sink that cannot write in the hub's transaction
// (file, elasticsearch) under processing: exactly_once is a configuration
// error at its place, as are a broadcast exactly-once pipeline and a
// transactional_id without exactly_once; a dataset sink is fine.
func TestLintExactlyOnce(t *testing.T) {
	file := filepath.Join(t.TempDir(), "p.yaml")
	os.WriteFile(file, []byte(`datasets:
  in: {partitions: 2}
  out: {partitions: 2}
pipelines:
  copy:
    from: in
    processing: exactly_once
    to:
      - dataset: out
      - file: {path: /tmp/x.ndjson}
      - elasticsearch: {urls: ["http://127.0.0.1:9200"], index: logs}
  plain:
    from: in
    transactional_id: nope
    to: [{dataset: out}]
  fanout:
    from: in
    broadcast: true
    processing: exactly_once
    to: [{dataset: out}]
  good:
    from: in
    processing: exactly_once
    to: [{dataset: out}]
`), 0o644)
	msg, err := run(t, "lint", file)
	if err == nil {
		t.Fatalf("weir lint accepted sinks that cannot run exactly once:\n%s", msg)
	}
	for _, want := range []string{
		file + ":10:9: sink 2 of pipeline copy (file) cannot take part in processing: exactly_once",
		file + ":11:9: sink 3 of pipeline copy (elasticsearch) cannot take part in processing: exactly_once",
		file + ":14:23: transactional_id is for processing: exactly_once",
		file + ":19:17: processing: exactly_once needs a consumer group",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("weir lint output lacks %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, ":9:9:") || strings.Contains(msg, "pipeline good") {
		t.Errorf("weir lint refused a dataset sink under exactly_once:\n%s", msg)
	}
}
