package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	redisKey       = "hubbench"
	redisClients   = 50 // redis-benchmark connections
	redisPipeline  = 64 // requests per pipeline
	redisReadCount = 10000
)

// findRedis returns the paths of redis-server and redis-benchmark.
func findRedis() (server, bench string, err error) {
	if server, err = exec.LookPath("redis-server"); err != nil {
		return "", "", errors.New("redis-server not found: run scripts/bench-peers.sh (Debian package redis-server), or pass -skip-redis")
	}
	if bench, err = exec.LookPath("redis-benchmark"); err != nil {
		return "", "", errors.New("redis-benchmark not found: run scripts/bench-peers.sh (Debian package redis-tools), or pass -skip-redis")
	}
	return server, bench, nil
}

// redisBench starts redis-server without persistence (appendonly no, no
// RDB snapshots), adds the records to one stream with redis-benchmark
// (XADD, the 1 KiB value read from stdin), then reads the stream back with
// XRANGE in chunks through go-redis.
func redisBench(ctx context.Context, cfg *config) (res result, err error) {
	serverBin, benchBin := cfg.redisServer, cfg.redisBin
	out, err := exec.CommandContext(ctx, serverBin, "--version").Output()
	if err != nil {
		return res, fmt.Errorf("%s --version: %w", serverBin, err)
	}
	res.system = "Redis Streams"
	if _, v, ok := strings.Cut(string(out), "v="); ok {
		res.system += " " + strings.Fields(v)[0]
	}
	port, err := freePort()
	if err != nil {
		return res, err
	}
	dir := filepath.Join(cfg.workdir, "redis")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return res, err
	}
	srv, err := startProc("redis-server", filepath.Join(cfg.workdir, "redis-server.log"), serverBin,
		"--bind", "127.0.0.1", "--port", strconv.Itoa(port), "--dir", dir,
		"--save", "", "--appendonly", "no", "--daemonize", "no")
	if err != nil {
		return res, err
	}
	defer srv.stop()
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	if err := srv.waitTCP(ctx, addr); err != nil {
		return res, err
	}
	rdb := redis.NewClient(&redis.Options{Addr: addr, ReadTimeout: 30 * time.Second})
	defer rdb.Close()
	if err := rdb.Ping(ctx).Err(); err != nil {
		return res, fmt.Errorf("ping redis-server at %s: %w", addr, err)
	}

	pctx, cancel := context.WithTimeoutCause(ctx, cfg.timeout, fmt.Errorf("redis-benchmark took longer than -timeout %s", cfg.timeout))
	defer cancel()
	if res.produce, err = redisProduce(pctx, cfg, benchBin, port); err != nil {
		return res, err
	}
	n, err := rdb.XLen(ctx, redisKey).Result()
	if err != nil {
		return res, fmt.Errorf("XLEN %s: %w", redisKey, err)
	}
	// With pipelining redis-benchmark may send a few more than -n requests.
	if n < cfg.records {
		return res, fmt.Errorf("stream %s holds %d entries after redis-benchmark -n %d", redisKey, n, cfg.records)
	}
	fmt.Printf("  produce: %s (stream holds %d entries)\n", res.produce, n)
	cctx, cancel := context.WithTimeoutCause(ctx, cfg.timeout, fmt.Errorf("XRANGE read took longer than -timeout %s", cfg.timeout))
	defer cancel()
	if res.consume, err = redisRead(cctx, cfg, rdb, n); err != nil {
		return res, err
	}
	fmt.Printf("  consume: %s\n", res.consume)
	for i := 1; i < cfg.produceRuns; i++ {
		// Each run to an empty stream, as the first.
		if err := rdb.Del(ctx, redisKey).Err(); err != nil {
			return res, fmt.Errorf("DEL %s: %w", redisKey, err)
		}
		r, err := redisProduce(pctx, cfg, benchBin, port)
		if err != nil {
			return res, err
		}
		fmt.Printf("  produce: %s\n", r)
		res.produce = res.produce.faster(r)
	}
	return res, nil
}

// redisProduce runs redis-benchmark and returns the rate it reports.
func redisProduce(ctx context.Context, cfg *config, bin string, port int) (rate, error) {
	args := []string{"-h", "127.0.0.1", "-p", strconv.Itoa(port), "-c", strconv.Itoa(redisClients),
		"-P", strconv.Itoa(redisPipeline), "-n", strconv.FormatInt(cfg.records, 10), "--csv",
		"-x", "XADD", redisKey, "*", "v"}
	fmt.Printf("running: %s < (%d-byte value)\n", shellQuote(append([]string{bin}, args...)), cfg.recordSize)
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdin = bytes.NewReader(payloadTemplate(cfg.recordSize))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		msg := strings.TrimSpace(string(out) + stderr.String())
		if msg != "" {
			msg = "; its output:\n" + msg
		}
		return rate{}, fmt.Errorf("redis-benchmark: %w%s", cmp.Or(context.Cause(ctx), err), msg)
	}
	rows, err := csv.NewReader(bytes.NewReader(out)).ReadAll()
	if err != nil {
		return rate{}, fmt.Errorf("redis-benchmark: parse --csv output %q: %w", out, err)
	}
	for _, row := range rows {
		if len(row) >= 2 && strings.HasPrefix(row[0], "XADD") {
			rps, err := strconv.ParseFloat(row[1], 64)
			if err != nil || rps <= 0 {
				return rate{}, fmt.Errorf("redis-benchmark: bad requests/s %q in %q", row[1], out)
			}
			d := time.Duration(float64(cfg.records) / rps * float64(time.Second))
			return newRate(cfg.records, cfg.records*int64(cfg.recordSize), d), nil
		}
	}
	return rate{}, fmt.Errorf("redis-benchmark: no XADD result in its output %q", out)
}

// redisRead reads the whole stream with XRANGE, redisReadCount entries at a
// time, and checks every value has the record size.
func redisRead(ctx context.Context, cfg *config, rdb *redis.Client, want int64) (rate, error) {
	var records, nbytes int64
	start := time.Now()
	for from := "-"; records < want; {
		msgs, err := rdb.XRangeN(ctx, redisKey, from, "+", redisReadCount).Result()
		if err != nil {
			return rate{}, fmt.Errorf("XRANGE %s %s + COUNT %d after %d entries: %w", redisKey, from, redisReadCount, records, cmp.Or(context.Cause(ctx), err))
		}
		if len(msgs) == 0 {
			break
		}
		for _, m := range msgs {
			v, _ := m.Values["v"].(string)
			if len(v) != cfg.recordSize {
				return rate{}, fmt.Errorf("entry %s: value of %d bytes, want %d", m.ID, len(v), cfg.recordSize)
			}
			records++
			nbytes += int64(len(v))
		}
		from = "(" + msgs[len(msgs)-1].ID
	}
	d := time.Since(start)
	if records != want {
		return rate{}, fmt.Errorf("XRANGE read %d entries, XLEN said %d", records, want)
	}
	return newRate(records, nbytes, d), nil
}
