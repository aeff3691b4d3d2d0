package main

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestReload: SIGHUP re-reads the file and restarts only the pipeline
// whose configuration changed (the other keeps its counters, the source
// keeps producing); POST /-/reload of an invalid file is refused with its
// lint errors and the running configuration goes on.
func TestReload(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "p.yaml")
	write := func(version, extra string) {
		os.WriteFile(file, []byte(fmt.Sprintf(`
hub: {data_dir: %s}
http: {listen: "127.0.0.1:0"}
datasets: {access: {partitions: 2}}
sources:
  web:
    generate: {rate: 300, seed: 1}
    to: access
pipelines:
  a:
    from: access
    processors:
      - set: {version: '%s'}%s
    to:
      - file: {path: "%s/a.ndjson"}
        batching: {period: 20ms}
  b:
    from: access
    to:
      - file: {path: "%s/b.ndjson"}
        batching: {period: 20ms}
`, filepath.Join(dir, "data"), version, extra, dir, dir)), 0o644)
	}
	write("1", "")
	addr, logs, cmd := startRunCmd(t, file)
	sent := func(component string) float64 {
		fams, _ := scrape(t, addr)
		v, _ := metricSum(fams, "weir_component_sent_records_total", map[string]string{"component": component})
		return v
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for range 200 {
			if cond() {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatalf("timed out waiting for %s:\n%s", what, logs.String())
	}
	waitFor("both pipelines to deliver", func() bool { return sent("pipelines.a") > 50 && sent("pipelines.b") > 50 })
	bBefore, aBefore := sent("pipelines.b"), sent("pipelines.a")

	write("2", "")
	cmd.Process.Signal(syscall.SIGHUP)
	waitFor("the reload", func() bool { return strings.Contains(logs.String(), `"weir: reloaded"`) })
	line := logs.String()[strings.Index(logs.String(), `"weir: reloaded"`):]
	line = line[:strings.IndexByte(line, '\n')]
	if !strings.Contains(line, "stopped=pipelines.a started=pipelines.a unchanged=sources.web,pipelines.b") {
		t.Fatalf("reload log: %s", line)
	}
	if a := sent("pipelines.a"); a >= aBefore {
		t.Fatalf("pipelines.a sent %v after the reload, %v before: it was not restarted", a, aBefore)
	}
	if b := sent("pipelines.b"); b < bBefore {
		t.Fatalf("pipelines.b sent %v after the reload, %v before: it was restarted", b, bBefore)
	}
	waitFor(`records with version 2 in a.ndjson`, func() bool {
		b, _ := os.ReadFile(filepath.Join(dir, "a.ndjson"))
		return bytes.Contains(b, []byte(`"version":2`))
	})

	// An invalid file is refused over HTTP, with file:line:col.
	write("3", "\n      - no_such_processor: {}")
	resp, err := http.Post("http://"+addr+"/-/reload", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	var body bytes.Buffer
	body.ReadFrom(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(body.String(), "p.yaml:14:9: unknown processor") || !strings.Contains(body.String(), "no_such_processor") {
		t.Fatalf("POST /-/reload of a bad file = %d %s", resp.StatusCode, body.String())
	}
	aNow := sent("pipelines.a")
	waitFor("pipelines.a to keep running", func() bool { return sent("pipelines.a") > aNow })

	// A valid file over HTTP: nothing changed but version → a restarts.
	write("4", "")
	resp, err = http.Post("http://"+addr+"/-/reload", "", nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("POST /-/reload: %v %v", err, resp)
	}
	resp.Body.Close()
	waitFor(`records with version 4 in a.ndjson`, func() bool {
		b, _ := os.ReadFile(filepath.Join(dir, "a.ndjson"))
		return bytes.Contains(b, []byte(`"version":4`))
	})
	cmd.Process.Signal(os.Interrupt)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("weir run: %v\n%s", err, logs.String())
	}
}

// TestRunHTTPBindFailure: weir run whose --http-listen cannot bind stops
// at once with the error, and closes its hub (a second run can open it).
func TestRunHTTPBindFailure(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	dir := t.TempDir()
	file := filepath.Join(dir, "p.yaml")
	os.WriteFile(file, []byte(fmt.Sprintf(`
hub: {data_dir: %s}
datasets: {in: {partitions: 1}}
sources:
  gen:
    generate: {count: 10}
    to: in
`, filepath.Join(dir, "data"))), 0o644)
	for _, drained := range []bool{false, true} {
		args := []string{"run", file, "--stats-every", "0", "--http-listen", busy.Addr().String()}
		if drained {
			args = append(args, "--until-drained")
		}
		out, err := weirCmd(t, nil, args...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "http: listening on "+busy.Addr().String()) {
			t.Fatalf("weir run %v with a busy port: %v\n%s", args, err, out)
		}
	}
}
