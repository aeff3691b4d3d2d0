package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"

	"github.com/weirhub/weir/hub"
	"github.com/weirhub/weir/internal/zinctest"
)

// TestLogShipping runs examples/log-shipping.yaml as `weir run` against a
// real Elasticsearch-compatible server (ZincSearch, see internal/zinctest)
// while a writer appends lines to a log file with rename rotations and a
// copytruncate cycle, and the real logger tool sends syslog over UDP and
// TCP in RFC 5424 and RFC 3164. weir run is killed with SIGKILL twice
// while the writer writes (the writer goes on, rotating, while it is down)
// and restarted. At the end:
//
//   - the search server holds exactly one document per line and message,
//     each under the id derived from its origin: <file id>-<offset> for a
//     line (computed here from the file's device, inode, birth time and
//     first line, as the file source documents weir.file.id), so lines the
//     file source read again after a kill, which are in the dataset twice,
//     are still one document each;
//   - the zstd archive holds every line and message at least once (the
//     file sink is at least once across a kill: duplicates are counted
//     and logged, not failed);
//   - nothing went to the dead-letter dataset.
//
// Syslog has no acknowledgement: messages sent to a process that is then
// killed may be lost, so messages are sent only while weir run is up, and
// the kill waits until they are indexed.
func TestLogShipping(t *testing.T) {
	if testing.Short() {
		t.Skip("starts ZincSearch and weir run three times; skipped with -short")
	}
	loggerBin, err := exec.LookPath("logger")
	if err != nil {
		t.Fatalf("this test sends syslog with util-linux's logger (Debian: bsdutils): %v", err)
	}
	begin := time.Now()
	zs := zinctest.Start(t)
	t.Logf("ZincSearch ready in %v", time.Since(begin).Round(time.Millisecond))

	dir := t.TempDir()
	logDir, dataDir := filepath.Join(dir, "logs"), filepath.Join(dir, "data")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		t.Fatal(err)
	}
	port := lsFreePort(t)
	example, err := filepath.Abs("../../examples/log-shipping.yaml")
	if err != nil {
		t.Fatal(err)
	}
	env := []string{
		"LOG_DIR=" + logDir, "WEIR_DATA_DIR=" + dataDir,
		"ES_URL=" + zs.URL, "ES_USER=" + zs.User, "ES_PASSWORD=" + zs.Password,
		"ES_COMPRESSION=none", // ZincSearch cannot read gzip bodies
		fmt.Sprintf("SYSLOG_ADDRESS=127.0.0.1:%d", port),
	}

	const (
		lines       = 3200 // N
		rotateEvery = 350  // lines per file before a rename rotation
		perCombo    = 4    // syslog messages per protocol and format, per run
		runs        = 3
	)
	combos := [][]string{
		{"--rfc5424", "--tcp"}, {"--rfc5424", "--tcp", "--octet-count"}, {"--rfc5424", "--udp"},
		{"--rfc3164", "--tcp"}, {"--rfc3164", "--udp"},
	}
	messages := runs * perCombo * len(combos) // M
	w := &lsWriter{t: t, dir: logDir, lines: make([]lsLine, lines)}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Second)
	defer cancel()
	syslogQuery := map[string]any{"term": map[string]any{"app": "shiptest"}}

	var weir *lsRun
	start := func(run int) {
		weir = lsStart(t, env, example, port, run)
	}
	sent := 0
	sendSyslog := func() {
		t.Helper()
		for _, c := range combos {
			sent += lsLogger(t, loggerBin, port, c, sent, perCombo)
		}
		if got := lsWaitCount(ctx, zs, syslogQuery, sent, 20*time.Second); got != sent {
			t.Fatalf("%d of %d syslog messages indexed within 20s; weir run logs:\n%s", got, sent, weir.logs)
		}
	}
	// killMidStream kills weir run while the writer writes and the file
	// source reads: once lines of this phase are searchable (more than
	// base documents), between two checkpoint writes (every second), so
	// that lines are stored in the dataset and not checkpointed: the file
	// source reads them again after the restart.
	checkpoints := filepath.Join(dataDir, "state", "sources", "files", "file-checkpoints.json")
	killMidStream := func(base int, writing <-chan error, killed chan<- struct{}) {
		t.Helper()
		var n int
		for deadline, next := time.Now().Add(20*time.Second), (time.Time{}); ; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("no lines of this phase searchable within 20s (%d documents); weir run logs:\n%s", n, weir.logs)
			}
			if len(writing) > 0 {
				t.Fatalf("the writer finished before the kill (%d lines written): no kill mid-stream", w.progress.Load())
			}
			if time.Now().After(next) {
				n, _ = zs.Count(ctx, "logs-*", nil)
				next = time.Now().Add(200 * time.Millisecond)
			}
			fi, err := os.Stat(checkpoints)
			if n < base+50 || err != nil {
				continue
			}
			if age := time.Since(fi.ModTime()); age >= 300*time.Millisecond && age < 800*time.Millisecond {
				break
			}
		}
		weir.kill()
		close(killed)
		t.Logf("killed weir run with SIGKILL with %d lines written, %d documents searchable", w.progress.Load(), n)
	}
	everything := func(want int, what string) {
		t.Helper()
		if got := lsWaitCount(ctx, zs, nil, want, 30*time.Second); got != want {
			t.Fatalf("%s: %d documents, want %d; weir run logs:\n%s", what, got, want, weir.logs)
		}
	}

	// Run 1: syslog, then lines; killed mid-stream. The writer goes on
	// (rotating) while weir run is down.
	start(1)
	sendSyslog()
	killed := make(chan struct{})
	done := w.writeAsync(0, 1600, rotateEvery, killed)
	killMidStream(sent, done, killed)
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	// Run 2: catches up, then a copytruncate cycle once every line of the
	// live file is in (copytruncate loses what the reader has not read
	// when the file is truncated, whatever the reader); more lines,
	// killed mid-stream again.
	start(2)
	sendSyslog()
	everything(1600+sent, "after restarting")
	if err := w.copyTruncate(); err != nil {
		t.Fatal(err)
	}
	killed = make(chan struct{})
	done = w.writeAsync(1600, lines, rotateEvery, killed)
	killMidStream(1600+sent, done, killed)
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	// Run 3: catches up; stopped gracefully at the end.
	start(3)
	sendSyslog()
	if sent != messages {
		t.Fatalf("sent %d syslog messages, want %d", sent, messages)
	}
	everything(lines+messages, "at the end")
	ids := w.ids()
	if got := zs.WaitForIDs(t, "logs-*", ids, 20*time.Second); got != lines {
		t.Fatalf("%d of %d lines found by the id of their origin", got, lines)
	}
	weir.stop()
	time.Sleep(1500 * time.Millisecond) // late duplicates would be searchable by now
	if got, err := zs.Count(ctx, "logs-*", nil); err != nil || got != lines+messages {
		t.Fatalf("after stopping: %d documents (%v), want %d", got, err, lines+messages)
	}

	// Every document, by content: one per line and message, under its id.
	want := map[string]string{} // token -> the id its document must have ("" for syslog)
	for i := range lines {
		want[fmt.Sprintf("L%06d", i)] = ids[i]
	}
	for i := range messages {
		want[fmt.Sprintf("S%06d", i)] = ""
	}
	docs := lsDocs(ctx, t, zs, lines+messages+100)
	seen := map[string]int{}
	datasetID := regexp.MustCompile(`^logs-\d+-\d+$`)
	for _, d := range docs {
		tok := lsToken(d.Source)
		if tok == "" {
			t.Fatalf("document %s holds no line or message: %s", d.ID, d.Source)
		}
		seen[tok]++
		switch id, ok := want[tok]; {
		case !ok:
			t.Fatalf("document %s holds %s, which was never written", d.ID, tok)
		case id != "" && d.ID != id:
			t.Errorf("line %s has the id %s, want %s (<file id>-<offset>)", tok, d.ID, id)
		case id == "" && !datasetID.MatchString(d.ID):
			t.Errorf("syslog message %s has the id %s, want logs-<partition>-<offset>", tok, d.ID)
		}
	}
	lsCheckOnce(t, "the search server", want, seen, true)

	// The dataset: every line and message, some lines twice (read again
	// after a kill): the duplicates the ids above absorbed.
	stored, dead := lsDataset(t, dataDir)
	lsCheckOnce(t, "the dataset", want, stored, false)
	if dead > 0 {
		t.Errorf("%d records went to the dead-letter dataset", dead)
	}
	reread := 0
	for _, c := range stored {
		reread += c - 1
	}
	if reread == 0 {
		t.Errorf("no line was stored twice in the dataset: the kills did not catch the file source between a store and a checkpoint, so the ids were not put to the test")
	}

	// The archive: at least once.
	archived, torn, files := lsArchive(t, filepath.Join(dataDir, "archive"))
	lsCheckOnce(t, "the archive", want, archived, false)
	dups := 0
	for _, c := range archived {
		dups += c - 1
	}
	t.Logf("%d lines (%d files, %d rename rotations, 1 copytruncate) and %d syslog messages, 2 kills: "+
		"%d documents, one per line and message; the dataset held %d records (%d lines read again after a kill); "+
		"the archive (%d files) holds all %d, %d of them twice or more (written again after a kill), %d torn lines; in %v",
		lines, len(w.gens), w.rotations, messages, len(docs), lines+messages+reread, reread,
		files, len(archived), dups, torn, time.Since(begin).Round(time.Millisecond))
}

// lsRun is one `weir run` process.
type lsRun struct {
	t    *testing.T
	cmd  *exec.Cmd
	logs *lsLogs
	done chan struct{}
}

// lsLogs collects a process's output; safe to read while it runs.
type lsLogs struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lsLogs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lsLogs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// lsStart starts `weir run example` and waits until its syslog source
// accepts TCP connections (its UDP socket is bound right after).
func lsStart(t *testing.T, env []string, example string, port, run int) *lsRun {
	t.Helper()
	r := &lsRun{t: t, logs: &lsLogs{}, done: make(chan struct{})}
	r.cmd = weirCmd(t, env, "run", example, "--stats-every", "0", "--log-level", "warn")
	r.cmd.Stdout, r.cmd.Stderr = r.logs, r.logs
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		r.cmd.Wait()
		close(r.done)
	}()
	t.Cleanup(func() {
		r.cmd.Process.Kill()
		<-r.done
	})
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	for deadline := time.Now().Add(20 * time.Second); ; {
		select {
		case <-r.done:
			t.Fatalf("run %d: weir run exited (%v):\n%s", run, r.cmd.ProcessState, r.logs)
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("run %d: the syslog source is not listening on %s after 20s:\n%s", run, addr, r.logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // the UDP socket
	return r
}

// kill sends SIGKILL and checks that the process was running until then.
func (r *lsRun) kill() {
	r.t.Helper()
	select {
	case <-r.done:
		r.t.Fatalf("weir run exited before the kill (%v):\n%s", r.cmd.ProcessState, r.logs)
	default:
	}
	r.cmd.Process.Signal(syscall.SIGKILL)
	<-r.done
}

// stop sends SIGTERM and waits for a clean exit.
func (r *lsRun) stop() {
	r.t.Helper()
	r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.done:
		if !r.cmd.ProcessState.Success() {
			r.t.Fatalf("weir run did not stop cleanly (%v):\n%s", r.cmd.ProcessState, r.logs)
		}
	case <-time.After(20 * time.Second):
		r.cmd.Process.Signal(syscall.SIGQUIT) // a goroutine dump into its log
		<-r.done
		r.t.Fatalf("weir run did not stop within 20s of SIGTERM:\n%s", r.logs)
	}
}

// lsFreePort returns a port free for both TCP and UDP on 127.0.0.1.
func lsFreePort(t *testing.T) int {
	t.Helper()
	for range 20 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		pc, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		ln.Close()
		if err == nil {
			pc.Close()
			return port
		}
	}
	t.Fatal("no port free for both TCP and UDP in 20 tries")
	return 0
}

// lsLogger sends n syslog messages S<from>... with one run of logger and
// the given options; it returns n.
func lsLogger(t *testing.T, bin string, port int, opts []string, from, n int) int {
	t.Helper()
	var in strings.Builder
	for i := from; i < from+n; i++ {
		fmt.Fprintf(&in, "S%06d sent with logger %s\n", i, strings.Join(opts, " "))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	args := append([]string{"-n", "127.0.0.1", "-P", fmt.Sprint(port), "-t", "shiptest", "-p", "local3.warning"}, opts...)
	if opts[0] == "--rfc5424" {
		args = append(args, "--msgid", "e2e", "--sd-id", "ship@32473", "--sd-param", `run="e2e"`)
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdin = strings.NewReader(in.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("logger %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return n
}

// lsWaitCount polls the number of documents matching query (nil: all)
// in logs-* until it is want or timeout passes; errors (no index yet)
// count as 0.
func lsWaitCount(ctx context.Context, zs *zinctest.Server, query any, want int, timeout time.Duration) int {
	deadline := time.Now().Add(timeout)
	for {
		n, err := zs.Count(ctx, "logs-*", query)
		if err == nil && n == want || time.Now().After(deadline) || ctx.Err() != nil {
			return n
		}
		time.Sleep(200 * time.Millisecond)
	}
}

type lsDoc struct {
	ID     string          `json:"_id"`
	Source json.RawMessage `json:"_source"`
}

// lsDocs returns every document of logs-*.
func lsDocs(ctx context.Context, t *testing.T, zs *zinctest.Server, max int) []lsDoc {
	t.Helper()
	var res struct {
		Hits struct {
			Hits []lsDoc `json:"hits"`
		} `json:"hits"`
	}
	body := map[string]any{"size": max, "query": map[string]any{"match_all": map[string]any{}}}
	if _, err := zs.Do(ctx, http.MethodPost, "/logs-*/_search", body, &res); err != nil {
		t.Fatal(err)
	}
	return res.Hits.Hits
}

var lsTokenRE = regexp.MustCompile(`\b[LS]\d{6}\b`)

// lsToken returns the line (L000123) or message (S000012) a record holds.
func lsToken(b []byte) string { return string(lsTokenRE.Find(b)) }

// lsCheckOnce checks that every wanted token was seen, and with exact,
// only once.
func lsCheckOnce(t *testing.T, where string, want map[string]string, seen map[string]int, exact bool) {
	t.Helper()
	var missing, twice []string
	for tok := range want {
		switch c := seen[tok]; {
		case c == 0:
			missing = append(missing, tok)
		case c > 1 && exact:
			twice = append(twice, fmt.Sprintf("%s×%d", tok, c))
		}
	}
	for tok := range seen {
		if _, ok := want[tok]; !ok {
			t.Errorf("%s holds %s, which was never written", where, tok)
		}
	}
	sort.Strings(missing)
	sort.Strings(twice)
	if len(missing) > 0 {
		t.Errorf("%s misses %d of %d lines and messages: %v", where, len(missing), len(want), missing[:min(len(missing), 20)])
	}
	if len(twice) > 0 {
		t.Errorf("%s holds %d lines or messages more than once: %v", where, len(twice), twice[:min(len(twice), 20)])
	}
}

// lsDataset reads the dataset logs from the hub's directory (weir run is
// stopped): how often each line and message is stored, and how many
// records the dead-letter dataset holds.
func lsDataset(t *testing.T, dataDir string) (map[string]int, int) {
	t.Helper()
	h, err := hub.Open(hub.Options{DataDir: dataDir, DisableAutoCreate: true})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	read := func(dataset string, each func(value []byte, fileID bool)) {
		c, err := hub.NewLocalClient(h).Consume(context.Background(), hub.ConsumeOptions{Datasets: []string{dataset}, Broadcast: true})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(context.Background())
		for range 1000 { // bounded: every poll returns records or the lag is 0
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			fetches, err := c.Poll(ctx)
			cancel()
			if err != nil && !errors.Is(err, context.DeadlineExceeded) {
				t.Fatal(err)
			}
			for _, f := range fetches {
				for _, r := range f.Records {
					id := false
					for _, h := range r.Headers {
						id = id || string(h.Key) == "weir.file.id"
					}
					each(r.Value, id)
				}
			}
			lag := int64(0)
			for _, l := range c.Lag() {
				lag += l
			}
			if len(fetches) == 0 && lag == 0 {
				return
			}
		}
		t.Fatalf("reading %s did not end", dataset)
	}
	stored := map[string]int{}
	read("logs", func(v []byte, fileID bool) {
		tok := lsToken(v)
		if tok == "" || (tok[0] == 'L') != fileID {
			t.Errorf("dataset record %s: token %q, weir.file.id header %v", v, tok, fileID)
		}
		stored[tok]++
	})
	dead := 0
	read("logs-dead", func(v []byte, _ bool) {
		if dead++; dead <= 5 {
			t.Logf("dead letter: %s", v)
		}
	})
	return stored, dead
}

// lsArchive reads every zstd file under dir: how often each line and
// message is there, and how many lines are torn (the end of a file that
// was being written at a kill).
func lsArchive(t *testing.T, dir string) (map[string]int, int, int) {
	t.Helper()
	counts := map[string]int{}
	torn, files := 0, 0
	paths, _ := filepath.Glob(filepath.Join(dir, "*.zst"))
	for _, p := range paths {
		files++
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		zr, err := zstd.NewReader(f)
		if err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(zr)
		for {
			line, err := br.ReadBytes('\n')
			if len(line) > 0 {
				if tok := lsToken(line); tok != "" && json.Valid(bytes.TrimSpace(line)) && line[len(line)-1] == '\n' {
					counts[tok]++
				} else {
					torn++
				}
			}
			if err != nil {
				if err != io.EOF {
					t.Logf("%s: %v (after a kill)", filepath.Base(p), err)
				}
				break
			}
		}
		zr.Close()
		f.Close()
	}
	if files == 0 {
		t.Fatalf("no archive files in %s", dir)
	}
	return counts, torn, files
}

// lsWriter writes numbered lines to dir/app.log, rotating it, and keeps
// what the ids of their documents are made of.
type lsWriter struct {
	t         *testing.T
	dir       string
	f         *os.File
	off       int64 // in the current generation of the file
	gens      []lsGen
	lines     []lsLine
	rotations int
	progress  atomic.Int64 // lines written
}

// lsGen is one content of a file: a file, or what a file holds after a
// truncation.
type lsGen struct {
	dev, ino uint64
	birth    int64
	first    string // its first line, with its line break
}

type lsLine struct {
	gen int
	off int64
}

func (w *lsWriter) path() string { return filepath.Join(w.dir, "app.log") }

// lsLineText is line i: JSON mostly, plain text every fourth line.
func lsLineText(i int) string {
	if i%4 == 3 {
		return fmt.Sprintf("2026-11-21T10:00:00.%06dZ WARN L%06d upstream timed out after 30s", i, i)
	}
	return fmt.Sprintf(`{"seq":%d,"level":"info","msg":"request L%06d served","user":"u%d","ms":%d}`, i, i, i%17, i%250)
}

// open creates app.log: a new generation.
func (w *lsWriter) open() error {
	f, err := os.OpenFile(w.path(), os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	w.f, w.off = f, 0
	return w.newGen()
}

// newGen starts a generation of the open file.
func (w *lsWriter) newGen() error {
	var st unix.Stat_t
	if err := unix.Fstat(int(w.f.Fd()), &st); err != nil {
		return err
	}
	g := lsGen{dev: uint64(st.Dev), ino: st.Ino}
	var stx unix.Statx_t
	if err := unix.Statx(int(w.f.Fd()), "", unix.AT_EMPTY_PATH|unix.AT_STATX_SYNC_AS_STAT, unix.STATX_BTIME, &stx); err == nil && stx.Mask&unix.STATX_BTIME != 0 {
		g.birth = stx.Btime.Sec*1e9 + int64(stx.Btime.Nsec)
	}
	w.gens = append(w.gens, g)
	return nil
}

// rotate renames app.log.k to app.log.k+1, app.log to app.log.1, and
// creates app.log, as logrotate does.
func (w *lsWriter) rotate() error {
	if err := w.f.Close(); err != nil {
		return err
	}
	for k := w.rotations; k >= 1; k-- {
		if err := os.Rename(fmt.Sprintf("%s.%d", w.path(), k), fmt.Sprintf("%s.%d", w.path(), k+1)); err != nil {
			return err
		}
	}
	if err := os.Rename(w.path(), w.path()+".1"); err != nil {
		return err
	}
	w.rotations++
	return w.open()
}

// copyTruncate copies app.log, compressed, to app.log.ct.gz (a name the
// example's glob matches, but .gz files are skipped) and truncates it,
// as logrotate's copytruncate and compress do.
func (w *lsWriter) copyTruncate() error {
	data, err := os.ReadFile(w.path())
	if err != nil {
		return err
	}
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	zw.Write(data)
	zw.Close()
	if err := os.WriteFile(w.path()+".ct.gz", b.Bytes(), 0o644); err != nil {
		return err
	}
	if err := w.f.Truncate(0); err != nil {
		return err
	}
	w.off = 0
	return w.newGen()
}

// writeAsync writes lines [from, to), rotating every rotateEvery lines:
// about 400 a second until killed is closed, then the rest at once. It
// sends the outcome on the channel it returns.
func (w *lsWriter) writeAsync(from, to, rotateEvery int, killed <-chan struct{}) <-chan error {
	done := make(chan error, 1)
	go func() {
		done <- w.write(from, to, rotateEvery, killed)
	}()
	return done
}

func (w *lsWriter) write(from, to, rotateEvery int, killed <-chan struct{}) error {
	if w.f == nil {
		if err := w.open(); err != nil {
			return err
		}
	}
	for i := from; i < to; i++ {
		if i > 0 && i%rotateEvery == 0 {
			if err := w.rotate(); err != nil {
				return err
			}
		}
		line := lsLineText(i) + "\n"
		g := &w.gens[len(w.gens)-1]
		if g.first == "" {
			g.first = line
		}
		if _, err := w.f.WriteString(line); err != nil {
			return err
		}
		w.lines[i] = lsLine{gen: len(w.gens) - 1, off: w.off}
		w.off += int64(len(line))
		w.progress.Store(int64(i + 1))
		if (i+1)%20 == 0 {
			select {
			case <-killed:
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	return nil
}

// ids returns the document id of every line: the weir.file.id of its
// file's generation (the first 8 bytes of the SHA-256 of the device,
// inode and birth time, big-endian, and of the first line, in hex) and
// its offset.
func (w *lsWriter) ids() []string {
	gid := make([]string, len(w.gens))
	for i, g := range w.gens {
		var b [24]byte
		binary.BigEndian.PutUint64(b[0:], g.dev)
		binary.BigEndian.PutUint64(b[8:], g.ino)
		binary.BigEndian.PutUint64(b[16:], uint64(g.birth))
		sum := sha256.Sum256(append(b[:], g.first...))
		gid[i] = hex.EncodeToString(sum[:8])
	}
	out := make([]string, len(w.lines))
	for i, l := range w.lines {
		out[i] = fmt.Sprintf("%s-%d", gid[l.gen], l.off)
	}
	return out
}
