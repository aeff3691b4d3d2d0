package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weirhub/weir/hub"
	"github.com/weirhub/weir/internal/hubtest"
)

// TestRunStdoutCarriesOnlyRecords: `weir run p.yaml | jq` works: the
// stdout sink's records are all that goes to stdout; the summary of an
// --until-drained run goes to stderr (issue 10 items 7 and 15).
func TestRunStdoutCarriesOnlyRecords(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "p.yaml")
	os.WriteFile(file, []byte(fmt.Sprintf(`
hub: {data_dir: %s}
datasets: {access: {}}
sources:
  gen: {generate: {count: 500}, to: access}
pipelines:
  show:
    from: access
    processors: [{parse: json}, {filter: 'level != "debug"'}]
    to: [{stdout: {format: json}}]
`, filepath.Join(dir, "data"))), 0o644)
	cmd := weirCmd(t, nil, "run", file, "--until-drained", "--stats-every", "50ms")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("weir run: %v\n%s", err, stderr.String())
	}
	lines := strings.Split(strings.TrimSuffix(stdout.String(), "\n"), "\n")
	for i, l := range lines {
		if !json.Valid([]byte(l)) {
			t.Fatalf("stdout line %d is not a record: %q", i+1, l)
		}
	}
	if len(lines) < 300 || len(lines) >= 500 {
		t.Fatalf("%d records on stdout, want the ~375 of 500 that are not debug", len(lines))
	}
	errText := stderr.String()
	if !strings.Contains(errText, "COMPONENT") || !strings.Contains(errText, "DROPPED") {
		t.Fatalf("no summary on stderr after --until-drained:\n%s", errText)
	}
	// The summary's pipeline line: in 500 = out + dropped, and a rate.
	for _, l := range strings.Split(errText, "\n") {
		f := strings.Fields(l)
		if len(f) == 10 && f[0] == "pipelines.show" {
			var in, out, dropped int
			fmt.Sscan(f[1], &in)
			fmt.Sscan(f[2], &out)
			fmt.Sscan(f[3], &dropped)
			if in != 500 || out != len(lines) || out+dropped != 500 || f[9] == "-" {
				t.Fatalf("summary line %q: want in 500, out %d, dropped %d, a rate", l, len(lines), 500-len(lines))
			}
			return
		}
	}
	t.Fatalf("no pipelines.show line in the summary:\n%s", errText)
}

// TestRunSummaryOnlyWhenAsked: a run stopped by a signal prints no
// summary unless --summary asks for one, and then on stderr.
func TestRunSummaryOnlyWhenAsked(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "p.yaml")
	os.WriteFile(file, []byte(fmt.Sprintf(`
hub: {data_dir: %s}
datasets: {access: {}}
sources:
  gen: {generate: {count: 100}, to: access}
pipelines:
  show: {from: access, to: [{stdout: {}}]}
`, filepath.Join(dir, "data"))), 0o644)
	for _, withFlag := range []bool{false, true} {
		args := []string{"run", file, "--stats-every", "0"}
		if withFlag {
			args = append(args, "--summary")
		}
		cmd := weirCmd(t, nil, args...)
		var stdout, stderr lockedBuffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(20 * time.Second)
		for !strings.Contains(stderr.String(), "source ended") && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		time.Sleep(300 * time.Millisecond)
		cmd.Process.Signal(os.Interrupt)
		if err := cmd.Wait(); err != nil {
			t.Fatalf("weir run %v: %v\n%s", args, err, stderr.String())
		}
		if got := strings.Contains(stderr.String(), "COMPONENT"); got != withFlag {
			t.Errorf("weir run %v: summary printed = %v, want %v:\n%s", args, got, withFlag, stderr.String())
		}
		if strings.Contains(stdout.String(), "COMPONENT") {
			t.Errorf("weir run %v: summary on stdout", args)
		}
	}
}

// TestRunUntilDrainedFailsOnRetentionSkip: records that retention
// deleted before the pipeline read them make `weir run --until-drained`
// log a WARN and exit non-zero with a summary that says so (issue 10
// item 1).
func TestRunUntilDrainedFailsOnRetentionSkip(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	h, err := hub.Open(hub.Options{DataDir: data, Defaults: hub.DatasetConfig{Fsync: "never"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.CreateDataset("in", hub.DatasetConfig{Partitions: 1, SegmentBytes: 4096}); err != nil {
		t.Fatal(err)
	}
	start := hubtest.LoseToRetention(t, h, "in", "archive", 400, 10, 300)
	h.Close()
	file := filepath.Join(dir, "p.yaml")
	os.WriteFile(file, []byte(fmt.Sprintf(`
hub: {data_dir: %s}
datasets: {in: {}}
pipelines:
  archive: {from: in, to: [{file: {path: %s/out.ndjson}}]}
`, data, dir)), 0o644)
	cmd := weirCmd(t, nil, "run", file, "--until-drained", "--stats-every", "0")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err = cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("weir run --until-drained after retention deleted unread records = %v, want exit 1:\n%s", err, stderr.String())
	}
	out := stderr.String()
	for _, want := range []string{"level=WARN", "retention deleted records", "group=archive", fmt.Sprintf("records=%d", start-10),
		"SKIPPED", fmt.Sprintf("pipelines.archive: %d records were deleted by retention", start-10)} {
		if !strings.Contains(out, want) {
			t.Errorf("stderr lacks %q:\n%s", want, out)
		}
	}
}

// TestRunFailsWhenAListenerCannotBind: an http or syslog source whose
// address is taken makes `weir run` exit with the bind error at its start,
// instead of retrying for ever (issue 10 item 6).
func TestRunFailsWhenAListenerCannotBind(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	for _, src := range []string{
		fmt.Sprintf(`http: {address: %q}`, taken.Addr().String()),
		fmt.Sprintf(`syslog: {address: %q, protocols: [tcp]}`, taken.Addr().String()),
	} {
		dir := t.TempDir()
		file := filepath.Join(dir, "p.yaml")
		os.WriteFile(file, []byte(fmt.Sprintf(`
hub: {data_dir: %s}
datasets: {in: {}}
sources:
  web: {%s, to: in}
`, filepath.Join(dir, "data"), src)), 0o644)
		cmd := weirCmd(t, nil, "run", file, "--stats-every", "0")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err == nil {
				t.Fatalf("%s: weir run exited 0 with its address taken:\n%s", src, stderr.String())
			}
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			<-done
			t.Fatalf("%s: weir run still running 15s after failing to bind:\n%s", src, stderr.String())
		}
		if !strings.Contains(stderr.String(), "address already in use") || !strings.Contains(stderr.String(), "source web") {
			t.Errorf("%s: stderr does not name the source and the bind error:\n%s", src, stderr.String())
		}
	}
}

// TestRunHTTPSourceRefusesOversizedRecords: a record larger than the
// dataset takes is answered 413 with the limit and nothing of its
// request is stored, not even in the dead-letter dataset (issue 10 item
// 4: it was answered 204 and dead-lettered cut to 983,040 bytes).
func TestRunHTTPSourceRefusesOversizedRecords(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	file := filepath.Join(dir, "p.yaml")
	os.WriteFile(file, []byte(fmt.Sprintf(`
hub: {data_dir: %s}
datasets: {in: {}}
sources:
  web: {http: {address: %q}, to: in}
`, data, addr)), 0o644)
	cmd := weirCmd(t, nil, "run", file, "--stats-every", "0")
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	url := "http://" + addr + "/ingest"
	postBody := func(body string) (int, string) {
		deadline := time.Now().Add(15 * time.Second)
		for {
			resp, err := http.Post(url, "application/json", strings.NewReader(body))
			if err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				return resp.StatusCode, string(b)
			}
			if time.Now().After(deadline) {
				t.Fatalf("POST: %v\n%s", err, stderr.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	big := `[{"n":1},{"blob":"` + strings.Repeat("x", 2<<20) + `"}]`
	status, body := postBody(big)
	if status != http.StatusRequestEntityTooLarge || !strings.Contains(body, "at most") {
		t.Fatalf("POST of a 2MiB record = %d %q, want 413 with the limit", status, body)
	}
	if status, body := postBody(`{"n":2}`); status != http.StatusNoContent {
		t.Fatalf("POST of a small record = %d %q, want 204", status, body)
	}
	cmd.Process.Signal(os.Interrupt)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("weir run: %v\n%s", err, stderr.String())
	}
	h, err := hub.Open(hub.Options{DataDir: data})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	for name, want := range map[string]int{"in": 1, "in-dead": 0} {
		n := 0
		if ds, err := h.Dataset(name); err == nil {
			p, _ := ds.Partition(0)
			n = int(p.HighWatermark() - p.StartOffset())
		}
		if n != want {
			t.Errorf("dataset %s holds %d records, want %d", name, n, want)
		}
	}
}

// TestRunUntilDrainedReadsFilesOnce: a file source in mode read_once
// ends when every matched file is read, so `weir run --until-drained`
// exits once all of it is delivered (issue 10 item 14).
func TestRunUntilDrainedReadsFilesOnce(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in")
	os.MkdirAll(in, 0o755)
	const n = 3000
	for f := range 3 {
		var b strings.Builder
		for i := f; i < n; i += 3 {
			fmt.Fprintf(&b, `{"id":%d}`+"\n", i)
		}
		os.WriteFile(filepath.Join(in, fmt.Sprintf("part-%d.ndjson", f)), []byte(b.String()), 0o644)
	}
	out := filepath.Join(dir, "out")
	file := filepath.Join(dir, "p.yaml")
	os.WriteFile(file, []byte(fmt.Sprintf(`
hub: {data_dir: %s}
datasets: {lines: {partitions: 2}}
sources:
  backfill:
    file: {paths: ["%s/*.ndjson"], mode: read_once}
    to: lines
pipelines:
  archive:
    from: lines
    to: [{file: {path: "%s/all.ndjson", format: ndjson}}]
`, filepath.Join(dir, "data"), in, out)), 0o644)
	cmd := weirCmd(t, nil, "run", file, "--until-drained", "--stats-every", "0")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("weir run --until-drained: %v\n%s", err, stderr.String())
		}
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("weir run --until-drained with a read_once file source did not exit in 60s:\n%s", stderr.String())
	}
	ids, torn := readIDs(t, out)
	if len(ids) != n || torn != 0 {
		t.Fatalf("archived %d distinct records (%d torn) of %d", len(ids), torn, n)
	}
}

// TestRunHTTPSinkOutageHoldsBack: an http sink answering 500 for a while
// holds the pipeline back and gets every record once it recovers; none
// goes to the dead-letter dataset, and a 400 does (issue 10 item 3: five
// tries in 1.1s, then dead letters).
func TestRunHTTPSinkOutageHoldsBack(t *testing.T) {
	var mu sync.Mutex
	requests, got := 0, map[int]bool{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		requests++
		if requests <= 12 {
			http.Error(w, "down for maintenance", http.StatusInternalServerError)
			return
		}
		for _, l := range strings.Split(strings.TrimSpace(string(body)), "\n") {
			var rec struct{ ID int }
			if json.Unmarshal([]byte(l), &rec) == nil {
				if rec.ID == 7 {
					http.Error(w, "bad record", http.StatusBadRequest)
					return
				}
				got[rec.ID] = true
			}
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	prefill(t, data, "in", 1, 200)
	file := filepath.Join(dir, "p.yaml")
	os.WriteFile(file, []byte(fmt.Sprintf(`
hub: {data_dir: %s}
datasets: {in: {}}
pipelines:
  ship:
    from: in
    to:
      - http: {url: %q}
        batching: {count: 1, period: 1ms}
        retry: {backoff: 5ms, max_backoff: 20ms}
`, data, srv.URL)), 0o644)
	cmd := weirCmd(t, nil, "run", file, "--until-drained", "--stats-every", "0")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("weir run: %v\n%s", err, stderr.String())
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 199 {
		t.Fatalf("the sink got %d distinct records after the outage, want 199 (all but the one answered 400):\n%s", len(got), stderr.String())
	}
	h, err := hub.Open(hub.Options{DataDir: data})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	ds, err := h.Dataset("ship-dead")
	if err != nil {
		t.Fatal(err)
	}
	p, _ := ds.Partition(0)
	if n := p.HighWatermark(); n != 1 {
		t.Fatalf("%d dead letters, want 1 (the record answered 400; the 500s were retried)", n)
	}
}

// TestListDocumentsRetryAndBatching: `weir list sinks NAME` documents
// the fields every sink takes, retry and batching among them (issue 10
// item 3: they were only in --json-schema).
func TestListDocumentsRetryAndBatching(t *testing.T) {
	out, err := weirCmd(t, nil, "list", "sinks", "file").CombinedOutput()
	if err != nil {
		t.Fatalf("weir list sinks file: %v\n%s", err, out)
	}
	for _, want := range []string{"`retry.attempts`", "retries without limit", "`batching.count`", "`name`"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("weir list sinks file lacks %s:\n%s", want, out)
		}
	}
}

// lockedBuffer is a bytes.Buffer a process writes into while the test
// reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
