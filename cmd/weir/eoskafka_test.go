package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhub/weir/hub"
	"github.com/weirhub/weir/hub/kafkaclient"
	"github.com/weirhub/weir/internal/kafkaconf"
)

// TestRunExactlyOnceKafkaSinkKill9: an exactly-once pipeline reads a
// dataset of its in-process hub and writes through a kafka sink to a
// second `weir serve`. Its transactions there carry the records and the
// source positions (the positions topic); `weir run` is killed with
// SIGKILL at least 5 times, each time once a transaction has written
// records it has not committed, then a last run drains the rest. A
// read_committed consumer of the output (franz-go, and kcat) sees every
// input record exactly once.
func TestRunExactlyOnceKafkaSinkKill9(t *testing.T) {
	kills := crashKills(5)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	const n = 20000
	prefillSized(t, data, "in", 3, n, 300)
	sink := &eoHub{t: t, data: filepath.Join(dir, "sink"), serve: startServe(t, filepath.Join(dir, "sink"))}
	sink.adm = kadm.NewClient(mustClient(t, sink.serve.addr))
	if _, err := sink.adm.CreateTopic(t.Context(), 2, -1, nil, "out"); err != nil {
		t.Fatal(err)
	}
	kc, err := kafkaclient.New(kafkaclient.Options{Conn: kafkaconf.Conn{Brokers: []string{sink.serve.addr}}})
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	positions := func() int64 {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		pos, err := kc.ReadPositions(ctx, "copy", "weir-positions")
		if err != nil {
			t.Fatal(err)
		}
		var sum int64
		for _, off := range pos {
			sum += off
		}
		return sum
	}
	file := filepath.Join(dir, "p.yaml")
	os.WriteFile(file, []byte(fmt.Sprintf(`
hub: {data_dir: %s}
datasets:
  in: {partitions: 3}
pipelines:
  copy:
    from: in
    processing: exactly_once
    processors: [{parse: json}, {set: {seen: 'true'}}, {rate_limit: {rate: 4000, burst: 400}}]
    to:
      - kafka:
          brokers: ["%s"]
          topic: out
          key: id
        batching: {count: 300, period: 20ms}
`, data, sink.serve.addr)), 0o644)
	const id = "weir-copy-copy"
	midTxn := 0
	for k := 0; k < kills || midTxn < 3 && k < 20 && positions() < n*3/4; k++ {
		cmd := weirCmd(t, nil, "run", file, "--stats-every", "0", "--log-level", "warn")
		var logs strings.Builder
		cmd.Stderr = &logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Aim: kill once the run's transaction on the sink's cluster has
		// written records it has not committed.
		if k%2 == 1 {
			before := positions()
			for deadline := time.Now().Add(90 * time.Second); positions() <= before; time.Sleep(20 * time.Millisecond) {
				if time.Now().After(deadline) {
					cmd.Process.Kill()
					cmd.Wait()
					t.Fatalf("kill %d: no transaction committed in 90s:\n%s", k, logs.String())
				}
			}
		}
		sink.waitOpenTxn(id, &logs)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Exited() {
			t.Fatalf("kill %d: weir run exited on its own (%v) before the kill:\n%s", k, cmd.ProcessState, logs.String())
		}
		if sink.openTxn(id) {
			midTxn++
		}
		kills = max(kills, k+1)
	}
	if midTxn == 0 {
		t.Fatalf("none of %d kills landed inside a transaction", kills)
	}
	if done := positions(); done == 0 || done >= n {
		t.Fatalf("positions at %d of %d records before the last run: the kills did not interrupt the copy", done, n)
	} else {
		t.Logf("positions at %d of %d records across %d killed runs", done, n, kills)
	}
	// The positions on the sink's cluster are the only truth: without the
	// hub's copy of them the last run still resumes where they say.
	h, err := hub.Open(hub.Options{DataDir: data})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.DeleteGroup("copy"); err != nil {
		t.Fatal(err)
	}
	h.Close()
	cmd := weirCmd(t, nil, "run", file, "--until-drained", "--stats-every", "0", "--log-level", "warn")
	if outb, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the last run failed: %v\n%s", err, outb)
	}
	if got := positions(); got != n {
		t.Fatalf("positions at %d after the last run, want %d", got, n)
	}

	count := func(what string, values [][]byte) map[int]int {
		ids := map[int]int{}
		for _, v := range values {
			var r struct {
				ID   *int
				Seen bool
			}
			if err := json.Unmarshal(v, &r); err != nil || r.ID == nil || !r.Seen {
				t.Fatalf("%s: output record %q is not a processed input record", what, v)
			}
			ids[*r.ID]++
		}
		for i := range n {
			if c := ids[i]; c != 1 {
				t.Fatalf("%s: record %d is in the output %d times after %d kills, want exactly once", what, i, c, kills)
			}
		}
		if len(ids) != n {
			t.Fatalf("%s: %d distinct records in the output, want %d", what, len(ids), n)
		}
		return ids
	}
	read := func(iso kgo.IsolationLevel) [][]byte {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		c := mustClient(t, sink.serve.addr, kgo.ConsumeTopics("out"), kgo.FetchIsolationLevel(iso), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
		defer c.Close()
		var out [][]byte
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
			fs.EachRecord(func(r *kgo.Record) { out = append(out, r.Value) })
		}
		return out
	}
	count("franz-go read_committed", read(kgo.ReadCommitted()))
	stored := len(read(kgo.ReadUncommitted()))

	kcat := exec.Command("kcat", "-C", "-b", sink.serve.addr, "-t", "out", "-o", "beginning", "-e", "-q",
		"-X", "isolation.level=read_committed", "-f", "%s\n")
	outb, err := kcat.Output()
	if err != nil {
		t.Fatalf("kcat: %v\n%s", err, outb)
	}
	var lines [][]byte
	for _, l := range strings.Split(strings.TrimSpace(string(outb)), "\n") {
		lines = append(lines, []byte(l))
	}
	count("kcat read_committed", lines)
	t.Logf("%d kills, %d inside a transaction: read_committed (franz-go, kcat) sees each of %d records once; %d records stored in all (%d of aborted transactions)",
		kills, midTxn, n, stored, stored-n)
}

// TestLintExactlyOnceKafkaSink: a kafka sink runs exactly once alone in
// its pipeline, with the in-process hub and without retry topics; each
// other case is refused at its place with the reason.
func TestLintExactlyOnceKafkaSink(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "p.yaml")
	os.WriteFile(file, []byte(`datasets:
  in: {partitions: 2}
  out: {partitions: 2}
pipelines:
  mixed:
    from: in
    processing: exactly_once
    to:
      - dataset: out
      - kafka: {brokers: ["127.0.0.1:9092"], topic: out}
  retried:
    from: in
    processing: exactly_once
    to:
      - kafka: {brokers: ["127.0.0.1:9092"], topic: out}
        retry: {mode: topics, delays: [10s]}
  good:
    from: in
    processing: exactly_once
    to:
      - kafka: {brokers: ["127.0.0.1:9092"], topic: out}
`), 0o644)
	msg, err := run(t, "lint", file)
	if err == nil {
		t.Fatalf("weir lint accepted a kafka sink that cannot run exactly once:\n%s", msg)
	}
	for _, want := range []string{
		file + ":10:9: sink 2 of pipeline mixed (kafka) must be the only sink of a pipeline with processing: exactly_once",
		file + ":16:23: sink 1 of pipeline retried (kafka): retry mode topics cannot run with processing: exactly_once",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("weir lint output lacks %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "pipeline good") {
		t.Errorf("weir lint refused a kafka sink alone under exactly_once:\n%s", msg)
	}

	remote := filepath.Join(dir, "remote.yaml")
	os.WriteFile(remote, []byte(`hub: {kafka: {brokers: ["127.0.0.1:9092"]}}
pipelines:
  copy:
    from: in
    processing: exactly_once
    to:
      - kafka: {brokers: ["127.0.0.1:9093"], topic: out}
`), 0o644)
	msg, err = run(t, "lint", remote)
	if want := remote + ":7:9: sink 1 of pipeline copy (kafka): processing: exactly_once with a kafka sink needs the in-process hub"; err == nil || !strings.Contains(msg, want) {
		t.Errorf("weir lint of a kafka sink under exactly_once over hub.kafka = %v, want %q:\n%s", err, want, msg)
	}
}
