// Package redistest runs a real redis-server for tests and benchmarks: an
// independent peer for what Weir sends to Redis (the redis sink) and the
// pub/sub baseline of the broadcast benchmark. scripts/test-deps.sh
// installs redis-server; without it a test is skipped on a developer's
// machine and fails in CI.
package redistest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Start runs a redis-server without persistence on a free loopback port,
// with extra command-line arguments (for example "--client-output-buffer-limit",
// "pubsub 0 0 0"), stopped when tb ends, and returns its URL
// (redis://127.0.0.1:PORT/0) once it answers PING.
func Start(tb testing.TB, extra ...string) string {
	tb.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") != "" {
			tb.Fatal("redis-server not found: scripts/test-deps.sh installs it")
		}
		tb.Skip("redis-server not found: scripts/test-deps.sh installs it")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	args := append([]string{"--bind", "127.0.0.1", "--port", fmt.Sprint(port), "--save", "", "--appendonly", "no",
		"--dir", tb.TempDir()}, extra...)
	cmd := exec.Command(bin, args...)
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	url := fmt.Sprintf("redis://127.0.0.1:%d/0", port)
	c := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", port)})
	defer c.Close()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if c.Ping(context.Background()).Err() == nil {
			return url
		}
		if time.Now().After(deadline) {
			tb.Fatal("redis-server did not answer")
		}
	}
}
