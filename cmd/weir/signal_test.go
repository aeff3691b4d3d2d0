package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// exitedCleanly waits for cmd and reports whether it exited 0 on its own
// (not killed by a signal) within d.
func exitedCleanly(t *testing.T, wait func() error, state func() *os.ProcessState, d time.Duration) string {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- wait() }()
	select {
	case err := <-done:
		ps := state()
		if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return fmt.Sprintf("killed by %v", ws.Signal())
		}
		if err != nil {
			return fmt.Sprintf("exited with %v", err)
		}
		return ""
	case <-time.After(d):
		return fmt.Sprintf("still running %v later", d)
	}
}

// TestServeStopsGracefullyOnSIGHUP: SIGHUP (a closed terminal, a
// supervisor) stops `weir serve` as SIGTERM does, saying why.
func TestServeStopsGracefullyOnSIGHUP(t *testing.T) {
	p := startServe(t, t.TempDir())
	p.cmd.Process.Signal(syscall.SIGHUP)
	if why := exitedCleanly(t, p.cmd.Wait, func() *os.ProcessState { return p.cmd.ProcessState }, 20*time.Second); why != "" {
		t.Fatalf("weir serve after SIGHUP: %s\n%s", why, p.output())
	}
	if out := p.output(); !strings.Contains(out, "hangup") || !strings.Contains(out, "weir: stopped") {
		t.Errorf("weir serve did not say it stopped on SIGHUP:\n%s", out)
	}
}

// TestRunStopsGracefullyOnSIGHUP: SIGHUP drains `weir run --until-drained`
// and exits 0, as SIGTERM does, instead of killing it mid-pipeline (without
// --until-drained SIGHUP reloads the file: TestReload).
func TestRunStopsGracefullyOnSIGHUP(t *testing.T) {
	dir := t.TempDir()
	prefill(t, filepath.Join(dir, "data"), "in", 1, 2000)
	file := filepath.Join(dir, "p.yaml")
	os.WriteFile(file, []byte(fmt.Sprintf(`
hub: {data_dir: %s}
datasets: {in: {partitions: 1}}
pipelines:
  archive:
    from: in
    processors: [{rate_limit: {rate: 1000, burst: 100}}]
    to:
      - file: {path: "%s/out.ndjson", format: ndjson}
`, filepath.Join(dir, "data"), filepath.Join(dir, "out"))), 0o644)
	cmd := weirCmd(t, nil, "run", file, "--until-drained", "--stats-every", "0", "--log-level", "info")
	var logs strings.Builder
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	// Let it start reading, then hang up.
	deadline := time.Now().Add(20 * time.Second)
	for {
		if ids, _ := readIDs(t, filepath.Join(dir, "out")); len(ids) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("weir run archived nothing in 20s:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGHUP)
	if why := exitedCleanly(t, cmd.Wait, func() *os.ProcessState { return cmd.ProcessState }, 20*time.Second); why != "" {
		t.Fatalf("weir run after SIGHUP: %s\n%s", why, logs.String())
	}
}

// TestVersion: `weir --version` prints the version and the commit.
func TestVersion(t *testing.T) {
	version, commit = "v9.8.7", "0123456789abcdef0123"
	defer func() { version, commit = "dev", "" }()
	out, err := run(t, "--version")
	if err != nil || !strings.Contains(out, "weir v9.8.7") || !strings.Contains(out, "commit 0123456789ab") {
		t.Fatalf("weir --version = %q, %v; want the version and the commit", out, err)
	}
}
