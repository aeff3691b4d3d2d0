package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

// TestRunUntilDrainedOverKafkaWaitsForAssignment: a `weir run
// --until-drained` over hub.kafka that joins the group while a killed
// member still holds the partitions gets nothing assigned until that
// member's session expires. It must wait for its assignment and drain the
// dataset to its end, not exit as drained at once.
func TestRunUntilDrainedOverKafkaWaitsForAssignment(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	const n = 20000
	prefill(t, data, "in", 3, n)
	e := &eoHub{t: t, data: data, serve: startServe(t, data)}
	e.adm = kadm.NewClient(mustClient(t, e.serve.addr))
	file := filepath.Join(dir, "p.yaml")
	os.WriteFile(file, []byte(fmt.Sprintf(`
hub: {kafka: {brokers: ["%s"]}}
datasets:
  in: {partitions: 3}
  out: {partitions: 2}
pipelines:
  copy:
    from: in
    processors: [{rate_limit: {rate: 2000, burst: 200}}]
    to:
      - dataset: out
        batching: {count: 200, period: 20ms}
`, e.serve.addr)), 0o644)

	cmd := weirCmd(t, nil, "run", file, "--stats-every", "0", "--log-level", "warn")
	var logs strings.Builder
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	e.waitProgress("copy", 0, &logs)
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	before := e.committed("copy")
	if before >= n {
		t.Fatalf("the killed run had committed all %d records: nothing left to drain", n)
	}
	gs, err := e.adm.DescribeGroups(t.Context(), "copy")
	if err != nil || len(gs["copy"].Members) == 0 {
		t.Fatalf("the killed member is not in the group any more (%v): the test needs it to hold the partitions", err)
	}

	start := time.Now()
	last := weirCmd(t, nil, "run", file, "--until-drained", "--stats-every", "0", "--log-level", "warn")
	done := make(chan error, 1)
	var lastLogs strings.Builder
	last.Stderr = &lastLogs
	if err := last.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- last.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("weir run --until-drained: %v\n%s", err, lastLogs.String())
		}
	case <-time.After(2 * time.Minute):
		last.Process.Kill()
		<-done
		t.Fatalf("weir run --until-drained did not exit in 2 minutes:\n%s", lastLogs.String())
	}
	if got := e.committed("copy"); got != n {
		t.Fatalf("weir run --until-drained exited after %v with %d of %d records committed (%d before it): it did not wait for its partitions",
			time.Since(start).Round(time.Millisecond), got, n, before)
	}
	t.Logf("drained %d records after the kill (%d committed before) in %v", n-before, before, time.Since(start).Round(time.Millisecond))
}
