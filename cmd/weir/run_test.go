package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// crashKills is how many times a crash test kills weir run: def, or
// WEIR_RUN_CRASHES when it is set.
func crashKills(def int) int {
	if s := os.Getenv("WEIR_RUN_CRASHES"); s != "" {
		fmt.Sscan(s, &def)
	}
	return def
}

// weirCmd runs this test binary as `weir args...` with extra environment.
func weirCmd(t *testing.T, env []string, args ...string) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(append(os.Environ(), mainEnv+"=1", "WEIR_TEST_ARGS="+strings.Join(args, "\x1f")), env...)
	return cmd
}

// prefill writes n records {"id":i,"pad":"xx..."} of about 120 bytes
// spread over a dataset's partitions.
func prefill(t *testing.T, dir, dataset string, partitions int32, n int) {
	t.Helper()
	prefillSized(t, dir, dataset, partitions, n, 100)
}

// readIDs reads every NDJSON line of the files under dir: the ids seen
// (with counts) and lines that do not parse (torn by a kill).
func readIDs(t *testing.T, dir string) (map[int]int, int) {
	t.Helper()
	ids := map[int]int{}
	torn := 0
	filepath.Walk(dir, func(path string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return nil
		}
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var r struct{ ID *int }
			if json.Unmarshal(sc.Bytes(), &r) != nil || r.ID == nil {
				torn++
				continue
			}
			ids[*r.ID]++
		}
		return nil
	})
	return ids, torn
}

// countIDs is the number of distinct ids archived under dir.
func countIDs(t *testing.T, dir string) int {
	ids, _ := readIDs(t, dir)
	return len(ids)
}

// TestRunCrashKill9 kills `weir run` with SIGKILL again and again while
// its pipeline archives a dataset, then lets a last run finish: every
// record is in the file sink at least once and none is missing, because
// positions are committed only after the sink wrote the records.
// WEIR_RUN_CRASHES sets the number of kills (default 8).
func TestRunCrashKill9(t *testing.T) {
	kills := crashKills(8)
	dir := t.TempDir()
	const n = 60000
	prefill(t, filepath.Join(dir, "data"), "in", 3, n)
	out := filepath.Join(dir, "out")
	file := filepath.Join(dir, "p.yaml")
	os.WriteFile(file, []byte(fmt.Sprintf(`
hub: {data_dir: %s}
datasets: {in: {partitions: 3}}
pipelines:
  archive:
    from: in
    processors: [{parse: json}, {set: {seen: 'true'}}, {rate_limit: {rate: 20000, burst: 1000}}]
    to:
      - file: {path: "%s/in-{{ .partition }}.ndjson", format: ndjson, fsync: never, rotate: {size: 1MiB}}
        batching: {count: 500, bytes: 64KiB, period: 20ms}
`, filepath.Join(dir, "data"), out)), 0o644)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 5))
	// The pipeline reads the dataset in large batches that the rate limit
	// lets through whole (about 9,000 records each 0.5 s), so output grows in
	// steps. On a loaded machine a start can take longer than every random
	// kill time; then one more run is killed just after its first step, so
	// the kills always interrupt the work and never let it finish.
	for k := 0; k < kills || k == kills && countIDs(t, out) == 0; k++ {
		cmd := weirCmd(t, nil, "run", file, "--stats-every", "0", "--log-level", "warn")
		var logs strings.Builder
		cmd.Stderr = &logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		if k < kills {
			time.Sleep(time.Duration(150+rng.IntN(500)) * time.Millisecond)
		} else {
			for deadline := time.Now().Add(60 * time.Second); countIDs(t, out) == 0; time.Sleep(5 * time.Millisecond) {
				if time.Now().After(deadline) {
					cmd.Process.Kill()
					cmd.Wait()
					t.Fatalf("weir run archived nothing in 60 s:\n%s", logs.String())
				}
			}
		}
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Exited() {
			t.Fatalf("kill %d: weir run exited on its own (%v) before the kill:\n%s", k, cmd.ProcessState, logs.String())
		}
	}
	// The kills must have landed mid-stream for the test to mean anything.
	if before, _ := readIDs(t, out); len(before) == 0 || len(before) == n {
		t.Fatalf("%d of %d records archived before the last run: the kills did not interrupt the work", len(before), n)
	} else {
		t.Logf("%d of %d records archived across the killed runs", len(before), n)
	}
	cmd := weirCmd(t, nil, "run", file, "--until-drained", "--stats-every", "0", "--log-level", "warn")
	if outb, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the last run failed: %v\n%s", err, outb)
	}
	ids, torn := readIDs(t, out)
	dups := 0
	for i := range n {
		switch c := ids[i]; {
		case c == 0:
			t.Fatalf("record %d is missing from the archive after %d kills", i, kills)
		case c > 1:
			dups += c - 1
		}
	}
	t.Logf("%d kills: all %d records archived; %d delivered again (not committed at a kill), %d torn lines", kills, n, dups, torn)
}

// TestTwoRunWorkersShareADataset runs two `weir run` processes against one
// `weir serve` over the Kafka protocol: they share the pipeline's consumer
// group, each archives part of the dataset, and together all of it.
func TestTwoRunWorkersShareADataset(t *testing.T) {
	dir := t.TempDir()
	srv := startServe(t, filepath.Join(dir, "hub"))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	adm := kadm.NewClient(mustClient(t, srv.addr))
	if _, err := adm.CreateTopic(ctx, 4, 1, nil, "shared"); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "w.yaml")
	os.WriteFile(file, []byte(fmt.Sprintf(`
hub: {kafka: {brokers: ["%s"]}}
datasets: {shared: {partitions: 4}}
pipelines:
  workers:
    from: shared
    to:
      - file: {path: "%s/${WORKER}/out.ndjson", format: ndjson}
        batching: {count: 200, bytes: 64KiB, period: 20ms}
`, srv.addr, filepath.Join(dir, "out"))), 0o644)
	var cmds []*exec.Cmd
	var logs []*strings.Builder
	for _, w := range []string{"a", "b"} {
		cmd := weirCmd(t, []string{"WORKER=" + w}, "run", file, "--stats-every", "0", "--log-level", "warn")
		var l strings.Builder
		cmd.Stderr = &l
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds, logs = append(cmds, cmd), append(logs, &l)
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	}
	// Wait until both are members, then produce.
	deadline := time.Now().Add(30 * time.Second)
	for {
		groups, err := adm.DescribeGroups(ctx, "workers")
		if err == nil && groups["workers"].State == "Stable" && len(groups["workers"].Members) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the two workers never formed a group: %v %+v\n%s\n%s", err, groups, logs[0], logs[1])
		}
		time.Sleep(50 * time.Millisecond)
	}
	const n = 8000
	prod := mustClient(t, srv.addr, kgo.DefaultProduceTopic("shared"))
	for i := range n {
		prod.Produce(ctx, &kgo.Record{Key: []byte(fmt.Sprint(i)), Value: fmt.Appendf(nil, `{"id":%d}`, i)}, nil)
	}
	if err := prod.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	var ids map[int]int
	for {
		ids, _ = readIDs(t, filepath.Join(dir, "out"))
		if len(ids) == n {
			break
		}
		if time.Now().After(deadline.Add(30 * time.Second)) {
			t.Fatalf("archived %d of %d records", len(ids), n)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, c := range cmds {
		c.Process.Signal(syscall.SIGTERM)
	}
	for i, c := range cmds {
		done := make(chan error, 1)
		go func() { done <- c.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("worker %d did not stop cleanly: %v\n%s", i, err, logs[i])
			}
		case <-time.After(20 * time.Second):
			c.Process.Signal(syscall.SIGQUIT) // a goroutine dump into its log
			<-done
			t.Fatalf("worker %d did not stop within 20s of SIGTERM:\n%s", i, logs[i])
		}
	}
	a, _ := readIDs(t, filepath.Join(dir, "out", "a"))
	b, _ := readIDs(t, filepath.Join(dir, "out", "b"))
	if len(a) == 0 || len(b) == 0 {
		t.Fatalf("worker a archived %d, b %d: the group did not share", len(a), len(b))
	}
	for id := range a {
		if b[id] > 0 {
			t.Fatalf("record %d archived by both workers", id)
		}
	}
	t.Logf("worker a archived %d records, b %d", len(a), len(b))
}
