package main

import (
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestTopOnce: weir top --once prints components, datasets and groups with
// rates over the interval.
func TestTopOnce(t *testing.T) {
	addr, logs := startRun(t, webPipeline(t))
	time.Sleep(500 * time.Millisecond)
	out, err := run(t, "top", "--http", addr, "--once", "--interval", "500ms")
	if err != nil {
		t.Fatalf("weir top --once: %v\n%s", err, logs.String())
	}
	checkTopScreen(t, out)
}

var topSourceRE = regexp.MustCompile(`sources\.web\s+source\s+([0-9.]+)\s*(k?)\s`)

// checkTopScreen checks a weir top screen of webPipeline: every part is
// listed and the source's rate is about its 400 records/s.
func checkTopScreen(t *testing.T, screen string) {
	t.Helper()
	for _, want := range []string{"COMPONENT", "pipelines.archive.to.errors", "DATASET", "access", "GROUP", "archive"} {
		if !strings.Contains(screen, want) {
			t.Fatalf("no %q on the screen:\n%s", want, screen)
		}
	}
	m := topSourceRE.FindStringSubmatch(screen)
	if m == nil {
		t.Fatalf("no rate for sources.web on the screen:\n%s", screen)
	}
	rate, _ := strconv.ParseFloat(m[1], 64)
	if m[2] == "k" {
		rate *= 1000
	}
	if rate < 100 || rate > 1600 {
		t.Fatalf("sources.web at %v records/s, want about 400:\n%s", rate, screen)
	}
}

// TestTopUnderTmux runs weir top in a real terminal (tmux), reads the
// screen with capture-pane until the rates show, and quits with q.
func TestTopUnderTmux(t *testing.T) {
	tmux, err := exec.LookPath("tmux")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("tmux is missing: scripts/test-deps.sh installs it")
		}
		t.Skip("needs tmux (make test-deps)")
	}
	addr, logs := startRun(t, webPipeline(t))
	exe, _ := os.Executable()
	sock := fmt.Sprintf("weir-top-test-%d", os.Getpid())
	tm := func(args ...string) (string, error) {
		out, err := exec.Command(tmux, append([]string{"-L", sock}, args...)...).CombinedOutput()
		return string(out), err
	}
	t.Cleanup(func() { tm("kill-server") })
	if out, err := tm("new-session", "-d", "-s", "top", "-x", "150", "-y", "40",
		"-e", mainEnv+"=1", "-e", "WEIR_TEST_ARGS="+strings.Join([]string{"top", "--http", addr}, "\x1f"), "-e", "TERM=xterm-256color",
		exe, "-test.run=^$"); err != nil {
		t.Fatalf("tmux new-session: %v\n%s", err, out)
	}
	var screen string
	for range 100 {
		screen, _ = tm("capture-pane", "-p", "-t", "top")
		if topSourceRE.MatchString(screen) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	checkTopScreen(t, screen)
	t.Logf("weir top under tmux:\n%s", strings.TrimRight(screen, "\n"))
	if out, err := tm("send-keys", "-t", "top", "q"); err != nil {
		t.Fatalf("tmux send-keys: %v\n%s", err, out)
	}
	for range 100 {
		if _, err := tm("has-session", "-t", "top"); err != nil {
			return // weir top quit, and the session with it
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("weir top did not quit on q:\n%s\n%s", screen, logs.String())
}
