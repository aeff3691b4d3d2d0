package kafkatest

import (
	"bufio"
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// python is the interpreter the scripts run with: the Debian one, which sees
// the Debian client packages (a pyenv or venv python does not).
const python = "/usr/bin/python3"

// The script names, relative to the directory writeScripts makes.
const (
	kafkaPythonScript = "kafka_python_client.py"
	confluentScript   = "confluent_client.py"
)

//go:embed testdata/*.py
var scriptFS embed.FS

// writeScripts copies the embedded scripts into a temporary directory, so
// that the suite works from any package's test binary, whatever its working
// directory.
func writeScripts(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	entries, err := scriptFS.ReadDir("testdata")
	if err != nil {
		t.Fatalf("read embedded scripts: %v", err)
	}
	for _, ent := range entries {
		b, err := scriptFS.ReadFile("testdata/" + ent.Name())
		if err != nil {
			t.Fatalf("read embedded %s: %v", ent.Name(), err)
		}
		if err := os.WriteFile(filepath.Join(dir, ent.Name()), b, 0o644); err != nil {
			t.Fatalf("write %s: %v", ent.Name(), err)
		}
	}
	return dir
}

// A tool is an external client the suite needs, with the Debian package
// that provides it.
type tool struct {
	name    string
	pkg     string   // Debian package(s) to install
	command []string // exits 0 when the tool is usable
}

var (
	toolKcat = tool{"kcat", "kcat", []string{"kcat", "-V"}}
	// The codec modules come with kafka-python's tool: produce-codecs uses
	// them, and kafka-python fails only when a codec is first used.
	toolKafkaPython = tool{"kafka-python", "python3-kafka python3-snappy python3-lz4 python3-zstandard",
		[]string{python, "-c", "import kafka, snappy, lz4, zstandard"}}
	toolConfluent = tool{"confluent-kafka-python", "python3-confluent-kafka",
		[]string{python, "-c", "import confluent_kafka"}}
)

// toolChecks caches each tool's check for the process: name -> error.
var toolChecks sync.Map

// need fails the test unless the tool is installed. CI installs the tools,
// so a missing one is a broken setup, not a reason to skip.
func (e *env) need(tl tool) {
	e.t.Helper()
	v, ok := toolChecks.Load(tl.name)
	if !ok {
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, tl.command[0], tl.command[1:]...)
		out, err := cmd.CombinedOutput()
		if msg := lastLine(out); err != nil && msg != "" {
			err = fmt.Errorf("%w: %s", err, msg)
		}
		v, _ = toolChecks.LoadOrStore(tl.name, err)
	}
	if err, _ := v.(error); err != nil {
		e.t.Fatalf("%s is not usable (%s: %v): install Debian package %s (make test-deps)",
			tl.name, strings.Join(tl.command, " "), err, tl.pkg)
	}
}

// lastLine is the last line of a command's output: Python's exception.
func lastLine(b []byte) string {
	s := strings.TrimSpace(string(b))
	lines := strings.Split(s, "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// cmdResult is what a finished external process printed.
type cmdResult struct {
	stdout []byte
	stderr []byte
	err    error // nil when the process exited 0
}

// failure describes a failed run for a message, with its stderr tail.
func (r cmdResult) failure() string {
	msg := r.err.Error()
	if s := tail(r.stderr, 600); s != "" {
		msg += "; stderr: " + s
	}
	return msg
}

func tail(b []byte, n int) string {
	s := strings.TrimSpace(string(b))
	if len(s) > n {
		s = "..." + s[len(s)-n:]
	}
	return s
}

// exec runs a command to completion within opTimeout, feeding it stdin;
// label names it in the log.
func (e *env) exec(label, stdin string, name string, args ...string) cmdResult {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	cmd.WaitDelay = 2 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("killed after %v: %w", opTimeout, err)
	}
	e.t.Logf("%s: %v in %v", shorten(label), exitStatus(err), time.Since(start).Round(time.Millisecond))
	return cmdResult{stdout.Bytes(), stderr.Bytes(), err}
}

func exitStatus(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}

func shorten(s string) string {
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

// kcat runs kcat with args.
func (e *env) kcat(stdin string, args ...string) cmdResult {
	e.t.Helper()
	e.need(toolKcat)
	return e.exec("kcat "+strings.Join(args, " "), stdin, "kcat", args...)
}

// py runs one of the scripts: script, then the common flags, then args.
// The script's own deadline is a little shorter than ours, so that it can
// report its progress before we would kill it.
func (e *env) py(script, stdin string, args ...string) cmdResult {
	e.t.Helper()
	e.need(scriptTool(script))
	argv := append([]string{filepath.Join(e.scripts, script), "--bootstrap", e.b.Addr,
		"--timeout", fmt.Sprint((opTimeout - 5*time.Second).Seconds())}, args...)
	return e.exec(script+" "+strings.Join(args, " "), stdin, python, argv...)
}

func scriptTool(script string) tool {
	if script == kafkaPythonScript {
		return toolKafkaPython
	}
	return toolConfluent
}

// line is one JSON line a script or kcat -J prints. Records fill the record
// fields; other lines fill the rest.
type line struct {
	Topic     string  `json:"topic"`
	Partition int32   `json:"partition"`
	Offset    int64   `json:"offset"`
	Key       *string `json:"key"`
	Value     *string `json:"value"`
	Payload   *string `json:"payload"` // kcat -J calls the value payload

	Event      string             `json:"event"`
	Partitions []int32            `json:"partitions"`
	Error      *string            `json:"error"`
	Produced   *int               `json:"produced"`
	Committed  map[string]int64   `json:"committed"`
	Topics     []string           `json:"topics"`
	Listed     *bool              `json:"listed"`
	Leaders    map[string]int32   `json:"leaders"`
	Configs    map[string]*string `json:"configs"`
	Group      *string            `json:"group"`
	Brokers    []struct {
		ID   int32  `json:"id"`
		Host string `json:"host"`
		Port int    `json:"port"`
	} `json:"brokers"`
}

// isRecord reports whether the line is a consumed record. (A record with a
// null value would not count; the suite produces none.)
func (l line) isRecord() bool { return l.Value != nil || l.Payload != nil }

// rec turns a record line into a rec.
func (l line) rec() rec {
	r := rec{Topic: l.Topic, Partition: l.Partition, Offset: l.Offset, Key: l.Key}
	if l.Value != nil {
		r.Value = *l.Value
	} else if l.Payload != nil {
		r.Value = *l.Payload
	}
	return r
}

// parseLines decodes JSON lines. A line that is not JSON fails the test
// (kcat's "%" notes go to stderr, and -q silences most of them).
func (e *env) parseLines(what string, out []byte) []line {
	e.t.Helper()
	var lines []line
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for sc.Scan() {
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		var l line
		if err := json.Unmarshal(b, &l); err != nil {
			e.t.Errorf("%s: output line is not JSON (%v): %.200s", what, err, b)
			continue
		}
		lines = append(lines, l)
	}
	return lines
}

// records keeps the record lines.
func records(lines []line) []rec {
	var out []rec
	for _, l := range lines {
		if l.isRecord() {
			out = append(out, l.rec())
		}
	}
	return out
}

// proc is a long-running script: its JSON lines arrive on a goroutine and
// go to onLine; closing its stdin asks it to finish.
type proc struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stderr lockedBuffer
	done   chan struct{} // closed when the process has exited
	err    error         // the exit error, set before done closes
}

// startPy starts a script in the background. The test's cleanup kills it
// if it is still running.
func (e *env) startPy(script string, onLine func(line), args ...string) *proc {
	e.t.Helper()
	e.need(scriptTool(script))
	ctx, cancel := context.WithTimeout(context.Background(), 3*opTimeout)
	argv := append([]string{filepath.Join(e.scripts, script), "--bootstrap", e.b.Addr,
		"--timeout", fmt.Sprint((3*opTimeout - 5*time.Second).Seconds())}, args...)
	p := &proc{cmd: exec.CommandContext(ctx, python, argv...), done: make(chan struct{})}
	p.cmd.WaitDelay = 2 * time.Second
	p.cmd.Stderr = &p.stderr
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		cancel()
		e.t.Fatalf("%s: stdout pipe: %v", script, err)
	}
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		cancel()
		e.t.Fatalf("%s: stdin pipe: %v", script, err)
	}
	if err := p.cmd.Start(); err != nil {
		cancel()
		e.t.Fatalf("%s: start: %v", script, err)
	}
	t := e.t
	go func() {
		defer cancel()
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
		for sc.Scan() {
			var l line
			if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
				t.Errorf("%s: output line is not JSON (%v): %.200s", script, err, sc.Bytes())
				continue
			}
			onLine(l)
		}
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	e.t.Cleanup(func() { p.kill() })
	return p
}

// stop closes stdin and waits for a clean exit; it fails the test if the
// process does not exit 0 within opTimeout.
func (p *proc) stop(t *testing.T, what string) {
	t.Helper()
	p.stdin.Close()
	select {
	case <-p.done:
	case <-time.After(opTimeout):
		p.kill()
		t.Fatalf("%s: did not exit within %v of closing its stdin; stderr: %s", what, opTimeout, tail(p.stderr.Bytes(), 600))
	}
	if p.err != nil {
		t.Errorf("%s: %v; stderr: %s", what, p.err, tail(p.stderr.Bytes(), 600))
	}
}

// kill ends the process if it still runs, and waits for it.
func (p *proc) kill() {
	select {
	case <-p.done:
		return
	default:
	}
	if p.cmd.Process != nil {
		p.cmd.Process.Kill()
	}
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
	}
}

// lockedBuffer is a bytes.Buffer that exec's copying goroutine may write
// while a timeout path reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf.Bytes())
}
