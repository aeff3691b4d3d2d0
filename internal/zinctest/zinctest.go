package zinctest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	// Module is the Go module ZincSearch is built from.
	Module = "github.com/zincsearch/zincsearch"
	// Version is the ZincSearch release the tests run.
	Version = "v0.4.10"

	// User and Password are the administrator every server starts with.
	User     = "admin"
	Password = "Weir-test#1"

	// ESVersion is the Elasticsearch version the server reports.
	ESVersion = "8.11.0"

	// EnvBinary names a prebuilt ZincSearch binary to use instead of
	// building one.
	EnvBinary = "WEIR_ZINCSEARCH"
)

// Server is a running ZincSearch. Its methods are safe for concurrent use.
type Server struct {
	// URL is the Elasticsearch-compatible endpoint, for clients:
	// http://127.0.0.1:PORT/es.
	URL string
	// Base is the server's root URL (its native API is under /api).
	Base string
	// User and Password authenticate (basic authentication).
	User, Password string
	// DataDir holds the server's indexes and its log (zincsearch.log).
	DataDir string

	cmd    *exec.Cmd
	exited chan struct{}
	client *http.Client
}

// Start returns a running ZincSearch server private to the test, building
// the binary first if this machine has none cached (see the package doc).
// The server stops when the test ends. Start fails the test if the server
// cannot be built or started; with -short it skips the test.
func Start(t testing.TB) *Server {
	t.Helper()
	if testing.Short() {
		t.Skip("zinctest: needs a ZincSearch server (built on first use, which takes minutes); skipped with -short")
	}
	bin, err := Binary()
	if err != nil {
		t.Fatalf("%v", err)
	}
	var lastErr error
	for try := 0; try < 3; try++ { // a free port can be taken before the server binds it
		s, err := start(bin, t.TempDir())
		if err == nil {
			t.Cleanup(s.stop)
			return s
		}
		lastErr = err
	}
	t.Fatalf("zinctest: cannot start ZincSearch (%s): %v", bin, lastErr)
	return nil
}

// StartProcess is Start for programs that are not tests, such as
// benchmark harnesses: it returns a running server whose data lives in a
// new directory under dir, and stop, which ends it (SIGTERM, then SIGKILL
// after 10 seconds; safe to call more than once). The caller removes dir.
// It builds the binary first if needed, as Start does.
func StartProcess(dir string) (s *Server, stop func(), err error) {
	bin, err := Binary()
	if err != nil {
		return nil, nil, err
	}
	for try := 0; try < 3; try++ { // a free port can be taken before the server binds it
		var sub string
		if sub, err = os.MkdirTemp(dir, "zincsearch-"); err != nil {
			return nil, nil, fmt.Errorf("zinctest: %w", err)
		}
		if s, err = start(bin, sub); err == nil {
			return s, s.stop, nil
		}
	}
	return nil, nil, fmt.Errorf("zinctest: cannot start ZincSearch (%s): %w", bin, err)
}

// PID is the server's process id (to read its CPU time, for instance).
func (s *Server) PID() int { return s.cmd.Process.Pid }

// start runs bin with its data in dir, on a free port, and waits until it
// answers; the caller stops it.
func start(bin, dir string) (*Server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "zincsearch.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	cmd := exec.Command(bin)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"ZINC_SERVER_ADDRESS=127.0.0.1",
		"ZINC_SERVER_PORT="+strconv.Itoa(port),
		"ZINC_DATA_PATH="+filepath.Join(dir, "data"),
		"ZINC_FIRST_ADMIN_USER="+User,
		"ZINC_FIRST_ADMIN_PASSWORD="+Password,
		"ZINC_TELEMETRY=false",
		"ZINC_SENTRY=false",
		"ZINC_PROFILER=false",
		"ZINC_PLUGIN_ES_VERSION="+ESVersion,
		"GIN_MODE=release",
	)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	s := &Server{URL: base + "/es", Base: base, User: User, Password: Password, DataDir: dir,
		cmd: cmd, exited: make(chan struct{}), client: &http.Client{Timeout: 30 * time.Second}}
	go func() {
		cmd.Wait()
		close(s.exited)
	}()
	if err := s.waitReady(30 * time.Second); err != nil {
		s.stop()
		return nil, fmt.Errorf("%w; its log ends:\n%s", err, tail(logPath, 2048))
	}
	return s, nil
}

// waitReady polls the ES info endpoint until it answers 200.
func (s *Server) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-s.exited:
			return fmt.Errorf("the server exited: %v", s.cmd.ProcessState)
		default:
		}
		req, _ := http.NewRequest(http.MethodGet, s.URL+"/", nil)
		req.SetBasicAuth(s.User, s.Password)
		resp, err := s.client.Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %s", resp.Status)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no answer at %s within %v: %v", s.URL, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop ends the server: SIGTERM, then SIGKILL after 10 seconds.
func (s *Server) stop() {
	select {
	case <-s.exited:
		return
	default:
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill()
		<-s.exited
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// tail returns the last n bytes of a file, for error messages.
func tail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > n {
		f.Seek(st.Size()-n, io.SeekStart)
	}
	b, _ := io.ReadAll(f)
	return string(b)
}

// --- queries

// Do sends a request to the ES-compatible API (path is relative to URL,
// e.g. "/logs-*/_search") with the server's credentials and decodes a
// JSON answer into out (when not nil). It returns the status code; a
// status of 400 or more is also an error with the start of the body.
func (s *Server) Do(ctx context.Context, method, path string, body any, out any) (int, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	case string:
		rd = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			return 0, err
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequestWithContext(ctx, method, s.URL+path, rd)
	if err != nil {
		return 0, err
	}
	req.SetBasicAuth(s.User, s.Password)
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return resp.StatusCode, err
	}
	if resp.StatusCode >= 400 {
		if len(data) > 512 {
			data = data[:512]
		}
		return resp.StatusCode, fmt.Errorf("zinctest: %s %s: %s: %s", method, path, resp.Status, data)
	}
	if out != nil && method != http.MethodHead {
		if err := json.Unmarshal(data, out); err != nil {
			return resp.StatusCode, fmt.Errorf("zinctest: %s %s: decoding %q: %w", method, path, data, err)
		}
	}
	return resp.StatusCode, nil
}

// IndexExists reports whether an index exists.
func (s *Server) IndexExists(ctx context.Context, index string) (bool, error) {
	code, err := s.Do(ctx, http.MethodHead, "/"+index, nil, nil)
	switch {
	case code == http.StatusOK:
		return true, nil
	case code == http.StatusNotFound:
		return false, nil
	case err == nil:
		err = fmt.Errorf("zinctest: HEAD /%s: status %d", index, code)
	}
	return false, err
}

// Count returns how many documents of the indexes matching pattern
// ("logs-*") match query (a query DSL object; nil matches all). ZincSearch
// has no _count API: this is a search with size 0 and track_total_hits.
func (s *Server) Count(ctx context.Context, pattern string, query any) (int, error) {
	if query == nil {
		query = map[string]any{"match_all": map[string]any{}}
	}
	var res struct {
		Hits struct {
			Total struct {
				Value int `json:"value"`
			} `json:"total"`
		} `json:"hits"`
	}
	body := map[string]any{"size": 0, "track_total_hits": true, "query": query}
	if _, err := s.Do(ctx, http.MethodPost, "/"+pattern+"/_search", body, &res); err != nil {
		return 0, err
	}
	return res.Hits.Total.Value, nil
}

// idsPerQuery bounds the ids of one terms query.
const idsPerQuery = 1000

// CountIDs returns how many documents with one of ids exist in the
// indexes matching pattern: terms queries on _id, idsPerQuery ids each.
// Ids should be distinct; each document counts once.
func (s *Server) CountIDs(ctx context.Context, pattern string, ids []string) (int, error) {
	n := 0
	for start := 0; start < len(ids); start += idsPerQuery {
		part := ids[start:min(start+idsPerQuery, len(ids))]
		c, err := s.Count(ctx, pattern, map[string]any{"terms": map[string]any{"_id": part}})
		if err != nil {
			return n, err
		}
		n += c
	}
	return n, nil
}

// WaitForIDs polls CountIDs until it returns len(ids) or timeout passes,
// and returns the last count (documents become searchable about a second
// after they are indexed). Only a failing query fails the test; the
// caller compares the count.
func (s *Server) WaitForIDs(t testing.TB, pattern string, ids []string, timeout time.Duration) int {
	t.Helper()
	return s.waitFor(t, timeout, len(ids), func(ctx context.Context) (int, error) { return s.CountIDs(ctx, pattern, ids) })
}

// WaitForCount polls Count until it returns want or timeout passes, and
// returns the last count.
func (s *Server) WaitForCount(t testing.TB, pattern string, query any, want int, timeout time.Duration) int {
	t.Helper()
	return s.waitFor(t, timeout, want, func(ctx context.Context) (int, error) { return s.Count(ctx, pattern, query) })
}

// PollCount is WaitForCount for programs that are not tests: it polls
// Count until it returns want or timeout passes, and returns the last
// count, or the error of a failing query.
func (s *Server) PollCount(ctx context.Context, pattern string, query any, want int, timeout time.Duration) (int, error) {
	return poll(ctx, timeout, want, func(ctx context.Context) (int, error) { return s.Count(ctx, pattern, query) })
}

func (s *Server) waitFor(t testing.TB, timeout time.Duration, want int, count func(context.Context) (int, error)) int {
	t.Helper()
	n, err := poll(context.Background(), timeout, want, count)
	if err != nil {
		t.Fatalf("%v", err)
	}
	return n
}

func poll(ctx context.Context, timeout time.Duration, want int, count func(context.Context) (int, error)) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout+30*time.Second)
	defer cancel()
	deadline := time.Now().Add(timeout)
	for {
		n, err := count(ctx)
		if err != nil {
			return n, err
		}
		if n == want || time.Now().After(deadline) {
			return n, nil
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// --- building

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
)

// Binary returns the path of a ZincSearch binary: $WEIR_ZINCSEARCH if
// set, else the cached build, building it first if needed (once per
// process, and once per machine through a lock file).
func Binary() (string, error) {
	if p := os.Getenv(EnvBinary); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("zinctest: %s=%s: %w", EnvBinary, p, err)
		}
		return p, nil
	}
	buildOnce.Do(func() { buildPath, buildErr = cachedBuild() })
	return buildPath, buildErr
}

// CacheDir is where the built binary is kept:
// <user cache dir>/weir-test/zincsearch-<Version>.
func CacheDir() (string, error) {
	base, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("zinctest: no cache directory (set XDG_CACHE_HOME or HOME): %w", err)
	}
	return filepath.Join(base, "weir-test", "zincsearch-"+Version), nil
}

// buildTimeout bounds a whole build, waiting for another process's
// included.
const buildTimeout = 20 * time.Minute

func cachedBuild() (string, error) {
	dir, err := CacheDir()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "zincsearch")
	if isExecutable(bin) {
		return bin, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", buildError("creating the cache directory", err, "")
	}
	unlock, err := lockFile(filepath.Join(dir, "build.lock"), buildTimeout)
	if err != nil {
		return "", buildError("locking "+filepath.Join(dir, "build.lock"), err, "")
	}
	defer unlock()
	if isExecutable(bin) { // another process built it while we waited
		return bin, nil
	}
	if err := build(bin); err != nil {
		return "", err
	}
	return bin, nil
}

func isExecutable(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0
}

// lockFile takes an exclusive flock on path, polling until timeout, and
// returns its release.
func lockFile(path string, timeout time.Duration) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(timeout)
	told := false
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, err
		}
		if time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("still held by another process after %v", timeout)
		}
		if !told {
			progress("another test process is building ZincSearch %s; waiting for it (lock %s)", Version, path)
			told = true
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "zinctest: "+format+"\n", args...)
}

// buildError explains a failed build step and what to do about it.
func buildError(step string, err error, output string) error {
	msg := fmt.Sprintf("zinctest: building ZincSearch %s failed while %s: %v", Version, step, err)
	if output = strings.TrimSpace(output); output != "" {
		if len(output) > 4000 {
			output = "..." + output[len(output)-4000:]
		}
		msg += "\n" + output
	}
	dir, _ := CacheDir()
	msg += fmt.Sprintf("\nThe Elasticsearch integration tests need ZincSearch, built once from the Go module proxy "+
		"(go mod download %s@%s; GOPROXY=%s). Make the proxy reachable and run the tests again, "+
		"or build ZincSearch yourself and put the binary at %s, or point %s at it.",
		Module, Version, goEnv("GOPROXY"), filepath.Join(dir, "zincsearch"), EnvBinary)
	return errors.New(msg)
}

func goEnv(name string) string {
	out, err := exec.Command("go", "env", name).Output()
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(out))
}

// goCmd runs the go command in dir with a clean module environment (no
// workspace, no -mod flags from the caller, the local toolchain only).
func goCmd(ctx context.Context, dir string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOWORK=off", "GOTOOLCHAIN=local", "CGO_ENABLED=0", "GO111MODULE=on")
	return cmd
}

// build downloads the module, patches a temporary copy and builds it
// into bin.
func build(bin string) error {
	start := time.Now()
	progress("building ZincSearch %s for the integration tests, once per machine; this takes a few minutes (cached in %s)", Version, filepath.Dir(bin))
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	work, err := os.MkdirTemp("", "weir-zincsearch-build-")
	if err != nil {
		return buildError("creating a build directory", err, "")
	}
	defer os.RemoveAll(work)

	// 1. The module's source, from the module proxy.
	progress("go mod download %s@%s", Module, Version)
	var stderr bytes.Buffer
	dl := goCmd(ctx, work, "mod", "download", "-json", Module+"@"+Version)
	dl.Stderr = &stderr
	out, err := dl.Output()
	var mod struct{ Dir, Error string }
	if jerr := json.Unmarshal(out, &mod); err == nil && jerr != nil {
		err = jerr
	}
	if err == nil && mod.Error != "" {
		err = errors.New(mod.Error)
	}
	if err == nil && mod.Dir == "" {
		err = errors.New("no module directory in its output")
	}
	if err != nil {
		return buildError("downloading the module (go mod download)", err, string(out)+stderr.String())
	}

	// 2. A writable copy with the two changes it needs.
	src := filepath.Join(work, "src")
	if err := os.CopyFS(src, os.DirFS(mod.Dir)); err != nil {
		return buildError("copying "+mod.Dir, err, "")
	}
	if err := patch(src); err != nil {
		return buildError("patching the copy", err, "")
	}

	// 3. The build, with progress while it runs.
	progress("go build ./cmd/zincsearch (dependencies come from the module proxy)")
	tmpBin := bin + ".tmp"
	b := goCmd(ctx, src, "build", "-trimpath", "-o", tmpBin, "./cmd/zincsearch")
	var output bytes.Buffer
	b.Stdout, b.Stderr = &output, &output
	if err := b.Start(); err != nil {
		return buildError("starting go build", err, "")
	}
	done := make(chan error, 1)
	go func() { done <- b.Wait() }()
	tick := time.NewTicker(20 * time.Second)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			if err != nil {
				os.Remove(tmpBin)
				return buildError("compiling (go build ./cmd/zincsearch)", err, output.String())
			}
			if err := os.Rename(tmpBin, bin); err != nil {
				return buildError("installing the binary", err, "")
			}
			progress("built ZincSearch %s in %v: %s", Version, time.Since(start).Round(time.Second), bin)
			return nil
		case <-tick.C:
			progress("still building ZincSearch (%v so far)", time.Since(start).Round(time.Second))
		}
	}
}

// patch makes the module's copy build: a stub for the embedded web UI
// (web/dist is produced by npm in ZincSearch's own build and is not in the
// module) and no pyroscope profiler, an optional import that does not
// build with current Go.
func patch(src string) error {
	if err := os.MkdirAll(filepath.Join(src, "web", "dist"), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(src, "web", "dist", "index.html"),
		[]byte("<!doctype html><title>ZincSearch</title><p>Built by Weir's tests without the web UI.</p>\n"), 0o644); err != nil {
		return err
	}
	mainGo := filepath.Join(src, "cmd", "zincsearch", "main.go")
	b, err := os.ReadFile(mainGo)
	if err != nil {
		return err
	}
	s := string(b)
	for _, imp := range []string{"\t\"github.com/pyroscope-io/client/pyroscope\"\n", "\t\"strings\"\n"} {
		if !strings.Contains(s, imp) {
			return fmt.Errorf("%s: no import line %q to remove (is this %s?)", mainGo, strings.TrimSpace(imp), Version)
		}
		s = strings.Replace(s, imp, "", 1)
	}
	// The profiling function uses both imports; it becomes a no-op.
	i := strings.Index(s, "func profiling() {")
	j := strings.Index(s, "// shutdown support")
	if i < 0 || j < i {
		return fmt.Errorf("%s: the profiling function is not where %s has it", mainGo, Version)
	}
	s = s[:i] + "func profiling() {} // the pyroscope profiler is left out of this build\n\n" + s[j:]
	return os.WriteFile(mainGo, []byte(s), 0o644)
}
