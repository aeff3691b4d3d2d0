// Package s3test runs a real S3-compatible server for tests: versitygw, a
// Go S3 gateway over a local directory, built once per machine with
// `go install github.com/versity/versitygw/cmd/versitygw@<Version>` into
// the user cache directory (weir-test/versitygw-<Version>/); a lock file
// keeps parallel test processes from building twice. The environment
// variable WEIR_VERSITYGW names a prebuilt binary to use instead. A failed
// build fails the test with what failed; it never skips.
//
// Each [Start] runs its own server on a free 127.0.0.1 port over a
// temporary directory (metadata in a sidecar directory, so no extended
// attributes are needed), creates a bucket, and stops the server when the
// test ends.
package s3test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/weirhub/weir/internal/objstore"
)

const (
	// Module is the Go package versitygw is built from.
	Module = "github.com/versity/versitygw/cmd/versitygw"
	// Version is the versitygw release the tests run.
	Version = "v1.8.0"
	// EnvBinary names a prebuilt versitygw to use instead of building one.
	EnvBinary = "WEIR_VERSITYGW"

	accessKey = "weir-test"
	secretKey = "weir-test-secret"
)

// Binary returns the versitygw binary, building it if needed.
func Binary() (string, error) {
	if b := os.Getenv(EnvBinary); b != "" {
		return b, nil
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("s3test: %w", err)
	}
	dir := filepath.Join(cache, "weir-test", "versitygw-"+Version)
	bin := filepath.Join(dir, "versitygw")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("s3test: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", fmt.Errorf("s3test: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("s3test: lock: %w", err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	fmt.Fprintf(os.Stderr, "s3test: building versitygw %s into %s (minutes, once per machine)\n", Version, dir)
	cmd := exec.Command("go", "install", Module+"@"+Version)
	cmd.Dir = os.TempDir() // outside this module
	cmd.Env = append(os.Environ(), "GOBIN="+dir, "GOFLAGS=-mod=mod")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("s3test: go install %s@%s: %w\n%s", Module, Version, err, out)
	}
	return bin, nil
}

// Server is a running versitygw with one bucket.
type Server struct {
	Endpoint string // 127.0.0.1:port
	Bucket   string
	Client   *minio.Client
	pid      int
}

// Idle reports whether the server's main thread is under SCHED_IDLE,
// from /proc/PID/stat.
func (s *Server) Idle() (bool, error) {
	f, err := s.stat()
	if err != nil {
		return false, err
	}
	// policy is field 41.
	n, err := strconv.Atoi(f[38])
	if err != nil {
		return false, fmt.Errorf("s3test: versitygw policy: %w", err)
	}
	return n == 5, nil // SCHED_IDLE
}

// stat returns the fields of /proc/PID/stat after the command name:
// state (field 3 of proc(5)) first.
func (s *Server) stat() ([]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", s.pid))
	if err != nil {
		return nil, fmt.Errorf("s3test: versitygw stat: %w", err)
	}
	// The command name is in parentheses, which may hold spaces.
	i := strings.LastIndexByte(string(b), ')')
	f := strings.Fields(string(b[i+1:]))
	if i < 0 || len(f) < 39 {
		return nil, fmt.Errorf("s3test: versitygw: unexpected /proc/%d/stat %q", s.pid, b)
	}
	return f, nil
}

// CPU returns the CPU time (user and system) the server has used so far,
// from /proc/PID/stat: what serving the requests of a benchmark cost the
// server, apart from the process that sends them.
func (s *Server) CPU() (time.Duration, error) {
	f, err := s.stat()
	if err != nil {
		return 0, err
	}
	// utime and stime are fields 14 and 15.
	var ticks int64
	for _, v := range f[11:13] {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("s3test: versitygw CPU: %w", err)
		}
		ticks += n
	}
	// /proc counts in USER_HZ, 100 on Linux whatever the kernel's HZ.
	return time.Duration(ticks) * 10 * time.Millisecond, nil
}

// Options returns store options for the server's bucket, keys under
// prefix.
func (s *Server) Options(prefix string) objstore.S3Options {
	return objstore.S3Options{Endpoint: s.Endpoint, Bucket: s.Bucket, Prefix: prefix, AccessKey: accessKey, SecretKey: secretKey, Insecure: true}
}

// An Option changes how Start runs the server.
type Option func(*config)

type config struct {
	idle bool
}

// Idle runs the server at the lowest CPU priority, SCHED_IDLE (started
// through chrt(1) of util-linux, so all its threads have it). A
// benchmark whose server shares the machine's cores with the process it
// measures runs it so to approach a store on another machine, whose CPU
// the measured process does not compete with; it still shares the memory
// bandwidth, and takes any core left idle.
func Idle() Option { return func(c *config) { c.idle = true } }

// Start runs a server for the test.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	var cfg config
	for _, o := range opts {
		o(&cfg)
	}
	bin, err := Binary()
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	data, meta := filepath.Join(root, "data"), filepath.Join(root, "meta")
	os.MkdirAll(data, 0o755)
	os.MkdirAll(meta, 0o755)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	args := []string{bin, "--access", accessKey, "--secret", secretKey, "--port", addr, "posix", "--sidecar", meta, data}
	if cfg.idle {
		// chrt execs the server: same process, under SCHED_IDLE.
		chrt, err := exec.LookPath("chrt")
		if err != nil {
			t.Fatalf("s3test: running versitygw under SCHED_IDLE needs chrt (util-linux): %v", err)
		}
		args = append([]string{chrt, "--idle", "0"}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	var logs strings.Builder
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	for deadline := time.Now().Add(20 * time.Second); ; {
		select {
		case <-done:
			t.Fatalf("s3test: versitygw exited: %s", logs.String())
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("s3test: versitygw is not listening on %s after 20s: %s", addr, logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	c, err := minio.New(addr, &minio.Options{Creds: credentials.NewStaticV4(accessKey, secretKey, ""), Region: "us-east-1", BucketLookup: minio.BucketLookupPath})
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Endpoint: addr, Bucket: "weir", Client: c, pid: cmd.Process.Pid}
	if idle, err := s.Idle(); err != nil || idle != cfg.idle {
		t.Fatalf("s3test: versitygw under SCHED_IDLE: %v, want %v (%v)", idle, cfg.idle, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.MakeBucket(ctx, s.Bucket, minio.MakeBucketOptions{}); err != nil {
		t.Fatalf("s3test: make bucket: %v: %s", err, logs.String())
	}
	return s
}

// ProcessCPU returns the CPU time (user and system, getrusage) this
// process has used so far: beside Server.CPU, what a benchmark against
// the server cost the client's side.
func ProcessCPU(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Median returns the median of r, which it sorts.
func Median(r []float64) float64 {
	slices.Sort(r)
	return r[len(r)/2]
}

// ReportRatios reports the median, lowest and highest of ratios r (of
// alternating pairs of rounds) as name-ratio-median, -min and -max.
func ReportRatios(b *testing.B, name string, r []float64) {
	slices.Sort(r)
	b.ReportMetric(Median(r), name+"-ratio-median")
	b.ReportMetric(r[0], name+"-ratio-min")
	b.ReportMetric(r[len(r)-1], name+"-ratio-max")
}
