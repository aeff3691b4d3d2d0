package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// startRun runs `weir run FILE` and returns its http address.
func startRun(t *testing.T, file string) (string, *lockedBuffer) {
	t.Helper()
	addr, logs, _ := startRunCmd(t, file)
	return addr, logs
}

// startRunCmd is startRun, with extra arguments, that also returns the
// process.
func startRunCmd(t *testing.T, file string, extra ...string) (string, *lockedBuffer, *exec.Cmd) {
	t.Helper()
	cmd := weirCmd(t, nil, append([]string{"run", file, "--stats-every", "0"}, extra...)...)
	logs := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	for range 200 {
		if m := httpServingRE.FindStringSubmatch(logs.String()); m != nil {
			return m[1], logs, cmd
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("weir run did not serve http:\n%s", logs.String())
	return "", nil, nil
}

// runKafkaAddr is the address a weir run with hub.listen serves Kafka
// clients on, from its logs.
func runKafkaAddr(t *testing.T, logs *lockedBuffer) string {
	t.Helper()
	re := regexp.MustCompile(`"weir: serving Kafka clients too" listen=(\S+)`)
	for range 100 {
		if m := re.FindStringSubmatch(logs.String()); m != nil {
			return m[1]
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("weir run serves no Kafka clients:\n%s", logs.String())
	return ""
}

// TestTapCommand: weir tap shows a running pipeline's records after its
// processors, those routed to one sink, and a dataset's, with --limit,
// --filter and both formats.
func TestTapCommand(t *testing.T) {
	addr, logs := startRun(t, webPipeline(t))

	type line struct {
		Point   string         `json:"point"`
		Dataset string         `json:"dataset"`
		Offset  int64          `json:"offset"`
		Value   map[string]any `json:"value"`
	}
	tap := func(args ...string) []line {
		t.Helper()
		out, err := run(t, append([]string{"tap", "--http", addr}, args...)...)
		if err != nil {
			t.Fatalf("weir tap %v: %v\n%s\n%s", args, err, out, logs.String())
		}
		var ls []line
		for _, s := range strings.Split(strings.TrimSpace(out), "\n") {
			var l line
			if err := json.Unmarshal([]byte(s), &l); err != nil {
				t.Fatalf("weir tap %v printed %q: %v", args, s, err)
			}
			ls = append(ls, l)
		}
		return ls
	}
	ls := tap("archive", "--limit", "5")
	if len(ls) != 5 {
		t.Fatalf("tap archive --limit 5 printed %d records", len(ls))
	}
	for _, l := range ls {
		if l.Point != "pipelines.archive" || l.Value["env"] != "prod" || l.Dataset != "access" {
			t.Fatalf("tap archive: %+v; want records after the processors (env set)", l)
		}
	}
	for _, l := range tap("archive.errors", "--limit", "3") {
		if s, _ := l.Value["status"].(float64); s < 400 || l.Point != "pipelines.archive.to.errors" {
			t.Fatalf("tap archive.errors: %+v; want only records routed to errors", l)
		}
	}
	for _, l := range tap("access", "--limit", "4", "--filter", `method == "POST"`) {
		if l.Point != "datasets.access" || l.Value["method"] != "POST" || l.Value["env"] != nil {
			t.Fatalf("tap access --filter: %+v; want raw POST records of the dataset", l)
		}
	}
	out, err := run(t, "tap", "--http", addr, "archive", "--limit", "2", "--format", "text")
	if err != nil || strings.Count(out, "\n") != 2 || !strings.Contains(out, " pipelines.archive access/") {
		t.Fatalf("tap --format text: %v\n%s", err, out)
	}
	if _, err := run(t, "tap", "--http", addr, "nothing"); err == nil || !strings.Contains(err.Error(), "archive.errors") {
		t.Fatalf("tap of an unknown point: %v; want the list of points", err)
	}
}

// webPipeline writes a pipeline file: generated access logs at 400/s into
// a dataset, and a pipeline routing them to two files; its http listener
// is on a free port.
func webPipeline(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	file := filepath.Join(dir, "p.yaml")
	os.WriteFile(file, []byte(fmt.Sprintf(`
hub: {data_dir: %s}
http: {listen: "127.0.0.1:0"}
datasets: {access: {partitions: 2}}
sources:
  web:
    generate: {rate: 400, seed: 1}
    to: access
pipelines:
  archive:
    from: access
    processors:
      - parse: json
      - set: {env: '"prod"'}
      - route:
          rules: [{when: 'status >= 400', to: [errors]}]
          default: [files]
    to:
      - file: {path: "%s/out.ndjson"}
        name: files
        batching: {period: 20ms}
      - file: {path: "%s/err.ndjson"}
        name: errors
        batching: {period: 20ms}
`, filepath.Join(dir, "data"), dir, dir)), 0o644)
	return file
}
